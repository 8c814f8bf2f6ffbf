package views

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// The official SQL on FHIR v2 suite: every case of every file, with a
// test_report.json in the suite's format. Cases that cannot pass are
// listed with their reason in testdata/conformance-skips.json.

type suiteFile struct {
	Resources []json.RawMessage `json:"resources"`
	Tests     []struct {
		Title         string          `json:"title"`
		View          json.RawMessage `json:"view"`
		Expect        json.RawMessage `json:"expect"`
		ExpectError   bool            `json:"expectError"`
		ExpectColumns []string        `json:"expectColumns"`
	} `json:"tests"`
}

type reportCase struct {
	Name   string `json:"name"`
	Result struct {
		Passed bool   `json:"passed"`
		Error  string `json:"error,omitempty"`
	} `json:"result"`
}

func TestConformance(t *testing.T) {
	dir := sharedDir(t, "conformance/sql-on-fhir-v2/tests")
	skips := map[string]string{}
	if data, err := os.ReadFile("testdata/conformance-skips.json"); err == nil {
		if err := json.Unmarshal(data, &skips); err != nil {
			t.Fatalf("testdata/conformance-skips.json: %v", err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no test files in %s", dir)
	}
	report := map[string]map[string][]reportCase{}
	passed, failed, skipped, total := 0, 0, 0, 0
	for _, f := range files {
		base := filepath.Base(f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var sf suiteFile
		if err := json.Unmarshal(data, &sf); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		var resources []*jsontree.Node
		for i, raw := range sf.Resources {
			n, err := jsontree.Parse(raw)
			if err != nil {
				t.Fatalf("%s: resource %d: %v", base, i, err)
			}
			if err := typed.Annotate(n, model.Get(model.R4)); err != nil {
				t.Fatalf("%s: resource %d: %v", base, i, err)
			}
			resources = append(resources, n)
		}
		var cases []reportCase
		for _, tc := range sf.Tests {
			total++
			var rc reportCase
			rc.Name = tc.Title
			key := base + "/" + tc.Title
			if reason, ok := skips[key]; ok {
				skipped++
				rc.Result.Error = "skipped: " + reason
				cases = append(cases, rc)
				t.Logf("SKIP %s: %s", key, reason)
				continue
			}
			err := runCase(tc.View, tc.ExpectError, tc.Expect, tc.ExpectColumns, resources)
			if err != nil {
				failed++
				rc.Result.Error = err.Error()
				t.Errorf("%s: %v", key, err)
			} else {
				passed++
				rc.Result.Passed = true
			}
			cases = append(cases, rc)
		}
		report[base] = map[string][]reportCase{"tests": cases}
	}
	out := os.Getenv("FHIRDEID_ARTIFACTS")
	if out == "" {
		out = t.TempDir()
	}
	// A clean checkout has no artifacts folder yet.
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := json.MarshalIndent(report, "", "  ")
	path := filepath.Join(out, "test_report.json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("SQL on FHIR v2 suite: %d/%d passed, %d failed, %d skipped; report %s", passed, total, failed, skipped, path)
	fmt.Printf("sql-on-fhir-v2 conformance: %d/%d passed, %d failed, %d skipped\n", passed, total, failed, skipped)
	if total != 134 {
		t.Errorf("the suite has %d cases, want 134", total)
	}
}

func runCase(view json.RawMessage, expectError bool, expect json.RawMessage, expectCols []string, resources []*jsontree.Node) error {
	v, err := Parse(view, "test")
	if err != nil {
		if expectError {
			return nil
		}
		return fmt.Errorf("parse: %v", err)
	}
	r := v.NewRunner()
	var got []string
	for _, res := range resources {
		err := r.Eval(res, func(row []Value) error {
			got = append(got, rowJSON(v, row))
			return nil
		})
		if err != nil {
			if expectError {
				return nil
			}
			return fmt.Errorf("eval: %v", err)
		}
	}
	if expectError {
		return fmt.Errorf("expected an error, got %d rows", len(got))
	}
	if expectCols != nil {
		var names []string
		for _, c := range v.Columns {
			names = append(names, c.Name)
		}
		if strings.Join(names, ",") != strings.Join(expectCols, ",") {
			return fmt.Errorf("columns %v, want %v", names, expectCols)
		}
	}
	var exp []map[string]any
	dec := json.NewDecoder(bytes.NewReader(expect))
	dec.UseNumber()
	if err := dec.Decode(&exp); err != nil {
		return fmt.Errorf("expect: %v", err)
	}
	var want []string
	for _, e := range exp {
		want = append(want, canonical(e))
	}
	var gotC []string
	for _, g := range got {
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(g))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			return fmt.Errorf("row %s: %v", g, err)
		}
		gotC = append(gotC, canonical(m))
	}
	sort.Strings(want)
	sort.Strings(gotC)
	if strings.Join(want, "\n") != strings.Join(gotC, "\n") {
		return fmt.Errorf("rows differ:\n got %v\nwant %v", gotC, want)
	}
	return nil
}

func rowJSON(v *View, row []Value) string {
	b := []byte{'{'}
	for i, c := range v.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsontree.AppendString(b, c.Name)
		b = append(b, ':')
		b = row[i].AppendJSON(b)
	}
	return string(append(b, '}'))
}

// canonical renders a row with sorted keys and numbers normalised.
func canonical(v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%s", k, canonical(x[k]))
		}
		b.WriteByte('}')
		return b.String()
	case []any:
		var parts []string
		for _, it := range x {
			parts = append(parts, canonical(it))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return string(x)
		}
		return fmt.Sprintf("%g", f)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}
