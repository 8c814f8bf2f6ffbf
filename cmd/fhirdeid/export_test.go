package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

func newTestServer(t *testing.T, opts bulktest.Options) string {
	t.Helper()
	srv, err := bulktest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	u := srv.Start()
	t.Cleanup(srv.Close)
	return u
}

func TestExportCommand(t *testing.T) {
	pop := bulktest.Synthetic(20, 3)
	base := newTestServer(t, bulktest.Options{Resources: pop, PartSize: 50, RetryAfter: ""})
	out := t.TempDir()
	code, stdout, stderr := runExportCmd(t, nil, "export", "--url", base, "--out", out, "--min-wait", "10ms", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, fmt.Sprintf("exported %d resources", len(pop))) {
		t.Errorf("stdout %q", stdout)
	}
	for _, name := range []string{"manifest.json", "log.ndjson", checkpointName, "Patient.000.ndjson.gz", "Observation.001.ndjson.gz"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("missing %s: %v", name, err)
		}
	}
	log, _ := os.ReadFile(filepath.Join(out, "log.ndjson"))
	for _, ev := range []string{"kickoff", "status_progress", "status_complete", "manifest_complete", "download_request", "download_complete", "export_complete"} {
		if !strings.Contains(string(log), `"eventId":"`+ev+`"`) {
			t.Errorf("log.ndjson has no %s event", ev)
		}
	}
	if !strings.Contains(string(log), `"softwareName":"fhirdeid bulktest"`) {
		t.Error("the kickoff event does not name the server software")
	}
	// --since auto: the second run sends the first run's transactionTime.
	code, _, stderr = runExportCmd(t, nil, "export", "--url", base, "--out", out, "--min-wait", "10ms", "--quiet", "--since", "auto")
	if code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	log, _ = os.ReadFile(filepath.Join(out, "log.ndjson"))
	if !strings.Contains(string(log), `"_since":"`) {
		t.Error("--since auto did not send _since")
	}
}

func TestExportCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		opts *bulktest.Options
		args []string
		code int
		want []string
	}{
		{"usage: no url", nil, []string{"--out", "X"}, 2, []string{"--url and --out are required"}},
		{"usage: group and patient", nil, []string{"--url", "http://x/fhir", "--out", "X", "--group", "g", "--patient"}, 2, []string{"either --group or --patient"}},
		{"usage: microsoft with POST", nil, []string{"--url", "http://x/fhir", "--out", "X", "--vendor", "microsoft", "--post"}, 2,
			[]string{"the Microsoft FHIR server does not support POST kick-off"}},
		{"usage: bad since", nil, []string{"--url", "http://x/fhir", "--out", "X", "--since", "yesterday"}, 2, []string{"_since is not a FHIR instant"}},
		{"wrong URL", nil, []string{"--url", "http://127.0.0.1:1/fhir", "--out", "X", "--retries", "0"}, 1,
			[]string{"kick-off: GET http://127.0.0.1:1/fhir/$export", "connection refused"}},
		{"refused auth", &bulktest.Options{Auth: &bulktest.AuthOptions{ClientID: "c", ClientSecret: "right"}},
			[]string{"--client-id", "c", "--client-secret-env", "SECRET", "--token-url", "TOKEN"}, 1,
			[]string{"kick-off: get access token: token: POST", "HTTP 401", "invalid_client"}},
		{"4xx with OperationOutcome", &bulktest.Options{Faults: bulktest.Faults{KickoffStatus: 403, KickoffDiagnostics: "client may not export group 7"}},
			nil, 1, []string{"kick-off: GET", "HTTP 403", "client may not export group 7"}},
		{"invalid manifest", &bulktest.Options{Faults: bulktest.Faults{InvalidManifest: true}}, nil, 1,
			[]string{"status: manifest: transactionTime missing"}},
		{"mismatching file", &bulktest.Options{Faults: bulktest.Faults{MismatchType: true}}, nil, 1,
			[]string{"download: validate", "line 1: resourceType"}},
		{"server-reported errors", &bulktest.Options{Errors: []bulk.Issue{{Severity: "error", Code: "exception"}}}, nil, 3,
			[]string{"the server reported errors (1 error, 0 fatal issues"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			args := []string{"export", "--quiet", "--min-wait", "1ms", "--max-wait", "10ms"}
			if tc.opts != nil {
				tc.opts.Resources = bulktest.Synthetic(2, 1)
				srv, err := bulktest.New(*tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				base := srv.Start()
				t.Cleanup(srv.Close)
				args = append(args, "--url", base, "--out", out)
				for i, a := range tc.args {
					if a == "TOKEN" {
						tc.args[i] = srv.TokenURL()
					}
				}
			}
			for _, a := range tc.args {
				if a == "X" {
					a = out
				}
				args = append(args, a)
			}
			code, _, stderr := runExportCmd(t, func(k string) string {
				if k == "SECRET" {
					return "wrong-secret-value"
				}
				return ""
			}, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
			if !strings.HasPrefix(stderr, "fhirdeid export: ") {
				t.Errorf("stderr %q does not name the command", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			if strings.Contains(stderr, "wrong-secret-value") {
				t.Error("the secret leaked")
			}
		})
	}
}

func TestExportCommandRestart(t *testing.T) {
	srv, err := bulktest.New(bulktest.Options{Resources: bulktest.Synthetic(5, 1), RetryAfter: "",
		Faults: bulktest.Faults{StatusFatal: true}})
	if err != nil {
		t.Fatal(err)
	}
	base := srv.Start()
	defer srv.Close()
	out := t.TempDir()
	common := []string{"export", "--url", base, "--out", out, "--quiet", "--min-wait", "1ms", "--max-wait", "2ms", "--retries", "1"}
	if code, _, stderr := runExportCmd(t, nil, common...); code != 1 || !strings.Contains(stderr, "status:") {
		t.Fatalf("failing export: exit %d: %s", code, stderr)
	}
	srv.SetFaults(bulktest.Faults{})
	// Another request while the first is unfinished: refused.
	code, _, stderr := runExportCmd(t, nil, append(common, "--type", "Patient")...)
	if code != 1 || !strings.Contains(stderr, "unfinished export of a different request") || !strings.Contains(stderr, "--restart") {
		t.Fatalf("different request: exit %d: %s", code, stderr)
	}
	// --restart abandons it (DELETE) and starts anew.
	code, stdout, stderr := runExportCmd(t, nil, append(common, "--type", "Patient", "--restart")...)
	if code != 0 || !strings.Contains(stdout, "exported 5 resources") {
		t.Fatalf("--restart: exit %d: %s %s", code, stdout, stderr)
	}
	if st := srv.Stats(); st.Kickoffs != 2 || st.Deletes != 2 {
		t.Errorf("server saw %d kick-offs and %d deletes, want 2 and 2", st.Kickoffs, st.Deletes)
	}
}

func TestExportCommandStatusURL(t *testing.T) {
	srv, err := bulktest.New(bulktest.Options{Resources: bulktest.Synthetic(4, 2), RetryAfter: ""})
	if err != nil {
		t.Fatal(err)
	}
	base := srv.Start()
	defer srv.Close()
	c, err := bulk.NewClient(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, err := c.Kickoff(context.Background(), &bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	code, stdout, stderr := runExportCmd(t, nil, "export", "--url", base, "--out", out, "--quiet", "--min-wait", "1ms", "--status-url", status)
	if code != 0 || !strings.Contains(stdout, "exported ") {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	if st := srv.Stats(); st.Kickoffs != 1 {
		t.Errorf("%d kick-offs, want only the one made before attaching", st.Kickoffs)
	}
}
