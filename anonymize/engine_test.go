package anonymize

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/jsontree"
)

// newTestEngine builds an engine from an inline configuration.
func newTestEngine(t testing.TB, cfg string) *Engine {
	t.Helper()
	c, err := ParseConfig([]byte(cfg), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e, err := NewEngine(c, EngineOptions{Rand: onesReader{}})
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	return e
}

// onesReader is an endless random source of 0x01 bytes: outputs that use
// randomness (encrypt's IV, perturb) are repeatable, and a long test or a fuzz
// run never exhausts it (a finite source fails encrypt with "reading IV: EOF").
type onesReader struct{}

func (onesReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 1
	}
	return len(p), nil
}

func anonymizeString(t *testing.T, e *Engine, in string) (string, Stats) {
	t.Helper()
	out, st, err := e.AnonymizeJSON(WithNow(context.Background(), today), []byte(in), FileContext{})
	if err != nil {
		t.Fatalf("anonymize: %v", err)
	}
	return string(out), st
}

const (
	redacted    = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED","display":"redacted"}`
	cryptohash  = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"CRYTOHASH","display":"cryptographic hash function"}`
	perturbed   = `{"code":"PERTURBED","display":"exact value is replaced with another exact value"}`
	substituted = `{"code":"SUBSTITUTED","display":"exact value is replaced with a predefined value"}`
	generalized = `{"code":"GENERALIZED","display":"exact value is replaced with a general value"}`
	abstred     = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"ABSTRED","display":"abstracted"}`
)

func rules(rs ...string) string {
	return `{"fhirVersion":"R4","fhirPathRules":[` + strings.Join(rs, ",") + `],"parameters":{"dateShiftKey":"dummy","cryptoHashKey":"123",` +
		`"encryptKey":"1234567890123456","enablePartialDatesForRedact":true,"enablePartialAgesForRedact":true,` +
		`"enablePartialZipCodesForRedact":true,"restrictedZipCodeTabulationAreas":["203"]}}`
}

// TestEnginePrecedence checks the visitor facts of the reference unit tests
// (first rule wins, recursion into matched subtrees, labels, pruning).
func TestEnginePrecedence(t *testing.T) {
	patient := `{"resourceType":"Patient","id":"example","active":true,` +
		`"name":[{"use":"official","family":"Green","given":["Chris","Jason"],"period":{"start":"2015-02-07"}}],` +
		`"address":[{"city":"patienttestcity1","postalCode":"20301","country":"US"},{"city":"KeepTest","postalCode":"98052"}],` +
		`"birthDate":"1974-12-25","_birthDate":{"extension":[{"url":"http://x","valueString":"secret"}]}}`
	tests := []struct {
		name  string
		rules []string
		in    string
		want  string
	}{
		{"keep then redact: nothing happens, no meta",
			[]string{`{"path":"Patient","method":"keep"}`, `{"path":"Patient.address","method":"redact"}`}, patient, patient},
		{"redact a complex element removes it",
			[]string{`{"path":"Patient.address","method":"redact"}`},
			`{"resourceType":"Patient","address":[{"city":"a","country":"US"}],"gender":"male"}`,
			`{"resourceType":"Patient","gender":"male","meta":{"security":[` + redacted + `]}}`},
		{"partial zip and keep of country before redact of Address",
			[]string{`{"path":"nodesByType('Address').country","method":"keep"}`, `{"path":"nodesByType('Address')","method":"redact"}`},
			`{"resourceType":"Patient","address":[{"city":"a","postalCode":"20301","country":"US"},{"postalCode":"98052-1234"}]}`,
			`{"resourceType":"Patient","address":[{"postalCode":"00000","country":"US"},{"postalCode":"98000-0000"}],"meta":{"security":[` + redacted + `,` + abstred + `]}}`},
		{"cryptoHash hashes every primitive below the match",
			[]string{`{"path":"Patient.address[0]","method":"cryptoHash"}`},
			`{"resourceType":"Patient","address":[{"city":"patienttestcity1"}]}`,
			`{"resourceType":"Patient","address":[{"city":"c4321653de997f3029d2efa38dd4baa6c9c2f6bd67b8a52be789f157f8b286ce"}],"meta":{"security":[` + cryptohash + `]}}`},
		{"reference id hashing and id hashing agree",
			[]string{`{"path":"Resource.id","method":"cryptoHash"}`, `{"path":"nodesByType('Reference').reference","method":"cryptoHash"}`},
			`{"resourceType":"Observation","id":"example","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/example"}}`,
			`{"resourceType":"Observation","id":"698d54f0494528a759f19c8e87a9f99e75a5881b9267ee3926bcf62c992d84ba","status":"final","code":{"text":"x"},` +
				`"subject":{"reference":"Patient/698d54f0494528a759f19c8e87a9f99e75a5881b9267ee3926bcf62c992d84ba"},"meta":{"security":[` + cryptohash + `]}}`},
		{"redacting a primitive removes its extensions too",
			[]string{`{"path":"Patient.birthDate","method":"redact"}`},
			`{"resourceType":"Patient","birthDate":"1925-02-07","_birthDate":{"extension":[{"url":"http://x","valueString":"s"}]},"gender":"male"}`,
			`{"resourceType":"Patient","gender":"male","meta":{"security":[` + redacted + `]}}`},
		{"partial date keeps the year, date shift keys on the root id",
			[]string{`{"path":"Patient.birthDate","method":"redact"}`, `{"path":"nodesByType('date')","method":"dateShift"}`},
			`{"resourceType":"Patient","birthDate":"1974-12-25","deceasedDateTime":"2015-02-07T13:28:17-05:00"}`,
			`{"resourceType":"Patient","birthDate":"1974","deceasedDateTime":"2015-02-07T13:28:17-05:00","meta":{"security":[` + redacted + `]}}`},
		{"dateShift on dateTime, offset of prefix \"\" and key dummy",
			[]string{`{"path":"nodesByType('dateTime')","method":"dateShift"}`},
			`{"resourceType":"Patient","deceasedDateTime":"2015-02-07T13:28:17-05:00"}`,
			`{"resourceType":"Patient","deceasedDateTime":"2015-01-17T00:00:00-05:00","meta":{"security":[` + perturbed + `]}}`},
		{"repeating primitive keeps alignment with its shadow array",
			[]string{`{"path":"Patient.name.given[0]","method":"redact"}`},
			`{"resourceType":"Patient","name":[{"given":["Chris","Jason"],"_given":[{"extension":[{"url":"http://x","valueCode":"a"}]},null]}]}`,
			`{"resourceType":"Patient","name":[{"given":["Jason"]}],"meta":{"security":[` + redacted + `]}}`},
		{"existing labels are not duplicated, meta kept in place",
			[]string{`{"path":"Patient.gender","method":"redact"}`},
			`{"resourceType":"Patient","meta":{"versionId":"1","security":[{"code":"redacted"}]},"gender":"male"}`,
			`{"resourceType":"Patient","meta":{"versionId":"1","security":[{"code":"redacted"}]}}`},
		{"perturb then redact: perturbed, unit protected",
			[]string{`{"path":"Observation.value","method":"perturb","span":0,"roundTo":1}`, `{"path":"Observation.value","method":"redact"}`},
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":5.25,"unit":"mg"}}`,
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":5.2,"unit":"mg"},"meta":{"security":[` + perturbed + `]}}`},
		{"redact then perturb: value gone, no PERTURBED",
			[]string{`{"path":"Observation.value.value","method":"redact"}`, `{"path":"Observation.value","method":"perturb","span":1}`},
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":5.25,"unit":"mg"}}`,
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"unit":"mg"},"meta":{"security":[` + redacted + `]}}`},
		{"age over 89 removed, unit of a kept age redacted",
			[]string{`{"path":"nodesByType('Age')","method":"redact"}`},
			`{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":92,"unit":"a"},"abatementAge":{"value":45,"unit":"a"}}`,
			`{"resourceType":"Condition","subject":{"reference":"Patient/1"},"abatementAge":{"value":45},"meta":{"security":[` + redacted + `]}}`},
		{"substitute primitive writes a string",
			[]string{`{"path":"Patient.active","method":"substitute","replaceWith":false}`},
			`{"resourceType":"Patient","active":true}`,
			`{"resourceType":"Patient","active":"False","meta":{"security":[` + substituted + `]}}`},
		{"substitute complex keeps a visited child",
			[]string{`{"path":"Patient.name.given[0]","method":"keep"}`, `{"path":"Patient.name","method":"substitute","replaceWith":{"use":"nickname","family":"Harry","given":["Jim","Cook"]}}`},
			`{"resourceType":"Patient","name":[{"use":"official","family":"Green","given":["Chris","Jason"]}]}`,
			`{"resourceType":"Patient","name":[{"use":"nickname","family":"Harry","given":["Chris","Cook"]}],"meta":{"security":[` + substituted + `]}}`},
		{"substitute complex appends in definition order",
			[]string{`{"path":"Patient.address","method":"substitute","replaceWith":{"postalCode":"100871","city":"Beijing","state":"Beijing","use":"home"}}`},
			`{"resourceType":"Patient","address":[{"state":"DC","country":"US"}]}`,
			`{"resourceType":"Patient","address":[{"state":"Beijing","use":"home","city":"Beijing","postalCode":"100871"}],"meta":{"security":[` + substituted + `]}}`},
		{"generalize with otherValues keep",
			[]string{`{"path":"Patient.multipleBirth","method":"generalize","cases":{"$this>=0 and $this<20":"20","$this>=20 and $this<40":"40"},"otherValues":"keep"}`},
			`{"resourceType":"Patient","multipleBirthInteger":25}`,
			`{"resourceType":"Patient","multipleBirthInteger":40,"meta":{"security":[` + generalized + `]}}`},
		{"contained resources get no labels, the container does",
			[]string{`{"path":"Practitioner.name","method":"redact"}`},
			`{"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"p1","name":[{"family":"X"}]}],"generalPractitioner":[{"reference":"#p1"}]}`,
			`{"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"p1"}],"generalPractitioner":[{"reference":"#p1"}],"meta":{"security":[` + redacted + `]}}`},
		{"bundle gets the union of its entries' labels",
			[]string{`{"path":"Patient.nodesByType('date')","method":"dateShift"}`, `{"path":"Person.nodesByType('Address')","method":"redact"}`},
			`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Person","address":[{"city":"x"}]}},{"resource":{"resourceType":"Patient","birthDate":"2015-02-07"}}]}`,
			`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Person","meta":{"security":[` + redacted + `]}}},` +
				`{"resource":{"resourceType":"Patient","birthDate":"2015-01-17","meta":{"security":[` + perturbed + `]}}}],"meta":{"security":[` + redacted + `,` + perturbed + `]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, rules(tt.rules...))
			got, _ := anonymizeString(t, e, tt.in)
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestEngineErrors(t *testing.T) {
	generalizeFamily := rules(`{"path":"nodesByType('HumanName').family","method":"generalize","cases":{"$this>=0 and $this<20":"1"}}`)
	tests := []struct {
		name   string
		config string
		in     string
		check  func(error) bool
		noLeak string
	}{
		{"processing error raised", generalizeFamily, `{"resourceType":"Patient","name":[{"family":"Secretname"}]}`,
			func(err error) bool {
				var pe *ProcessingError
				return errors.As(err, &pe) && strings.Contains(err.Error(), "Patient.name[0].family")
			}, "Secretname"},
		{"unknown method fails when it applies", rules(`{"path":"Patient","method":"skip"}`), `{"resourceType":"Patient","gender":"male"}`,
			func(err error) bool {
				var ce *ConfigError
				return errors.As(err, &ce) && strings.Contains(err.Error(), "SKIP not supported")
			}, ""},
		{"generalize on a complex node", rules(`{"path":"Patient.name","method":"generalize","cases":{"true":"'x'"}}`), `{"resourceType":"Patient","name":[{"family":"Secretname"}]}`,
			func(err error) bool {
				var ce *ConfigError
				return errors.As(err, &ce) && strings.Contains(err.Error(), "HumanName")
			}, "Secretname"},
		{"unknown element", rules(), `{"resourceType":"Patient","nmae":"Secretname"}`,
			func(err error) bool { var ie *InputError; return errors.As(err, &ie) }, "Secretname"},
		{"unknown resource type", rules(), `{"resourceType":"DeviceComponent"}`,
			func(err error) bool { var ie *InputError; return errors.As(err, &ie) }, ""},
		{"not JSON", rules(), `{"resourceType":"Patient",`,
			func(err error) bool { var ie *InputError; return errors.As(err, &ie) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, tt.config)
			_, _, err := e.AnonymizeJSON(WithNow(context.Background(), today), []byte(tt.in), FileContext{})
			if err == nil || !tt.check(err) {
				t.Fatalf("error = %v (%T)", err, err)
			}
			if tt.noLeak != "" && strings.Contains(err.Error(), tt.noLeak) {
				t.Errorf("error contains a resource value: %v", err)
			}
		})
	}
	// With skip, the whole top-level resource becomes empty.
	skip := strings.Replace(generalizeFamily, `"fhirVersion":"R4",`, `"fhirVersion":"R4","processingErrors":"skip",`, 1)
	e := newTestEngine(t, skip)
	got, st := anonymizeString(t, e, `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"X"}]}}]}`)
	if want := `{"resourceType":"Bundle","meta":{"security":[` + redacted + `]}}`; got != want || !st.Skipped {
		t.Errorf("skip: got %s (skipped %v), want %s", got, st.Skipped, want)
	}
}

func TestEngineDateShiftScopes(t *testing.T) {
	cfg := func(scope string) string {
		return `{"fhirPathRules":[{"path":"nodesByType('date')","method":"dateShift"}],"parameters":{"dateShiftKey":"123","dateShiftScope":"` + scope + `"}}`
	}
	in := `{"resourceType":"Patient","id":"example","birthDate":"2000-01-01"}`
	tests := []struct {
		scope string
		fc    FileContext
		want  string // birthDate
	}{
		{"resource", FileContext{FileName: "filename"}, "2000-02-11"}, // offset("example","123") = 41
		{"file", FileContext{FileName: "filename"}, "2000-01-05"},     // offset("filename","123") = 4
		{"folder", FileContext{FolderName: "filename"}, "2000-01-05"},
		{"file", FileContext{}, "2000-02-11"}, // no file name: the root id
	}
	for _, tt := range tests {
		e := newTestEngine(t, cfg(tt.scope))
		out, _, err := e.AnonymizeJSON(WithNow(context.Background(), today), []byte(in), tt.fc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), `"birthDate":"`+tt.want+`"`) {
			t.Errorf("scope %s %+v: %s, want birthDate %s", tt.scope, tt.fc, out, tt.want)
		}
	}
}

// TestEngineDeterministicPerturb checks that perturb gives the same output on
// a re-run and stays in range.
func TestEngineDeterministicPerturb(t *testing.T) {
	e := newTestEngine(t, rules(`{"path":"Observation.value","method":"perturb","span":10,"roundTo":2}`))
	in := `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueQuantity":{"value":100.5}}`
	a, _ := anonymizeString(t, e, in)
	b, _ := anonymizeString(t, e, in)
	if a != b {
		t.Errorf("perturb is not deterministic:\n%s\n%s", a, b)
	}
	if a == strings.Replace(in, "}}", `},"meta":{"security":[`+perturbed+`]}}`, 1) {
		t.Errorf("value not perturbed: %s", a)
	}
	other, _ := anonymizeString(t, e, strings.Replace(in, `"o1"`, `"o2"`, 1))
	if other == a {
		t.Errorf("noise does not depend on the resource id")
	}
}

func TestEngineConcurrent(t *testing.T) {
	e := newTestEngine(t, rules(`{"path":"Resource.id","method":"cryptoHash"}`, `{"path":"nodesByType('date')","method":"dateShift"}`, `{"path":"nodesByType('HumanName')","method":"redact"}`))
	in := `{"resourceType":"Patient","id":"example","name":[{"family":"X"}],"birthDate":"2000-01-01"}`
	want, _ := anonymizeString(t, e, in)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				out, _, err := e.AnonymizeJSON(WithNow(context.Background(), today), []byte(in), FileContext{})
				if err != nil || string(out) != want {
					t.Errorf("concurrent run differs: %s %v", out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestEngineTestdata runs the in-repository fixtures:
// testdata/engine-NAME.config.json, engine-NAME.input.json and
// engine-NAME.expected.json.
func TestEngineTestdata(t *testing.T) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "engine-*.input.json"))
	if len(inputs) == 0 {
		t.Fatal("no engine fixtures")
	}
	for _, in := range inputs {
		base := strings.TrimSuffix(in, ".input.json")
		cfg, err := os.ReadFile(base + ".config.json")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(in)
		want, _ := os.ReadFile(base + ".expected.json")
		e := newTestEngine(t, string(cfg))
		out, _, err := e.AnonymizeJSON(WithNow(context.Background(), today), data, FileContext{})
		if err != nil {
			t.Errorf("%s: %v", base, err)
			continue
		}
		if err := sameJSON(want, out); err != nil {
			t.Errorf("%s: %v", base, err)
		}
	}
}

func TestSameJSON(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1.0}`, true},
		{`{"t":"2015-01-17T00:00:00+00:00"}`, `{"t":"2015-01-17T00:00:00Z"}`, true},
		{`{"a":[1,2]}`, `{"a":[2,1]}`, false},
		{`{"a":"x"}`, `{"a":"y"}`, false},
		{`{"a":"x"}`, `{"a":"x","b":null}`, false},
		{`{"d":"2015-01-17"}`, `{"d":"2015-01-17Z"}`, false},
	}
	for _, tt := range tests {
		if err := sameJSON([]byte(tt.a), []byte(tt.b)); (err == nil) != tt.same {
			t.Errorf("sameJSON(%s, %s) = %v, want same=%v", tt.a, tt.b, err, tt.same)
		}
	}
}

func BenchmarkEngineSafeHarborPatient(b *testing.B) {
	e := newTestEngine(b, rules(`{"path":"nodesByType('Extension')","method":"redact"}`, `{"path":"Resource.id","method":"cryptoHash"}`,
		`{"path":"nodesByType('Reference').reference","method":"cryptoHash"}`, `{"path":"nodesByType('HumanName')","method":"redact"}`,
		`{"path":"nodesByType('Address')","method":"redact"}`, `{"path":"nodesByType('date')","method":"redact"}`,
		`{"path":"nodesByType('dateTime')","method":"redact"}`, `{"path":"nodesByType('string')","method":"redact"}`))
	in := []byte(`{"resourceType":"Patient","id":"example","name":[{"use":"official","family":"Green","given":["Chris","Jason"]}],` +
		`"address":[{"line":["1 Main St"],"city":"Springfield","postalCode":"98052","country":"US"}],"birthDate":"1974-12-25",` +
		`"generalPractitioner":[{"reference":"Practitioner/p1","display":"Dr X"}],"extension":[{"url":"http://x","valueString":"y"}]}`)
	ctx := WithNow(context.Background(), today)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.AnonymizeJSON(ctx, in, FileContext{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEngineTrimsWhitespace(t *testing.T) {
	cfg := rules(`{"path":"Patient.name.family","method":"cryptoHash"}`)
	in := `{"resourceType":"Patient","name":[{"family":" abc\n","given":["  Peter "]}]}`
	want := `{"resourceType":"Patient","name":[{"family":"8f16771f9f8851b26f4d460fa17de93e2711c7e51337cb8a608a0f81e1c1b6ae","given":["Peter"]}],"meta":{"security":[` + cryptohash + `]}}`
	got, _ := anonymizeString(t, newTestEngine(t, cfg), in)
	if got != want {
		t.Errorf("trimmed: got\n%s\nwant\n%s", got, want)
	}
	c, _ := ParseConfig([]byte(cfg), Options{Compiler: FHIRPathCompiler()})
	e, err := NewEngine(c, EngineOptions{PreserveWhitespace: true})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := e.AnonymizeJSON(context.Background(), []byte(in), FileContext{})
	if err != nil || !strings.Contains(string(out), `"given":["  Peter "]`) || strings.Contains(string(out), "8f16771f") {
		t.Errorf("preserved: %s %v", out, err)
	}
}

func TestCSharpText(t *testing.T) {
	tests := []struct{ json, want string }{
		{`true`, "True"}, {`false`, "False"}, {`1.50`, "1.50"}, {`1.5e2`, "150"}, {`1.25E-1`, "0.125"}, {`12`, "12"}, {`"a b"`, "a b"},
	}
	for _, tt := range tests {
		n, err := jsontree.ParseString(tt.json)
		if err != nil {
			t.Fatal(err)
		}
		if got := csharpText(n); got != tt.want {
			t.Errorf("csharpText(%s) = %q, want %q", tt.json, got, tt.want)
		}
	}
}

func TestAppendAnonymizedJSON(t *testing.T) {
	e := newTestEngine(t, rules(`{"path":"Patient.gender","method":"redact"}`))
	ctx := WithNow(context.Background(), today)
	dst := []byte("prefix\n")
	out, _, err := e.AppendAnonymizedJSON(ctx, dst, []byte(`{"resourceType":"Patient","gender":"male"}`), FileContext{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "prefix\n" + `{"resourceType":"Patient","meta":{"security":[` + redacted + `]}}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
	out, _, err = e.AppendAnonymizedJSON(ctx, dst, []byte(`{"resourceType":"Patient","nmae":1}`), FileContext{})
	if err == nil || string(out) != "prefix\n" {
		t.Errorf("on error: %q %v", out, err)
	}
}

func TestCustomMethods(t *testing.T) {
	c, err := ParseConfig([]byte(rules(`{"path":"Patient.name.family","method":"upper","suffix":"!"}`, `{"path":"Patient.gender","method":"Drop"}`,
		`{"path":"Patient.birthDate","method":"fail"}`)), Options{Compiler: FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]CustomMethod{
		"UPPER": {Apply: func(c CustomCall) (string, bool, error) {
			s, _ := c.Settings.Get("suffix")
			return strings.ToUpper(c.Value) + s.Text, true, nil
		}, Records: true, Operation: OpSubstitute},
		"drop": {Apply: func(CustomCall) (string, bool, error) { return "", false, nil }},
		"fail": {Apply: func(c CustomCall) (string, bool, error) { return "", false, errors.New("cannot") }},
	}
	e, err := NewEngine(c, EngineOptions{CustomMethods: methods})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := e.AnonymizeJSON(context.Background(), []byte(`{"resourceType":"Patient","name":[{"family":"doe"}],"gender":"male"}`), FileContext{})
	if want := `{"resourceType":"Patient","name":[{"family":"DOE!"}],"meta":{"security":[` + substituted + `]}}`; err != nil || string(out) != want {
		t.Errorf("got %s %v, want %s", out, err, want)
	}
	_, _, err = e.AnonymizeJSON(context.Background(), []byte(`{"resourceType":"Patient","birthDate":"2000-01-01"}`), FileContext{})
	var pe *ProcessingError
	if !errors.As(err, &pe) || pe.Rule != 3 {
		t.Errorf("failing custom method: %v", err)
	}
	if _, err := NewEngine(c, EngineOptions{CustomMethods: map[string]CustomMethod{"Redact": methods["drop"]}}); err == nil {
		t.Error("a custom method may take a built-in name")
	}
	// Without the methods, the rules fail when they apply.
	plain, err := NewEngine(c, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = plain.AnonymizeJSON(context.Background(), []byte(`{"resourceType":"Patient","gender":"male"}`), FileContext{})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "UPPER not supported") {
		t.Errorf("unregistered custom method: %v", err)
	}
}

func TestEngineWrapsRepeatingElements(t *testing.T) {
	e := newTestEngine(t, rules(`{"path":"Patient.name.family","method":"redact"}`))
	got, _ := anonymizeString(t, e, `{"resourceType":"Patient","communication":{"language":{"text":"en"}},"name":{"family":"x","given":"Peter","_given":{"id":"g"}}}`)
	want := `{"resourceType":"Patient","communication":[{"language":{"text":"en"}}],"name":[{"given":["Peter"],"_given":[{"id":"g"}]}],"meta":{"security":[` + redacted + `]}}`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestEngineVisitorFacts checks the facts of the reference's visitor tests
// about nested resources (unit-vectors.json "visitor").
func TestEngineVisitorFacts(t *testing.T) {
	// A Patient with a contained Organization that contains a Person.
	nested := `{"resourceType":"Patient","address":[{"city":"pc","country":"pk"}],"contained":[{"resourceType":"Organization","id":"o",` +
		`"address":[{"city":"oc","country":"ok"}],"contained":[{"resourceType":"Person","id":"p","active":true,"address":[{"city":"xc","country":"xk"}]}]}]}`
	tests := []struct {
		name  string
		rules []string
		in    string
		want  string
	}{
		{"Person rule reaches the nested contained Person; labels on the top resource only",
			[]string{`{"path":"Person.address.city","method":"redact"}`}, nested,
			`{"resourceType":"Patient","address":[{"city":"pc","country":"pk"}],"contained":[{"resourceType":"Organization","id":"o",` +
				`"address":[{"city":"oc","country":"ok"}],"contained":[{"resourceType":"Person","id":"p","active":true,"address":[{"country":"xk"}]}]}],"meta":{"security":[` + redacted + `]}}`},
		{"nodesByType('Address') applies in every resource",
			[]string{`{"path":"nodesByType('Address')","method":"redact"}`}, nested,
			`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Person","id":"p","active":true}]}],"meta":{"security":[` + redacted + `]}}`},
		{"Person.nodesByType('Address') affects only the Person",
			[]string{`{"path":"Person.nodesByType('Address')","method":"redact"}`}, nested,
			`{"resourceType":"Patient","address":[{"city":"pc","country":"pk"}],"contained":[{"resourceType":"Organization","id":"o",` +
				`"address":[{"city":"oc","country":"ok"}],"contained":[{"resourceType":"Person","id":"p","active":true}]}],"meta":{"security":[` + redacted + `]}}`},
		{"nodesByName('city') removes every city, countries stay",
			[]string{`{"path":"nodesByName('city')","method":"redact"}`}, nested,
			`{"resourceType":"Patient","address":[{"country":"pk"}],"contained":[{"resourceType":"Organization","id":"o",` +
				`"address":[{"country":"ok"}],"contained":[{"resourceType":"Person","id":"p","active":true,"address":[{"country":"xk"}]}]}],"meta":{"security":[` + redacted + `]}}`},
		{"keep Person.address.country, then redact addresses",
			[]string{`{"path":"Person.address.country","method":"keep"}`, `{"path":"nodesByType('Address')","method":"redact"}`}, nested,
			`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Person","id":"p","active":true,"address":[{"country":"xk"}]}]}],"meta":{"security":[` + redacted + `]}}`},
		{"a resource-type rule in a Bundle empties the entry but keeps its type and labels",
			[]string{`{"path":"Person","method":"redact"}`},
			`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Person","active":true}}]}`,
			`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Person","meta":{"security":[` + redacted + `]}}}],"meta":{"security":[` + redacted + `]}}`},
		{"Resource.address applies through the Resource prefix",
			[]string{`{"path":"Resource.address","method":"redact"}`},
			`{"resourceType":"Patient","address":[{"city":"c"}],"gender":"male"}`,
			`{"resourceType":"Patient","gender":"male","meta":{"security":[` + redacted + `]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := anonymizeString(t, newTestEngine(t, rules(tt.rules...)), tt.in)
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	// encrypt: every primitive below the match, decryptable, MASKED.
	e := newTestEngine(t, rules(`{"path":"Patient.address","method":"encrypt"}`))
	got, _ := anonymizeString(t, e, `{"resourceType":"Patient","address":[{"city":"patienttestcity1","country":"US"}]}`)
	doc, err := jsontree.ParseString(got)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := NewEncryptor("1234567890123456", nil)
	addr := doc.Get("address").Children()[0]
	for key, want := range map[string]string{"city": "patienttestcity1", "country": "US"} {
		pt, err := enc.Decrypt(addr.Get(key).Value())
		if err != nil || pt != want {
			t.Errorf("%s decrypts to %q, %v", key, pt, err)
		}
	}
	if !strings.Contains(got, `"code":"MASKED"`) {
		t.Errorf("no MASKED label: %s", got)
	}
}

// TestEngineClearsMarks checks that the visited marks (jsontree.FlagMark)
// do not outlive a call, whether it succeeds or fails.
func TestEngineClearsMarks(t *testing.T) {
	in := `{"resourceType":"Patient","id":"example","name":[{"family":"X","given":["A","B"]}],"birthDate":"2000-01-01",` +
		`"contained":[{"resourceType":"Patient","id":"c","name":[{"family":"Y"}]}],"telecom":[{"value":"1"},{"value":"2"}]}`
	marked := func(root *jsontree.Node) int {
		n := 0
		root.Walk(func(c *jsontree.Node) bool {
			if c.Flags&jsontree.FlagMark != 0 {
				n++
			}
			return true
		})
		return n
	}
	for _, cfg := range []string{
		rules(`{"path":"Resource.id","method":"cryptoHash"}`, `{"path":"nodesByType('HumanName').given","method":"keep"}`, `{"path":"nodesByType('HumanName')","method":"redact"}`, `{"path":"Patient","method":"keep"}`),
		// The custom method fails on the telecom values.
		rules(`{"path":"nodesByType('HumanName')","method":"keep"}`, `{"path":"nodesByType('ContactPoint').value","method":"failing"}`),
	} {
		c, err := ParseConfig([]byte(cfg), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(c, EngineOptions{CustomMethods: map[string]CustomMethod{"failing": {
			Apply: func(CustomCall) (string, bool, error) { return "", false, errors.New("failing") }}}})
		if err != nil {
			t.Fatal(err)
		}
		root, err := jsontree.ParseString(in)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Anonymize(WithNow(context.Background(), today), root, FileContext{})
		if strings.Contains(cfg, "failing") == (err == nil) {
			t.Errorf("error %v", err)
		}
		if k := marked(root); k != 0 {
			t.Errorf("%d nodes still marked after a call (error %v)", k, err)
		}
	}
}

// TestResourceTypeNamesAreLetters checks what matchLiteral relies on to
// look up only a few suffixes of a reference: resource type names are
// letters and start with a capital.
func TestResourceTypeNamesAreLetters(t *testing.T) {
	for _, v := range []string{"R4", "STU3"} {
		ts := ResourceTypes(v)
		if len(ts) < 100 {
			t.Fatalf("%s: %d resource types", v, len(ts))
		}
		for _, n := range ts {
			for i := 0; i < len(n); i++ {
				if c := n[i]; !(c >= 'A' && c <= 'Z' || i > 0 && c >= 'a' && c <= 'z') {
					t.Errorf("%s: resource type %q", v, n)
				}
			}
		}
	}
}

func TestMemberPath(t *testing.T) {
	for expr, want := range map[string]string{
		"address": "address", "name.given": "name|given", "entry.request.url": "entry|request|url",
		"text.div": "", "name.where(use='x')": "", "Patient": "", "name[0]": "", "nodesByType('x')": "",
		"value.as(Quantity)": "", "a.contains": "", "": "",
	} {
		if got := strings.Join(memberPath(expr), "|"); got != want {
			t.Errorf("memberPath(%q) = %q, want %q", expr, got, want)
		}
	}
}

// TestMemberPathMatchesEvaluator checks that the member-path shortcut finds
// what the FHIRPath evaluator finds, nested resources, shadows of
// primitives and choice elements included.
func TestMemberPathMatchesEvaluator(t *testing.T) {
	in := `{"resourceType":"Patient","id":"p","name":[{"given":["A",null,"C"],"_given":[null,{"id":"g2"},{"id":"g3"}],"family":"F"},{"given":["D"]}],` +
		`"contained":[{"resourceType":"Patient","id":"c","name":[{"given":["X"]}]}],` +
		`"extension":[{"url":"u","valueString":"v"},{"url":"w","valueCode":"c"}],"_birthDate":{"id":"b"},` +
		`"contact":[{"name":{"given":["E"]},"telecom":[{"value":"1"}]}]}`
	for _, expr := range []string{"name", "name.given", "contained", "contained.name.given", "extension.value", "extension.url",
		"birthDate", "birthDate.id", "contact.name.given", "contact.telecom.value", "name.given.id"} {
		found := 0
		defer func() {
			if found == 0 {
				t.Errorf("%s: nothing found", expr)
			}
		}()
		root, err := jsontree.ParseString(in)
		if err != nil {
			t.Fatal(err)
		}
		if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
			t.Fatal(err)
		}
		names := memberPath(expr)
		if names == nil {
			t.Fatalf("%s: not a member path", expr)
		}
		fast, _ := memberMatches(root, names, nil, nil)
		found = len(fast)
		e, err := fhirpath.Compile(expr, fhirpath.WithModel(model.Get(model.R4)))
		if err != nil {
			t.Fatal(err)
		}
		items, err := e.Evaluate(root, &fhirpath.Env{})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != len(fast) {
			t.Errorf("%s: evaluator %d items, member path %d", expr, len(items), len(fast))
			continue
		}
		for i, it := range items {
			if it.Node() != fast[i] {
				t.Errorf("%s: item %d differs", expr, i)
			}
		}
	}
}
