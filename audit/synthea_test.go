package audit_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/audit"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

type syntheaFile struct {
	name  string // Patient.000
	lines [][]byte
}

func readSynthea(t testing.TB) []syntheaFile {
	t.Helper()
	if testing.Short() {
		t.Skip("the synthea-100 audit de-identifies 38,472 resources: not with -short")
	}
	dir := testshared.Dir(t, "data", "synthea-100")
	paths, err := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no Synthea files: %v", err)
	}
	var files []syntheaFile
	for _, p := range paths {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		f := syntheaFile{name: strings.TrimSuffix(filepath.Base(p), ".ndjson.gz")}
		for sc.Scan() {
			f.lines = append(f.lines, append([]byte(nil), sc.Bytes()...))
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		files = append(files, f)
	}
	return files
}

// auditSynthea de-identifies every resource of synthea-100 with cfg,
// collecting identifiers from the raw resources into each collector, then
// scans the output for each and returns the reports and the leaks.
func auditSynthea(t *testing.T, files []syntheaFile, cfg []byte, cs ...*audit.Collector) ([]audit.Report, [][]audit.Leak) {
	t.Helper()
	conf, err := anonymize.ParseConfig(cfg, anonymize.Options{Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := anonymize.NewEngine(conf, anonymize.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := anonymize.WithNow(context.Background(), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	outs := make([][][]byte, len(files))
	for i, f := range files {
		for _, line := range f.lines {
			for _, c := range cs {
				if err := c.Collect(line); err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
			}
			out, _, err := eng.AnonymizeJSON(ctx, line, anonymize.FileContext{FileName: f.name + ".ndjson"})
			if err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			outs[i] = append(outs[i], out)
		}
	}
	var reps []audit.Report
	var leaks [][]audit.Leak
	for _, c := range cs {
		s := c.Scanner()
		s.Keep = 1 << 20
		for i, f := range files {
			for j, out := range outs[i] {
				s.Scan(f.name, int64(j+1), out)
			}
		}
		rep := audit.Summary(c, s)
		if rep.IdentifiersCollected < 1000 || rep.ResourcesScanned != 38472 {
			t.Fatalf("audit saw %d identifiers, %d resources", rep.IdentifiersCollected, rep.ResourcesScanned)
		}
		reps, leaks = append(reps, rep), append(leaks, s.Leaks())
	}
	return reps, leaks
}

// TestSyntheaDefaultConfig: the built-in Safe Harbor configuration leaves no
// identifier in synthea-100, so every match would be a false positive. The
// matching rules bring them to 0; without the rules (every value collected,
// weak words counted alone) the test logs how many there would be.
func TestSyntheaDefaultConfig(t *testing.T) {
	files := readSynthea(t)
	reps, _ := auditSynthea(t, files, defaultconfig.SafeHarbor(), audit.NewCollector(), audit.NewNaiveCollector())
	rep, naive := reps[0], reps[1]
	j, _ := json.Marshal(rep.ByPath)
	t.Logf("default configuration: %d identifiers collected, %d strings scanned (%d attachments), %d leaks %s",
		rep.IdentifiersCollected, rep.StringsScanned, rep.AttachmentsDecoded, rep.Leaks, j)
	if rep.Leaks != 0 {
		t.Errorf("%d false positives: %s", rep.Leaks, j)
	}
	j, _ = json.Marshal(naive.ByKind)
	t.Logf("without the matching rules: %d false positives in %d resources %s", naive.Leaks, naive.ResourcesWithLeaks, j)
	if naive.Leaks == 0 {
		t.Error("the naive matcher finds nothing either: the test does not show what the rules do")
	}
}

// TestSyntheaKeptNames keeps the names of the female patients only: the
// audit must find exactly those patients, at Patient.name.
func TestSyntheaKeptNames(t *testing.T) {
	files := readSynthea(t)
	var cfg map[string]any
	if err := json.Unmarshal(defaultconfig.SafeHarbor(), &cfg); err != nil {
		t.Fatal(err)
	}
	rules := cfg["fhirPathRules"].([]any)
	keep := map[string]any{"path": "Patient.where(gender = 'female').name", "method": "keep"}
	cfg["fhirPathRules"] = append([]any{keep}, rules...)
	data, _ := json.Marshal(cfg)

	want := map[int64]bool{}
	for _, f := range files {
		if f.name != "Patient.000" {
			continue
		}
		for i, line := range f.lines {
			var p struct{ Gender string }
			if err := json.Unmarshal(line, &p); err != nil {
				t.Fatal(err)
			}
			if p.Gender == "female" {
				want[int64(i+1)] = true
			}
		}
	}
	if len(want) == 0 || len(want) == 100 {
		t.Fatalf("%d female patients: the test needs some of each", len(want))
	}
	reps, all := auditSynthea(t, files, data, audit.NewCollector())
	rep, leaks := reps[0], all[0]
	got := map[int64]bool{}
	paths := map[string]int{}
	for _, l := range leaks {
		if l.File != "Patient.000" {
			t.Errorf("leak outside the patients: %+v", l)
			continue
		}
		got[l.Line] = true
		paths[l.Path]++
	}
	var missing, extra []int64
	for l := range want {
		if !got[l] {
			missing = append(missing, l)
		}
	}
	for l := range got {
		if !want[l] {
			extra = append(extra, l)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("patients with kept names not found (lines): %v; patients found whose names were removed: %v", missing, extra)
	}
	for p := range paths {
		if p != "Patient.name.given" && p != "Patient.name.family" {
			t.Errorf("leak at %s", p)
		}
	}
	if paths["Patient.name.given"] < len(want) || paths["Patient.name.family"] < len(want) {
		t.Errorf("paths %v for %d patients", paths, len(want))
	}
	t.Logf("%d female patients with kept names found, %d leaks: %s", len(got), rep.Leaks, fmt.Sprint(paths))
}

// TestSyntheaTreesAsText: collecting synthea-100 from parsed trees (as the
// pipeline does) gives the identifiers collecting from the JSON text gives:
// scanning the raw resources themselves finds the same leaks, at the same
// paths, with either collector.
func TestSyntheaTreesAsText(t *testing.T) {
	files := readSynthea(t)
	text, trees := audit.NewCollector(), audit.NewCollector()
	var p jsontree.Parser
	for _, f := range files {
		for _, l := range f.lines {
			_ = text.Collect(l)
			root, err := p.Parse(l)
			if err != nil {
				t.Fatal(err)
			}
			trees.CollectParsed(l, root)
		}
	}
	if a, b := text.Identifiers(), trees.Identifiers(); a != b || a < 1000 {
		t.Fatalf("%d identifiers from the text, %d from the trees", a, b)
	}
	var reps []audit.Report
	for _, c := range []*audit.Collector{text, trees} {
		s := c.Scanner()
		for _, f := range files {
			for i, l := range f.lines {
				s.Scan(f.name, int64(i+1), l)
			}
		}
		reps = append(reps, audit.Summary(c, s))
	}
	a, b := reps[0], reps[1]
	if a.Leaks == 0 || a.Leaks != b.Leaks || a.ResourcesWithLeaks != b.ResourcesWithLeaks || fmt.Sprint(a.ByPath) != fmt.Sprint(b.ByPath) {
		t.Errorf("the raw data scanned against the text's identifiers: %d leaks %v\nagainst the trees': %d leaks %v", a.Leaks, a.ByPath, b.Leaks, b.ByPath)
	}
}
