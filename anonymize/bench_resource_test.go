package anonymize_test

import (
	"bufio"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/testshared"
)

// firstResource returns the first line of synthea-100's TYPE.000.ndjson.gz.
func firstResource(b *testing.B, typ string) []byte {
	f, err := os.Open(filepath.Join(testshared.Dir(b, "data", "synthea-100"), typ+".000.ndjson.gz"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 64<<20)
	if !sc.Scan() {
		b.Fatalf("%s: no resource", typ)
	}
	return append([]byte(nil), sc.Bytes()...)
}

// BenchmarkResource de-identifies one typical Observation and one Patient
// of synthea-100 with Microsoft's r4-configuration-sample.json: the cost
// and the allocations per resource.
func BenchmarkResource(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(testshared.Dir(b, "conformance", "ms-anonymizer"), "FHIR", "src",
		"Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests", "r4-configuration-sample.json"))
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := anonymize.ParseConfig(data, anonymize.Options{FHIRVersion: "R4", Compiler: anonymize.FHIRPathCompilerWithWarnings()})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, typ := range []string{"Observation", "Patient"} {
		in := firstResource(b, typ)
		b.Run(typ, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var out []byte
			for b.Loop() {
				if out, _, err = eng.AppendAnonymizedJSON(bigCtx, out[:0], in, anonymize.FileContext{FileName: typ + ".ndjson"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResourceLongitudinal is BenchmarkResource with the built-in
// longitudinal profile (fixed keys, no first pass: scrubbing without the
// contextual layer): patient date shifting, the display keep rule, scrub.
func BenchmarkResourceLongitudinal(b *testing.B) {
	data, ok := defaultconfig.Profile(defaultconfig.LongitudinalProfile)
	if !ok {
		b.Fatal("no longitudinal profile")
	}
	cfg, err := anonymize.ParseConfig(data, anonymize.Options{FHIRVersion: "R4", Compiler: anonymize.FHIRPathCompiler(),
		Keys: anonymize.Keys{CryptoHashKey: "bench-hash", DateShiftKey: "bench-shift"}})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, typ := range []string{"Observation", "Patient"} {
		in := firstResource(b, typ)
		b.Run(typ, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var out []byte
			for b.Loop() {
				if out, _, err = eng.AppendAnonymizedJSON(bigCtx, out[:0], in, anonymize.FileContext{FileName: typ + ".ndjson"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
