package anonymize

import (
	"path/filepath"
	"testing"

	"fhirdeid/internal/testshared"
)

// firstPassLines reads the lines of the first-pass files of a Synthea
// export folder (Patient, Practitioner, Organization, MedicationRequest,
// Immunization, ...), skipping the test when it is absent.
func firstPassLines(tb testing.TB, elem ...string) (lines [][]byte, size int64) {
	tb.Helper()
	dir := testshared.Dir(tb, elem...)
	for _, typ := range FirstPassTypes {
		files, _ := filepath.Glob(filepath.Join(dir, typ+".*ndjson.gz"))
		for _, f := range files {
			for _, l := range readGz(tb, f) {
				lines = append(lines, l)
				size += int64(len(l)) + 1
			}
		}
	}
	if len(lines) == 0 {
		tb.Skipf("no first-pass files in %s", dir)
	}
	return lines, size
}

// BenchmarkIdentifierCollectorSynthea1000 runs the collector over the
// first-pass resources of synthea-1000-clone (1,000 Patients, 203
// Practitioners and Organizations, 23,860 MedicationRequests, 12,870
// Immunizations; 26 MB) on one goroutine, from memory: the first pass's
// CPU cost without reading and gunzipping the files.
func BenchmarkIdentifierCollectorSynthea1000(b *testing.B) {
	lines, size := firstPassLines(b, "data", "synthea-1000-clone")
	e := newLongitudinalEngine(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		col := e.NewIdentifierCollector()
		for _, l := range lines {
			if err := col.Add(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

func newLongitudinalEngine(tb testing.TB) *Engine {
	tb.Helper()
	c, err := ParseConfig(longitudinalScrubConfig(tb), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		tb.Fatal(err)
	}
	e, err := NewEngine(c, EngineOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}
