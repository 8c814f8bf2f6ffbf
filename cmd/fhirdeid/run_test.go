package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
)

// fixtureAnonymizer is the pipeline fixture's anonymizer block: stable keys
// from a key file, which an incremental pipeline (since: auto) needs.
const fixtureAnonymizer = "    anonymizer: {keysFile: keys.json}\n"

// pipelineFixture starts a Bulk Data server with a synthetic population and
// writes a configuration file for it, with a key file; extra is appended to
// the pipeline.
func pipelineFixture(t *testing.T, extra string) (cfgPath, lake string, pop *synth.Population) {
	t.Helper()
	pop = synth.Generate(synth.Options{Patients: 15})
	var all [][]byte
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	base := newTestServer(t, bulktest.Options{Resources: all, PartSize: 100})
	dir := t.TempDir()
	lake = filepath.Join(dir, "lake")
	cfg := `state: state/state.db
pipelines:
  ehr:
    source:
      url: ` + base + `
      since: auto
    destination: file://` + filepath.ToSlash(lake) + `
` + fixtureAnonymizer + extra
	cfgPath = filepath.Join(dir, "fhirdeid.yml")
	if code, _, errs := runCmd(t, "", nil, "keys", "init", filepath.Join(dir, "keys.json")); code != 0 {
		t.Fatal(errs)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, lake, pop
}

func TestRunCommand(t *testing.T) {
	cfgPath, lake, pop := pipelineFixture(t, "")
	code, out, errOut := runExportCmd(t, nil, "validate", cfgPath)
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
	}
	prof := filepath.Join(t.TempDir(), "cpu.pprof")
	code, out, errOut = runExportCmd(t, nil, "run", "-cpuprofile", prof, cfgPath)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "succeeded") {
		t.Errorf("run output: %s", out)
	}
	// A pprof profile is a gzip-compressed protocol buffer.
	if data, err := os.ReadFile(prof); err != nil || len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Errorf("-cpuprofile: not a profile (%d bytes, %v)", len(data), err)
	}
	latest, err := os.ReadFile(filepath.Join(lake, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	run := strings.TrimSpace(string(latest))
	files, _ := filepath.Glob(filepath.Join(lake, run, "*.ndjson.gz"))
	lc := synth.NewLeakChecker(pop.Identifiers)
	n := 0
	for _, f := range files {
		lines, _, err := scanFile(f, lc)
		if err != nil {
			t.Fatal(err)
		}
		n += lines
	}
	if n != pop.Count() || lc.Found() != 0 {
		t.Errorf("%d resources stored (want %d), %d identifiers leaked", n, pop.Count(), lc.Found())
	}
}

func TestValidateErrors(t *testing.T) {
	good, _, _ := pipelineFixture(t, "")
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_client","error_description":"unknown client"}`))
	}))
	defer refuse.Close()
	dir := filepath.Dir(good)
	data, _ := os.ReadFile(good)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badRules := write("bad-rules.json", `{"fhirVersion":"R4","fhirPathRules":[{"path":"Patient.nmae","method":"redact"}]}`)
	tests := []struct {
		name string
		cfg  string
		want string
	}{
		{"unknown key", strings.Replace(string(data), "since: auto", "since: auto\n      sinse: auto", 1), `fhirdeid.yml:7: unknown key sinse`},
		{"unsupported scheme", strings.Replace(string(data), "destination: file://", "destination: ftp://", 1), `pipelines.ehr.destination: storage: unsupported destination scheme "ftp"`},
		{"bad level", strings.Replace(string(data), "since: auto", "level: everything", 1), `pipelines.ehr.source.level: must be system, patient or group`},
		{"bad url", strings.Replace(string(data), "url: http", "url: htp", 1), `pipelines.ehr.source.url: must be an http or https URL`},
		{"invalid rules", strings.Replace(string(data), fixtureAnonymizer, "    anonymizer:\n      config: bad-rules.json\n      strict: true\n", 1), `pipelines.ehr: anonymizer configuration ` + badRules},
		{"misspelt rule column", strings.Replace(string(data), fixtureAnonymizer, "    anonymizer:\n      config: bad-rules.json\n      strict: true\n", 1), `rule 1 (redact) path "Patient.nmae": invalid FHIR path at column 9`},
	}
	for _, tt := range tests {
		p := write("fhirdeid.yml", tt.cfg)
		code, out, errOut := runExportCmd(t, nil, "validate", p)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q (stdout %q)", tt.name, code, errOut, tt.want, out)
		}
	}

	// Without strict, the misspelt path is a warning.
	p0 := write("fhirdeid.yml", strings.Replace(string(data), fixtureAnonymizer, "    anonymizer:\n      config: bad-rules.json\n", 1))
	code0, out0, _ := runExportCmd(t, nil, "validate", p0)
	if code0 != 0 || !strings.Contains(out0, `warning: rule 1 (redact) path "Patient.nmae": fhirpath: 1:1: unknown element nmae on Patient`) {
		t.Errorf("non-strict misspelt path: exit %d, %s", code0, out0)
	}

	// A secret that comes from an unset environment variable is named, and
	// a set one is never printed.
	body := strings.Replace(string(data), "      since: auto\n", "      since: auto\n      auth:\n        type: client-credentials\n        tokenURL: "+refuse.URL+"/token\n        clientID: me\n        clientSecret: ${FHIRDEID_TEST_SECRET}\n", 1)
	p := write("fhirdeid.yml", body)
	code, _, errOut := runExportCmd(t, nil, "validate", p)
	if code != 2 || !strings.Contains(errOut, "pipelines.ehr.source.auth.clientSecret: environment variable FHIRDEID_TEST_SECRET is not set") {
		t.Errorf("missing secret: exit %d, %q", code, errOut)
	}
	secret := "s3cr3t-VALUE-never-printed"
	getenv := func(k string) string {
		if k == "FHIRDEID_TEST_SECRET" {
			return secret
		}
		return ""
	}
	code, out, errOut := runExportCmd(t, getenv, "validate", p)
	if code != 0 {
		t.Fatalf("validate with the secret set: exit %d %s", code, errOut)
	}
	// The token endpoint refuses the client: run fails at the kick-off's
	// token request, without printing the secret.
	code, out2, errOut2 := runExportCmd(t, getenv, "run", "-v", p)
	if code == 0 {
		t.Fatal("run with an unreachable token endpoint succeeded")
	}
	for _, s := range []string{out, errOut, out2, errOut2} {
		if strings.Contains(s, secret) {
			t.Fatalf("the secret was printed: %s", s)
		}
	}
	if !strings.Contains(errOut2, "kick-off") {
		t.Errorf("run error does not name the step: %s", errOut2)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer goroutine and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestStatusLine(t *testing.T) {
	var buf lockedBuffer
	n := 0
	stop := statusLine(&buf, func() string { n++; return fmt.Sprintf("step %d", n) })
	time.Sleep(600 * time.Millisecond)
	stop()
	out := buf.String()
	if !strings.Contains(out, "\r\033[Kstep 1") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("status line output %q", out)
	}
	if strings.Contains(out, "\n") {
		t.Error("the status line printed a newline")
	}
}
