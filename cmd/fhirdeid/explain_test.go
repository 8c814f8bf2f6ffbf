package main

import (
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
