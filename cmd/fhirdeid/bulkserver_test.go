package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// bulkServerBuf is a goroutine-safe output buffer.
type bulkServerBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *bulkServerBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *bulkServerBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBulkServerCommand runs `fhirdeid bulkserver` in-process with
// client-secret authorisation and faults, exports from it with
// `fhirdeid export`, and stops it.
func TestBulkServerCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bulkServerBuf
	getenv := func(k string) string {
		if k == "BS_SECRET" {
			return "bulkserver-secret"
		}
		return ""
	}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: getenv},
			[]string{"bulkserver", "--synthetic", "8", "--part-size", "30", "--retry-after=", "--client-id", "cid",
				"--client-secret-env", "BS_SECRET", "--fault-transient", "1", "--fault-cut", "1", "--group-of-all", "g1"})
	}()
	var base string
	for i := 0; i < 200 && base == ""; i++ {
		time.Sleep(10 * time.Millisecond)
		if s, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "bulkserver: FHIR base "); ok {
			base = s
		}
	}
	if base == "" {
		t.Fatalf("bulkserver did not start: %s", errb.String())
	}
	dir := t.TempDir()
	code, stdout, stderr := runExportCmd(t, getenv, "export", "--url", base, "--out", dir, "--group", "g1", "--quiet",
		"--min-wait", "1ms", "--max-wait", "5ms", "--client-id", "cid", "--client-secret-env", "BS_SECRET",
		"--token-url", strings.TrimSuffix(base, "/fhir")+"/auth/token")
	if code != 0 || !strings.Contains(stdout, "exported ") {
		t.Fatalf("export: exit %d: %s %s", code, stdout, stderr)
	}
	if st := serverStats(t, base); st.Kickoffs != 1 || st.TokenRequests < 1 || st.Deletes != 1 {
		t.Errorf("server stats %+v", st)
	}
	cancel()
	select {
	case c := <-done:
		if c != 0 {
			t.Errorf("bulkserver exit %d: %s", c, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bulkserver did not stop")
	}
	if !strings.Contains(errb.String(), "1 kick-offs") {
		t.Errorf("shutdown summary: %q", errb.String())
	}
	// Usage errors.
	if code, _, stderr := runExportCmd(t, nil, "bulkserver"); code != 2 || !strings.Contains(stderr, "give --data DIR or --synthetic N") {
		t.Errorf("no data: exit %d %q", code, stderr)
	}
}
