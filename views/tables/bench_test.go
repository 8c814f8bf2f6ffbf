package tables

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/testshared"
	"fhirdeid/storage"
	"fhirdeid/views"
)

// BenchmarkSink is the views' share of a pipeline run: the resources of
// synthea-100 of each built-in view's type, de-identified with the Safe
// Harbor configuration beforehand, go through a Sink of every built-in
// view (parse, type, evaluate, Parquet to a file:// store), as the
// pipeline hands them over. It reports resources/s, the input MB/s and
// the CPU time per operation (cpu-ms/op).
//
//	go test -run XXX -bench Sink -benchmem ./views/tables/
func BenchmarkSink(b *testing.B) {
	vs, err := views.Builtins()
	if err != nil {
		b.Fatal(err)
	}
	files := deidentified(b, vs)
	ctx := context.Background()
	store, err := storage.Open(ctx, "file://"+filepath.ToSlash(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var size, n int64
	for _, lines := range files {
		for _, l := range lines {
			size += int64(len(l)) + 1
			n++
		}
	}
	s := New(store, vs, Options{})
	b.SetBytes(size)
	b.ReportAllocs()
	start := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seq := 0
		for typ, lines := range files {
			f, err := s.File(ctx, "run", typ, seq, 1)
			if err != nil || f == nil {
				b.Fatal(typ, err)
			}
			for _, l := range lines {
				if err := f.Resource(0, l); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := f.Close(ctx); err != nil {
				b.Fatal(err)
			}
			seq++
		}
	}
	b.ReportMetric(float64(n*int64(b.N))/b.Elapsed().Seconds(), "resources/s")
	b.ReportMetric(float64(cpuTime()-start)/1e6/float64(b.N), "cpu-ms/op")
}

// cpuTime is the process's CPU time (user and system), which a loaded
// machine disturbs less than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// deidentified reads the synthea-100 file of each view's resource type and
// de-identifies its resources with the Safe Harbor configuration.
func deidentified(b *testing.B, vs []*views.View) map[string][][]byte {
	dir := testshared.Dir(b, "data", "synthea-100")
	cfg, err := anonymize.ParseConfig(defaultconfig.SafeHarbor(), anonymize.Options{Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := anonymize.WithNow(context.Background(), time.Date(2025, 9, 5, 0, 0, 0, 0, time.UTC))
	out := map[string][][]byte{}
	for _, v := range vs {
		if _, ok := out[v.Resource]; ok {
			continue
		}
		f, err := os.Open(filepath.Join(dir, v.Resource+".000.ndjson.gz"))
		if err != nil {
			b.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		var lines [][]byte
		for sc.Scan() {
			l := bytes.TrimSpace(sc.Bytes())
			if len(l) == 0 {
				continue
			}
			d, _, err := eng.AnonymizeJSON(ctx, l, anonymize.FileContext{FileName: v.Resource + ".000.ndjson"})
			if err != nil {
				b.Fatal(err)
			}
			lines = append(lines, d)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			b.Fatal(err)
		}
		out[v.Resource] = lines
	}
	return out
}
