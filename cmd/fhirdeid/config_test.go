package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/anonymize/defaultconfig"
)

// runCmd runs the command line args with captured streams.
func runCmd(t *testing.T, stdin string, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errb,
		getenv: func(k string) string { return envVars[k] },
	}
	code = run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func TestConfigShow(t *testing.T) {
	code, out, errs := runCmd(t, "", nil, "config", "show")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if out != string(defaultconfig.SafeHarbor()) {
		t.Error("config show does not print the embedded default configuration")
	}
	if !json.Valid([]byte(out)) {
		t.Error("config show prints invalid JSON")
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"fhirVersion":"R4","processingError":"skip","fhirPathRules":[{"path":"Patient.name","method":"redact"}],"parameters":{"cryptoHashKey":"s3cret"}}`)
	badPath := write("bad.json", `{"fhirPathRules":[{"path":"Patient.name.invalid()","method":"redact"}]}`)
	yml := write("c.yaml", "fhirPathRules:\n  - path: Patient.name\n    method: redact\n")
	misspelt := write("misspelt.json", `{"fhirVersion":"R4","fhirPathRules":[{"path":"Patient.nmae","method":"redact"}]}`)
	tests := []struct {
		name    string
		args    []string
		stdin   string
		code    int
		stdout  string
		stderr  string
		noLeaks string
	}{
		{"good", []string{"config", "check", good}, "", 0, "ok, 1 rules, processingErrors raise", `unknown top-level key "processingError"`, "s3cret"},
		{"compile error", []string{"config", "check", badPath}, "", 1, "", "rule 1 (redact)", ""},
		{"yaml", []string{"config", "check", yml}, "", 0, "ok, 1 rules", "", ""},
		{"misspelt element", []string{"config", "check", misspelt}, "", 0, "ok, 1 rules", `warning: rule 1 (redact) path "Patient.nmae"`, ""},
		{"stdin", []string{"config", "check", "-"}, `{"fhirPathRules":[]}`, 0, "ok, 0 rules", "", ""},
		{"stu3 mismatch", []string{"config", "check", "-fhir-version", "STU3", good}, "", 1, "", "Expected fhirVersion: STU3", ""},
		{"default config", []string{"config", "check", "-"}, string(defaultconfig.SafeHarbor()), 0, "ok, 63 rules", "cryptoHashKey is empty", ""},
		{"no subcommand", []string{"config"}, "", 2, "", "missing subcommand", ""},
		{"unknown subcommand", []string{"config", "print"}, "", 2, "", "unknown subcommand", ""},
		{"check without file", []string{"config", "check"}, "", 2, "", "needs one FILE", ""},
		{"missing file", []string{"config", "check", filepath.Join(dir, "nope.json")}, "", 1, "", "reading configuration", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCmd(t, tt.stdin, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errs)
			}
			if !strings.Contains(out, tt.stdout) {
				t.Errorf("stdout %q lacks %q", out, tt.stdout)
			}
			if !strings.Contains(errs, tt.stderr) {
				t.Errorf("stderr %q lacks %q", errs, tt.stderr)
			}
			if tt.noLeaks != "" && strings.Contains(out+errs, tt.noLeaks) {
				t.Errorf("output contains the key")
			}
		})
	}
}
