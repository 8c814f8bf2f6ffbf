package jsontree

import (
	"bytes"
	"testing"
)

// BenchmarkParse parses every Synthea-100 resource per iteration with one
// reused Parser. MB/s is input throughput; divide ns/op by the resource
// count (logged) for the time per resource.
func BenchmarkParse(b *testing.B) {
	var p Parser
	benchParse(b, func(l []byte) error { _, err := p.Parse(l); return err })
}

// BenchmarkParseBorrow is BenchmarkParse with Borrow and ReuseText set,
// as package anonymize parses: no copy of the document is made, and the
// text memory of escaped strings is reused.
func BenchmarkParseBorrow(b *testing.B) {
	p := Parser{Borrow: true, ReuseText: true}
	benchParse(b, func(l []byte) error { _, err := p.Parse(l); return err })
}

// BenchmarkParseFresh is BenchmarkParse with the allocating Parse function.
func BenchmarkParseFresh(b *testing.B) {
	benchParse(b, func(l []byte) error { _, err := Parse(l); return err })
}

// benchParse runs parse on every Synthea-100 resource per iteration.
func benchParse(b *testing.B, parse func([]byte) error) {
	lines, _ := syntheaLines(b)
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	b.Logf("%d resources, %d bytes", len(lines), total)
	b.SetBytes(int64(total))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		for _, l := range lines {
			if err := parse(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPerResource(b, len(lines), total, cpu0)
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
	cpu0 := cpuTime()
	for b.Loop() {
		for _, n := range roots {
			buf = n.AppendJSON(buf[:0])
		}
	}
	reportPerResource(b, len(lines), total, cpu0)
}

// BenchmarkRoundTrip parses each Synthea-100 resource as package anonymize
// does (one Parser with Borrow and ReuseText) and writes it back at once,
// while its tree is still in the processor's caches; BenchmarkAppendJSON
// writes trees parsed long before, which is mostly waiting for memory.
func BenchmarkRoundTrip(b *testing.B) {
	lines, _ := syntheaLines(b)
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	p := Parser{Borrow: true, ReuseText: true}
	var buf []byte
	b.SetBytes(int64(total))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		for _, l := range lines {
			n, err := p.Parse(l)
			if err != nil {
				b.Fatal(err)
			}
			buf = n.AppendJSON(buf[:0])
		}
	}
	reportPerResource(b, len(lines), total, cpu0)
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
	cpu0 := cpuTime()
	for b.Loop() {
		for _, n := range roots {
			_ = n.Clone()
		}
	}
	reportPerResource(b, len(lines), total, cpu0)
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
	cpu0 := cpuTime()
	for b.Loop() {
		n, err := p.Parse(doc)
		if err != nil {
			b.Fatal(err)
		}
		out = n.AppendJSON(out[:0])
	}
	reportPerResource(b, 1, len(doc), cpu0)
}

// reportPerResource adds ns/resource and, because the machine running the
// benchmarks may be shared, the process's CPU time per iteration and the
// throughput computed from it (cpu-MB/s), which other processes disturb
// less than wall time. b.Loop has already excluded the setup from the
// timer; cpu0 is the CPU time read just before the loop.
func reportPerResource(b *testing.B, resources, bytes int, cpu0 int64) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(resources), "ns/resource")
	if cpu0 < 0 {
		return
	}
	cpu := float64(cpuTime()-cpu0) / float64(b.N)
	b.ReportMetric(cpu/float64(resources), "cpu-ns/resource")
	b.ReportMetric(float64(bytes)/cpu*1e3, "cpu-MB/s")
}

// BenchmarkParseIndented parses the first 5,000 Synthea-100 resources
// written with a two-space indent, as FHIR servers often serve them.
func BenchmarkParseIndented(b *testing.B) {
	lines, _ := syntheaLines(b)
	lines = lines[:min(len(lines), 5000)]
	docs := make([][]byte, len(lines))
	total := 0
	for i, l := range lines {
		n, err := Parse(l)
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = n.AppendIndent(nil, "", "  ")
		total += len(docs[i])
	}
	var p Parser
	b.SetBytes(int64(total))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		for _, d := range docs {
			if _, err := p.Parse(d); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPerResource(b, len(docs), total, cpu0)
}
