package parquet

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"fhirdeid/internal/testshared"
	"fhirdeid/views"
)

// BenchmarkObservationsParquet runs the observations view over synthea-100
// into a Parquet writer (parse, type, evaluate, encode, compress) and
// reports, besides wall time, the process CPU time per operation, which a
// loaded machine disturbs less.
//
//	go test -run XXX -bench ObservationsParquet ./views/parquet/
func BenchmarkObservationsParquet(b *testing.B) {
	path := testshared.Dir(b, "data", "synthea-100", "Observation.000.ndjson.gz")
	data, err := readGz(path)
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	v, err := views.Builtin("observations")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	start := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, _ := NewWriter(io.Discard, v, Options{})
		r := v.NewRunner()
		for _, l := range lines {
			if err := r.ProcessJSON(l, w.Write); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-start).Milliseconds())/float64(b.N), "cpu-ms/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func readGz(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}
