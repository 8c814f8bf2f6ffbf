package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

// bombServer serves a manifest with one file: a gzip bomb of 1 GiB of 'a'
// without a newline, about 1 MiB on the wire.
func bombServer(t *testing.T) string {
	t.Helper()
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	_, _ = zw.Write(bytes.Repeat([]byte("a"), 16<<20))
	_ = zw.Close()
	bomb := bytes.Repeat(member.Bytes(), 64)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/$export"):
			w.Header().Set("Content-Location", srv.URL+"/fhir/status")
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/fhir/status" && r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"transactionTime":"2026-01-01T00:00:00Z","request":"x","requiresAccessToken":false,"output":[{"type":"Patient","url":"%s/files/bomb.ndjson","count":1}],"error":[]}`, srv.URL)
		case r.URL.Path == "/files/bomb.ndjson":
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/fhir"
}

// hugeLineServer serves a manifest with one plain file: a 1 GiB line
// without a newline, generated as it is sent.
func hugeLineServer(t *testing.T) string {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/$export"):
			w.Header().Set("Content-Location", srv.URL+"/fhir/status")
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/fhir/status" && r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"transactionTime":"2026-01-01T00:00:00Z","request":"x","requiresAccessToken":false,"output":[{"type":"Patient","url":"%s/files/line.ndjson","count":1}],"error":[]}`, srv.URL)
		case r.URL.Path == "/files/line.ndjson":
			chunk := bytes.Repeat([]byte("a"), 1<<20)
			for range 1024 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/fhir"
}

// `fhirdeid export` against a gzip bomb (1 GiB from 1 MiB) and against a
// plain 1 GiB line: each fails within 10 s naming the file and the limit,
// and the process's peak anonymous memory stays under a bound: 64 MB for
// the bomb, 128 MB for the line (of which the 64 MiB line cap is one copy).
//
// Anonymous memory, not the whole resident set: the peak RSS (rusage)
// also counts the pages of the 100 MB binary that the process maps, which
// vary with how the kernel holds the file in its page cache (44-90 MB
// between runs of one binary) and grow with every dependency, whatever the
// input. The peak is read from /proc while the process runs: VmHWM less
// the file-backed pages (RssFile) of the last reading.
func TestExportHostileRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and moves a gigabyte")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc on this platform")
	}
	bin := buildBinary(t)
	for _, tc := range []struct {
		name    string
		base    func(*testing.T) string
		want    []string
		maxAnon float64
	}{
		{"gzip bomb", bombServer, []string{"limit: Patient.000.ndjson.gz line 1:", "maxRatio"}, 64e6},
		// A 64 MiB line is the cap: one copy of it.
		{"1 GiB line", hugeLineServer, []string{"limit: Patient.000.ndjson.gz line 1: longer than 67108864 bytes", "maxLineBytes"}, 128e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base(t)
			cmd := exec.Command(bin, "export", "--url", base, "--out", t.TempDir(), "--min-wait", "10ms", "--quiet")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			peak := watchMemory(cmd.Process.Pid)
			err := cmd.Wait()
			elapsed := time.Since(start)
			m := <-peak
			if err == nil {
				t.Fatal("the export succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q: %s", w, stderr.String())
				}
			}
			if elapsed > 10*time.Second {
				t.Errorf("failed after %s, want within 10 s", elapsed)
			}
			if m.samples == 0 {
				t.Fatal("no reading of the process's memory")
			}
			anon := float64(m.hwm - m.file)
			t.Logf("%s: failed after %s; peak RSS %.1f MB, of which file-backed %.1f MB: anonymous %.1f MB (%d readings)",
				tc.name, elapsed.Round(time.Millisecond), float64(m.hwm)/1e6, float64(m.file)/1e6, anon/1e6, m.samples)
			if anon >= tc.maxAnon {
				t.Errorf("peak anonymous memory %.1f MB, want < %.0f MB", anon/1e6, tc.maxAnon/1e6)
			}
		})
	}
}

// memReading is the last reading of a process's /proc/PID/status.
type memReading struct {
	hwm, file int64 // VmHWM and RssFile, bytes
	samples   int
}

// watchMemory reads /proc/PID/status every millisecond until the process
// is gone (or a zombie, whose status has no memory lines) and sends the
// last reading.
func watchMemory(pid int) <-chan memReading {
	out := make(chan memReading, 1)
	go func() {
		var m memReading
		path := fmt.Sprintf("/proc/%d/status", pid)
		for {
			b, err := os.ReadFile(path)
			hwm, ok1 := statusKB(b, "VmHWM:")
			file, ok2 := statusKB(b, "RssFile:")
			if err != nil || !ok1 || !ok2 {
				break
			}
			m = memReading{hwm: hwm, file: file, samples: m.samples + 1}
			time.Sleep(time.Millisecond)
		}
		out <- m
	}()
	return out
}

// statusKB returns a "Name:   123 kB" field of /proc/PID/status in bytes.
func statusKB(status []byte, name string) (int64, bool) {
	_, rest, ok := bytes.Cut(status, []byte("\n"+name))
	if !ok {
		return 0, false
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) != 2 || f[1] != "kB" {
		return 0, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	return n << 10, err == nil
}

// The reference server's cases through the command: a kick-off 500 with a
// non-transient OperationOutcome fails within 10 s with exit 1; error files
// whose count is the number of failed resources end in exit 3 with error/
// stored; a count mismatch names --allow-count-mismatch.
func TestExportReferenceServerFaults(t *testing.T) {
	res := [][]byte{[]byte(`{"resourceType":"Patient","id":"1"}`), []byte(`{"resourceType":"Patient","id":"2"}`)}
	base := newTestServer(t, bulktest.Options{Resources: res, Faults: bulktest.Faults{KickoffStatus: 500, KickoffDiagnostics: "An unknown error occurred"}})
	start := time.Now()
	code, _, stderr := runExportCmd(t, nil, "export", "--url", base, "--out", t.TempDir(), "--quiet")
	if code != 1 || !strings.Contains(stderr, "HTTP 500: error/processing An unknown error occurred") {
		t.Errorf("kick-off 500: exit %d: %s", code, stderr)
	}
	d := time.Since(start)
	t.Logf("kick-off 500 with error/processing: exit %d after %s", code, d.Round(time.Millisecond))
	if d > 10*time.Second {
		t.Errorf("kick-off 500 failed after %s, want within 10 s", d)
	}

	base = newTestServer(t, bulktest.Options{Resources: res, Errors: []bulk.Issue{{Severity: "error", Code: "processing", Diagnostics: "x"}},
		Faults: bulktest.Faults{ErrorFileCount: 639}})
	out := t.TempDir()
	code, _, stderr = runExportCmd(t, nil, "export", "--url", base, "--out", out, "--min-wait", "10ms", "--quiet")
	if code != 3 || !strings.Contains(stderr, "the server reported errors") {
		t.Errorf("error file with a resource count: exit %d: %s", code, stderr)
	}

	base = newTestServer(t, bulktest.Options{Resources: res, Faults: bulktest.Faults{MismatchCount: true}})
	code, _, stderr = runExportCmd(t, nil, "export", "--url", base, "--out", t.TempDir(), "--min-wait", "10ms", "--quiet")
	if code != 1 || !strings.Contains(stderr, "--allow-count-mismatch") {
		t.Errorf("count mismatch: exit %d: %s", code, stderr)
	}
}

// The run summary names the run folder with the destination's prefix.
func TestRunSummaryHasPrefix(t *testing.T) {
	cfgPath, lake, _ := pipelineFixture(t, "")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "destination: file://"+filepath.ToSlash(lake), "destination: file://"+filepath.ToSlash(lake)+"?prefix=nightly/", 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runExportCmd(t, nil, "run", cfgPath)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	latest, err := os.ReadFile(filepath.Join(lake, "nightly", "latest"))
	if err != nil {
		t.Fatal(err)
	}
	want := "→ file://" + filepath.ToSlash(lake) + "/nightly/" + strings.TrimSpace(string(latest)) + "/"
	if !strings.Contains(out, want) {
		t.Errorf("summary %q does not name %q", out, want)
	}
}
