package defaultconfig

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// maxPerFile bounds the resources read from each Synthea file, to keep the
// test short on a shared machine.
const maxPerFile = 300

// TestSafeHarborSynthea runs the default configuration over the Synthea
// sample and checks that no direct identifier of the patients survives:
// names, address lines, cities, postal codes beyond ZIP3, telecom values,
// identifier values, full dates.
func TestSafeHarborSynthea(t *testing.T) {
	leaks := checkSynthea(t, SafeHarbor(), maxPerFile, t.Errorf)
	if leaks != 0 {
		t.Errorf("%d leaks", leaks)
	}
}

// TestSyntheaLeakCheckDetects shows that the leak check finds identifiers
// when the configuration only removes names.
func TestSyntheaLeakCheckDetects(t *testing.T) {
	weak := []byte(`{"fhirPathRules":[{"path":"nodesByType('HumanName')","method":"redact"}]}`)
	if leaks := checkSynthea(t, weak, 20, func(string, ...any) {}); leaks == 0 {
		t.Error("the leak check finds nothing in a configuration that keeps addresses, dates and identifiers")
	}
}

// checkSynthea de-identifies up to max resources of each Synthea file with
// cfgData, reports every surviving identifier through report and returns
// their number.
func checkSynthea(t *testing.T, cfgData []byte, max int, report func(format string, args ...any)) int {
	t.Helper()
	dir := testshared.Dir(t, "data", "synthea-100")
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Synthea files: %v", err)
	}
	leaks := 0
	leak := func(format string, args ...any) {
		leaks++
		report(format, args...)
	}
	cfg, err := anonymize.ParseConfig(cfgData, anonymize.Options{Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := anonymize.WithNow(context.Background(), time.Date(2025, 9, 5, 0, 0, 0, 0, time.UTC))

	// Identifiers of the patients, collected from the input.
	phi := map[string]string{} // value -> what it is
	collect := func(res *jsontree.Node) {
		res.Walk(func(n *jsontree.Node) bool {
			if n.Kind != jsontree.Object {
				return true
			}
			switch {
			case n.Get("family") != nil || n.Get("given") != nil: // HumanName
				addStrings(phi, n.Get("family"), "name")
				addStrings(phi, n.Get("given"), "name")
			case n.Get("line") != nil || n.Get("city") != nil: // Address
				addStrings(phi, n.Get("line"), "address line")
				addStrings(phi, n.Get("city"), "city")
			case n.Get("system") != nil && n.Get("value") != nil && (n.Parent != nil && (n.Parent.Key() == "telecom" || n.Parent.Key() == "identifier")):
				addStrings(phi, n.Get("value"), n.Parent.Key())
			}
			return true
		})
	}
	fullDate := regexp.MustCompile(`^\d{4}-\d\d`)
	var resources, outputs int
	for _, f := range files {
		lines := readNDJSON(t, f, max)
		var outs [][]byte
		for i, line := range lines {
			in, err := jsontree.Parse(line)
			if err != nil {
				t.Fatalf("%s line %d: %v", filepath.Base(f), i+1, err)
			}
			collect(in)
			out, _, err := eng.AnonymizeJSON(ctx, line, anonymize.FileContext{FileName: filepath.Base(f)})
			if err != nil {
				t.Errorf("%s line %d: %v", filepath.Base(f), i+1, err)
				continue
			}
			resources++
			outs = append(outs, out)
		}
		for i, out := range outs {
			doc, err := jsontree.Parse(out)
			if err != nil {
				t.Fatalf("%s line %d: output is not JSON: %v", filepath.Base(f), i+1, err)
			}
			outputs++
			doc.Walk(func(n *jsontree.Node) bool {
				if n.Kind != jsontree.String {
					return true
				}
				if what, ok := phi[n.Value()]; ok && len(n.Value()) > 2 {
					leak("%s line %d: a %s survives at %s", filepath.Base(f), i+1, what, n.Path())
				}
				if fullDate.MatchString(n.Value()) {
					leak("%s line %d: a date more precise than the year survives at %s", filepath.Base(f), i+1, n.Path())
				}
				if n.Key() == "postalCode" && strings.Trim(n.Value()[min(3, len(n.Value())):], "0-") != "" {
					leak("%s line %d: a postal code beyond ZIP3 survives at %s", filepath.Base(f), i+1, n.Path())
				}
				return true
			})
		}
	}
	if len(phi) == 0 || resources == 0 {
		t.Fatalf("nothing checked: %d identifiers, %d resources", len(phi), resources)
	}
	t.Logf("%d resources de-identified, %d identifying values checked, %d leaks", outputs, len(phi), leaks)
	return leaks
}

func addStrings(dst map[string]string, n *jsontree.Node, what string) {
	if n == nil {
		return
	}
	switch n.Kind {
	case jsontree.String:
		dst[n.Value()] = what
	case jsontree.Array:
		for _, c := range n.Children() {
			addStrings(dst, c, what)
		}
	}
}

func readNDJSON(t *testing.T, path string, max int) [][]byte { return readNDJSONB(t, path, max) }

func readNDJSONB(t testing.TB, path string, max int) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out [][]byte
	for sc.Scan() && len(out) < max {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkSafeHarborSynthea de-identifies Synthea resources (the first
// maxPerFile of each type) with the default configuration.
func BenchmarkSafeHarborSynthea(b *testing.B) {
	dir := testshared.Dir(b, "data", "synthea-100")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	var lines [][]byte
	var size int64
	for _, f := range files {
		for _, l := range readNDJSONB(b, f, maxPerFile) {
			lines = append(lines, l)
			size += int64(len(l))
		}
	}
	cfg, err := anonymize.ParseConfig(SafeHarbor(), anonymize.Options{Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(size / int64(len(lines)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := eng.AnonymizeJSON(ctx, lines[i%len(lines)], anonymize.FileContext{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
