package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"fhirdeid/anonymize"
	"fhirdeid/internal/testshared"
)

// The first pass's line filter keeps every line whose top-level resource is
// of a first-pass type (anonymize.FirstPassTypes), whatever its layout, and skips lines that only
// mention one.
func TestMayBeIdentifierType(t *testing.T) {
	for _, c := range []struct {
		line string
		want bool
	}{
		{`{"resourceType":"Patient","id":"1"}`, true},
		{`{"id":"1", "resourceType" : "Practitioner"}`, true},
		{`{"meta":{"tag":[{"code":"Patient"}]},"resourceType":"Location"}`, true},
		{`{"resourceType":"\u0050atient","id":"1"}`, true},
		{`{"resource\u0054ype":"Organization","id":"1"}`, true},
		{`{"resourceType":"Observation","subject":{"reference":"Patient/1","type":"Patient"}}`, false},
		{`{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p"}]}`, false},
		{`{"resourceType":"Observation","id":"1"}`, false},
		{`{"resourceType":"MedicationRequest","id":"m"}`, true},
		{`{"resourceType":"Observation","note":[{"text":"\"resourceType\":\"Patient\""}]}`, false},
		{`{"resourceType":"PatientX"}`, false},
		{`not json "RelatedPerson"`, true},
		{`not json`, false},
	} {
		if got := mayBeIdentifierType([]byte(c.line)); got != c.want {
			t.Errorf("mayBeIdentifierType(%s) = %v, want %v", c.line, got, c.want)
		}
	}
}

func TestNamedType(t *testing.T) {
	for in, want := range map[string]string{
		"Observation.ndjson": "Observation", "/x/Observation.000.ndjson.gz": "Observation", "Observation-1.ndjson": "Observation",
		"Patient_2.ndjson": "Patient", "a-Observation.ndjson": "", "observation.ndjson": "", "Observation": "",
		"Obs3rvation.ndjson": "", ".ndjson": "", "export.ndjson": "",
	} {
		if got := namedType(in); got != want {
			t.Errorf("namedType(%q) = %q, want %q", in, got, want)
		}
	}
}

// With files named as a bulk export names them, the first pass reads only
// those of the types it needs, and the result is the same as reading them
// all; a resource of such a type in a file named for another type stops
// the run, with nothing written for that file, rather than be scrubbed
// without its identifiers.
func TestAnonymizeScrubFirstPassByName(t *testing.T) {
	patient, obs := firstPassPatient, firstPassNote
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	writeFiles(t, in, map[string]string{"Observation.000.ndjson": obs + "\n", "Patient.000.ndjson": patient + "\n"})
	code, _, errs := runCmd(t, "", nil, "anonymize", "--profile", "longitudinal", "-i", in, "-o", out, "-b", "-v", "--today", "2026-06-01")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "identifiers of 1 patients collected from 1 files") {
		t.Errorf("the first pass did not read only the Patient file: %s", errs)
	}
	got := readNDJSON(t, filepath.Join(out, "Observation.000.ndjson"))[0]
	if strings.Contains(got, "BAKER") || !strings.Contains(got, "[NAME]") {
		t.Errorf("note not scrubbed with the patient's identifiers: %s", got)
	}

	bad, badOut := filepath.Join(dir, "bad"), filepath.Join(dir, "bad-out")
	writeFiles(t, bad, map[string]string{"Observation.000.ndjson": obs + "\n" + patient + "\n"})
	code, _, errs = runCmd(t, "", nil, "anonymize", "--profile", "longitudinal", "-i", bad, "-o", badOut, "-b", "--today", "2026-06-01")
	if code == 0 {
		t.Fatal("a Patient in a file named for Observations was de-identified without the first pass reading it")
	}
	if !strings.Contains(errs, "Observation.000.ndjson:2: a Patient resource in a file named for Observation resources") {
		t.Errorf("error does not say where and why: %s", errs)
	}
	if strings.Contains(errs, "Baker") || strings.Contains(errs, "BAKER") {
		t.Errorf("the error quotes the resource: %s", errs)
	}
	if _, err := os.Stat(filepath.Join(badOut, "Observation.000.ndjson")); err == nil {
		t.Error("the output of the failed file was committed")
	}
}

// BenchmarkFirstPassSynthea1000 runs the first pass of "anonymize --profile
// longitudinal" over synthea-1000-clone with one worker (so that ns/op is
// CPU time): the reading and gunzipping of the first-pass files (Patient,
// Practitioner, Organization, MedicationRequest, Immunization; 2.3 MB
// compressed, 26 MB of NDJSON) and the collector.
func BenchmarkFirstPassSynthea1000(b *testing.B) {
	dir := testshared.Dir(b, "data", "synthea-1000-clone")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if len(files) == 0 {
		b.Skip("no synthea-1000-clone files")
	}
	eng, _, err := loadEngineWith(engineSource{profile: "longitudinal"})
	if err != nil {
		b.Fatal(err)
	}
	a := &anonymizer{eng: eng, workers: 1, stderr: io.Discard, maxLine: 64 << 20}
	var size int64
	for _, f := range files {
		if t := namedType(f); slices.Contains(anonymize.FirstPassTypes, t) {
			st, err := os.Stat(f)
			if err != nil {
				b.Fatal(err)
			}
			size += st.Size()
		}
	}
	b.SetBytes(size) // compressed bytes read
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		jobs := make([]job, len(files))
		for i, f := range files {
			jobs[i] = job{in: f, ndjson: true, gz: true}
		}
		ctx, err := a.collectIdentifiers(context.Background(), jobs)
		if err != nil {
			b.Fatal(err)
		}
		if ctx == context.Background() {
			b.Fatal("no scrub input")
		}
	}
	if cpu >= 0 {
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	}
}
