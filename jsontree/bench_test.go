package jsontree

import (
	"bytes"
	"testing"
)

// BenchmarkParse parses every Synthea-100 resource per iteration with one
// reused Parser. MB/s is input throughput; divide ns/op by the resource
// count (logged) for the time per resource.
func BenchmarkParse(b *testing.B) {
	lines, _ := syntheaLines(b)
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	b.Logf("%d resources, %d bytes", len(lines), total)
	var p Parser
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, l := range lines {
			if _, err := p.Parse(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(lines)), "ns/resource")
}

// BenchmarkParseFresh is BenchmarkParse with the allocating Parse function.
func BenchmarkParseFresh(b *testing.B) {
	lines, _ := syntheaLines(b)
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, l := range lines {
			if _, err := Parse(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(lines)), "ns/resource")
}

// BenchmarkAppendJSON serializes every Synthea-100 resource per iteration
// into a reused buffer. MB/s is output throughput.
func BenchmarkAppendJSON(b *testing.B) {
	lines, _ := syntheaLines(b)
	roots := make([]*Node, len(lines))
	total := 0
	for i, l := range lines {
		n, err := Parse(l)
		if err != nil {
			b.Fatal(err)
		}
		roots[i] = n
		total += len(l)
	}
	var buf []byte
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, n := range roots {
			buf = n.AppendJSON(buf[:0])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(lines)), "ns/resource")
}

// BenchmarkClone deep-copies every Synthea-100 resource per iteration.
func BenchmarkClone(b *testing.B) {
	lines, _ := syntheaLines(b)
	roots := make([]*Node, len(lines))
	total := 0
	for i, l := range lines {
		n, err := Parse(l)
		if err != nil {
			b.Fatal(err)
		}
		roots[i] = n
		total += len(l)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, n := range roots {
			_ = n.Clone()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(lines)), "ns/resource")
}

// BenchmarkLongString parses and writes a document holding one 1 MiB
// ASCII string, measuring the string scanning loops.
func BenchmarkLongString(b *testing.B) {
	doc := append([]byte(`{"s":"`), bytes.Repeat([]byte("abcdefgh"), 1<<17)...)
	doc = append(doc, `"}`...)
	var p Parser
	var out []byte
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		n, err := p.Parse(doc)
		if err != nil {
			b.Fatal(err)
		}
		out = n.AppendJSON(out[:0])
	}
}
