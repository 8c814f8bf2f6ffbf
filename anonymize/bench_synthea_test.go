package anonymize_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/testshared"
)

func syntheaLines(b *testing.B) ([][]byte, int64) {
	dir := testshared.Dir(b, "data", "synthea-100")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	var lines [][]byte
	var size int64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
			size += int64(len(sc.Bytes()))
		}
		fh.Close()
	}
	return lines, size
}

// BenchmarkSampleConfigSynthea de-identifies all 38,472 resources of
// synthea-100 per iteration with Microsoft's r4-configuration-sample.json,
// on one goroutine, reusing the output buffer.
func BenchmarkSampleConfigSynthea(b *testing.B) {
	cfgPath := testshared.Dir(b, "conformance", "ms-anonymizer", "FHIR", "src",
		"Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests", "r4-configuration-sample.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	benchConfig(b, data)
}

// BenchmarkEmptyConfigSynthea is the same with no rules: parse, type and
// serialize only.
func BenchmarkEmptyConfigSynthea(b *testing.B) {
	benchConfig(b, []byte(`{"fhirVersion":"R4","fhirPathRules":[],"parameters":{"cryptoHashKey":"k","dateShiftKey":"k"}}`))
}

// BenchmarkLongitudinalSynthea is the same with the built-in longitudinal
// profile (fixed keys; scrubbing without a first pass's identifiers).
func BenchmarkLongitudinalSynthea(b *testing.B) {
	data, ok := defaultconfig.Profile(defaultconfig.LongitudinalProfile)
	if !ok {
		b.Fatal("no longitudinal profile")
	}
	benchConfigKeys(b, data, anonymize.Keys{CryptoHashKey: "bench-hash", DateShiftKey: "bench-shift"})
}

func benchConfig(b *testing.B, data []byte) { benchConfigKeys(b, data, anonymize.Keys{}) }

func benchConfigKeys(b *testing.B, data []byte, keys anonymize.Keys) {
	lines, size := syntheaLines(b)
	cfg, err := anonymize.ParseConfig(data, anonymize.Options{FHIRVersion: "R4", Compiler: anonymize.FHIRPathCompilerWithWarnings(), Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := anonymize.WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	var out []byte
	b.SetBytes(size)
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		for _, l := range lines {
			out, _, err = eng.AppendAnonymizedJSON(ctx, out[:0], l, anonymize.FileContext{FileName: "x.ndjson"})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
	// CPU time is steadier than wall time on a shared machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(len(lines))/float64(b.N), "cpu-ns/resource")
}
