package fhirpath

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fhirdeid/fhir/model"
	"fhirdeid/internal/testshared"
)

// fuzzSeeds are in-repo seeds covering the grammar.
var fuzzSeeds = []string{
	"Patient.name.where(use = 'official').given",
	"1 + 2 * 3 - -4 div 5 mod 6",
	"a and b or c xor d implies e",
	"x is FHIR.Patient and (y as System.String).length() > 2",
	"@2019-01-01T10:00:00.000+01:00 + 1 year < @T12:00 | @2015T",
	"4 'mg' + 4 days + 1.5 'kg'",
	"`delimited id`.`div` | %`vs-x` | %resource | $this | $index | $total",
	"'esc \\' \\\\ \\n \\u00e9' & {}",
	"a[0].b[c.count() - 1]",
	"x // comment\n/* block */ + y",
	"iif(a, b, c).select($this).repeat(item).ofType(Quantity)",
	"nodesByType('date') | nodesByName('value')",
	"sort(-$this, name)",
	"contains.in.is.as",
}

// FuzzParse checks that parsing never panics and that printing a parsed
// expression gives text that parses to the same tree.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	if dir := testshared.Path(); dir != "" {
		if data, err := os.ReadFile(filepath.Join(dir, "conformance", "fhirpath-r4", "tests-fhir-r4.xml")); err == nil {
			var suite suiteXML
			if xml.Unmarshal(data, &suite) == nil {
				for _, g := range suite.Groups {
					for _, tc := range g.Tests {
						f.Add(tc.Expr.Text)
					}
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := parse(src)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("parse(%q) returned a %T, want *SyntaxError", src, err)
			}
			return
		}
		printed := exprString(e)
		e2, err := parse(printed)
		if err != nil {
			t.Fatalf("parse(%q) ok, but its print %q does not parse: %v", src, printed, err)
		}
		if again := exprString(e2); again != printed {
			t.Fatalf("unstable print: %q -> %q -> %q", src, printed, again)
		}
		// Compiling without a model must not panic either.
		_, _ = Compile(src, WithFunctions(AnonymizerFunctions()...))
	})
}

func TestConformanceExpressionsRoundTrip(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "fhirpath-r4")
	data, err := os.ReadFile(filepath.Join(dir, "tests-fhir-r4.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var suite suiteXML
	if err := xml.Unmarshal(data, &suite); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range suite.Groups {
		for _, tc := range g.Tests {
			e, err := parse(tc.Expr.Text)
			if err != nil {
				continue
			}
			n++
			printed := exprString(e)
			e2, err := parse(printed)
			if err != nil {
				t.Errorf("%s: print %q does not parse: %v", tc.Name, printed, err)
				continue
			}
			if again := exprString(e2); again != printed {
				t.Errorf("%s: unstable print %q -> %q", tc.Name, printed, again)
			}
		}
	}
	if n < 900 {
		t.Errorf("only %d expressions parsed", n)
	}
}

// FuzzEval checks that compiling and evaluating arbitrary expressions on a
// small resource never panics.
func FuzzEval(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	for _, s := range []string{
		"name.given.substring(1, 2).upper() & birthDate.toString()",
		"descendants().select($this.toString().length()).aggregate($this + $total, 0)",
		"extension.value.ofType(Quantity) * 2 'mg' / 0",
		"(1 | 2.5 | 'a' | @2019 | @T10:00 | 3 days).toString().join(',')",
		"telecom.value.replaceMatches('(?<d>\\\\d)', '${d}$1').split('-').lowBoundary()",
	} {
		f.Add(s)
	}
	root := load(f, "patient.json")
	m := model.Get(model.R4)
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Compile(src, WithModel(m), WithFunctions(AnonymizerFunctions()...), WithWarnings(func(*CheckError) {}))
		if err != nil {
			return
		}
		_, _ = e.Evaluate(root, &Env{Now: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
	})
}
