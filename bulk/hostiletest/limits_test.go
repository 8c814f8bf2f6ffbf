package hostiletest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

// endless writes 'a' bytes (no newline) until n bytes or the client leaves.
func endless(n int64, served *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		chunk := bytes.Repeat([]byte("a"), 1<<20)
		for sent := int64(0); sent < n; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}

// A plain 1 GiB line without a newline fails within seconds, naming the
// file and the limit, after one download, with bounded memory.
func TestHugeLinePlain(t *testing.T) {
	skipShort(t)
	var served atomic.Int64
	f := &fhir{files: endless(1<<30, &served), manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/big.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	mw := watchMemory()
	start := time.Now()
	_, err := e.run(t)
	elapsed := time.Since(start)
	wantErr(t, err, "limit: Patient.000.ndjson.gz line 1: longer than 67108864 bytes", "maxLineBytes")
	if elapsed > 10*time.Second {
		t.Errorf("failed after %s, want within 10 s", elapsed)
	}
	if n := served.Load(); n != 1 {
		t.Errorf("the file was requested %d times, want 1 (a limit is not retried)", n)
	}
	// One 64 MiB copy of the line, and buffers (the server's too).
	memBound(t, mw, 96)
}

// gzipBomb returns a gzip stream of n members, each 16 MiB of 'a' without a
// newline: 16n MiB decompressed from about 16n KiB.
func gzipBomb(n int) []byte {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	_, _ = zw.Write(bytes.Repeat([]byte("a"), 16<<20))
	_ = zw.Close()
	return bytes.Repeat(member.Bytes(), n)
}

var bombOnce = sync.OnceValue(func() []byte { return gzipBomb(64) }) // 1 GiB

// A gzip bomb (1 GiB from about 1 MiB) fails on the ratio limit before the
// line grows large, with bounded memory, sent gzip-encoded or as a raw .gz.
func TestGzipBomb(t *testing.T) {
	skipShort(t)
	bomb := bombOnce()
	for _, encoded := range []bool{true, false} {
		t.Run(fmt.Sprintf("Content-Encoding=%t", encoded), func(t *testing.T) {
			var served atomic.Int64
			f := &fhir{files: func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				if encoded {
					w.Header().Set("Content-Encoding", "gzip")
				}
				_, _ = w.Write(bomb)
			}, manifest: func(base string) string {
				return Manifest(false, Entry{Type: "Patient", URL: base + "/files/bomb.ndjson", Count: 1})
			}}
			fo := startFHIR(t, f, false)
			e := newExport(t, fo.URL, nil)
			mw := watchMemory()
			_, err := e.run(t)
			wantErr(t, err, "limit: Patient.000.ndjson.gz line 1:", "ratio above 200", "maxRatio")
			if n := served.Load(); n != 1 {
				t.Errorf("the file was requested %d times, want 1", n)
			}
			memBound(t, mw, 64)
		})
	}
}

// The manifest count is checked while streaming: a file of many lines whose
// count is 1 stops at line 2.
func TestCountCheckedWhileStreaming(t *testing.T) {
	f := &fhir{files: serveString(patients(20000)), manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/p.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	_, err := e.run(t)
	wantErr(t, err, "validate Patient.000.ndjson.gz line 2: more resources than the manifest count 1", "--allow-count-mismatch")
	// Allowed mismatches read the whole file.
	e2 := newExport(t, fo.URL, nil)
	e2.exp.AllowCountMismatch = true
	res, err := e2.run(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resources != 20000 {
		t.Errorf("%d resources with mismatches allowed, want 20000", res.Resources)
	}
}

// A server trickling one byte per second fails on the stalled-transfer rule
// (not only an idle timeout), once, naming the limit.
func TestTrickle(t *testing.T) {
	skipShort(t)
	var served atomic.Int64
	f := &fhir{files: func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fl := w.(http.Flusher)
		for i := 0; ; i++ {
			if _, err := w.Write([]byte("{")); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
	}, manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/slow.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	e.client.Limits.MinBytes, e.client.Limits.RateInterval = 100, 1500*time.Millisecond
	e.client.IdleTimeout = time.Minute
	mw := watchMemory()
	start := time.Now()
	_, err := e.run(t)
	wantErr(t, err, "fewer than 100 bytes in 1.5s: the transfer trickles", "minBytes")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	if n := served.Load(); n != 1 {
		t.Errorf("the file was requested %d times, want 1", n)
	}
	memBound(t, mw, 32)
}

// A manifest of 100,000 files is refused by the file-count limit, quickly
// and with bounded memory; with the limit raised it is accepted.
func TestManifestOf100000Files(t *testing.T) {
	skipShort(t)
	var body string
	f := &fhir{manifest: func(base string) string {
		if body == "" {
			entries := make([]Entry, 100000)
			for i := range entries {
				entries[i] = Entry{Type: "Patient", URL: fmt.Sprintf("%s/files/%d.ndjson", base, i), Count: 1}
			}
			body = Manifest(false, entries...)
		}
		return body
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	mw := watchMemory()
	_, err := e.run(t)
	wantErr(t, err, "more than 50000 files listed", "maxManifestFiles")
	memBound(t, mw, 200)
	for _, r := range fo.Requests() {
		if strings.HasPrefix(r.Path, "/files/") {
			t.Fatal("a file was downloaded")
		}
	}
	e.client.Limits.MaxManifestFiles = 200000
	m, err := e.client.Poll(t.Context(), fo.URL+"/fhir/status", e.client.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Output) != 100000 {
		t.Errorf("%d files", len(m.Output))
	}
}

// A manifest larger than its limit.
func TestManifestTooLarge(t *testing.T) {
	f := &fhir{manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/" + strings.Repeat("x", 4096), Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	e.client.Limits.MaxManifestBytes = 1024
	_, err := e.run(t)
	wantErr(t, err, "manifest larger than 1024 bytes", "maxManifestBytes")
}

// A status endpoint answering 202 forever with Retry-After: 0 is polled no
// faster than the minimum delay, warned about, and given up at the
// deadline.
func TestStatus202Forever(t *testing.T) {
	skipShort(t)
	f := &fhir{status: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "0")
		w.Header().Set("X-Progress", "in progress")
		w.WriteHeader(http.StatusAccepted)
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	e.client.Polling.Deadline = time.Hour
	e.client.Polling.StuckAfter = 30 * time.Minute
	var warned atomic.Bool
	e.client.Progress = func(s string) {
		if strings.Contains(s, "no progress") {
			warned.Store(true)
		}
	}
	mw := watchMemory()
	_, err := e.run(t)
	wantErr(t, err, "export not complete before the deadline")
	if polls := f.polls.Load(); polls > 3601 || polls < 3000 {
		t.Errorf("%d polls in one (fake) hour with Retry-After: 0, want about 3600 (one per MinDelay)", polls)
	}
	if !warned.Load() {
		t.Error("no stuck-export warning")
	}
	memBound(t, mw, 32)
}

// HTML error pages instead of NDJSON (a proxy's login page, a 200 with
// text/html) fail validation at line 1, once; an HTML manifest is refused.
func TestHTMLInsteadOfNDJSON(t *testing.T) {
	var served atomic.Int64
	html := "<!DOCTYPE html>\n<html><body><h1>Sign in</h1></body></html>\n"
	f := &fhir{files: func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, html)
	}, manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/p.ndjson", Count: 2})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	_, err := e.run(t)
	wantErr(t, err, "validate Patient.000.ndjson.gz line 1: not a JSON object")
	if strings.Contains(err.Error(), "Sign in") {
		t.Error("the error quotes the body")
	}
	if n := served.Load(); n != 1 {
		t.Errorf("the file was requested %d times, want 1", n)
	}
	f2 := &fhir{status: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, html)
	}}
	fo2 := startFHIR(t, f2, false)
	e2 := newExport(t, fo2.URL, nil)
	_, err = e2.run(t)
	wantErr(t, err, `manifest has Content-Type "text/html"`)
}

// The reference server's kick-off 500 with a non-transient OperationOutcome
// (error/processing) fails at once, not after minutes of retries.
func TestKickoff500NonTransient(t *testing.T) {
	srv, err := bulktest.New(bulktest.Options{Resources: [][]byte{[]byte(`{"resourceType":"Patient","id":"1"}`)},
		Faults: bulktest.Faults{KickoffStatus: 500, KickoffDiagnostics: "An unknown error occurred"}})
	if err != nil {
		t.Fatal(err)
	}
	u := srv.Start()
	defer srv.Close()
	c, err := bulk.NewClient(u, nil) // real clock and default retry policy
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Kickoff(t.Context(), &bulk.Request{})
	wantErr(t, err, "HTTP 500", "error/processing An unknown error occurred")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failed after %s, want within 10 s", d)
	}
	if n := srv.Stats().Kickoffs; n != 1 {
		t.Errorf("%d kick-offs, want 1 (not retried)", n)
	}
	// A 500 with a transient outcome, or none, is still retried.
	he := &bulk.HTTPError{StatusCode: 500}
	if !bulk.IsRetryable(he) {
		t.Error("a bare 500 is not retried")
	}
	he.Permanent = true
	if bulk.IsRetryable(he) {
		t.Error("a 500 with a non-transient outcome is retried")
	}
}

// The retry budget caps the total wait.
func TestRetryBudget(t *testing.T) {
	f := &fhir{files: func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}, manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/p.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	e.client.Retries = bulk.RetryPolicy{MaxRetries: 100, BaseDelay: time.Minute, MaxDelay: time.Hour, Budget: 10 * time.Minute}
	_, err := e.run(t)
	wantErr(t, err, "HTTP 503", "the retry budget of 10m0s is spent after 3 retries")
}

// Error files whose count is the number of failed resources (the reference
// server) are stored, not count-validated: the export completes with the
// server's errors (exit 3 in the command).
func TestErrorFileCountNotValidated(t *testing.T) {
	srv, err := bulktest.New(bulktest.Options{Resources: [][]byte{[]byte(`{"resourceType":"Patient","id":"1"}`)},
		Errors: []bulk.Issue{{Severity: "error", Code: "processing", Diagnostics: "failed"}},
		Faults: bulktest.Faults{ErrorFileCount: 639}})
	if err != nil {
		t.Fatal(err)
	}
	u := srv.Start()
	defer srv.Close()
	e := newExport(t, strings.TrimSuffix(u, "/fhir"), nil)
	res, err := e.run(t)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Partial {
		t.Error("the export is not marked partial")
	}
	for _, fs := range res.Checkpoint.Files {
		if fs.Kind == bulk.KindError && (fs.Count == nil || *fs.Count != 639 || fs.Resources != 1) {
			t.Errorf("error file recorded count %v, lines %d; want 639 and 1", fs.Count, fs.Resources)
		}
	}
}

// skipShort skips the data-volume and timing cases under -short (the race
// run of CI); the plain run has them.
func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("a data-volume or timing case: not under -short")
	}
}
