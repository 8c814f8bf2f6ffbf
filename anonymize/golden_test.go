package anonymize_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden-synthea100.txt from the current engine")

const goldenFile = "testdata/golden-synthea100.txt"

// goldenConfigs are the configurations of the golden-output test: Microsoft's
// sample configuration (its keys are in the file) and the built-in profiles
// (safe-harbor, the default, and longitudinal), whose empty keys are
// generated from a fixed seed.
func goldenConfigs(t *testing.T) map[string]*anonymize.Engine {
	t.Helper()
	sample, err := os.ReadFile(filepath.Join(testshared.Dir(t, "conformance", "ms-anonymizer"), "FHIR", "src",
		"Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests", "r4-configuration-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	engines := map[string]*anonymize.Engine{}
	for name, data := range map[string][]byte{"r4-configuration-sample": sample, "safe-harbor": defaultconfig.SafeHarbor(),
		"longitudinal": defaultconfig.Longitudinal()} {
		cfg, err := anonymize.ParseConfig(data, anonymize.Options{FHIRVersion: "R4",
			Compiler: anonymize.FHIRPathCompilerWithWarnings(), Rand: rand.NewChaCha8([32]byte{'g', 'o', 'l', 'd', 'e', 'n'})})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{Rand: rand.NewChaCha8([32]byte{'i', 'v'})})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		engines[name] = eng
	}
	return engines
}

// TestGoldenSynthea100 de-identifies every resource of synthea-100 with
// fixed keys and a fixed "today", and compares the SHA-256 of each output
// file (the output lines joined by newlines, an error line for a resource
// that fails) with the digests recorded in testdata: any change of the
// engine's output on real data shows up here. The input files' digests are
// recorded too, so that a changed data set is reported as such.
//
// After an intended change of the output, rewrite the digests with
//
//	go test ./anonymize -run TestGoldenSynthea100 -update-golden
func TestGoldenSynthea100(t *testing.T) {
	if testing.Short() {
		t.Skip("de-identifies all of synthea-100 three times (the plain test run covers it)")
	}
	dir := testshared.Dir(t, "data", "synthea-100")
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no synthea-100 files: %v", err)
	}
	sort.Strings(files)
	engines := goldenConfigs(t)
	ctx := anonymize.WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))

	type digest struct{ in, out string }
	got := map[string]digest{} // "config file"
	for _, f := range files {
		lines, inSum := readGzipLines(t, f)
		for name, eng := range engines {
			h := sha256.New()
			var out []byte
			for i, l := range lines {
				var err error
				out, _, err = eng.AppendAnonymizedJSON(ctx, out[:0], l, anonymize.FileContext{FileName: filepath.Base(f)})
				if err != nil {
					fmt.Fprintf(h, "ERROR line %d: %v\n", i+1, err)
					continue
				}
				h.Write(out)
				h.Write([]byte{'\n'})
				if i < 100 {
					// The tree API (fresh memory, no reused arenas) gives
					// the same output.
					root, err := jsontree.Parse(l)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := eng.Anonymize(ctx, root, anonymize.FileContext{FileName: filepath.Base(f)}); err != nil {
						t.Fatalf("%s line %d: Anonymize: %v", filepath.Base(f), i+1, err)
					}
					if got := root.AppendJSON(nil); !bytes.Equal(got, out) {
						t.Errorf("%s %s line %d: Anonymize and AppendAnonymizedJSON differ", name, filepath.Base(f), i+1)
					}
				}
			}
			got[name+" "+filepath.Base(f)] = digest{inSum, hex.EncodeToString(h.Sum(nil))}
		}
	}
	if *updateGolden {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var sb strings.Builder
		sb.WriteString("# configuration, synthea-100 file, SHA-256 of the input (gunzipped), SHA-256 of the output (see golden_test.go)\n")
		for _, k := range keys {
			fmt.Fprintf(&sb, "%s %s %s\n", k, got[k].in, got[k].out)
		}
		if err := os.WriteFile(goldenFile, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	raw, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]digest{}
	for i, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Fatalf("%s:%d: want 4 fields", goldenFile, i+1)
		}
		want[f[0]+" "+f[1]] = digest{f[2], f[3]}
	}
	if len(want) != len(got) {
		t.Errorf("%d digests recorded, %d computed (has synthea-100 changed?)", len(want), len(got))
	}
	for k, g := range got {
		w, ok := want[k]
		switch {
		case !ok:
			t.Errorf("%s: no recorded digest", k)
		case w.in != g.in:
			t.Errorf("%s: the input file differs from the one the digests were recorded for", k)
		case w.out != g.out:
			t.Errorf("%s: output differs from the recorded one", k)
		}
	}
}

func readGzipLines(t *testing.T, path string) ([][]byte, string) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	sc := bufio.NewScanner(io.TeeReader(zr, h))
	sc.Buffer(nil, 64<<20)
	var lines [][]byte
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return lines, hex.EncodeToString(h.Sum(nil))
}
