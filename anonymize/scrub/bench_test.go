package scrub

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user and system CPU time: on a loaded
// machine the wall-clock MB/s understates what one core does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, bytes int, start time.Duration) {
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(bytes)*float64(b.N)/1e6/d.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkScrub measures scrubbing throughput (MB/s of note text, one
// goroutine) over the PhysioNet development notes, one note per call.
func BenchmarkScrub(b *testing.B) {
	notes := loadDeidCorpus(b)
	total := 0
	for _, n := range notes {
		total += len(n.text)
	}
	loadVocab()
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for b.Loop() {
		for _, n := range notes {
			Scrub(n.text, Options{})
		}
	}
	reportCPU(b, total, start)
}

// BenchmarkScrubContextual adds a patient's identifier set and an export's
// safe words (drug names), as the engine passes them.
func BenchmarkScrubContextual(b *testing.B) {
	notes := loadDeidCorpus(b)
	ids := NewIdentifiers()
	ids.AddName("Ferdinand Halfpenny-Smith")
	ids.AddAddress("1234 North Oak Street")
	ids.AddAddress("Springfield")
	ids.AddPhone("+1 (410) 555-1234")
	ids.AddIdentifier("MRN-00012345")
	safe := NewWords()
	for _, d := range []string{"Aggrestat 12.5 MG/250ML Injection", "Fluticasone propionate 0.25 MG/ACTUAT Dry Powder Inhaler",
		"Ambisome 50 MG Injection", "Trazodone Hydrochloride 50 MG Oral Tablet", "Propofol 10 MG/ML Injectable Suspension"} {
		safe.AddText(d)
	}
	total := 0
	for _, n := range notes {
		total += len(n.text)
	}
	loadVocab()
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for b.Loop() {
		for _, n := range notes {
			Scrub(n.text, Options{Identifiers: []*Identifiers{ids}, Safe: safe})
		}
	}
	reportCPU(b, total, start)
}
