package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"fhirdeid/audit"
	"fhirdeid/internal/synth"
	"fhirdeid/risk"
)

func auditCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code := run(t.Context(), e, args)
	return code, out.String(), errb.String()
}

// TestAuditAndRiskCommands de-identifies a synthetic population with the
// default configuration, audits it (no leak), plants a full name in the
// output and audits again (one leak, located, the name never printed), and
// runs the risk analysis on the output.
func TestAuditAndRiskCommands(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 20})
	raw, out := t.TempDir(), t.TempDir()
	for typ, lines := range pop.Resources {
		var b bytes.Buffer
		for _, l := range lines {
			b.Write(l)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(raw, typ+".000.ndjson"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, stderr := auditCmd(t, "anonymize", "-i", raw, "-o", out, "-b"); code != 0 {
		t.Fatalf("anonymize: exit %d %s", code, stderr)
	}
	code, stdout, stderr := auditCmd(t, "audit", out, "--raw", raw)
	if code != 0 || !regexp.MustCompile(`(?m)^leaks\s+0\s`).MatchString(stdout) {
		t.Fatalf("audit of the default output: exit %d\n%s%s", code, stdout, stderr)
	}

	var p struct {
		Name []struct {
			Family string
			Given  []string
		}
	}
	if err := json.Unmarshal(pop.Resources["Patient"][3], &p); err != nil || len(p.Name) == 0 || len(p.Name[0].Given) == 0 {
		t.Fatalf("no name in the synthetic patient: %v", err)
	}
	name := p.Name[0].Given[0] + " " + p.Name[0].Family
	planted := `{"resourceType":"Observation","status":"final","valueString":"seen with ` + strings.ToUpper(name) + `"}` + "\n"
	if err := os.WriteFile(filepath.Join(out, "Observation.001.ndjson"), []byte("\n"+planted), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = auditCmd(t, "audit", out, "--raw", raw)
	if code != 1 || !strings.Contains(stdout, "Observation.valueString") || !regexp.MustCompile(`Observation\.001\.ndjson\s+2\s+Observation\.valueString\s+name`).MatchString(stdout) {
		t.Fatalf("audit with a planted name: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = auditCmd(t, "audit", "--json", out, "--raw", raw)
	var rep audit.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 1 || rep.Leaks != 1 || rep.ByPath["Observation.valueString"] != 1 {
		t.Fatalf("--json: exit %d %v %s", code, err, stdout)
	}
	for _, part := range strings.Fields(name) {
		if strings.Contains(strings.ToLower(stdout+stderr), strings.ToLower(part)) {
			t.Errorf("the audit's output holds a part of the planted name")
		}
	}
	if code, _, stderr := auditCmd(t, "audit", out); code != 2 {
		t.Errorf("audit without --raw: exit %d %s", code, stderr)
	}

	code, stdout, stderr = auditCmd(t, "risk", out, "--json", "--qi", "birthYear,gender")
	var rr risk.Report
	if err := json.Unmarshal([]byte(stdout), &rr); err != nil || code != 0 || rr.Records != 20 || rr.MinK < 1 || len(rr.QuasiIdentifiers) != 2 {
		t.Fatalf("risk --json: exit %d %v %s %s", code, err, stdout, stderr)
	}
	code, stdout, _ = auditCmd(t, "risk", out)
	if code != 0 || !strings.Contains(stdout, "smallest class (k)") || !strings.Contains(stdout, "prosecutor") {
		t.Errorf("risk table: exit %d\n%s", code, stdout)
	}
	if code, _, _ := auditCmd(t, "risk", out, "--qi", "name[0]"); code != 2 {
		t.Errorf("risk with a bad quasi-identifier: exit %d", code)
	}
}
