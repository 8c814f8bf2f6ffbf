package views

import (
	"errors"
	"strings"
	"testing"

	"fhirdeid/fhirpath"
)

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name, view, element, reason string
	}{
		{"unknown key", `{"resource":"Patient","select":[{"column":[{"name":"id","path":"id","colour":"red"}]}]}`, "select[0].column[0].colour", "unknown key"},
		{"unknown top key", `{"resource":"Patient","selects":[]}`, "selects", "unknown key"},
		{"bad fhirpath", `{"resource":"Patient","select":[{"column":[{"name":"id","path":"id.where("}]}]}`, "select[0].column[0].path", "fhirpath: 1:"},
		{"unknown element", `{"resource":"Patient","select":[{"column":[{"name":"id","path":"nmae.family"}]}]}`, "select[0].column[0].path", "1:1"},
		{"duplicate column", `{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]},{"column":[{"name":"id","path":"gender"}]}]}`, "select[1].column[0].name", "used twice"},
		{"forEach and forEachOrNull", `{"resource":"Patient","select":[{"forEach":"name","forEachOrNull":"address","column":[{"name":"f","path":"family"}]}]}`, "select[0]", "cannot be used together"},
		{"undefined constant", `{"resource":"Patient","select":[{"column":[{"name":"id","path":"name.where(use = %nope).family"}]}]}`, "select[0].column[0].path", "1:18: undefined constant %nope"},
		{"bad column name", `{"resource":"Patient","select":[{"column":[{"name":"1id","path":"id"}]}]}`, "select[0].column[0].name", "not a valid column name"},
		{"unknown resource", `{"resource":"Patiant","select":[{"column":[{"name":"id","path":"id"}]}]}`, "resource", "not an R4 resource type"},
		{"union mismatch", `{"resource":"Patient","select":[{"unionAll":[{"column":[{"name":"a","path":"id"}]},{"column":[{"name":"b","path":"id"}]}]}]}`, "select[0].unionAll[1].column[0]", "same columns"},
		{"wrong type", `{"resource":"Patient","select":[{"forEach":1}]}`, "select[0].forEach", "must be a FHIRPath expression"},
		{"unknown element in forEach", `{"resource":"Patient","select":[{"forEach":"contact","select":[{"forEach":"telecom","column":[{"name":"s","path":"system"},{"name":"v","path":"$this.valeu"}]}]}]}`, "select[0].select[0].column[1].path", "fhirpath: 1:7: unknown element valeu on ContactPoint"},
		{"unknown element in forEachOrNull after ofType", `{"resource":"Observation","select":[{"forEachOrNull":"value.ofType(Quantity)","column":[{"name":"u","path":"unitt"}]}]}`, "select[0].column[0].path", "1:1: unknown element unitt on Quantity"},
		{"ansi/type on a string", `{"resource":"Patient","select":[{"column":[{"name":"g","path":"gender","type":"code","tag":[{"name":"ansi/type","value":"DATE"}]}]}]}`, "select[0].column[0].tag[0].value", "ansi/type DATE needs a column of type date or dateTime"},
		{"timestamp on a date", `{"resource":"Patient","select":[{"column":[{"name":"b","path":"birthDate","type":"date","tag":[{"name":"ansi/type","value":"timestamptz"}]}]}]}`, "select[0].column[0].tag[0].value", "needs a column of type dateTime or instant"},
		{"tag without value", `{"resource":"Patient","select":[{"column":[{"name":"b","path":"birthDate","type":"date","tag":[{"name":"ansi/type"}]}]}]}`, "select[0].column[0].tag[0]", "must have a name and a value"},
		{"reference key type", `{"resource":"Patient","select":[{"column":[{"name":"k","path":"link.other.getReferenceKey(Patient).nmae"}]}]}`, "select[0].column[0].path", "1:37: unknown element nmae"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.view), "v1")
			if err == nil {
				t.Fatal("accepted")
			}
			var ve *Error
			if !errors.As(err, &ve) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if ve.View != "v1" || ve.Element != tc.element || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %q (element %q), want element %q and %q", err, ve.Element, tc.element, tc.reason)
			}
		})
	}
}

// TestAnsiTypeColumns checks the ansi/type tags of date and timestamp
// columns: the SQL type, the number in Value.Int and the date text, and
// that another SQL type leaves the column as it is.
func TestAnsiTypeColumns(t *testing.T) {
	v, err := Parse([]byte(`{"name":"t","resource":"Patient","select":[{"column":[
	 {"name":"b","path":"birthDate","type":"date","tag":[{"name":"ansi/type","value":" date "}]},
	 {"name":"d","path":"deceased.ofType(dateTime)","type":"dateTime","tag":[{"name":"ansi/type","value":"DATE"}]},
	 {"name":"l","path":"deceased.ofType(dateTime)","type":"dateTime","tag":[{"name":"ansi/type","value":"TIMESTAMP"}]},
	 {"name":"u","path":"deceased.ofType(dateTime)","type":"dateTime","tag":[{"name":"ansi/type","value":"TIMESTAMP WITH TIME ZONE"}]},
	 {"name":"g","path":"gender","type":"code","tag":[{"name":"ansi/type","value":"VARCHAR(10)"},{"name":"other","value":"x"}]}]}]}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{SQLDate, SQLDate, SQLTimestamp, SQLTimestampTZ, ""}
	for i, c := range v.Columns {
		if c.SQLType != want[i] {
			t.Errorf("column %s: SQL type %q, want %q", c.Name, c.SQLType, want[i])
		}
	}
	var got []Value
	err = v.NewRunner().ProcessJSON([]byte(`{"resourceType":"Patient","birthDate":"1970-01-11","deceasedDateTime":"1970-01-02T01:00:00.5-01:00","gender":"other"}`), func(row []Value) error {
		got = append(got, row...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Int != 10 || got[0].Text != "1970-01-11" || got[1].Int != 1 || got[1].Text != "1970-01-02" ||
		got[2].Int != 86400e6+3600e6+5e5 || got[3].Int != 86400e6+2*3600e6+5e5 || got[2].Text != "1970-01-02T01:00:00.5-01:00" || got[4].Text != "other" {
		t.Fatalf("values %+v", got)
	}
	for _, doc := range []string{
		`{"resourceType":"Patient","birthDate":"1970-01"}`,
		`{"resourceType":"Patient","deceasedDateTime":"1970-01-02"}`,
	} {
		err := v.NewRunner().ProcessJSON([]byte(doc), func([]Value) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "without the precision of the column's ansi/type") || strings.Contains(err.Error(), "1970") {
			t.Errorf("%s: error %v, want a precision error without the value", doc, err)
		}
	}
}

func TestForEachScopesAccepted(t *testing.T) {
	for _, view := range []string{
		`{"resource":"Patient","select":[{"forEach":"name.where(use = 'official') // c","column":[{"name":"f","path":"family"},{"name":"i","path":"%rowIndex"}]}]}`,
		`{"resource":"QuestionnaireResponse","select":[{"repeat":["item"],"column":[{"name":"l","path":"linkId"}],"select":[{"forEach":"answer","column":[{"name":"v","path":"value.ofType(string)"}]}]}]}`,
		`{"resource":"Patient","select":[{"forEach":"link.other","column":[{"name":"k","path":"getReferenceKey(Patient)"}]}]}`,
	} {
		if _, err := Parse([]byte(view), "v"); err != nil {
			t.Errorf("%s: %v", view, err)
		}
	}
}

func TestRuntimeErrorsNameColumnNotValues(t *testing.T) {
	v, err := Parse([]byte(`{"name":"pt","resource":"Patient","select":[{"column":[{"name":"given","path":"name.given"}]}]}`), "x")
	if err != nil {
		t.Fatal(err)
	}
	r := v.NewRunner()
	err = r.ProcessJSON([]byte(`{"resourceType":"Patient","id":"p1","name":[{"given":["SECRETNAME","OTHER"]}]}`), func([]Value) error { return nil })
	if err == nil {
		t.Fatal("two values in a non-collection column accepted")
	}
	msg := err.Error()
	for _, want := range []string{"view pt", "select[0].column[0].path", "Patient/p1", "column given", "collection"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "SECRET") {
		t.Errorf("error %q contains a value", msg)
	}
}

func TestPrepare(t *testing.T) {
	text, quotes, vars, err := prepare("subject.getReferenceKey( Patient ) | '%x getReferenceKey(A)' | %`vs-x` | %c1 // %z")
	if err != nil {
		t.Fatal(err)
	}
	if want := "subject.getReferenceKey( 'Patient' ) | '%x getReferenceKey(A)' | %`vs-x` | %c1 // %z"; text != want {
		t.Fatalf("text %q, want %q", text, want)
	}
	if len(quotes) != 2 || len(vars) != 2 || vars[0].name != "vs-x" || vars[1].name != "c1" {
		t.Fatalf("quotes %v vars %v", quotes, vars)
	}
	ce := &cexpr{src: "a.getReferenceKey(Patient).b(", quotes: []int{18, 26}}
	err = ce.fixPos(&fhirpath.SyntaxError{Line: 1, Column: 32, Msg: "x"})
	if se, ok := err.(*fhirpath.SyntaxError); !ok || se.Column != 30 {
		t.Fatalf("fixPos: %v", err)
	}
}

func TestValuesAndKinds(t *testing.T) {
	v, err := Parse([]byte(`{"resource":"Observation","constant":[{"name":"lim","valueDecimal":1.50}],
	"select":[{"column":[
	 {"name":"id","path":"getResourceKey()","type":"id"},
	 {"name":"pt","path":"subject.getReferenceKey(Patient)","type":"string"},
	 {"name":"enc","path":"encounter.getReferenceKey(Patient)","type":"string"},
	 {"name":"v","path":"value.ofType(Quantity).value","type":"decimal"},
	 {"name":"big","path":"value.ofType(Quantity).value > %lim","type":"boolean"},
	 {"name":"t","path":"effective.ofType(dateTime)","type":"dateTime"},
	 {"name":"iss","path":"issued","type":"instant"},
	 {"name":"n","path":"component.count()","type":"integer"},
	 {"name":"codes","path":"code.coding.code","type":"code","collection":true},
	 {"name":"cc","path":"code.coding.first()","type":"Coding"},
	 {"name":"untyped","path":"status"}]}]}`), "obs")
	if err != nil {
		t.Fatal(err)
	}
	r := v.NewRunner()
	var got string
	err = r.ProcessJSON([]byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"s","code":"a"},{"code":"b"}]},
	"subject":{"reference":"Patient/p9"},"encounter":{"reference":"Encounter/e1"},"effectiveDateTime":"2020-02","issued":"2020-02-03T04:05:06.789Z","valueQuantity":{"value":2.50,"unit":"mg"}}`),
		func(row []Value) error { got = rowJSON(v, row); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"o1","pt":"p9","enc":null,"v":2.50,"big":true,"t":"2020-02","iss":"2020-02-03T04:05:06.789Z","n":0,"codes":["a","b"],"cc":{"system":"s","code":"a"},"untyped":"final"}`
	if got != want {
		t.Fatalf("row\n got %s\nwant %s", got, want)
	}
	if v.Columns[6].Kind != KindInstant || v.Columns[8].Kind != KindString || !v.Columns[8].Collection || v.Columns[9].Kind != KindJSON || v.Columns[10].Kind != KindAny {
		t.Fatalf("kinds %+v", v.Columns)
	}
	// Other resource types give no rows.
	n := 0
	if err := r.ProcessJSON([]byte(`{"resourceType":"Patient","id":"p"}`), func([]Value) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("patient: %d rows, %v", n, err)
	}
}

func TestBuiltinsCompile(t *testing.T) {
	vs, err := Builtins()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"conditions", "encounters", "immunizations", "medication_requests", "observations", "patient_demographics", "procedures"}
	if len(vs) != len(want) {
		t.Fatalf("%d built-in views, want %d", len(vs), len(want))
	}
	for i, v := range vs {
		if v.Name != want[i] {
			t.Errorf("view %d is %s, want %s", i, v.Name, want[i])
		}
		for _, c := range v.Columns {
			if c.Kind == KindAny {
				t.Errorf("%s.%s has no type", v.Name, c.Name)
			}
		}
	}
	if _, err := Builtin("../x"); err == nil {
		t.Error("builtin ../x accepted")
	}
}
