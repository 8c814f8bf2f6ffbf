package views

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

func TestSubtypes(t *testing.T) {
	m := model.Get(model.R4)
	q := subtypes(m, "Quantity")
	if !slices.Contains(q, "Age") || !slices.Contains(q, "Duration") || slices.Contains(q, "Quantity") || slices.Contains(q, "Coding") {
		t.Errorf("subtypes of Quantity: %v", q)
	}
	if s := subtypes(m, "Coding"); s == nil || len(s) != 0 {
		t.Errorf("subtypes of Coding: %v, want an empty list", s)
	}
	if subtypes(m, "Resource") != nil || subtypes(m, "string") != nil || subtypes(m, "Nope") != nil {
		t.Error("subtypes of Resource, string or an unknown type listed")
	}
}

func TestCompileFast(t *testing.T) {
	for _, c := range []struct {
		text string
		fast bool
	}{
		{"id", true},
		{"code.coding.first().code", true},
		{"value.ofType(Quantity).value", true},
		{"subject.getReferenceKey('Patient')", true},
		{"participant.individual.getReferenceKey('Practitioner').first()", true},
		{"getResourceKey()", true},
		{"getReferenceKey()", true},
		{"'observation'", true},
		{"{}", true},
		{"getReferenceKey('Patient').code", false},
		{"name.getResourceKey()", false},
		{"Patient.name", false},
		{"name.where(use = 'official').family", false},
		{"name.given.first() | name.family", false},
		{"%rowIndex", false},
		{"name . family", false},
		{"value.ofType(FHIR.Quantity)", false},
		{"'it''s'", false},
		{"name.`given`", false},
		{"code.contains", false},
		{"name.first(1)", false},
		{"extension('http://x.org/a').value", false},
	} {
		if got := compileFast(c.text, model.Get(model.R4)) != nil; got != c.fast {
			t.Errorf("compileFast(%q) = %v, want %v", c.text, got, c.fast)
		}
	}
}

// TestFastPathsMatchEngine evaluates views with and without the fast paths
// and compares their rows (and errors): every view of the conformance
// suite over its resources, and the built-in views over synthea-100.
func TestFastPathsMatchEngine(t *testing.T) {
	fastCols := 0
	check := func(name string, v *View, resources []*jsontree.Node) {
		t.Helper()
		for _, c := range v.cols() {
			if c.expr.fast != nil {
				fastCols++
			}
		}
		run := func(noFast bool) []string {
			noFastPaths = noFast
			defer func() { noFastPaths = false }()
			r := v.NewRunner()
			var out []string
			for _, res := range resources {
				err := r.Eval(res, func(row []Value) error {
					out = append(out, rowJSON(v, row))
					return nil
				})
				if err != nil {
					out = append(out, "error: "+err.Error())
				}
			}
			return out
		}
		fast, slow := run(false), run(true)
		if strings.Join(fast, "\n") != strings.Join(slow, "\n") {
			for i := range min(len(fast), len(slow)) {
				if fast[i] != slow[i] {
					t.Errorf("%s: row %d: fast path %s, engine %s", name, i, fast[i], slow[i])
					return
				}
			}
			t.Errorf("%s: %d rows with fast paths, %d with the engine", name, len(fast), len(slow))
		}
	}

	dir := sharedDir(t, "conformance/sql-on-fhir-v2/tests")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var sf suiteFile
		if err := json.Unmarshal(data, &sf); err != nil {
			t.Fatal(err)
		}
		resources := typedResources(t, sf.Resources)
		for _, tc := range sf.Tests {
			v, err := Parse(tc.View, "test")
			if err != nil {
				continue
			}
			check(filepath.Base(f)+"/"+tc.Title, v, resources)
		}
	}
	suiteFast := fastCols

	vs, err := Builtins()
	if err != nil {
		t.Fatal(err)
	}
	sdir := sharedDir(t, "data/synthea-100")
	for _, v := range vs {
		lines, _ := readLines(t, filepath.Join(sdir, v.Resource+".000.ndjson.gz"))
		var raw []json.RawMessage
		for _, l := range lines {
			raw = append(raw, l)
		}
		check("builtin:"+v.Name, v, typedResources(t, raw))
	}
	if suiteFast < 50 || fastCols-suiteFast < 60 {
		t.Errorf("few columns take the fast path: %d in the suite, %d in the built-in views", suiteFast, fastCols-suiteFast)
	}
	t.Logf("columns with a fast path: %d in the suite's views, %d in the built-in views", suiteFast, fastCols-suiteFast)
}

func typedResources(t testing.TB, raws []json.RawMessage) []*jsontree.Node {
	var out []*jsontree.Node
	for i, raw := range raws {
		n, err := jsontree.Parse(raw)
		if err != nil {
			t.Fatalf("resource %d: %v", i, err)
		}
		if err := typed.Annotate(n, model.Get(model.R4)); err != nil {
			t.Fatalf("resource %d: %v", i, err)
		}
		out = append(out, n)
	}
	return out
}

// cols lists the view's column nodes.
func (v *View) cols() []*colNode {
	var out []*colNode
	var walk func(s *selectNode)
	walk = func(s *selectNode) {
		out = append(out, s.cols...)
		for _, c := range s.children {
			walk(c)
		}
		for _, u := range s.union {
			walk(u)
		}
	}
	walk(v.root)
	return out
}
