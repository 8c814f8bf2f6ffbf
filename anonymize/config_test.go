package anonymize

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhirpath"
)

// colError is a compile error with a column, as the FHIRPath compiler will
// return.
type colError struct{ col int }

func (e colError) Error() string { return "syntax error" }
func (e colError) Column() int   { return e.col }

// stubCompiler stands in for the FHIRPath compiler. It accepts every
// expression except the two constructs the reference compiler rejects in the
// conformance configurations: the unknown function invalid() and the
// operator &&. The compiled form is the expression itself.
func stubCompiler(resourceType, expr string) (Compiled, error) {
	for _, bad := range []string{"invalid(", "&&"} {
		if i := strings.Index(expr, bad); i >= 0 {
			return nil, colError{i + 1}
		}
	}
	if strings.TrimSpace(expr) == "" {
		return nil, colError{1}
	}
	return expr, nil
}

// permissiveCompiler accepts everything.
func permissiveCompiler(resourceType, expr string) (Compiled, error) { return expr, nil }

func zeroRand() *bytes.Reader { return bytes.NewReader(make([]byte, 1024)) }

func mustParse(t *testing.T, src string, opts Options) *Config {
	t.Helper()
	if opts.Rand == nil {
		opts.Rand = zeroRand()
	}
	c, err := ParseConfig([]byte(src), opts)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return c
}

func TestParseConfigValid(t *testing.T) {
	src := "\ufeff" + `{
	  // comments and trailing commas are tolerated, as by Newtonsoft
	  "FhirVersion": "r4",
	  "PROCESSINGERRORS": "Skip",
	  "processingError": "raise",
	  "fhirPathRules": [
	    {"path": "Patient.address", "method": "Redact"},
	    {"path": "nodesByType('date')", "method": "dateshift"},
	    {"path": "Patient", "method": "keep"},
	    {"path": "Observation.value", "method": "perturb", "span": "1.5", "rangeType": "Proportional", "roundTo": 3},
	    {"path": "Patient.gender", "method": "substitute", "replaceWith": null},
	    {"path": "Patient.birthDate", "method": "generalize", "cases": {"$this < @2000": "@1999", "true": "@2000"}, "otherValues": "KEEP"},
	    {"path": "Patient.id", "method": "mask"},
	    {"path": "Patient.name", "method": "redact", "replacewith": "x"},
	  ],
	  "parameters": {
	    "DateShiftKey": "k1",
	    "dateShiftScope": "Folder",
	    "dateShiftFixedOffsetInDays": -7,
	    "cryptoHashKey": "k2",
	    "encryptKey": "1234567890123456",
	    "enablePartialAgesForRedact": true,
	    "enablePartialDatesForRedact": "True",
	    "enablePartialZipCodesForRedact": false,
	    "restrictedZipCodeTabulationAreas": ["036", "059"],
	    "customSettings": {"maskedLength": 3},
	    "dateShiftKeyPrefix": "ignored",
	  },
	}`
	c := mustParse(t, src, Options{Compiler: permissiveCompiler})
	if c.FHIRVersion() != "r4" || c.ProcessingErrors() != Skip {
		t.Errorf("version %q errors %v", c.FHIRVersion(), c.ProcessingErrors())
	}
	p := c.Parameters()
	if p.DateShiftKey != "k1" || p.DateShiftScope != ScopeFolder || !p.HasFixedOffset || p.DateShiftFixedOffsetInDays != -7 ||
		p.CryptoHashKey != "k2" || p.EncryptKey != "1234567890123456" || !p.EnablePartialAgesForRedact ||
		!p.EnablePartialDatesForRedact || p.EnablePartialZipCodesForRedact ||
		strings.Join(p.RestrictedZipCodeTabulationAreas, ",") != "036,059" ||
		string(p.CustomSettings.AppendJSON(nil)) != `{"maskedLength":3}` ||
		p.GeneratedDateShiftKey || p.GeneratedCryptoHashKey || p.GeneratedEncryptKey {
		t.Errorf("parameters = %+v", p)
	}
	rules := c.Rules()
	if len(rules) != 8 {
		t.Fatalf("%d rules", len(rules))
	}
	want := []struct {
		method       Method
		resourceType string
		expression   string
		resourceRule bool
	}{
		{MethodRedact, "Patient", "address", false},
		{MethodDateShift, "", "nodesByType('date')", false},
		{MethodKeep, "Patient", "Patient", true},
		{MethodPerturb, "Observation", "value", false},
		{MethodSubstitute, "Patient", "gender", false},
		{MethodGeneralize, "Patient", "birthDate", false},
		{MethodCustom, "Patient", "id", false},
		{MethodRedact, "Patient", "name", false},
	}
	for i, w := range want {
		r := rules[i]
		if r.Index != i+1 || r.Method != w.method || r.ResourceType != w.resourceType || r.Expression != w.expression || r.IsResourceTypeRule != w.resourceRule {
			t.Errorf("rule %d = %d %v %q %q %v, want %+v", i+1, r.Index, r.Method, r.ResourceType, r.Expression, r.IsResourceTypeRule, w)
		}
		if r.Compiled != r.Expression {
			t.Errorf("rule %d compiled = %v", i+1, r.Compiled)
		}
	}
	if r := rules[3]; r.Span != 1.5 || r.RangeType != Proportional || r.RoundTo != 3 {
		t.Errorf("perturb = %v %v %v", r.Span, r.RangeType, r.RoundTo)
	}
	if rw := rules[4].ReplaceWith(); rw.Kind != NullValue {
		t.Errorf("replaceWith = %v", rw.Kind)
	}
	g := rules[5]
	cases := g.Cases()
	if g.OtherValues != OtherKeep || len(cases) != 2 || cases[0].Condition != "$this < @2000" || cases[0].Value != "@1999" ||
		cases[1].Condition != "true" || cases[1].CompiledValue != "@2000" {
		t.Errorf("generalize = %v %+v", g.OtherValues, cases)
	}
	warnings := strings.Join(c.Warnings(), "\n")
	for _, w := range []string{`"processingError"`, `did you mean "processingErrors"`, `"mask" is not a built-in method`, `"replacewith"`, `did you mean "replaceWith"`, `"dateShiftKeyPrefix"`} {
		if !strings.Contains(warnings, w) {
			t.Errorf("warnings lack %s:\n%s", w, warnings)
		}
	}
	for _, secret := range []string{"k1", "k2", "1234567890123456"} {
		if strings.Contains(warnings, secret) {
			t.Errorf("warnings contain a key")
		}
	}
}

func TestConfigImmutable(t *testing.T) {
	c := mustParse(t, `{"fhirPathRules":[{"path":"Patient.x","method":"generalize","cases":{"a":"b"}}],
		"parameters":{"restrictedZipCodeTabulationAreas":["036"],"customSettings":{"a":1}}}`, Options{})
	r := c.Rules()
	r[0].Path = "changed"
	r[0].Cases()[0].Condition = "changed"
	p := c.Parameters()
	p.RestrictedZipCodeTabulationAreas[0] = "999"
	p.CustomSettings.Members[0].Key = "b"
	if c.Rule(0).Path != "Patient.x" || c.Rule(0).Cases()[0].Condition != "a" ||
		c.Parameters().RestrictedZipCodeTabulationAreas[0] != "036" || c.Parameters().CustomSettings.Members[0].Key != "a" {
		t.Error("a Config can be changed through its accessors")
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c := mustParse(t, `{"fhirPathRules":[{"path":"nodesByType('date')","method":"dateShift"},{"path":"Patient.id","method":"encrypt"},{"path":"Patient.name","method":"cryptoHash"}]}`,
		Options{Rand: bytes.NewReader(bytes.Repeat([]byte{0xab, 0xcd}, 64))})
	p := c.Parameters()
	if p.DateShiftKey != strings.Repeat("abcd", 8) || !p.GeneratedDateShiftKey {
		t.Errorf("dateShiftKey %q generated %v", p.DateShiftKey, p.GeneratedDateShiftKey)
	}
	if len(p.CryptoHashKey) != 32 || p.CryptoHashKey != p.EncryptKey || !p.GeneratedCryptoHashKey || !p.GeneratedEncryptKey {
		t.Errorf("crypto %q encrypt %q", p.CryptoHashKey, p.EncryptKey)
	}
	if c.ProcessingErrors() != Raise || p.DateShiftScope != ScopeResource || p.HasFixedOffset ||
		p.EnablePartialAgesForRedact || p.EnablePartialDatesForRedact || p.EnablePartialZipCodesForRedact ||
		p.RestrictedZipCodeTabulationAreas != nil || p.CustomSettings.Kind != NullValue {
		t.Errorf("defaults = %v %+v", c.ProcessingErrors(), p)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"version is not specified", "dateShiftKey is empty", "encryptKey is empty", "cryptoHashKey is empty"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	// No warning for keys that no rule uses.
	quiet := mustParse(t, `{"fhirVersion":"R4","fhirPathRules":[{"path":"Patient.name","method":"redact"}]}`, Options{})
	if w := quiet.Warnings(); len(w) != 0 {
		t.Errorf("warnings for unused generated keys: %q", w)
	}
	// Two loads generate different date-shift keys with a real random source.
	a, _ := ParseConfig([]byte(`{"fhirPathRules":[]}`), Options{})
	b, _ := ParseConfig([]byte(`{"fhirPathRules":[]}`), Options{})
	if a.Parameters().DateShiftKey == b.Parameters().DateShiftKey {
		t.Error("generated dateShiftKey is not fresh per load")
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts Options
		want []string // substrings of the error
		rule int
		col  int
	}{
		{"not json", `{"fhirPathRules": [}`, Options{}, []string{"failed to parse", "line 1"}, 0, 0},
		{"duplicate key", "{\"fhirPathRules\": [],\n \"fhirPathRules\": []}", Options{}, []string{"duplicate key", "line 2"}, 0, 0},
		{"duplicate key in rule", `{"fhirPathRules": [{"path":"a","path":"b","method":"redact"}]}`, Options{}, []string{"duplicate key \"path\""}, 0, 0},
		{"duplicate key differing in case", `{"fhirPathRules": [], "FHIRPATHRULES": []}`, Options{}, []string{"name the same setting"}, 0, 0},
		{"top level array", `[]`, Options{}, []string{"must be a JSON object"}, 0, 0},
		{"bad processingErrors", `{"processingErrors":"ignore","fhirPathRules":[]}`, Options{}, []string{"processingErrors must be"}, 0, 0},
		{"bad scope", `{"fhirPathRules":[],"parameters":{"dateShiftScope":"bundle"}}`, Options{}, []string{"dateShiftScope must be"}, 0, 0},
		{"bad bool", `{"fhirPathRules":[],"parameters":{"enablePartialDatesForRedact":"yes"}}`, Options{}, []string{"enablePartialDatesForRedact must be true or false"}, 0, 0},
		{"bad fixed offset", `{"fhirPathRules":[],"parameters":{"dateShiftFixedOffsetInDays":1.5}}`, Options{}, []string{"32-bit integer"}, 0, 0},
		{"rules not array", `{"fhirPathRules":{}}`, Options{}, []string{"must be an array"}, 0, 0},
		{"rule not object", `{"fhirPathRules":[1]}`, Options{}, []string{"rule 1 must be an object"}, 0, 0},
		{"version", `{"fhirVersion":"Stu3","fhirPathRules":[]}`, Options{}, []string{"fhirVersion \"Stu3\" is not supported", "Expected fhirVersion: R4"}, 0, 0},
		{"version stu3 build", `{"fhirVersion":"R4","fhirPathRules":[]}`, Options{FHIRVersion: "STU3"}, []string{"Expected fhirVersion: STU3"}, 0, 0},
		{"version before rules", `{"fhirVersion":"r3"}`, Options{}, []string{"not supported"}, 0, 0},
		{"missing rules", `{"fhirVersion":"R4"}`, Options{}, []string{"please specify any fhirPathRules"}, 0, 0},
		{"null rules", `{"fhirPathRules":null}`, Options{}, []string{"please specify any fhirPathRules"}, 0, 0},
		{"missing method", `{"fhirPathRules":[{"path":"a","method":"keep"},{"path":"Patient.id"}]}`, Options{}, []string{"missing path or method"}, 2, 0},
		{"missing path", `{"fhirPathRules":[{"Path":"a","method":"keep"}]}`, Options{}, []string{"missing path or method", `found "Path"`}, 1, 0},
		{"invalid path", `{"fhirPathRules":[{"path":"Patient.name.invalid()","method":"redact"}]}`, Options{Compiler: stubCompiler}, []string{"invalid FHIR path", "rule 1 (redact)", "at column 14"}, 1, 14},
		{"path error before method check", `{"fhirPathRules":[{"path":"invalid()","method":"nosuch"}]}`, Options{Compiler: stubCompiler}, []string{"invalid FHIR path"}, 1, 1},
		{"substitute", `{"fhirPathRules":[{"path":"Patient.id","method":"substitute"}]}`, Options{}, []string{"missing replaceWith value", "rule 1 (substitute)"}, 1, 0},
		{"span missing", `{"fhirPathRules":[{"path":"a","method":"perturb"}]}`, Options{}, []string{"span value is required"}, 1, 0},
		{"span negative", `{"fhirPathRules":[{"path":"a","method":"perturb","span":"-1"}]}`, Options{}, []string{"span value is invalid"}, 1, 0},
		{"span text", `{"fhirPathRules":[{"path":"a","method":"perturb","span":"wide"}]}`, Options{}, []string{"span value is invalid"}, 1, 0},
		{"span bool", `{"fhirPathRules":[{"path":"a","method":"perturb","span":true}]}`, Options{}, []string{"span value is invalid"}, 1, 0},
		{"rangeType", `{"fhirPathRules":[{"path":"a","method":"perturb","span":1,"rangeType":"unknown"}]}`, Options{}, []string{"rangeType value is invalid"}, 1, 0},
		{"roundTo text", `{"fhirPathRules":[{"path":"a","method":"perturb","span":1,"roundTo":"abc"}]}`, Options{}, []string{"roundTo value is invalid"}, 1, 0},
		{"roundTo negative", `{"fhirPathRules":[{"path":"a","method":"perturb","span":1,"roundTo":-1}]}`, Options{}, []string{"roundTo value is invalid"}, 1, 0},
		{"roundTo 29", `{"fhirPathRules":[{"path":"a","method":"perturb","span":1,"roundTo":"29"}]}`, Options{}, []string{"roundTo value is invalid"}, 1, 0},
		{"roundTo fraction", `{"fhirPathRules":[{"path":"a","method":"perturb","span":1,"roundTo":2.5}]}`, Options{}, []string{"roundTo value is invalid"}, 1, 0},
		{"cases missing", `{"fhirPathRules":[{"path":"a","method":"generalize"}]}`, Options{}, []string{"missing cases"}, 1, 0},
		{"cases not object", `{"fhirPathRules":[{"path":"a","method":"generalize","cases":["x"]}]}`, Options{}, []string{"invalid Json format"}, 1, 0},
		{"case key", `{"fhirPathRules":[{"path":"a","method":"generalize","cases":{"$this>=0 && $this<10":"10"}}]}`, Options{Compiler: stubCompiler}, []string{"invalid cases expression (case 1 condition)", "at column 10"}, 1, 10},
		{"case value", `{"fhirPathRules":[{"path":"a","method":"generalize","cases":{"true":"invalid()"}}]}`, Options{Compiler: stubCompiler}, []string{"invalid cases expression (case 1 value)"}, 1, 1},
		{"otherValues", `{"fhirPathRules":[{"path":"a","method":"generalize","cases":{"true":"1"},"otherValues":"unknown"}]}`, Options{}, []string{"otherValues setting is invalid"}, 1, 0},
		{"encrypt key size", `{"fhirPathRules":[],"parameters":{"encryptKey":"01234567890123456789"}}`, Options{}, []string{"invalid encrypt key size : 160 bits"}, 0, 0},
		{"encrypt key multibyte", `{"fhirPathRules":[],"parameters":{"encryptKey":"ééééééééééééééé"}}`, Options{}, []string{"240 bits"}, 0, 0},
		{"rule error before key size", `{"fhirPathRules":[{"path":"a","method":"perturb"}],"parameters":{"encryptKey":"short"}}`, Options{}, []string{"span value is required"}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src), tt.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if ce.Rule != tt.rule {
				t.Errorf("rule = %d, want %d", ce.Rule, tt.rule)
			}
			if ce.ExprColumn != tt.col {
				t.Errorf("column = %d, want %d", ce.ExprColumn, tt.col)
			}
			for _, secret := range []string{"01234567890123456789", "ééé", "short"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error quotes a key: %v", err)
				}
			}
		})
	}
}

func TestParseConfigAccepts(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts Options
	}{
		{"empty rules", `{"fhirPathRules":[]}`, Options{}},
		{"empty version", `{"fhirVersion":"","fhirPathRules":[]}`, Options{}},
		{"stu3", `{"fhirVersion":"Stu3","fhirPathRules":[]}`, Options{FHIRVersion: "STU3"}},
		{"unknown method", `{"fhirPathRules":[{"path":"Patient","method":"skip"}]}`, Options{}},
		{"replaceWith null", `{"fhirPathRules":[{"path":"a","method":"substitute","replaceWith":null}]}`, Options{}},
		{"span zero string", `{"fhirPathRules":[{"path":"a","method":"perturb","span":"0","roundTo":"28"}]}`, Options{}},
		{"roundTo float integral", `{"fhirPathRules":[{"path":"a","method":"perturb","span":1,"roundTo":2.0}]}`, Options{}},
		{"null processingErrors", `{"processingErrors":null,"fhirPathRules":[]}`, Options{}},
		{"128-bit key", `{"fhirPathRules":[],"parameters":{"encryptKey":"1234567890123456"}}`, Options{}},
		{"192-bit key", `{"fhirPathRules":[],"parameters":{"encryptKey":"123456789012345678901234"}}`, Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Rand = zeroRand()
			if _, err := ParseConfig([]byte(tt.src), tt.opts); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}

func TestParseConfigYAML(t *testing.T) {
	src := `
fhirVersion: R4
processingErrors: skip
fhirPathRules:
  - path: Patient.address
    method: redact
  - path: Observation.value
    method: perturb
    span: 2
    roundTo: 1
  - path: Patient.birthDate
    method: generalize
    cases:
      "$this < @2000": "@1999"
      "true": "@2000"
parameters:
  cryptoHashKey: abc
  enablePartialDatesForRedact: true
  restrictedZipCodeTabulationAreas: ["036", "059"]
`
	c := mustParse(t, src, Options{Compiler: permissiveCompiler})
	if c.ProcessingErrors() != Skip || c.NumRules() != 3 || c.Rule(1).Span != 2 || c.Rule(1).RoundTo != 1 ||
		c.Rule(2).Cases()[1].Condition != "true" || !c.Parameters().EnablePartialDatesForRedact ||
		c.Parameters().CryptoHashKey != "abc" || len(c.Parameters().RestrictedZipCodeTabulationAreas) != 2 {
		t.Errorf("YAML config not read as expected: %+v", c)
	}
	_, err := ParseConfig([]byte("fhirPathRules: []\nparameters:\n  cryptoHashKey: a\n  cryptoHashKey: b\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "duplicate key") || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("duplicate YAML key: %v", err)
	}
	_, err = ParseConfig([]byte("fhirPathRules: [\n"), Options{Format: YAML})
	if err == nil {
		t.Error("malformed YAML accepted")
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct{ path, rt, expr string }{
		{"Patient.address", "Patient", "address"},
		{"Patient.nodesByType('address')", "Patient", "nodesByType('address')"},
		{"nodesByType('address')", "", "nodesByType('address')"},
		{"Patient", "Patient", "Patient"},
		{"Resource", "Resource", "Resource"},
		{"Patient.abc.func(n=1).a.test('abc')", "Patient", "abc.func(n=1).a.test('abc')"},
		{"Condition.onset | Condition.abatement as Age", "Condition", "onset | Condition.abatement as Age"},
		{"(nodesByType('Observation').value as Quantity).value", "", "(nodesByType('Observation').value as Quantity).value"},
		{"%resource.id", "", "%resource.id"},
		{"", "", ""},
	}
	for _, tt := range tests {
		rt, expr := SplitPath(tt.path)
		if rt != tt.rt || expr != tt.expr {
			t.Errorf("SplitPath(%q) = %q, %q; want %q, %q", tt.path, rt, expr, tt.rt, tt.expr)
		}
	}
}

func TestRuleAppliesTo(t *testing.T) {
	c := mustParse(t, `{"fhirPathRules":[{"path":"Patient.id","method":"redact"},{"path":"nodesByType('x')","method":"redact"},
		{"path":"Resource.id","method":"redact"},{"path":"DomainResource.text","method":"redact"},{"path":"patient.id","method":"redact"}]}`, Options{})
	tests := []struct {
		rule int
		typ  string
		want bool
	}{
		{0, "Patient", true}, {0, "Observation", false}, {1, "Bundle", true}, {2, "Bundle", true},
		{3, "Binary", true}, {4, "Patient", true}, // lower-case start: no prefix, applies everywhere
	}
	for _, tt := range tests {
		r := c.Rule(tt.rule)
		if got := r.AppliesTo(tt.typ); got != tt.want {
			t.Errorf("rule %q applies to %s = %v", r.Path, tt.typ, got)
		}
	}
}

// TestTestdataConfigs loads the small fixtures written in the repository.
func TestTestdataConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "config-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseConfig(data, Options{Compiler: stubCompiler, Rand: zeroRand()})
		wantOK := strings.Contains(f, "-valid")
		if wantOK && err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if !wantOK && err == nil {
			t.Errorf("%s: accepted", f)
		}
	}
}

func TestPathWarnings(t *testing.T) {
	warn := func(resourceType, expr string) (Compiled, error) {
		if strings.Contains(expr, "nmae") {
			return expr, &PathWarnings{Warnings: []string{"1:1: unknown element nmae on Patient"}}
		}
		return expr, nil
	}
	c := mustParse(t, `{"fhirVersion":"R4","fhirPathRules":[{"path":"Patient.nmae","method":"redact"},
		{"path":"Patient.x","method":"generalize","cases":{"nmae = 1":"2"}}]}`, Options{Compiler: warn})
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, `rule 1 (redact) path "Patient.nmae": 1:1: unknown element nmae`) || !strings.Contains(w, "rule 2 (generalize) case 1 condition") {
		t.Errorf("warnings:\n%s", w)
	}
	if c.Rule(0).Compiled != "nmae" {
		t.Errorf("the rule was not kept with its compiled path")
	}
}

func TestFHIRPathCompilers(t *testing.T) {
	m := model.Get(model.R4)
	src := `{"fhirVersion":"R4","fhirPathRules":[{"path":"Patient.nmae","method":"redact"},{"path":"Patient.name","method":"redact"}]}`
	_, err := ParseConfig([]byte(src), Options{Compiler: FHIRPathCompiler(fhirpath.WithModel(m)), Rand: zeroRand()})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Rule != 1 || !strings.Contains(err.Error(), "unknown element nmae on Patient") || ce.ExprColumn == 0 {
		t.Errorf("strict compiler: %v", err)
	}
	c, err := ParseConfig([]byte(src), Options{Compiler: FHIRPathCompilerWithWarnings(fhirpath.WithModel(m)), Rand: zeroRand()})
	if err != nil {
		t.Fatalf("lenient compiler: %v", err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "unknown element nmae on Patient") {
		t.Errorf("lenient compiler warnings:\n%s", w)
	}
	if _, err := NewEngine(c, EngineOptions{}); err != nil {
		t.Errorf("engine for a configuration with a misspelt path: %v", err)
	}
}
