package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	code, out, errOut := runExportCmd(t, nil, "explain", "--today", "2026-11-28", "../../examples/patient.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`Patient.name\[0\].family\s+string\s+\d+\s+redact\s+removed`,
		`Patient.id\s+id\s+\d+\s+cryptoHash\s+changed`,
		`Patient.address\[0\].state\s+string\s+\d+\s+keep\s+kept`,
		`Patient.birthDate\s+date\s+\d+\s+redact\s+removed`,
		`Patient.gender\s+code\s+-\s+no rule\s+kept`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	for _, v := range []string{"Quigley", "Ophelia", "MRN0001234", "1931"} {
		if strings.Contains(out+errOut, v) {
			t.Errorf("a value (%s) is printed without --show-values", v)
		}
	}
	code, out, _ = runExportCmd(t, nil, "explain", "--show-values", "--today", "2026-11-28", "../../examples/patient.json")
	if code != 0 || !regexp.MustCompile(`Patient.name\[0\].family\s+string\s+\d+\s+redact\s+"Quigley"\s+\(removed\)`).MatchString(out) {
		t.Errorf("--show-values output:\n%s", out)
	}
}

func TestExplainScrubSpans(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "scrub.json")
	res := filepath.Join(dir, "obs.json")
	if err := os.WriteFile(cfg, []byte(`{"fhirVersion":"R4","fhirPathRules":[{"path":"Observation.value","method":"scrub"},{"path":"Resource","method":"keep"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(res, []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"note"},"valueString":"Seen by Dr. Zbigniewski on 7/22/2019, call 410-555-1234."}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runExportCmd(t, nil, "explain", "-c", cfg, "--show-phi", res)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`scrubbed Observation.value\S* \(rule 1\): \d+ bytes, 3 spans replaced`,
		`\d+\s+\d+\s+NAME\s+vocabulary`,
		`\d+\s+\d+\s+DATE\s+pattern`,
		`\d+\s+\d+\s+PHONE\s+pattern`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	// The output is not a terminal: --show-phi is refused.
	if !strings.Contains(errOut, "--show-phi ignored") {
		t.Errorf("no warning for --show-phi off a terminal: %q", errOut)
	}
	for _, v := range []string{"Zbigniewski", "7/22", "555-1234"} {
		if strings.Contains(out+errOut, v) {
			t.Errorf("PHI %q printed", v)
		}
	}
}
