package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestReconcile(t *testing.T) {
	m := newGenModel("R4", "test")
	add := func(ty *typ) {
		if err := m.add(ty); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"string", "boolean", "dateTime", "code"} {
		add(&typ{name: n, kind: "primitive", base: "Element"})
	}
	add(&typ{name: "Element", kind: "complex", abstract: true, elements: []*element{
		{name: "id", max: "1", types: []string{"string"}},
	}})
	add(&typ{name: "Coding", kind: "complex", base: "Element"})
	add(&typ{name: "Thing", kind: "resource", base: "Element", elements: []*element{
		{name: "id", max: "1", types: []string{"string"}},
		{name: "status", min: 1, max: "1", types: []string{"code"}},
		{name: "extra", max: "1", types: []string{"Thing.extra"}},
		{name: "tag", max: "1", types: []string{"Coding"}},
		{name: "note", max: "1", types: []string{"string"}},
	}})
	add(&typ{name: "Thing.extra", kind: "backbone", base: "Element", elements: []*element{
		{name: "flag", max: "1", types: []string{"boolean"}},
	}})
	raw := func(s string) json.RawMessage { return json.RawMessage(`"` + s + `"`) }
	ref := &refModel{
		path2Type: map[string]json.RawMessage{
			"Thing.id": raw("System.String"), "Thing.status": raw("code"),
			"Thing.tag": raw("Coding"), "Thing.note": raw("code"),
			"Thing.whenDateTime": raw("dateTime"), "Thing.whenBoolean": raw("boolean"),
		},
		choices:   map[string][]string{"Thing.when": {"DateTime", "Boolean"}},
		elsewhere: map[string]string{},
		repeating: map[string]bool{"Thing.tag": true},
		paths:     map[string]bool{},
	}
	for _, p := range []string{"Thing.id", "Thing.status", "Thing.tag", "Thing.note", "Thing.when"} {
		ref.paths[p] = true
	}
	var log strings.Builder
	if err := reconcile(m, ref, &log); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	thing := m.types["Thing"]
	var got []string
	for _, e := range thing.elements {
		got = append(got, e.name+":"+strings.Join(e.types, "|")+":"+e.max)
	}
	want := []string{"id:string:1", "status:code:1", "tag:Coding:*", "note:code:1", "when:dateTime|boolean:1"}
	if !slices.Equal(got, want) {
		t.Errorf("elements %v, want %v", got, want)
	}
	if e := thing.elements[4]; !e.choice || e.min != 0 {
		t.Errorf("restored when: choice %v min %d", e.choice, e.min)
	}
	if m.types["Thing.extra"] != nil {
		t.Errorf("backbone Thing.extra kept")
	}
	for _, w := range []string{"Thing.extra: not in FHIR R4, dropped", "Thing.note: type string, FHIR R4 says code",
		"Thing.tag: max 1, FHIR R4 says repeats=true", "Thing.when: missing"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, log.String())
		}
	}
	if err := m.check(); err != nil {
		t.Errorf("check after reconcile: %v", err)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		el   *element
		want string
	}{
		{"system type", &element{name: "id", max: "1", types: []string{"http://hl7.org/fhirpath/System.String"}}, "system type"},
		{"unknown type", &element{name: "x", max: "1", types: []string{"Nope"}}, "not a type"},
		{"no type", &element{name: "x", max: "1"}, "no type"},
		{"bad max", &element{name: "x", max: "0", types: []string{"string"}}, "bad max"},
		{"two types", &element{name: "x", max: "1", types: []string{"string", "string"}}, "no choice"},
	}
	for _, tt := range tests {
		m := newGenModel("R4", "test")
		_ = m.add(&typ{name: "string", kind: "primitive"})
		_ = m.add(&typ{name: "T", kind: "complex", elements: []*element{tt.el}})
		err := m.check()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: check() = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

func TestReconcileOrder(t *testing.T) {
	m := newGenModel("R4", "test")
	el := func(name string, min int) *element {
		return &element{name: name, min: min, max: "1", types: []string{"string"}}
	}
	_ = m.add(&typ{name: "string", kind: "primitive"})
	// "ref" is a content reference the parse leaves out: it must stay after
	// "b". "d" was appended last but belongs second; "c" is required.
	_ = m.add(&typ{name: "T", kind: "complex", elements: []*element{
		el("a", 0), el("b", 0), el("ref", 0), el("c", 0), el("d", 1),
	}})
	_ = m.add(&typ{name: "T.bb", kind: "backbone", elements: []*element{el("y", 0), el("x", 0)}})
	parsed := map[string]*parsedType{"T": {Kind: "complex-type", Properties: []*parsedType{
		{Name: "a"}, {Name: "_a"}, {Name: "dString", Choice: "d[x]"}, {Name: "dBoolean", Choice: "d[x]"},
		{Name: "b"}, {Name: "c", Required: true},
		{Name: "bb", Type: "BackboneElement", Properties: []*parsedType{{Name: "x"}, {Name: "y"}}},
	}}}
	var log strings.Builder
	reconcileOrder(m, parsed, &log)
	names := func(t *typ) (out []string) {
		for _, e := range t.elements {
			out = append(out, e.name)
		}
		return out
	}
	if got, want := names(m.types["T"]), []string{"a", "d", "b", "ref", "c"}; !slices.Equal(got, want) {
		t.Errorf("T order %v, want %v", got, want)
	}
	if got, want := names(m.types["T.bb"]), []string{"x", "y"}; !slices.Equal(got, want) {
		t.Errorf("T.bb order %v, want %v", got, want)
	}
	for _, e := range m.types["T"].elements {
		if wantMin := map[string]int{"c": 1}[e.name]; e.min != wantMin {
			t.Errorf("T.%s min %d, want %d", e.name, e.min, wantMin)
		}
	}
	if !strings.Contains(log.String(), "T.d: min 1, FHIR.js says required=false") {
		t.Errorf("log lacks the min change:\n%s", log.String())
	}
}
