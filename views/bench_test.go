package views

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkBuiltinViews evaluates each built-in view over the resources of
// its type in synthea-100 (read into memory first): parse, type, evaluate,
// rows to a discarding callback. It reports rows/s and the input MB/s; with
// -benchmem, allocations per resource batch.
//
//	go test -run XXX -bench BuiltinViews -benchmem ./views/
func BenchmarkBuiltinViews(b *testing.B) {
	dir := sharedDir(b, "data/synthea-100")
	vs, err := Builtins()
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range vs {
		lines, size := readLines(b, filepath.Join(dir, v.Resource+".000.ndjson.gz"))
		b.Run(v.Name, func(b *testing.B) {
			r := v.NewRunner()
			emit := func([]Value) error { return nil }
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, l := range lines {
					if err := r.ProcessJSON(l, emit); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(r.Rows())/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(len(lines)*b.N)/b.Elapsed().Seconds(), "resources/s")
		})
	}
}

// BenchmarkNDJSONWriter measures writing rows of the observations view.
func BenchmarkWriters(b *testing.B) {
	dir := sharedDir(b, "data/synthea-100")
	v, _ := Builtin("observations")
	lines, size := readLines(b, filepath.Join(dir, "Observation.000.ndjson.gz"))
	for _, f := range []string{"ndjson", "csv"} {
		b.Run(f, func(b *testing.B) {
			r := v.NewRunner()
			var w RowWriter
			if f == "ndjson" {
				w = NewNDJSONWriter(io.Discard, v)
			} else {
				w, _ = NewCSVWriter(io.Discard, v)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, l := range lines {
					if err := r.ProcessJSON(l, w.Write); err != nil {
						b.Fatal(err)
					}
				}
			}
			w.Close()
			b.ReportMetric(float64(r.Rows())/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func readLines(b testing.TB, path string) ([][]byte, int64) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	var size int64
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, append([]byte(nil), l...))
			size += int64(len(l)) + 1
		}
	}
	return lines, size
}
