package scrub

import "testing"

// BenchmarkScrubShort scrubs a short display string, the common case in
// structured data: the per-call cost.
func BenchmarkScrubShort(b *testing.B) {
	loadVocab()
	s := "Encounter for check up (procedure)"
	b.ReportAllocs()
	for b.Loop() {
		Scrub(s, Options{})
	}
}
