package typed_test

import (
	"bufio"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// readLines returns every NDJSON line of the .ndjson.gz files in dir.
func readLines(tb testing.TB, dir string) [][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no NDJSON files in %s", dir)
	}
	var lines [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
		if err := sc.Err(); err != nil {
			tb.Fatal(err)
		}
		fh.Close()
	}
	return lines
}

// TestAnnotateSynthea types every resource of synthea-100: real data must
// type without a single unknown element.
func TestAnnotateSynthea(t *testing.T) {
	lines := readLines(t, testshared.Dir(t, "data", "synthea-100"))
	m := model.Get(model.R4)
	var p jsontree.Parser
	dates := 0
	for i, line := range lines {
		root, err := p.Parse(line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if err := typed.Annotate(root, m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		typed.Walk(root, func(n *jsontree.Node) bool {
			if n.Type() == "date" || n.Type() == "dateTime" {
				dates++
			}
			return true
		})
	}
	if len(lines) != 38472 {
		t.Errorf("read %d resources, want 38472", len(lines))
	}
	if dates == 0 {
		t.Error("no dates found")
	}
}

// TestAnnotateConformanceInputs types the FHIRPath suite's R4 inputs.
func TestAnnotateConformanceInputs(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "fhirpath-r4", "input-json")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	m := model.Get(model.R4)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		root, err := jsontree.Parse(data)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		err = typed.Annotate(root, m)
		if filepath.Base(f) == "parameters-example-types.json" {
			// This input is not valid FHIR JSON: it writes valueUuid as
			// an object {"value": ...}, as converted from XML.
			if err == nil {
				t.Errorf("%s: the object-valued valueUuid was accepted", filepath.Base(f))
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

func benchLines(b *testing.B) ([][]byte, int64) {
	lines := readLines(b, testshared.Dir(b, "data", "synthea-100"))
	var n int64
	for _, l := range lines {
		n += int64(len(l))
	}
	return lines, n
}

// BenchmarkParseAnnotate parses and types all of synthea-100 per iteration.
func BenchmarkParseAnnotate(b *testing.B) {
	lines, size := benchLines(b)
	m := model.Get(model.R4)
	var p jsontree.Parser
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, line := range lines {
			root, err := p.Parse(line)
			if err != nil {
				b.Fatal(err)
			}
			if err := typed.Annotate(root, m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkWalkDates parses, types and collects every date of synthea-100
// (the work of nodesByType('date')) per iteration.
func BenchmarkWalkDates(b *testing.B) {
	lines, size := benchLines(b)
	m := model.Get(model.R4)
	var p jsontree.Parser
	var found []*jsontree.Node
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, line := range lines {
			root, err := p.Parse(line)
			if err != nil {
				b.Fatal(err)
			}
			if err := typed.Annotate(root, m); err != nil {
				b.Fatal(err)
			}
			found = found[:0]
			typed.Walk(root, func(n *jsontree.Node) bool {
				if n.Type() == "date" {
					found = append(found, n)
				}
				return true
			})
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}
