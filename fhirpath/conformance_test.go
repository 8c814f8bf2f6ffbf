package fhirpath

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

var strictConformance = flag.Bool("fhirpath.strict", false, "fail the conformance test on every failing case, including the expected failures")

type suiteXML struct {
	Groups []struct {
		Name  string `xml:"name,attr"`
		Tests []struct {
			Name      string `xml:"name,attr"`
			InputFile string `xml:"inputfile,attr"`
			Mode      string `xml:"mode,attr"`
			Predicate string `xml:"predicate,attr"`
			Ordered   string `xml:"checkOrderedFunctions,attr"`
			Expr      struct {
				Invalid string `xml:"invalid,attr"`
				Text    string `xml:",chardata"`
			} `xml:"expression"`
			Outputs []struct {
				Type string `xml:"type,attr"`
				Text string `xml:",chardata"`
			} `xml:"output"`
		} `xml:"test"`
	} `xml:"group"`
}

// readList reads "name: reason" lines (# comments allowed) into a map.
func readList(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return map[string]string{}
		}
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, _ := strings.Cut(line, ":")
		m[strings.TrimSpace(name)] = strings.TrimSpace(reason)
	}
	return m
}

// TestConformanceR4 runs the HL7 FHIRPath R4 test suite over the JSON
// inputs (parsed with jsontree, typed with typed.Annotate).
//
// How the suite's attributes are treated:
//   - every test compiles with the R4 model and the input's resource type as
//     context type, so the check phase runs for all of them: mode="strict"
//     is therefore the engine's normal mode, not an extra one;
//   - invalid="syntax", "semantic" and "execution" (and "true") pass when
//     Compile or Evaluate fails; which phase reports the error is not
//     compared (the engine reports several semantic errors, such as
//     startsWith() on a non-string, at evaluation);
//   - checkOrderedFunctions="true" adds WithOrderedFunctionsCheck;
//   - predicate="true" evaluates the result as a predicate (empty is false,
//     a single boolean is itself, anything else is true) and compares it
//     with the single expected output;
//   - outputs compare in order, by type when one is given and by value (the
//     FHIRPath literal form for untyped outputs: @2014-01, 1.5 'cm').
//
// Skips (testdata/conformance-skips.txt) and known failures
// (testdata/conformance-expected-failures.txt) are listed with reasons; any
// other failure fails the test, and -fhirpath.strict fails on known ones
// too. Set FHIRPATH_LIST_FAILURES=1 to print every failure.
func TestConformanceR4(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "fhirpath-r4")
	data, err := os.ReadFile(filepath.Join(dir, "tests-fhir-r4.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var suite suiteXML
	if err := xml.Unmarshal(data, &suite); err != nil {
		t.Fatalf("parsing the suite: %v", err)
	}
	m := model.Get(model.R4)
	if m == nil {
		t.Skip("the R4 model is not available")
	}
	skips := readList(t, "testdata/conformance-skips.txt")
	expected := readList(t, "testdata/conformance-expected-failures.txt")
	inputs := map[string]*jsontree.Node{}
	load := func(name string) (*jsontree.Node, error) {
		if name == "" {
			return nil, nil
		}
		if n, ok := inputs[name]; ok {
			return n, nil
		}
		file := filepath.Join(dir, "input-json", strings.TrimSuffix(strings.TrimSuffix(name, ".xml"), ".json")+".json")
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		root, err := jsontree.Parse(b)
		if err != nil {
			return nil, err
		}
		if err := typed.Annotate(root, m); err != nil {
			return nil, err
		}
		inputs[name] = root
		return root, nil
	}
	var pass, fail, skip, total int
	var failures []string
	for _, g := range suite.Groups {
		for _, tc := range g.Tests {
			total++
			if reason, ok := skips[tc.Name]; ok {
				skip++
				t.Logf("skip %s: %s", tc.Name, reason)
				continue
			}
			root, err := load(tc.InputFile)
			var msg string
			if err != nil {
				msg = fmt.Sprintf("loading %s: %v", tc.InputFile, err)
			} else {
				msg = runCase(root, tc.Expr.Text, tc.Expr.Invalid, tc.Mode, tc.Predicate, tc.Ordered == "true", outputsOf(tc.Outputs), m)
			}
			if msg == "" {
				pass++
				if _, exp := expected[tc.Name]; exp {
					t.Logf("%s passes now: remove it from conformance-expected-failures.txt", tc.Name)
				}
				continue
			}
			fail++
			failures = append(failures, fmt.Sprintf("%s [%s]: %s", tc.Name, strings.TrimSpace(tc.Expr.Text), msg))
			if _, exp := expected[tc.Name]; exp && !*strictConformance {
				t.Logf("expected failure %s: %s", tc.Name, msg)
			} else {
				t.Errorf("%s: %s\n\texpression: %s", tc.Name, msg, strings.TrimSpace(tc.Expr.Text))
			}
		}
	}
	if os.Getenv("FHIRPATH_LIST_FAILURES") != "" {
		for _, f := range failures {
			fmt.Println("FAIL", f)
		}
	}
	fmt.Printf("FHIRPath R4 conformance: %d passed, %d failed, %d skipped (of %d)\n", pass, fail, skip, total)
}

type expectedOutput struct{ typ, text string }

func outputsOf(o []struct {
	Type string `xml:"type,attr"`
	Text string `xml:",chardata"`
}) []expectedOutput {
	out := make([]expectedOutput, len(o))
	for i, x := range o {
		out[i] = expectedOutput{x.Type, x.Text}
	}
	return out
}

// runCase runs one test and returns "" on success or what went wrong.
func runCase(root *jsontree.Node, src, invalid, mode, predicate string, ordered bool, want []expectedOutput, m *model.Model) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprintf("panic: %v", r)
		}
	}()
	opts := []Option{WithModel(m), WithFunctions(AnonymizerFunctions()...)}
	if root != nil {
		opts = append(opts, WithContextType(root.Type()))
	}
	if ordered {
		opts = append(opts, WithOrderedFunctionsCheck())
	}
	e, err := Compile(src, opts...)
	if err != nil {
		if invalid != "" {
			return ""
		}
		return "compile error: " + err.Error()
	}
	res, err := e.Evaluate(root, nil)
	if err != nil {
		if invalid != "" {
			return ""
		}
		return "evaluation error: " + err.Error()
	}
	if invalid != "" {
		return fmt.Sprintf("expected a %s error, got %d results", invalid, len(res))
	}
	if predicate == "true" {
		b := len(res) > 0
		if len(res) == 1 {
			if v, ok := res[0].Value(); ok {
				if bb, isBool := v.(bool); isBool {
					b = bb
				}
			}
		}
		if len(want) != 1 || want[0].text != fmt.Sprint(b) {
			return fmt.Sprintf("predicate is %v, want %v", b, want)
		}
		return ""
	}
	if len(res) != len(want) {
		return fmt.Sprintf("got %d results %s, want %d", len(res), describe(res), len(want))
	}
	for i, w := range want {
		got := res[i]
		if w.typ != "" && got.TypeName() != w.typ {
			return fmt.Sprintf("result %d has type %s, want %s", i, got.TypeName(), w.typ)
		}
		if !outputMatches(got, w) {
			return fmt.Sprintf("result %d is %q, want %q", i, literalString(got), w.text)
		}
	}
	return ""
}

func describe(res []Item) string {
	var parts []string
	for _, r := range res {
		parts = append(parts, r.TypeName()+":"+literalString(r))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func outputMatches(got Item, w expectedOutput) bool {
	s := literalString(got)
	if s == w.text {
		return true
	}
	switch w.typ {
	case "decimal", "integer":
		v, _ := got.Value()
		d1, ok := toDec(v)
		d2, err := ParseDecimal(w.text)
		return ok && err == nil && d1.Cmp(d2) == 0
	case "Quantity":
		v, _ := got.Value()
		q1, ok1 := v.(Quantity)
		q2, ok2 := parseQuantityString(w.text)
		return ok1 && ok2 && q1.Value.Cmp(q2.Value) == 0 && q1.Unit == q2.Unit
	case "date", "dateTime", "time":
		return strings.TrimPrefix(s, "@") == strings.TrimPrefix(w.text, "@")
	}
	return false
}
