package fhirpath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// load parses and types a fixture from testdata.
func load(t testing.TB, name string) *jsontree.Node {
	t.Helper()
	m := model.Get(model.R4)
	if m == nil {
		t.Fatal("the R4 model is not available")
	}
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	root, err := jsontree.Parse(b)
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	if err := typed.Annotate(root, m); err != nil {
		t.Fatalf("typing %s: %v", name, err)
	}
	return root
}

// show renders results as "location type value" (nodes) or "type value".
func show(items []Item) string {
	var parts []string
	for _, it := range items {
		s := it.TypeName()
		if it.Node() != nil {
			s = typed.Location(it.Node()) + " " + s
		}
		if v := literalString(it); v != "" {
			s += " " + v
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func TestEvaluate(t *testing.T) {
	patient := load(t, "patient.json")
	obs := load(t, "observation.json")
	m := model.Get(model.R4)
	now := time.Date(2024, 2, 29, 13, 14, 15, 0, time.FixedZone("", 3600))
	tests := []struct {
		root *jsontree.Node
		src  string
		want string
	}{
		{patient, "Patient.name.where(use='official').given", "Patient.name[0].given[0] string John; Patient.name[0].given[1] string Q"},
		{patient, "name.given", "Patient.name[0].given[0] string John; Patient.name[0].given[1] string Q; Patient.name[1].given[0] string Johnny"},
		{patient, "name.given[2].extension.value", "Patient.name[1].given[0].extension[0].valueString string y"},
		{patient, "birthDate", "Patient.birthDate date @1970-05-06"},
		{patient, "birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", "Patient.birthDate.extension[0].valueDateTime dateTime @1970-05-06T07:08:09+02:00"},
		{patient, "birthDate < @1971", "boolean true"},
		{patient, "birthDate = @1970-05", ""},
		{patient, "birthDate ~ @1970-05", "boolean false"},
		{patient, "birthDate + 1 year", "date @1971-05-06"},
		{patient, "deceased", "Patient.deceasedBoolean boolean false"},
		{patient, "deceased is boolean", "boolean true"},
		{patient, "multipleBirth + 1", "integer 3"},
		{patient, "extension.value.ofType(Address).city", "Patient.extension[0].valueAddress.city string Springfield"},
		{patient, "extension[1].value * 2", "decimal 3.00"},
		{patient, "identifier.where(system.endsWith('ssn')).value.replaceMatches('\\\\d', 'X')", "string XXX-XX-XXXX"},
		{patient, "identifier.value.first().matches('^(?<prefix>MRN)-')", "boolean true"},
		{patient, "identifier.value.first().replaceMatches('(?<p>[A-Z]+)-(?<n>\\\\d)', '${n}-${p}')", "string 1-MRN"},
		{patient, "name.count() = 2 and name.exists(use = 'nickname')", "boolean true"},
		{patient, "name.select(given.join(' '))", "string John Q; string Johnny"},
		{patient, "contained.name.family", "Patient.contained[0].name[0].family string Smith"},
		{patient, "contained.ofType(Practitioner).id", "Patient.contained[0].id id pr1"},
		{patient, "%resource.id", "Patient.id id p1"},
		{patient, "contained.select(%resource.id)", "Patient.id id p1"},
		{patient, "nodesByType('date')", "Patient.birthDate date @1970-05-06; Patient.address[0].period.start dateTime @2001-01-01"[:len("Patient.birthDate date @1970-05-06")]},
		{patient, "nodesByType('dateTime')", "Patient.birthDate.extension[0].valueDateTime dateTime @1970-05-06T07:08:09+02:00; Patient.address[0].period.start dateTime @2001-01-01"},
		{patient, "nodesByName('city')", "Patient.extension[0].valueAddress.city string Springfield; Patient.address[0].city string Springfield"},
		{patient, "nodesByType('Practitioner')", ""},
		{patient, "contained.nodesByType('date')", "Patient.contained[0].birthDate date @1960-01-01"},
		{patient, "nodesByName('value').count()", "integer 7"},
		{patient, "today()", "date @2024-02-29"},
		{patient, "now()", "dateTime @2024-02-29T13:14:15.000+01:00"},
		{patient, "descendants().where($this is HumanName).count()", "integer 3"},
		{patient, "children().count()", "integer 16"},
		{patient, "(1 | 2 | 2 | 3).count()", "integer 3"},
		{patient, "(1 | 2 | 3).repeat(iif($this < 5, $this + 1, {}) | 1.0).count()", "integer 5"},
		{patient, "(name.given | name.given).count()", "integer 3"},
		{patient, "identifier[0] = identifier[0]", "boolean true"},
		{patient, "identifier[0] = identifier[1]", "boolean false"},
		{patient, "address[0].city = extension[0].value.city", "boolean true"},
		{patient, "address[0] ~ address[0]", "boolean true"},
		{patient, "(descendants() | descendants()).count() = descendants().count()", "boolean true"},
		{patient, "(descendants().select($this.toString()) | descendants().select($this.toString())).count() = descendants().select($this.toString()).distinct().count()", "boolean true"},
		{patient, "address.city | extension.value.city", "Patient.address[0].city string Springfield; Patient.extension[0].valueAddress.city string Springfield"},
		{patient, "(address.city | extension.value.city).distinct().count()", "integer 1"},
		{patient, "(1 | 2).combine(2).count()", "integer 3"},
		{patient, "1.5 + 1", "decimal 2.5"},
		{patient, "7 / 2", "decimal 3.5"},
		{patient, "1 / 3", "decimal 0.33333333"},
		{patient, "7 div 2", "integer 3"},
		{patient, "2147483647 - 1 + 1", "integer 2147483647"},
		{patient, "2147483648", "decimal 2147483648"},
		{patient, "7 mod 0", ""},
		{patient, "'a' & {} & 'b'", "string ab"},
		{patient, "{} and true", ""},
		{patient, "{} or true", "boolean true"},
		{patient, "false implies {}", "boolean true"},
		{patient, "@2019-01-31 + 1 month", "date @2019-02-28"},
		{patient, "@T23:00 + 2 hours", "time @T01:00"},
		{patient, "(5 'mg' + 1 'mg').toString()", "string 6 'mg'"},
		{patient, "1 'g' = 1000 'mg'", "boolean true"},
		{patient, "1 'g' > 1 'kg'", "boolean false"},
		{patient, "1 'g' > 1 'm'", ""},
		{patient, "(1 'm' + 20 'cm').toString()", "string 1.20 'm'"},
		{patient, "2.0 'cm' * 2.0 'm' = 0.040 'm2'", "boolean true"},
		{patient, "1 'g' = 1 'm'", ""},
		{patient, "@2012-04-15T15:00:00+02:00 = @2012-04-15T13:00:00Z", "boolean true"},
		{patient, "(1 | 2 | 3).aggregate($this + $total, 0)", "integer 6"},
		{patient, "name.given.aggregate($total & $this, '')", "string JohnQJohnny"},
		{patient, "active.hasValue() and name.given[2].hasValue() and name.given[2].getValue() = 'Johnny'", "boolean true"},
		{patient, "%ucum", "string http://unitsofmeasure.org"},
		{patient, "name.defineVariable('n', given.count()).select(%n)", "integer 3; integer 3"},
		{patient, "defineVariable('g', name.given).select(%g.count())", "integer 3"},
		{patient, "defineVariable('a', 1).defineVariable('b', 2).select(%a + %b)", "integer 3"},
		{patient, "name.where(defineVariable('u', use).select(%u) = 'nickname').given", "Patient.name[1].given[0] string Johnny"},
		{patient, "2.power(10)", "integer 1024"},
		{patient, "(-2).power(31)", "integer -2147483648"},
		{patient, "2.power(31)", ""},
		{patient, "2.power(2000000000)", ""},
		{patient, "1.power(2000000000)", "integer 1"},
		{patient, "meta.lastUpdated.toString()", "string 2020-01-02T03:04:05.6789+00:00"},
		{patient, "extension[1].value.toString() + '|' + (extension[1].value + 0).toString()", "string 1.50|1.50"},
		{patient, "Patient.name.family.type().name", "TypeInfo.name string string"},
		{obs, "Observation.value", "Observation.valueQuantity Quantity 185 '[lb_av]'"},
		{obs, "value.value", "Observation.valueQuantity.value decimal 185"},
		{obs, "value > 80 'kg'", "boolean true"},
		{obs, "component.value.ofType(Period).start", "Observation.component[1].valuePeriod.start dateTime @2016-01-01"},
		{obs, "component[1].value is Period", "boolean true"},
		{obs, "effective", "Observation.effectiveDateTime dateTime @2016-03-28"},
	}
	for _, tt := range tests {
		e, err := Compile(tt.src, WithModel(m), WithContextType(tt.root.Type()), WithFunctions(AnonymizerFunctions()...))
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.src, err)
			continue
		}
		res, err := e.Evaluate(tt.root, &Env{Now: now})
		if err != nil {
			t.Errorf("Evaluate(%q): %v", tt.src, err)
			continue
		}
		if got := show(res); got != tt.want {
			t.Errorf("Evaluate(%q)\n got: %s\nwant: %s", tt.src, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	m := model.Get(model.R4)
	tests := []struct {
		src, ctx, want string
		opts           []Option
	}{
		{src: "Patient.nmae", ctx: "Patient", want: "fhirpath: 1:9: unknown element nmae on Patient"},
		{src: "name.given1", ctx: "Patient", want: "fhirpath: 1:6: unknown element given1 on HumanName"},
		{src: "Encounter.status", ctx: "Patient", want: "fhirpath: 1:1: Encounter does not apply to the context type Patient"},
		{src: "Observation.valueQuantity", ctx: "Observation", want: "fhirpath: 1:13: unknown element valueQuantity on Observation"},
		{src: "(Observation.value as Period).unit", ctx: "Observation", want: "fhirpath: 1:31: unknown element unit on Period"},
		{src: "name.frobnicate()", ctx: "Patient", want: "fhirpath: 1:6: unknown function frobnicate()"},
		{src: "name.where()", ctx: "Patient", want: "fhirpath: 1:6: where() takes 1 argument(s), got 0"},
		{src: "name.substring(1, 2, 3)", ctx: "Patient", want: "fhirpath: 1:6: substring() takes 1 to 2 arguments, got 3"},
		{src: "gender.as(string1)", ctx: "Patient", want: "fhirpath: 1:11: unknown type string1"},
		{src: "children().first()", ctx: "Patient", want: "fhirpath: 1:12: first() needs an ordered input, but children() returns an unordered collection", opts: []Option{WithOrderedFunctionsCheck()}},
		{src: "name.where(%resource.gendr = 'x')", ctx: "Patient", want: "fhirpath: 1:22: unknown element gendr on Patient"},
		{src: "resolve()", ctx: "Patient", want: "fhirpath: 1:1: resolve() is not supported: references are not resolved"},
		{src: "name.memberOf('x')", ctx: "Patient", want: "fhirpath: 1:6: memberOf() is not supported: terminology services are not available"},
		{src: "name.matches('(')", ctx: "Patient", want: "fhirpath: 1:14: invalid regular expression"},
		{src: "nodesByType('date')", ctx: "Patient", want: "fhirpath: 1:1: unknown function nodesByType()"},
		{src: "nodesByType('HumanName').nmae", ctx: "Patient", want: "fhirpath: 1:26: unknown element nmae on HumanName", opts: []Option{WithFunctions(AnonymizerFunctions()...)}},
		{src: "nodesByType(%x)", ctx: "Patient", want: "fhirpath: 1:1: nodesByType(): argument must be a non-empty string literal", opts: []Option{WithFunctions(AnonymizerFunctions()...)}},
	}
	for _, tt := range tests {
		opts := append([]Option{WithModel(m), WithContextType(tt.ctx)}, tt.opts...)
		_, err := Compile(tt.src, opts...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Compile(%q) error = %v, want %q", tt.src, err, tt.want)
		}
	}
	// Choice members by JSON name are accepted on request.
	if _, err := Compile("Observation.valueQuantity.value", WithModel(m), WithContextType("Observation"), WithJSONNames()); err != nil {
		t.Errorf("WithJSONNames: %v", err)
	}
}

func TestJSONNames(t *testing.T) {
	obs := load(t, "observation.json")
	e := MustCompile("Observation.valueQuantity.value", WithModel(model.Get(model.R4)), WithJSONNames())
	res, err := e.Evaluate(obs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(res); got != "Observation.valueQuantity.value decimal 185" {
		t.Errorf("got %s", got)
	}
}

func TestEvalErrors(t *testing.T) {
	patient := load(t, "patient.json")
	m := model.Get(model.R4)
	tests := []struct{ src, want string }{
		{"name.given.substring(0, 1)", "fhirpath: 1:12: substring(): input must be a single string"},
		{"identifier.startsWith('x')", "fhirpath: 1:12: startsWith(): input must be a single string"},
		{"name.given + 1", "fhirpath: 1:12: operands of \"+\" must be single items"},
		{"@2019-01-01 + 7", "fhirpath: 1:13: operator + is not defined for Date and Integer"},
		{"iif('x', 1, 2)", "fhirpath: 1:1: iif(): criterion must be a boolean"},
		{"%undefined", "fhirpath: 1:1: undefined external constant %undefined"},
		{"name.single()", "fhirpath: 1:6: single(): input has more than one item"},
		{"2147483647 + 1", "fhirpath: 1:12: integer overflow"},
		{"65536 * 65536", "fhirpath: 1:7: integer overflow"},
		{"defineVariable('a').defineVariable('a')", "fhirpath: 1:21: defineVariable(): variable %a is already defined"},
		{"defineVariable('ucum')", "fhirpath: 1:1: defineVariable(): cannot redefine %ucum"},
		{"1.repeat($this + 1)", "fhirpath: 1:3: repeat(): result has more than 65536 items"},
	}
	for _, tt := range tests {
		e, err := Compile(tt.src, WithModel(m), WithContextType("Patient"))
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.src, err)
			continue
		}
		_, err = e.Evaluate(patient, nil)
		var ee *EvalError
		if !errors.As(err, &ee) || err.Error() != tt.want {
			t.Errorf("Evaluate(%q) error = %v, want %q", tt.src, err, tt.want)
		}
		// Errors never quote values of the resource.
		if err != nil && (strings.Contains(err.Error(), "John") || strings.Contains(err.Error(), "MRN")) {
			t.Errorf("error leaks a value: %v", err)
		}
	}
}

func TestWithoutModel(t *testing.T) {
	patient := load(t, "patient.json")
	tests := []struct{ src, want string }{
		{"Resource.id", "Patient.id id p1"},
		{"name.first() is Resource", "boolean false"},
		{"contained.ofType(Resource).id", "Patient.contained[0].id id pr1"},
		{"Patient.nmae", ""},
	}
	for _, tt := range tests {
		res, err := MustCompile(tt.src).Evaluate(patient, nil)
		if err != nil {
			t.Errorf("Evaluate(%q): %v", tt.src, err)
			continue
		}
		if got := show(res); got != tt.want {
			t.Errorf("Evaluate(%q) = %s, want %s", tt.src, got, tt.want)
		}
	}
}

func TestDataTypeContext(t *testing.T) {
	patient := load(t, "patient.json")
	m := model.Get(model.R4)
	name := patient.Get("name").Children()[0]
	e, err := Compile("HumanName.given.first()", WithModel(m), WithContextType("HumanName"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Evaluate(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(res); got != "Patient.name[0].given[0] string John" {
		t.Errorf("got %s", got)
	}
	if _, err := Compile("HumanName.gvien", WithModel(m), WithContextType("HumanName")); err == nil {
		t.Error("HumanName.gvien compiled")
	}
}

func TestResultsAreMutableNodes(t *testing.T) {
	patient := load(t, "patient.json")
	e := MustCompile("Patient.name.given")
	res, err := e.Evaluate(patient, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range res {
		it.Node().SetValue("REDACTED")
	}
	res, _ = e.Evaluate(patient, nil)
	for _, it := range res {
		if v, _ := it.Value(); v != "REDACTED" {
			t.Errorf("node not changed in place: %v", v)
		}
	}
}

func TestVarsAndTrace(t *testing.T) {
	patient := load(t, "patient.json")
	var traced []string
	env := &Env{
		Vars:  map[string][]Item{"x": {ValueItem("v"), ValueItem(3)}},
		Trace: func(name string, items []Item) { traced = append(traced, name+":"+show(items)) },
	}
	res, err := MustCompile("%x.trace('t').count()").Evaluate(patient, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(res); got != "integer 2" {
		t.Errorf("got %s", got)
	}
	if len(traced) != 1 || traced[0] != "t:string v; integer 3" {
		t.Errorf("traced %q", traced)
	}
}

func TestCustomFunction(t *testing.T) {
	patient := load(t, "patient.json")
	double := &Function{
		Name: "double", MinArgs: 0, MaxArgs: 1,
		Check: func(info *CheckInfo) error {
			if len(info.Args) == 1 && info.Literals[0] == "bad" {
				return errors.New("bad argument")
			}
			return nil
		},
		Eval: func(call *Call, focus []Item) ([]Item, error) {
			var out []Item
			for i, it := range focus {
				v := it
				if call.NumArgs() == 1 {
					r, err := call.ArgFor(0, it, i)
					if err != nil {
						return nil, err
					}
					if len(r) != 1 {
						return nil, call.Errorf("argument must give one item")
					}
					v = r[0]
				}
				out = append(out, v, v)
			}
			return out, nil
		},
	}
	res, err := MustCompile("name.given.double(length())", WithFunctions(double)).Evaluate(patient, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(res); got != "integer 4; integer 4; integer 1; integer 1; integer 6; integer 6" {
		t.Errorf("got %s", got)
	}
	if _, err := Compile("double('bad')", WithFunctions(double)); err == nil || err.Error() != "fhirpath: 1:1: double(): bad argument" {
		t.Errorf("Check error = %v", err)
	}
}

func TestConcurrentEvaluation(t *testing.T) {
	patient := load(t, "patient.json")
	obs := load(t, "observation.json")
	e := MustCompile("descendants().where($this is string).count() + nodesByType('date').count()", WithFunctions(AnonymizerFunctions()...))
	want := map[*jsontree.Node]string{}
	for _, r := range []*jsontree.Node{patient, obs} {
		res, err := e.Evaluate(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		want[r] = show(res)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := patient
			if g%2 == 1 {
				r = obs
			}
			for range 50 {
				res, err := e.Evaluate(r, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if got := show(res); got != want[r] {
					t.Errorf("got %s, want %s", got, want[r])
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestEvaluateBool(t *testing.T) {
	patient := load(t, "patient.json")
	tests := []struct {
		src     string
		want    bool
		wantErr bool
	}{
		{"active", true, false},
		{"gender = 'female'", false, false},
		{"{}", false, false},
		{"name", false, true},
		{"birthDate", true, false},
	}
	for _, tt := range tests {
		got, err := MustCompile(tt.src).EvaluateBool(patient, nil)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("EvaluateBool(%q) = %v, %v; want %v, error %v", tt.src, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestWarnings(t *testing.T) {
	patient := load(t, "patient.json")
	var warnings []string
	e, err := Compile("Patient.nmae.given | name.given.first() | gender.ofType(string1)", WithModel(model.Get(model.R4)), WithContextType("Patient"),
		WithWarnings(func(w *CheckError) { warnings = append(warnings, w.Error()) }))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"fhirpath: 1:9: unknown element nmae on Patient",
		"fhirpath: 1:57: unknown type string1",
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings = %q, want %q", warnings, want)
	}
	res, err := e.Evaluate(patient, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(res); got != "Patient.name[0].given[0] string John" {
		t.Errorf("got %s", got)
	}
	// Without the hook the same problems are errors of type *CheckError.
	_, err = Compile("Patient.nmae", WithModel(model.Get(model.R4)), WithContextType("Patient"))
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Column != 9 {
		t.Errorf("error = %v, want a *CheckError at column 9", err)
	}
}

func TestEvaluateItemsAndCallAPI(t *testing.T) {
	patient := load(t, "patient.json")
	now := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)
	fn := &Function{Name: "stamp", MinArgs: 1, MaxArgs: 1, Eval: func(call *Call, focus []Item) ([]Item, error) {
		arg, err := call.Arg(0)
		if err != nil {
			return nil, err
		}
		if len(arg) != 1 {
			return nil, call.Errorf("want one argument item, got %d", len(arg))
		}
		s, _ := arg[0].Value()
		return []Item{ValueItem(call.Now().Format("2006") + ":" + s.(string))}, nil
	}}
	e := MustCompile("stamp($this.id)", WithFunctions(fn))
	if got := e.String(); got != "stamp($this.id)" {
		t.Errorf("String() = %q", got)
	}
	if got := e.Tree(); got != "stamp($this.id)" {
		t.Errorf("Tree() = %q", got)
	}
	res, err := e.EvaluateItems([]Item{NodeItem(patient)}, &Env{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(res); got != "string 2021:p1" {
		t.Errorf("got %s", got)
	}
	_, err = MustCompile("stamp(name.given)", WithFunctions(fn)).Evaluate(patient, nil)
	if err == nil || err.Error() != "fhirpath: 1:1: stamp(): want one argument item, got 3" {
		t.Errorf("error = %v", err)
	}
	// %resource can be pinned by the caller.
	contained := patient.Get("contained").Children()[0]
	res, err = MustCompile("%resource.id | %rootResource.id").Evaluate(contained.Get("name").Children()[0], &Env{RootResource: patient})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(res); got != "Patient.contained[0].id id pr1; Patient.id id p1" {
		t.Errorf("got %s", got)
	}
}

func TestConversions(t *testing.T) {
	patient := load(t, "patient.json")
	tests := []struct{ src, want string }{
		{"'2019-02-03T04:05:06Z'.toDate()", "date @2019-02-03"},
		{"@2019-02-03T04:05:06Z.toDate()", "date @2019-02-03"},
		{"@2019-02.toDateTime()", "dateTime @2019-02"},
		{"'2019-02-03'.toDateTime()", "dateTime @2019-02-03"},
		{"'T10:11'.toTime()", "time @T10:11"},
		{"'x'.toTime()", ""},
		{"birthDate.toDate()", "date @1970-05-06"},
		{"'\\\\u0041\\\\n'.unescape('json').length()", "integer 2"},
		{"'abc'.encode('hex').decode('hex')", "string abc"},
		{"'abc?'.encode('urlbase64')", "string YWJjPw=="},
		{"'<a>'.escape('html')", "string &lt;a&gt;"},
		{"'1.5 \\'mg\\''.toQuantity('mg').value", "decimal 1.5"},
		{"'5 days'.toQuantity()", "Quantity 5 days"},
		{"(3 'mg' * 2).unit", "string mg"},
		{"'yes'.toBoolean() and 'F'.toBoolean().not()", "boolean true"},
		{"1.0.toBoolean()", "boolean true"},
		{"2.toBoolean()", ""},
	}
	for _, tt := range tests {
		res, err := MustCompile(tt.src).Evaluate(patient, nil)
		if err != nil {
			t.Errorf("Evaluate(%q): %v", tt.src, err)
			continue
		}
		if got := show(res); got != tt.want {
			t.Errorf("Evaluate(%q) = %s, want %s", tt.src, got, tt.want)
		}
	}
}

func TestEvaluateAppend(t *testing.T) {
	root, err := jsontree.Parse([]byte(`{"resourceType":"Patient","name":[{"given":["a","b"]},{"given":["c"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
		t.Fatal(err)
	}
	e := MustCompile("name.given")
	buf := make([]Item, 0, 8)
	buf = append(buf, ValueItem("x"))
	out, err := e.EvaluateAppend(buf, root, nil)
	if err != nil || len(out) != 4 || &out[0] != &buf[:1][0] {
		t.Fatalf("EvaluateAppend: %d items, %v", len(out), err)
	}
	var got []string
	for _, it := range out {
		v, _ := it.Value()
		got = append(got, v.(string))
	}
	if strings.Join(got, ",") != "x,a,b,c" {
		t.Fatalf("got %v", got)
	}
	if _, err := MustCompile("name.given.single()").EvaluateAppend(nil, root, nil); err == nil {
		t.Fatal("no error from single() on 3 items")
	}
}
