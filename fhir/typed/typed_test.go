package typed_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

func r4(t testing.TB) *model.Model {
	t.Helper()
	m := model.Get(model.R4)
	if m == nil {
		t.Fatal("no R4 model")
	}
	return m
}

func parse(t testing.TB, src string) *jsontree.Node {
	t.Helper()
	n, err := jsontree.Parse([]byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return n
}

const patient = `{
  "resourceType": "Patient",
  "id": "p1",
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
  "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}],
  "extension": [{"url": "http://example.org/ext", "valueString": "e1"}],
  "name": [{"use": "official", "family": "Doe", "given": ["Jane", null, "Q"],
            "_given": [null, {"extension": [{"url": "http://example.org/absent", "valueCode": "unknown"}]}, {"id": "g3"}]}],
  "_gender": {"extension": [{"url": "http://example.org/gender", "valueCode": "x"}]},
  "birthDate": "1970-01-02",
  "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-02T03:04:05Z"}]},
  "deceasedBoolean": false,
  "multipleBirthInteger": 2,
  "managingOrganization": {"reference": "#org", "display": "Acme"}
}`

func TestAnnotateTypes(t *testing.T) {
	root := parse(t, patient)
	if err := typed.Annotate(root, r4(t)); err != nil {
		t.Fatal(err)
	}
	var got []string
	typed.Walk(root, func(n *jsontree.Node) bool {
		v := ""
		if typed.HasValue(n) {
			v = "=" + n.Value()
		}
		got = append(got, fmt.Sprintf("%s:%s%s", typed.Location(n), n.Type(), v))
		return true
	})
	want := []string{
		"Patient:Patient",
		"Patient.id:id=p1",
		"Patient.text:Narrative",
		"Patient.text.status:code=generated",
		`Patient.text.div:xhtml=<div xmlns="http://www.w3.org/1999/xhtml">x</div>`,
		"Patient.extension[0]:Extension",
		"Patient.extension[0].url:uri=http://example.org/ext",
		"Patient.extension[0].valueString:string=e1",
		"Patient.name[0]:HumanName",
		"Patient.name[0].use:code=official",
		"Patient.name[0].family:string=Doe",
		"Patient.name[0].given[0]:string=Jane",
		"Patient.name[0].given[1]:string",
		"Patient.name[0].given[1].extension[0]:Extension",
		"Patient.name[0].given[1].extension[0].url:uri=http://example.org/absent",
		"Patient.name[0].given[1].extension[0].valueCode:code=unknown",
		"Patient.name[0].given[2]:string=Q",
		"Patient.name[0].given[2].id:string=g3",
		"Patient.gender:code",
		"Patient.gender.extension[0]:Extension",
		"Patient.gender.extension[0].url:uri=http://example.org/gender",
		"Patient.gender.extension[0].valueCode:code=x",
		"Patient.birthDate:date=1970-01-02",
		"Patient.birthDate.extension[0]:Extension",
		"Patient.birthDate.extension[0].url:uri=http://hl7.org/fhir/StructureDefinition/patient-birthTime",
		"Patient.birthDate.extension[0].valueDateTime:dateTime=1970-01-02T03:04:05Z",
		"Patient.deceasedBoolean:boolean=false",
		"Patient.multipleBirthInteger:integer=2",
		"Patient.managingOrganization:Reference",
		"Patient.managingOrganization.reference:string=#org",
		"Patient.managingOrganization.display:string=Acme",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("walk:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func names(ns []*jsontree.Node) []string {
	var s []string
	for _, n := range ns {
		s = append(s, typed.Location(n)+":"+n.Type())
	}
	return s
}

func TestChildren(t *testing.T) {
	root := parse(t, patient)
	if err := typed.Annotate(root, r4(t)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		from func() *jsontree.Node
		want string
	}{
		{"deceased", func() *jsontree.Node { return root }, "Patient.deceasedBoolean:boolean"},
		{"contained", func() *jsontree.Node { return root }, "Patient.contained[0]:Organization"},
		{"given", func() *jsontree.Node { return typed.Children(root, "name", nil)[0] }, "Patient.name[0].given[0]:string Patient.name[0].given[1]:string Patient.name[0].given[2]:string"},
		{"extension", func() *jsontree.Node { return typed.Children(root, "birthDate", nil)[0] }, "Patient.birthDate.extension[0]:Extension"},
		{"extension", func() *jsontree.Node { return typed.Children(root, "gender", nil)[0] }, "Patient.gender.extension[0]:Extension"},
		{"nmae", func() *jsontree.Node { return root }, ""},
	}
	for _, tt := range tests {
		got := strings.Join(names(typed.Children(tt.from(), tt.name, nil)), " ")
		if got != tt.want {
			t.Errorf("Children(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
	extra := parse(t, `{"resourceType":"Patient","name":[{"given":["a"],"_given":[null,{"id":"x"}]}]}`)
	if err := typed.Annotate(extra, r4(t)); err != nil {
		t.Fatal(err)
	}
	given := names(typed.Children(typed.Children(extra, "name", nil)[0], "given", nil))
	if strings.Join(given, " ") != "Patient.name[0].given[0]:string Patient.name[0].given[1]:string" {
		t.Errorf("given with a longer _given = %v", given)
	}
	all := names(typed.AllChildren(root, nil))
	if len(all) != 10 || all[0] != "Patient.id:id" || all[len(all)-1] != "Patient.managingOrganization:Reference" {
		t.Errorf("AllChildren = %v", all)
	}
	org := typed.Children(root, "contained", nil)[0]
	if !typed.IsResource(org) || typed.Resource(typed.Children(org, "name", nil)[0]) != org {
		t.Error("contained Organization is not its name's resource")
	}
	ext := typed.Children(typed.Children(root, "birthDate", nil)[0], "extension", nil)[0]
	if p := typed.Parent(ext); p == nil || p.Type() != "date" {
		t.Errorf("parent of a primitive's extension = %v", p)
	}
	g1 := typed.Children(typed.Children(root, "name", nil)[0], "given", nil)[1]
	if typed.HasValue(g1) || !typed.IsPrimitive(g1) {
		t.Error("given[1] should be a primitive without a value")
	}
	if p := typed.Parent(typed.Children(g1, "extension", nil)[0]); p != g1 {
		t.Errorf("parent of given[1].extension = %v", p)
	}
}

func TestAnnotateErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{`{"resourceType":"Patient","id":"p1","nmae":[{"family":"Doe"}]}`, `typing Patient/p1: Patient.nmae: unknown element "nmae" on Patient`},
		{`{"resourceType":"Patient","name":[{"family":"Doe","gvien":["Secret"]}]}`, `typing Patient: Patient.name[0].gvien: unknown element "gvien" on HumanName`},
		{`{"resourceType":"Patinet"}`, `typing Patinet: unknown resource type "Patinet" in FHIR R4`},
		{`{"resourceType":"Patient","birthDate":19700102}`, `typing Patient: Patient.birthDate: element birthDate of type date cannot be a JSON number`},
		{`{"resourceType":"Patient","gender":["male"]}`, `typing Patient: Patient.gender: element gender does not repeat but has an array`},
		{`{"resourceType":"Patient","name":"Jane Doe"}`, `typing Patient: Patient.name: element name of type HumanName must be a JSON object, not string`},
		{`{"resourceType":"Patient","contained":[{"id":"x"}]}`, `typing Patient: Patient.contained[0]: resource has no resourceType`},
		{`{"resourceType":"Patient","name":[{"given":["a"],"_given":[null,null]}]}`, `typing Patient: Patient.name[0]._given[1]: element given has neither a value nor extensions`},
		{`{"resourceType":"Patient","name":[{"given":["a",null],"_given":[{"id":"1"}]}]}`, `typing Patient: Patient.name[0].given[1]: element given is null`},
		{`{"resourceType":"Patient","birthDate":null}`, `typing Patient: Patient.birthDate: element birthDate is null`},
		{`{"resourceType":"Patient","name":[{"given":["a",null]}]}`, `typing Patient: Patient.name[0].given[1]: element given is null`},
		{`{"resourceType":"Patient","contact":[{"name":{"family":"f","given":[null]}}],"gender":"male"}`, `typing Patient: Patient.contact[0].name.given[0]: element given is null`},
		{`{"resourceType":"Patient","active":true,"contact":[{"gender":null}]}`, `typing Patient: Patient.contact[0].gender: element gender is null`},
		{`{"resourceType":"Patient","id":"Jane Doe secret","name":{"bad key!":1}}`, `typing Patient: Patient.name.bad key!: invalid member name`},
		{`[1]`, `typing a resource must be a JSON object`},
	}
	for _, tt := range tests {
		root := parse(t, tt.src)
		err := typed.Annotate(root, r4(t))
		if err == nil {
			t.Errorf("%s: no error", tt.src)
			continue
		}
		var te *typed.Error
		if !errors.As(err, &te) {
			t.Errorf("%s: error %T is not a *typed.Error", tt.src, err)
		}
		if err.Error() != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.src, err, tt.want)
		}
		for _, secret := range []string{"Secret", "Jane", "19700102", "male"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error leaks a value: %s", tt.src, err)
			}
		}
	}
}

func TestWalkSkipsNestedResources(t *testing.T) {
	root := parse(t, `{"resourceType":"Bundle","type":"collection","entry":[
		{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","birthDate":"2000-01-01"}},
		{"resource":{"resourceType":"Observation","status":"final","code":{"text":"c"},"effectiveDateTime":"2001-01-01"}}]}`)
	if err := typed.Annotate(root, r4(t)); err != nil {
		t.Fatal(err)
	}
	var types []string
	typed.Walk(root, func(n *jsontree.Node) bool { types = append(types, n.Type()); return true })
	if got := strings.Join(types, " "); got != "Bundle code Bundle.entry uri Bundle.entry" {
		t.Errorf("Walk entered a nested resource: %s", got)
	}
	entries := typed.Children(root, "entry", nil)
	obs := typed.Children(entries[1], "resource", nil)[0]
	var dates []string
	typed.Walk(obs, func(n *jsontree.Node) bool {
		if n.Type() == "dateTime" {
			dates = append(dates, typed.Location(n))
		}
		return true
	})
	if len(dates) != 1 || dates[0] != "Bundle.entry[1].resource.effectiveDateTime" {
		t.Errorf("dates in entry 1 = %v", dates)
	}
}

func TestAnnotateSTU3(t *testing.T) {
	m := model.Get(model.STU3)
	if m == nil {
		t.Fatal("no STU3 model")
	}
	root := parse(t, `{"resourceType":"ProcedureRequest","id":"x","status":"active","intent":"order","subject":{"reference":"Patient/1"},"occurrenceDateTime":"2017-01-01"}`)
	if err := typed.Annotate(root, m); err != nil {
		t.Fatal(err)
	}
	if got := names(typed.Children(root, "occurrence", nil)); len(got) != 1 || got[0] != "ProcedureRequest.occurrenceDateTime:dateTime" {
		t.Errorf("occurrence = %v", got)
	}
	if err := typed.Annotate(root, r4(t)); err == nil || !strings.Contains(err.Error(), `unknown resource type "ProcedureRequest" in FHIR R4`) {
		t.Errorf("R4 typing of an STU3-only resource: %v", err)
	}
}

func TestChoiceFlag(t *testing.T) {
	root := parse(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1},"effectiveDateTime":"2020"}`)
	if err := typed.Annotate(root, r4(t)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"valueQuantity", "effectiveDateTime"} {
		n := root.Get(key)
		if n.Flags&jsontree.FlagChoice == 0 {
			t.Errorf("%s lacks FlagChoice", key)
		}
	}
	if root.Get("code").Flags&jsontree.FlagChoice != 0 {
		t.Error("code has FlagChoice")
	}
}

func TestAnnotateWrapRepeating(t *testing.T) {
	src := `{"resourceType":"Patient","name":{"family":"Doe","given":"Jane","_given":{"id":"g"}},` +
		`"_birthDate":{"extension":{"url":"http://x","valueCode":"u"}},"birthDate":"2000",` +
		`"contained":{"resourceType":"Organization","alias":"A"}}`
	// Without the option, single values stay as they are.
	plain := parse(t, src)
	if err := typed.Annotate(plain, r4(t)); err != nil {
		t.Fatal(err)
	}
	if got := string(plain.AppendJSON(nil)); got != src {
		t.Errorf("Annotate changed the document: %s", got)
	}
	root := parse(t, src)
	if err := typed.AnnotateWith(root, r4(t), typed.Options{WrapRepeating: true}); err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","name":[{"family":"Doe","given":["Jane"],"_given":[{"id":"g"}]}],` +
		`"_birthDate":{"extension":{"url":"http://x","valueCode":"u"}},"birthDate":"2000",` +
		`"contained":[{"resourceType":"Organization","alias":["A"]}]}`
	if got := string(root.AppendJSON(nil)); got != want {
		t.Errorf("wrapped:\n got %s\nwant %s", got, want)
	}
	// The result is typed as if the arrays had been in the document.
	again := parse(t, want)
	if err := typed.Annotate(again, r4(t)); err != nil {
		t.Fatal(err)
	}
	var a, b []string
	collect := func(dst *[]string) func(*jsontree.Node) bool {
		return func(n *jsontree.Node) bool {
			sh := ""
			if n.Shadow() != nil {
				sh = n.Shadow().Key()
			}
			*dst = append(*dst, fmt.Sprintf("%s|%s|%s|%d|%s", n.Key(), n.Name(), n.Type(), n.Flags, sh))
			return true
		}
	}
	root.Walk(collect(&a))
	again.Walk(collect(&b))
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("typing differs:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

func TestAnnotateTrimSpace(t *testing.T) {
	src := `{"resourceType":"Patient","id":" p ","name":[{"family":"\u00a0Doe\t","given":["Jo"," "]}],` +
		`"_gender":{"extension":[{"url":" http://x","valueInteger":1}]}}`
	plain := parse(t, src)
	if err := typed.Annotate(plain, r4(t)); err != nil {
		t.Fatal(err)
	}
	if got := plain.Get("id").Value(); got != " p " {
		t.Errorf("Annotate trimmed: %q", got)
	}
	root := parse(t, src)
	if err := typed.AnnotateWith(root, r4(t), typed.Options{TrimSpace: true}); err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"p","name":[{"family":"Doe","given":["Jo",""]}],` +
		`"_gender":{"extension":[{"url":"http://x","valueInteger":1}]}}`
	if got := string(root.AppendJSON(nil)); got != want {
		t.Errorf("trimmed:\n got %s\nwant %s", got, want)
	}
}

// TestErrorQuotesValidIDOnly checks that a typing error names the resource
// by its id only when the id has the syntax of one (checked when the error
// is made, not for every resource).
func TestErrorQuotesValidIDOnly(t *testing.T) {
	for _, c := range []struct{ id, want string }{
		{"abc-123", "abc-123"},
		{"John Smith 1970", ""},
		{strings.Repeat("a", 65), ""},
	} {
		root := parse(t, `{"resourceType":"Patient","id":"`+c.id+`","nmae":1}`)
		err := typed.Annotate(root, r4(t))
		var te *typed.Error
		if !errors.As(err, &te) {
			t.Fatalf("id %q: error %v", c.id, err)
		}
		if te.ID != c.want {
			t.Errorf("id %q: error names id %q, want %q", c.id, te.ID, c.want)
		}
	}
}
