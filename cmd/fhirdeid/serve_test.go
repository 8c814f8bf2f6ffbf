package main

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a bytes buffer safe for a command writing while a test reads.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs "fhirdeid serve" on a free loopback port until the test
// ends and returns its base URL, its stderr and a function that stops it
// (as SIGTERM does) and returns the exit code.
func startServe(t *testing.T, getenv func(string) string, args ...string) (base string, stderr *syncBuf, stop func() int) {
	t.Helper()
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	stderr = &syncBuf{}
	codec := make(chan int, 1)
	go func() {
		codec <- run(ctx, &env{stdin: strings.NewReader(""), stdout: &out, stderr: stderr, getenv: getenv},
			append([]string{"serve", "-addr", "127.0.0.1:0"}, args...))
	}()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() { cancel(); code = <-codec })
		return code
	}
	t.Cleanup(func() { stop() })
	re := regexp.MustCompile(`listening on (http://\S+)/`)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], stderr, stop
		}
		select {
		case c := <-codec:
			codec <- c
			t.Fatalf("serve exited with %d:\n%s", c, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start:\n%s", stderr.String())
	return "", nil, nil
}

func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func TestServeCommand(t *testing.T) {
	cfgPath, _, pop := pipelineFixture(t, "    schedule: \"0 3 * * *\"\n    timezone: Europe/Paris\n")
	const token = "serve-token-for-test"
	getenv := func(k string) string {
		if k == "FHIRDEID_TOKEN" {
			return token
		}
		return ""
	}
	base, stderr, stop := startServe(t, getenv, "-token-env", "FHIRDEID_TOKEN", cfgPath)

	if code := getJSON(t, base+"/api/pipelines", "", nil); code != 401 {
		t.Errorf("API without the token: %d, want 401", code)
	}
	var pipes []struct {
		Name, Schedule, Timezone string
		NextRun                  time.Time
	}
	if code := getJSON(t, base+"/api/pipelines", token, &pipes); code != 200 || len(pipes) != 1 {
		t.Fatalf("pipelines: %d %v", code, pipes)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	if p := pipes[0]; p.Name != "ehr" || p.Schedule != "0 3 * * *" || p.Timezone != "Europe/Paris" || p.NextRun.In(paris).Hour() != 3 || p.NextRun.Minute() != 0 {
		t.Errorf("pipeline: %+v (next run %v in Paris)", p, p.NextRun.In(paris))
	}

	req, _ := http.NewRequest("POST", base+"/api/pipelines/ehr/run", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("trigger: %d", resp.StatusCode)
	}
	var page struct {
		Runs []struct {
			ID, Status string
			Resources  int
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		getJSON(t, base+"/api/runs?pipeline=ehr", token, &page)
		if len(page.Runs) == 1 && page.Runs[0].Status == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not succeed: %+v\n%s", page.Runs, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if page.Runs[0].Resources != pop.Count() {
		t.Errorf("%d resources, want %d", page.Runs[0].Resources, pop.Count())
	}
	if code := stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, stderr.String())
	}
	logs := stderr.String()
	if !strings.Contains(logs, "run ended") || !strings.Contains(logs, "outcome=succeeded") {
		t.Errorf("log lacks the run's end:\n%s", logs)
	}
	if strings.Contains(logs, token) {
		t.Error("the log contains the token")
	}
}

func TestServeErrors(t *testing.T) {
	good, _, _ := pipelineFixture(t, "")
	badSched, _, _ := pipelineFixture(t, "    schedule: \"61 * * * *\"\n")
	// The serve settings of the file apply unless flags override them.
	fileAddr, _, _ := pipelineFixture(t, "serve:\n  addr: 0.0.0.0:0\n")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"non-loopback without a token", []string{"serve", "-addr", "0.0.0.0:0", good}, 2, "not a loopback address: set -token-env"},
		{"token variable unset", []string{"serve", "-token-env", "NOPE", good}, 2, "environment variable NOPE is not set"},
		{"bad schedule", []string{"serve", badSched}, 2, "pipelines.ehr.schedule: parse schedule: minute field at column 1: 61 out of range 0-59"},
		{"no configuration", []string{"serve"}, 2, "need exactly one configuration file"},
		{"file address without a token", []string{"serve", fileAddr}, 2, "-addr 0.0.0.0:0 is not a loopback address"},
	}
	for _, tt := range tests {
		code, _, errOut := runExportCmd(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tt.name, code, errOut, tt.code, tt.want)
		}
	}
}
