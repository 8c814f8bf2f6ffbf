package audit_test

import (
	"context"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/audit"
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
	b.Run("scan", func(b *testing.B) {
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
