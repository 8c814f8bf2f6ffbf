package anonymize

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// dispatchPair returns an engine for cfg and the same engine with the rule
// loop only.
func dispatchPair(t testing.TB, cfg string) (e, loop *Engine) {
	t.Helper()
	e, loop = newTestEngine(t, cfg), newTestEngine(t, cfg)
	loop.noDispatch = true
	return e, loop
}

// sameAsLoop de-identifies in with both engines and fails unless the
// outputs, statistics and errors are the same. It returns the number of
// resources dispatched.
func sameAsLoop(t *testing.T, ctx context.Context, e, loop *Engine, in []byte) int {
	t.Helper()
	var marks markCheck
	out, st, err := e.AnonymizeJSON(ctx, in, FileContext{FileName: "f.ndjson", Inspector: &marks})
	if marks.marked > 0 {
		t.Fatalf("%d nodes keep their visited mark after de-identification", marks.marked)
	}
	lout, lst, lerr := loop.AnonymizeJSON(ctx, in, FileContext{FileName: "f.ndjson"})
	if fmt.Sprint(err) != fmt.Sprint(lerr) {
		t.Fatalf("errors differ:\ndispatch:  %v\nrule loop: %v\ninput: %s", err, lerr, in)
	}
	if string(out) != string(lout) {
		t.Fatalf("outputs differ:\ndispatch:  %s\nrule loop: %s\ninput: %s", out, lout, in)
	}
	if st.Operations != lst.Operations || st.Resources != lst.Resources || st.Changed != lst.Changed || st.Skipped != lst.Skipped {
		t.Fatalf("statistics differ: dispatch %+v, rule loop %+v", st, lst)
	}
	if lst.dispatched != 0 {
		t.Fatalf("the rule-loop engine dispatched %d resources", lst.dispatched)
	}
	return st.dispatched
}

var dispatchCtx = WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))

// TestDispatchSynthea compares dispatch with the rule loop on every
// resource of synthea-100 under the built-in profiles and Microsoft's
// sample configuration, and checks that the profiles' resources are
// dispatched (all of them but those whose attachments the longitudinal
// profile scrubs).
func TestDispatchSynthea(t *testing.T) {
	lines := datasetLines(t, "synthea-100", 0)
	sample, err := os.ReadFile(filepath.Join(testshared.Dir(t, "conformance", "ms-anonymizer"), "FHIR", "src",
		"Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests", "r4-configuration-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		cfg     string
		atLeast float64 // share of the resources dispatched
	}{
		{"longitudinal", string(defaultconfig.Longitudinal()), 0.95},
		{"safe-harbor", string(defaultconfig.SafeHarbor()), 0.99},
		{"sample", string(sample), 0.99},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, loop := dispatchPair(t, c.cfg)
			n, all := 0, 0
			for _, line := range lines {
				n += sameAsLoop(t, dispatchCtx, e, loop, line)
				_, st, _ := e.AnonymizeJSON(dispatchCtx, line, FileContext{})
				all += st.Resources
			}
			share := float64(n) / float64(all)
			t.Logf("%d of %d resources (nested ones included) dispatched (%.3f)", n, all, share)
			if share < c.atLeast {
				t.Errorf("only %.3f of the resources were dispatched, want at least %.2f", share, c.atLeast)
			}
		})
	}
}

// TestDispatchShapes compares dispatch with the rule loop on rule shapes
// and resources chosen for the walk's cases, and checks which of them
// dispatch.
func TestDispatchShapes(t *testing.T) {
	obs := `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1","display":"Body Height"},{"system":"http://x.org","code":"2","display":"Jane Doe"}],"text":"Body Height"},"subject":{"reference":"Patient/p1","display":"Jane Doe"},"effectiveDateTime":"2011-02-02T16:30:49-05:00","valueQuantity":{"value":1.5,"unit":"cm"},"note":[{"text":"seen by Dr Smith on 2011-02-03"}]}`
	patient := `{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-05-06","name":[{"family":"Doe","given":["Jane","Q"]}],"contact":[{"name":{"family":"Roe","given":["Rick"]},"telecom":[{"system":"phone","value":"555-1234"}]}],"address":[{"city":"Boston","postalCode":"02134","state":"MA"}]}`
	// The value of the outer extension comes after its nested extension:
	// the rule loop takes the outer match first, document order the inner
	// one. Generalizing either fails (it is not a primitive), and the error
	// names the one reached first.
	nestedHeads := `{"resourceType":"Patient","id":"p2","extension":[{"url":"a","extension":[{"url":"b","valueCoding":{"code":"x"}}],"valueCoding":{"code":"y"}}]}`
	contained := `{"resourceType":"ExplanationOfBenefit","id":"e1","status":"active","contained":[{"resourceType":"Coverage","id":"c1","status":"active","payor":[{"display":"Acme"}],"beneficiary":{"reference":"Patient/p1"}},{"resourceType":"ServiceRequest","id":"s1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"authoredOn":"2012-01-01"}],"patient":{"reference":"Patient/p1"},"created":"2012-01-02"}`
	shadow := `{"resourceType":"Patient","id":"p3","birthDate":"1950-05-06","_birthDate":{"extension":[{"url":"u","valueString":"x"}]}}`
	empties := `{"resourceType":"Patient","id":"p4","gender":"male","name":[],"maritalStatus":{},"contact":[{"name":{"given":[]}}]}`
	attachment := `{"resourceType":"DocumentReference","id":"d1","status":"current","content":[{"attachment":{"contentType":"text/plain","data":"U2VlbiBieSBEciBTbWl0aA==","hash":"abc","size":19}}]}`
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p5","birthDate":"1950-05-06","name":[{"family":"Doe"}]}},{"resource":{"resourceType":"Observation","id":"o5","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p5"},"effectiveDateTime":"2011-02-02"}}]}`
	emptied := `{"resourceType":"Patient","id":"p6","active":true,"name":[{"family":"A"},{"given":["B"],"family":"C"},{"family":"E","period":{"start":"2000"}}],"contact":[{"name":{"family":"D"}},{"gender":"male","name":{"family":"F"}}]}`
	var many strings.Builder
	many.WriteString(`{"resourceType":"Patient","id":"p7","gender":"female","telecom":[`)
	for i := range maxNulls + 10 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `{"system":"phone","value":"555-%04d","use":"home"}`, i)
	}
	many.WriteString(`]}`)
	// More nested resources than span scans: their spans come from a map.
	var entries strings.Builder
	entries.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	for i := range maxNestedScan + 4 {
		if i > 0 {
			entries.WriteString(",")
		}
		fmt.Fprintf(&entries, `{"resource":{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2011-02-02"}}`, i, i%3)
	}
	entries.WriteString(`]}`)
	tests := []struct {
		name  string
		rules []string
		in    string
		// skip sets processingErrors "skip".
		skip bool
		// dispatched is the number of resources dispatch must handle.
		dispatched int
	}{
		{"profile observation", nil, obs, false, 1},
		{"profile patient", nil, patient, false, 1},
		{"profile contained", nil, contained, false, 3},
		{"profile shadow", nil, shadow, false, 0},
		{"profile attachment", nil, attachment, false, 0},
		{"empty objects and arrays", []string{`{"path":"Patient.gender","method":"keep"}`}, empties, false, 1},
		{"empty objects and arrays, profile", nil, empties, false, 1},
		{"resource rule after a member rule", []string{
			`{"path":"Patient.gender","method":"keep"}`,
			`{"path":"Patient","method":"redact"}`,
		}, patient, false, 1},
		{"deep member paths", []string{
			`{"path":"Patient.contact.name.given","method":"cryptoHash"}`,
			`{"path":"Patient.name.given","method":"encrypt"}`,
			`{"path":"nodesByType('HumanName')","method":"redact"}`,
		}, patient, false, 1},
		{"tails and names", []string{
			`{"path":"nodesByType('Address').state","method":"keep"}`,
			`{"path":"nodesByName('postalCode')","method":"redact"}`,
			`{"path":"nodesByName('contact').telecom","method":"cryptoHash"}`,
			`{"path":"nodesByType('Address')","method":"redact"}`,
			`{"path":"nodesByType('date')","method":"dateShift"}`,
		}, patient, false, 1},
		{"error order of nested heads", []string{
			`{"path":"nodesByType('Extension').value","method":"generalize","cases":{"true":"'x'"}}`,
		}, nestedHeads, false, 1},
		{"where with an earlier keep", []string{
			`{"path":"nodesByType('Coding').code","method":"keep"}`,
			`{"path":"nodesByType('Coding').where(system = 'http://loinc.org').display","method":"keep"}`,
			`{"path":"nodesByType('Coding').display","method":"redact"}`,
		}, obs, false, 1},
		{"where after a rule changing its member", []string{
			`{"path":"nodesByType('uri')","method":"cryptoHash"}`,
			`{"path":"nodesByType('Coding').where(system = 'http://loinc.org').display","method":"keep"}`,
			`{"path":"nodesByType('Coding').display","method":"redact"}`,
		}, obs, false, 0},
		{"where reading two members", []string{
			`{"path":"nodesByType('Coding').where(system = 'http://loinc.org' and code = '1').display","method":"keep"}`,
			`{"path":"nodesByType('Coding').display","method":"redact"}`,
		}, obs, false, 0},
		// The container goes through the rule loop, whose redaction
		// reaches into the contained resources; they are then dispatched,
		// and their elements, already processed, are left alone.
		{"a rule reaching a contained resource", []string{
			`{"path":"nodesByName('contained')","method":"redact"}`,
			`{"path":"Resource.id","method":"cryptoHash"}`,
		}, contained, false, 2},
		{"nested resources with rules of their own", []string{
			`{"path":"Resource.id","method":"cryptoHash"}`,
			`{"path":"nodesByType('Reference').reference","method":"cryptoHash"}`,
			`{"path":"ServiceRequest.authoredOn","method":"redact"}`,
			`{"path":"nodesByType('dateTime')","method":"dateShift"}`,
		}, contained, false, 3},
		{"generalize", []string{
			`{"path":"Patient.gender","method":"generalize","cases":{"$this = 'female'":"'f'"},"otherValues":"redact"}`,
			`{"path":"nodesByType('HumanName')","method":"generalize","cases":{"true":"'x'"}}`,
		}, patient, false, 1},
		{"substitute is not dispatched", []string{
			`{"path":"nodesByType('HumanName')","method":"substitute","replaceWith":{"family":"Doe"}}`,
		}, patient, false, 0},
		{"bundle entries", nil, bundle, false, 3},
		// Removed values empty their containers up to the resource: the
		// paths to them are pruned.
		{"containers emptied", []string{`{"path":"nodesByName('family')","method":"redact"}`}, emptied, false, 1},
		// More removed values than run.nulls records: the whole tree is
		// pruned.
		{"many values removed", []string{`{"path":"nodesByName('value')","method":"redact"}`,
			`{"path":"nodesByName('use')","method":"redact"}`}, many.String(), false, 1},
		{"bundle entries, rules of each type", []string{
			`{"path":"Resource.id","method":"cryptoHash"}`,
			`{"path":"Patient.name","method":"redact"}`,
			`{"path":"nodesByType('dateTime')","method":"dateShift"}`,
			`{"path":"Bundle.entry.fullUrl","method":"redact"}`,
		}, bundle, false, 3},
		// processingErrors "skip": the failing resource is emptied, the
		// same way on both paths (the Stats of a skipped resource count
		// nothing else, dispatch included).
		{"processing error skipped", []string{
			`{"path":"Resource.id","method":"cryptoHash"}`,
			`{"path":"nodesByType('HumanName').family","method":"generalize","cases":{"$this>=0 and $this<20":"1"}}`,
		}, patient, true, 0},
		{"processing error raised", []string{
			`{"path":"Resource.id","method":"cryptoHash"}`,
			`{"path":"nodesByType('HumanName').family","method":"generalize","cases":{"$this>=0 and $this<20":"1"}}`,
		}, patient, false, 1},
		{"many bundle entries", nil, entries.String(), false, maxNestedScan + 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := string(defaultconfig.Longitudinal())
			if tc.rules != nil {
				cfg = rules(tc.rules...)
			}
			if tc.skip {
				cfg = strings.Replace(cfg, `"fhirVersion":"R4",`, `"fhirVersion":"R4","processingErrors":"skip",`, 1)
			}
			e, loop := dispatchPair(t, cfg)
			if got := sameAsLoop(t, dispatchCtx, e, loop, []byte(tc.in)); got != tc.dispatched {
				t.Errorf("%d resources dispatched, want %d", got, tc.dispatched)
			}
		})
	}
}

// FuzzDispatch compares dispatch with the rule loop on any input, under a
// configuration of the shapes dispatch handles.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Observation","id":"o1","code":{"coding":[{"system":"http://loinc.org","code":"1","display":"Body Height"}],"text":"Body Height"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2011-02-02T16:30:49-05:00"}`,
		`{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-05-06","name":[{"family":"Doe","given":["Jane"]}],"extension":[{"url":"a","extension":[{"url":"b","valueDateTime":"2020-13-45"}],"valueDateTime":"2021-01-01"}]}`,
		`{"resourceType":"Patient","id":"p2","extension":[{"url":"a","extension":[{"url":"b","valueCoding":{"code":"x"}}],"valueCoding":{"code":"y"}}]}`,
		`{"resourceType":"ExplanationOfBenefit","id":"e1","contained":[{"resourceType":"Coverage","id":"c1","beneficiary":{"reference":"Patient/p1"}}],"patient":{"reference":"Patient/p1"},"created":"2012-01-02"}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"x","birthDate":"2000"}}]}`,
	} {
		f.Add([]byte(s))
	}
	e, loop := dispatchPair(f, rules(
		`{"path":"Patient.gender","method":"keep"}`,
		`{"path":"nodesByType('Extension').value","method":"generalize","cases":{"$this = @2021-01-01":"@2021"}}`,
		`{"path":"Resource.id","method":"cryptoHash"}`,
		`{"path":"nodesByType('Reference').reference","method":"cryptoHash"}`,
		`{"path":"nodesByType('Coding').where(system = 'http://loinc.org' or system.startsWith('http://hl7')).display","method":"keep"}`,
		`{"path":"nodesByName('given')","method":"encrypt"}`,
		`{"path":"Patient.name.family","method":"generalize","cases":{"$this.length() > 3":"'long'"},"otherValues":"redact"}`,
		`{"path":"nodesByType('dateTime')","method":"dateShift"}`,
		`{"path":"nodesByType('date')","method":"redact"}`,
		`{"path":"nodesByType('Extension')","method":"redact"}`,
		`{"path":"nodesByType('CodeableConcept').text","method":"scrub"}`,
		`{"path":"nodesByType('string')","method":"redact"}`,
	))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsLoop(t, dispatchCtx, e, loop, data)
	})
}

// markCheck counts the nodes of the output tree that keep a visited mark
// (which the engine clears before it returns).
type markCheck struct{ marked int }

func (m *markCheck) Raw(*jsontree.Node) {}

func (m *markCheck) Output(root *jsontree.Node) {
	root.Walk(func(n *jsontree.Node) bool {
		if n.Flags&jsontree.FlagMark != 0 {
			m.marked++
		}
		return true
	})
}
