package risk

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/internal/testshared"
)

// peakHeap samples the heap in use (live and not yet collected objects)
// every 100 µs while fn runs and returns its highest value above the heap
// in use before fn, after a collection.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	var peak uint64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	peak = max(peak, read())
	if peak < base {
		return 0
	}
	return peak - base
}

// BenchmarkRiskMemory measures the heap of the risk analysis itself —
// what `fhirdeid risk` adds to the binary's baseline — on the Patient file
// of synthea-1000-clone (streamed from its gzip file, as the command does),
// and on a generated stream of 200,000 patients in 20,000 classes: peak
// heap above the heap before the analysis ("peak-heap-B": live objects and
// garbage not yet collected), and for the generated stream the live heap
// with the analyzer's 20,000 classes ("live-heap-B", the test binary's own
// included).
func BenchmarkRiskMemory(b *testing.B) {
	dir := testshared.Dir(b, "data", "synthea-1000-clone")
	clone, err := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson.gz"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("synthea-1000-clone", func(b *testing.B) {
		var peak uint64
		for b.Loop() {
			peak = max(peak, peakHeap(func() {
				zr, err := gzip.NewReader(bytes.NewReader(clone))
				if err != nil {
					b.Fatal(err)
				}
				a, _ := New(nil)
				if err := a.AddNDJSON(zr, 0); err != nil {
					b.Fatal(err)
				}
				if r := a.Report(0, nil); r.Records != 1000 {
					b.Fatalf("%d patients", r.Records)
				}
			}))
		}
		b.ReportMetric(float64(peak), "peak-heap-B")
	})
	b.Run("200k-patients-20k-classes", func(b *testing.B) {
		var peak, live uint64
		for b.Loop() {
			peak = max(peak, peakHeap(func() {
				pr, pw := io.Pipe()
				go func() {
					var buf bytes.Buffer
					for i := range 200_000 {
						c := i % 20000
						fmt.Fprintf(&buf, `{"resourceType":"Patient","birthDate":"%d","gender":"%s","address":[{"postalCode":"%05d"}]}`+"\n",
							1900+c%100, []string{"female", "male"}[c/100%2], c/200*1000)
						if buf.Len() > 64<<10 {
							pw.Write(buf.Bytes())
							buf.Reset()
						}
					}
					pw.Write(buf.Bytes())
					pw.Close()
				}()
				a, _ := New(nil)
				if err := a.AddNDJSON(pr, 0); err != nil {
					b.Fatal(err)
				}
				if r := a.Report(0, nil); r.Records != 200_000 || r.Classes != 20000 {
					b.Fatalf("%d patients in %d classes", r.Records, r.Classes)
				}
				runtime.GC()
				live = max(live, peakLive())
				runtime.KeepAlive(a)
			}))
		}
		b.ReportMetric(float64(peak), "peak-heap-B")
		b.ReportMetric(float64(live), "live-heap-B")
	})
}

// peakLive returns the heap in use (after a collection: the live heap).
func peakLive() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
