package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/internal/synth"
)

// writeNDJSON writes lines as an NDJSON file, gzip-compressed when the name
// ends in .gz.
func writeNDJSON(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	data := b.Bytes()
	if strings.HasSuffix(path, ".gz") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readNDJSON(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(zr); err != nil {
			t.Fatal(err)
		}
		data = b.Bytes()
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func TestAnonymizeFolder(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 40})
	in := t.TempDir()
	out := filepath.Join(t.TempDir(), "out")
	writeNDJSON(t, filepath.Join(in, "Patient.000.ndjson.gz"), pop.Resources["Patient"])
	writeNDJSON(t, filepath.Join(in, "Observation.000.ndjson"), pop.Resources["Observation"])
	os.WriteFile(filepath.Join(in, "single.json"), pop.Resources["Practitioner"][0], 0o644)

	code, stdout, stderr := runExportCmd(t, nil, "anonymize", "-i", in, "-o", out, "-b", "--today", "2026-11-28")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	pats := readNDJSON(t, filepath.Join(out, "Patient.000.ndjson.gz"))
	obs := readNDJSON(t, filepath.Join(out, "Observation.000.ndjson"))
	if len(pats) != 40 || len(obs) != len(pop.Resources["Observation"]) {
		t.Fatalf("%d patients and %d observations out", len(pats), len(obs))
	}
	if _, err := os.Stat(filepath.Join(out, "single.json")); err == nil {
		t.Error("-b processed a .json file")
	}
	// Order is kept: the n-th output line comes from the n-th input line
	// (the engine hashes ids; compare resource types and counts of fields
	// instead of values).
	lc := synth.NewLeakChecker(pop.Identifiers)
	for _, l := range append(pats, obs...) {
		lc.CheckLine([]byte(l))
	}
	if lc.Found() != 0 {
		t.Errorf("%d identifiers survived the default configuration", lc.Found())
	}
	if !strings.Contains(stderr, "Patient") || !strings.Contains(stderr, "resources/s") {
		t.Errorf("summary missing: %s", stderr)
	}
	// Without -b the JSON file is processed.
	code, _, stderr = runExportCmd(t, nil, "anonymize", "-i", in, "-o", out)
	if code != 0 {
		t.Fatalf("JSON mode: exit %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "single.json")); err != nil {
		t.Error("JSON mode did not write single.json")
	}
	// -s skips existing outputs.
	code, _, stderr = runExportCmd(t, nil, "anonymize", "-i", in, "-o", out, "-b", "-s", "-v")
	if code != 0 || !strings.Contains(stderr, "skip") {
		t.Errorf("-s: exit %d %s", code, stderr)
	}
}

func TestAnonymizeStdin(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 5})
	var in bytes.Buffer
	for _, l := range pop.Resources["Patient"] {
		in.Write(l)
		in.WriteByte('\n')
	}
	var out, errb bytes.Buffer
	e := &env{stdin: &in, stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	if code := run(t.Context(), e, []string{"anonymize", "-"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], `"resourceType":"Patient"`) {
		t.Errorf("stdout: %.200s", out.String())
	}
}

func TestAnonymizeBadInput(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 3})
	in := t.TempDir()
	out := t.TempDir()
	secret := "Bartholomew-SECRET-NAME"
	lines := append([][]byte{}, pop.Resources["Patient"]...)
	lines = append(lines, []byte(`{"resourceType":"Patient","name":[{"family":"`+secret+`"}],"nmae":"`+secret+`"}`))
	lines = append(lines, pop.Resources["Patient"][0])
	writeNDJSON(t, filepath.Join(in, "Patient.ndjson"), lines)
	code, stdout, stderr := runExportCmd(t, nil, "anonymize", "-i", in, "-o", out, "-b")
	if code == 0 {
		t.Fatal("a resource with an unknown element was accepted")
	}
	if !strings.Contains(stderr, filepath.Join(in, "Patient.ndjson")+":4:") || !strings.Contains(stderr, "nmae") {
		t.Errorf("error does not say file:line and element: %s", stderr)
	}
	if strings.Contains(stderr+stdout, secret) {
		t.Errorf("error quotes a resource value: %s", stderr)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 0 {
		t.Errorf("partial output left behind: %v", entries)
	}
	// Malformed JSON.
	writeNDJSON(t, filepath.Join(in, "Patient.ndjson"), [][]byte{pop.Resources["Patient"][0], []byte(`{"resourceType":"Patient","id":"x",`)})
	code, _, stderr = runExportCmd(t, nil, "anonymize", "-i", in, "-o", out, "-b")
	if code == 0 || !strings.Contains(stderr, "Patient.ndjson:2:") {
		t.Errorf("malformed line: exit %d %s", code, stderr)
	}
}

func TestAnonymizeProfiles(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 5})
	in, dir := t.TempDir(), t.TempDir()
	writeNDJSON(t, filepath.Join(in, "Patient.000.ndjson"), pop.Resources["Patient"])
	cpu, mem := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "mem.pprof")
	code, stdout, stderr := runExportCmd(t, nil, "anonymize", "-i", in, "-o", filepath.Join(dir, "out"), "-b",
		"--cpuprofile", cpu, "--memprofile", mem)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	for _, p := range []string{cpu, mem} {
		data, err := os.ReadFile(p)
		// A pprof profile is a gzip-compressed protocol buffer.
		if err != nil || len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
			t.Errorf("%s: not a profile (%d bytes, %v)", p, len(data), err)
		}
	}
	code, _, _ = runExportCmd(t, nil, "anonymize", "-i", in, "-o", filepath.Join(dir, "out2"), "-b",
		"--cpuprofile", filepath.Join(dir, "missing", "cpu.pprof"))
	if code == 0 {
		t.Error("an unwritable --cpuprofile file is not an error")
	}
}

// -on-invalid skip drops the lines that cannot be parsed or typed, lists
// them by file, line and reason (never content), writes the rest and exits 3.
func TestAnonymizeOnInvalidSkip(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 3})
	in := t.TempDir()
	out := t.TempDir()
	secret := "Bartholomew-SECRET-NAME"
	lines := append([][]byte{}, pop.Resources["Patient"]...)
	lines = append(lines, []byte(`{"resourceType":"Patient","name":[{"family":"`+secret+`"}],"nmae":"`+secret+`"}`))
	lines = append(lines, []byte(`{"resourceType":"Patient","id":"x",`))
	lines = append(lines, pop.Resources["Patient"][0])
	writeNDJSON(t, filepath.Join(in, "Patient.ndjson"), lines)
	code, stdout, stderr := runExportCmd(t, nil, "anonymize", "-i", in, "-o", out, "-b", "--on-invalid", "skip")
	if code != 3 {
		t.Fatalf("exit %d, want 3: %s", code, stderr)
	}
	for _, want := range []string{"Patient.ndjson:4: not a valid Patient", "nmae", "Patient.ndjson:5: ", "2 invalid lines dropped"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, stderr)
		}
	}
	if strings.Contains(stderr+stdout, secret) {
		t.Errorf("a dropped line's value was printed: %s", stderr)
	}
	data, err := os.ReadFile(filepath.Join(out, "Patient.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 4 {
		t.Errorf("%d lines written, want 4", n)
	}
	if strings.Contains(string(data), secret) {
		t.Error("the dropped line was written")
	}
	// fail (the default) keeps stopping at the first invalid line.
	code, _, _ = runExportCmd(t, nil, "anonymize", "-i", in, "-o", t.TempDir(), "-b", "--on-invalid", "fail")
	if code != 1 {
		t.Errorf("--on-invalid fail: exit %d, want 1", code)
	}
}
