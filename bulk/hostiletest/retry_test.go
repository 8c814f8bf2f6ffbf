package hostiletest

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"fhirdeid/bulk"
)

// The retry taxonomy, end to end: each kick-off answer is retried (up to
// the policy's 2 retries: 3 kick-offs) or terminal (1 kick-off).
func TestRetryTaxonomy(t *testing.T) {
	oo := func(sev, code string) string {
		return fmt.Sprintf(`{"resourceType":"OperationOutcome","issue":[{"severity":%q,"code":%q,"diagnostics":"d"}]}`, sev, code)
	}
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		retried bool
	}{
		{"429", 429, "", true},
		{"500 bare", 500, "", true},
		{"502", 502, "<html>bad gateway</html>", true},
		{"503", 503, "", true},
		{"504", 504, "", true},
		{"500 transient outcome", 500, oo("error", "transient"), true},
		{"500 exception outcome (transient family)", 500, oo("error", "exception"), true},
		{"503 throttled outcome", 503, oo("error", "throttled"), true},
		{"400 transient outcome", 400, oo("error", "transient"), true},
		{"500 error/processing (reference server)", 500, oo("error", "processing"), false},
		{"503 fatal/not-supported", 503, oo("fatal", "not-supported"), false},
		{"500 warning only", 500, oo("warning", "processing"), true},
		{"400", 400, oo("error", "invalid"), false},
		{"403", 403, "", false},
		{"404", 404, "", false},
		{"422", 422, "", false},
		{"501", 501, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var kickoffs atomic.Int64
			f := &fhir{kickoff: func(w http.ResponseWriter, r *http.Request) {
				kickoffs.Add(1)
				if tc.body != "" {
					w.Header().Set("Content-Type", "application/fhir+json")
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}}
			fo := startFHIR(t, f, false)
			e := newExport(t, fo.URL, nil)
			e.client.Retries = bulk.RetryPolicy{MaxRetries: 2, BaseDelay: time.Second, MaxDelay: time.Minute}
			_, err := e.run(t)
			wantErr(t, err, fmt.Sprintf("HTTP %d", tc.status))
			want := int64(1)
			if tc.retried {
				want = 3
			}
			if n := kickoffs.Load(); n != want {
				t.Errorf("%d kick-offs, want %d", n, want)
			}
		})
	}
}

// Waits grow exponentially with jitter; Retry-After replaces the computed
// wait.
func TestBackoffAndJitter(t *testing.T) {
	var n atomic.Int64
	f := &fhir{files: func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 4 {
			if n.Load() == 4 {
				w.Header().Set("Retry-After", "7")
			}
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		serveString(patients(1))(w, r)
	}, manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/p.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	clk := e.client.Clock.(*fakeClock)
	e.client.Retries = bulk.RetryPolicy{MaxRetries: 5, BaseDelay: 2 * time.Second, MaxDelay: time.Hour, Budget: time.Hour}
	e.client.Polling.Jitter = 0.2
	if _, err := e.run(t); err != nil {
		t.Fatal(err)
	}
	clk.mu.Lock()
	sleeps := append([]time.Duration(nil), clk.sleeps...)
	clk.mu.Unlock()
	// The last four sleeps are the download retries (earlier ones poll).
	if len(sleeps) < 4 {
		t.Fatalf("sleeps %v", sleeps)
	}
	retry := sleeps[len(sleeps)-4:]
	for i, base := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		if retry[i] < lo || retry[i] > hi {
			t.Errorf("retry %d waited %s, want %s ±20%%", i+1, retry[i], base)
		}
	}
	if retry[3] != 7*time.Second {
		t.Errorf("retry 4 waited %s, want the server's Retry-After 7s", retry[3])
	}
}
