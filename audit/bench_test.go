package audit_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/audit"
	"fhirdeid/jsontree"
)

// BenchmarkSynthea measures, on the 38,472 resources of synthea-100, what
// the audit adds to de-identification, one goroutine each, in the same run:
// "deidentify" is the engine with the built-in configuration, "collect" the
// collection of the raw resources' identifiers, "scan" the scan of the
// de-identified output. One op is the whole data set.
func BenchmarkSynthea(b *testing.B) {
	files := readSynthea(b)
	conf, err := anonymize.ParseConfig(defaultconfig.SafeHarbor(), anonymize.Options{Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := anonymize.NewEngine(conf, anonymize.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := anonymize.WithNow(context.Background(), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	var outs [][]byte
	var size int64
	c := audit.NewCollector()
	for _, f := range files {
		for _, l := range f.lines {
			out, _, err := eng.AnonymizeJSON(ctx, l, anonymize.FileContext{FileName: f.name + ".ndjson"})
			if err != nil {
				b.Fatal(err)
			}
			outs = append(outs, out)
			size += int64(len(l))
			_ = c.Collect(l)
		}
	}
	b.Run("deidentify", func(b *testing.B) {
		defer reportCPU(b, cpuTime())
		b.SetBytes(size)
		b.ReportAllocs()
		var out []byte
		for b.Loop() {
			for _, f := range files {
				for _, l := range f.lines {
					out, _, _ = eng.AppendAnonymizedJSON(ctx, out[:0], l, anonymize.FileContext{FileName: f.name + ".ndjson"})
				}
			}
		}
	})
	b.Run("collect", func(b *testing.B) {
		defer reportCPU(b, cpuTime())
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			c := audit.NewCollector()
			for _, f := range files {
				for _, l := range f.lines {
					_ = c.Collect(l)
				}
			}
		}
	})
	// The pipeline collects and scans the engine's trees (see
	// pipeline/assure.go): "collect-tree" and "scan-tree" are those, the
	// trees parsed beforehand (the engine parses them anyway).
	var rawTrees, outTrees []*jsontree.Node
	for _, f := range files {
		for _, l := range f.lines {
			n, err := jsontree.Parse(l)
			if err != nil {
				b.Fatal(err)
			}
			rawTrees = append(rawTrees, n)
		}
	}
	for _, o := range outs {
		n, err := jsontree.Parse(o)
		if err != nil {
			b.Fatal(err)
		}
		outTrees = append(outTrees, n)
	}
	b.Run("collect-tree", func(b *testing.B) {
		defer reportCPU(b, cpuTime())
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			c := audit.NewCollector()
			for _, n := range rawTrees {
				c.CollectTree(n)
			}
		}
	})
	b.Run("scan-tree", func(b *testing.B) {
		defer reportCPU(b, cpuTime())
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			fs := c.ScanFile("x", 1)
			for i, n := range outTrees {
				fs.ScanTree(0, int64(i), n)
			}
			fs.Seal()
		}
	})
	b.Run("scan", func(b *testing.B) {
		defer reportCPU(b, cpuTime())
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			s := c.Scanner()
			for i, o := range outs {
				s.Scan("x", int64(i), o)
			}
		}
	})
}

// cpuTime returns the process's user and system CPU time: the machine the
// benchmarks run on is shared, and wall time per op says little there.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per op since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
