package anonymize

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"fhirdeid/jsontree"
)

// FuzzParseJSON checks that the configuration reader never panics, that it
// accepts every document encoding/json accepts (unless it has duplicate
// keys), and that it reads the same values.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":[1,2.5e3,-0,true,false,null,"x\u00e9\n"]}`, `{"a":{"b":{"c":[]}}}`, "\ufeff{\"a\":1}",
		`{"a":1,}`, `[1,2,]`, `{"a":1 /* c */}`, "{\"a\":1 // c\n}", `{"a":"\ud83d\ude00"}`, `{"a":"\ud83d"}`,
		`{"a":1,"a":2}`, `{"fhirPathRules":[{"path":"Patient.id","method":"redact"}]}`, `"\u0000"`, `01`, `1.`, `-`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseJSON(data)
		var want any
		stdErr := json.Unmarshal(bytes.TrimPrefix(data, []byte("\ufeff")), &want)
		if stdErr == nil && err != nil {
			// encoding/json accepts duplicate keys; nothing else may differ.
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.HasPrefix(se.Msg, "duplicate key") {
				t.Fatalf("rejects a document encoding/json accepts: %v", err)
			}
			return
		}
		if err != nil {
			return
		}
		// What we read must encode to JSON that means the same as the input
		// (when encoding/json could read the input).
		if stdErr == nil {
			var got any
			if err := json.Unmarshal(v.AppendJSON(nil), &got); err != nil {
				t.Fatalf("re-encoded value is not JSON: %v", err)
			}
			a, _ := json.Marshal(want)
			b, _ := json.Marshal(got)
			if !bytes.Equal(a, b) {
				t.Fatalf("values differ:\n%s\n%s", a, b)
			}
		}
		// The configuration loader must not panic on any parsed document.
		ParseConfig(data, Options{Compiler: permissiveCompiler, Rand: zeroRand()})
	})
}

// FuzzEngine runs resources through an engine with a configuration that
// uses every method, checking that it never panics, fails only with the
// documented error types, and writes JSON that keeps the resource type.
func FuzzEngine(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","id":"p","name":[{"family":"F","given":["A","B"],"_given":[null,{"extension":[{"url":"u","valueString":"x"}]}]}],"birthDate":"1974-12-25","address":[{"postalCode":"20301","city":"c"}]}`,
		`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"s","code":"c","display":"d"}]},"valueQuantity":{"value":5.5,"unit":"mg"},"effectiveDateTime":"2015-02-07T13:28:17-05:00","subject":{"reference":"Patient/p"}}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:c757873d-ec9a-4326-a141-556f43239520","resource":{"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"x","name":[{"family":"y"}]}]}}]}`,
		`{"resourceType":"Condition","subject":{"reference":"#x"},"onsetAge":{"value":95},"_recordedDate":{"extension":[{"url":"u","valueDate":"2000-01-01"}]}}`,
	} {
		f.Add([]byte(s))
	}
	e := newTestEngine(f, rules(
		`{"path":"nodesByType('Extension')","method":"redact"}`,
		`{"path":"Resource.id","method":"cryptoHash"}`,
		`{"path":"nodesByType('Reference').reference","method":"encrypt"}`,
		`{"path":"nodesByType('Coding').display","method":"substitute","replaceWith":"x"}`,
		`{"path":"nodesByType('HumanName')","method":"substitute","replaceWith":{"family":"Doe"}}`,
		`{"path":"nodesByType('Quantity')","method":"perturb","span":1}`,
		`{"path":"nodesByType('dateTime')","method":"dateShift"}`,
		`{"path":"nodesByType('date')","method":"redact"}`,
		`{"path":"nodesByType('Address')","method":"redact"}`,
		`{"path":"nodesByType('Age')","method":"redact"}`,
		`{"path":"Patient.gender","method":"generalize","cases":{"$this = 'male'":"'m'"}}`,
	))
	ctx := WithNow(context.Background(), today)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := e.AnonymizeJSON(ctx, data, FileContext{})
		if err != nil {
			var ie *InputError
			var pe *ProcessingError
			var ce *ConfigError
			if !errors.As(err, &ie) && !errors.As(err, &pe) && !errors.As(err, &ce) && !errors.Is(err, ErrDateRange) {
				// Other errors are allowed only with a location.
				if !strings.Contains(err.Error(), "rule ") {
					t.Fatalf("unexpected error %T: %v", err, err)
				}
			}
			return
		}
		// The same resource through Anonymize on a tree of its own, whose
		// values are fresh strings: AppendAnonymizedJSON's memory reused
		// from call to call must not show.
		if root, perr := jsontree.Parse(data); perr == nil {
			if _, aerr := e.Anonymize(ctx, root, FileContext{}); aerr == nil {
				if tree := root.AppendJSON(nil); !bytes.Equal(tree, out) {
					t.Fatalf("AnonymizeJSON and Anonymize differ:\n%s\n%s", out, tree)
				}
			}
		}
		var in, got map[string]any
		if json.Unmarshal(data, &in) != nil {
			return
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output is not JSON: %v", err)
		}
		if got["resourceType"] != in["resourceType"] {
			t.Fatalf("resourceType changed")
		}
	})
}
