package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

// buildBinary builds the fhirdeid binary for exec-based tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fhirdeid")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBulkServer runs `fhirdeid bulkserver` and returns its FHIR base.
func startBulkServer(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"bulkserver"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("bulkserver did not start: %v", err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "bulkserver: FHIR base ")
	if !ok {
		t.Fatalf("bulkserver printed %q", line)
	}
	return base
}

func serverStats(t *testing.T, base string) bulktest.Stats {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(base, "/fhir") + "/_bulktest/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st bulktest.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func readCheckpoint(dir string) *bulk.Checkpoint {
	cp, err := bulk.FileCheckpointStore{Path: filepath.Join(dir, checkpointName)}.Load()
	if err != nil {
		return nil
	}
	return cp
}

func doneFiles(cp *bulk.Checkpoint) int {
	n := 0
	for _, f := range cp.Files {
		if f.Done {
			n++
		}
	}
	return n
}

// TestExportKillResume kills `fhirdeid export` with SIGKILL at several
// points of an export from `fhirdeid bulkserver`, re-runs it, and checks
// that every re-run finishes the same export — the server sees no second
// kick-off — and stores exactly what an uninterrupted run stores.
func TestExportKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := writeFixture(t, 60)
	base := startBulkServer(t, bin, "--data", data, "--polls", "6", "--retry-after=", "--part-size", "40",
		"--download-delay", "120ms")
	exportArgs := func(out string) []string {
		return []string{"export", "--url", base, "--out", out, "--min-wait", "100ms", "--max-wait", "200ms", "--concurrency", "1"}
	}

	ref := t.TempDir()
	if out, err := exec.Command(bin, exportArgs(ref)...).CombinedOutput(); err != nil {
		t.Fatalf("reference export: %v\n%s", err, out)
	}
	want := exportedData(t, ref)
	refCP := readCheckpoint(ref)
	if refCP == nil || !refCP.Complete || len(refCP.Files) < 10 {
		t.Fatalf("reference export checkpoint: %+v", refCP)
	}
	total := len(refCP.Files)

	points := []struct {
		name string
		at   func(cp *bulk.Checkpoint) bool
		sig  os.Signal
	}{
		{"while polling", func(cp *bulk.Checkpoint) bool { return cp.StatusURL != "" && cp.Manifest == nil }, os.Kill},
		{"manifest known, nothing stored", func(cp *bulk.Checkpoint) bool { return cp.Manifest != nil && doneFiles(cp) == 0 }, os.Kill},
		{"after 3 files", func(cp *bulk.Checkpoint) bool { return doneFiles(cp) >= 3 }, os.Kill},
		{"one file left", func(cp *bulk.Checkpoint) bool { return doneFiles(cp) >= total-1 }, os.Kill},
		{"SIGTERM mid-download", func(cp *bulk.Checkpoint) bool { return doneFiles(cp) >= 5 }, syscall.SIGTERM},
	}
	for _, p := range points {
		t.Run(p.name, func(t *testing.T) {
			before := serverStats(t, base).Kickoffs
			out := t.TempDir()
			cmd := exec.Command(bin, exportArgs(out)...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			deadline := time.After(60 * time.Second)
			killed := false
			for !killed {
				select {
				case err := <-exited:
					t.Fatalf("export finished (%v) before the kill point", err)
				case <-deadline:
					_ = cmd.Process.Kill()
					t.Fatal("kill point not reached in 60 s")
				case <-time.After(2 * time.Millisecond):
				}
				if cp := readCheckpoint(out); cp != nil && p.at(cp) {
					if err := cmd.Process.Signal(p.sig); err != nil {
						t.Fatal(err)
					}
					err := <-exited
					var ee *exec.ExitError
					if p.sig == syscall.SIGTERM && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
						t.Errorf("SIGTERM: %v, want a clean exit with status 1", err)
					}
					killed = true
				}
			}
			cp := readCheckpoint(out)
			if cp.Complete {
				t.Fatal("killed export is marked complete")
			}
			stored := doneFiles(cp)
			res, err := exec.Command(bin, exportArgs(out)...).CombinedOutput()
			if err != nil {
				t.Fatalf("re-run: %v\n%s", err, res)
			}
			if !strings.Contains(string(res), "resuming export "+cp.ExportID) {
				t.Errorf("re-run did not resume: %s", res)
			}
			if !strings.Contains(string(res), fmt.Sprintf("this run downloaded %d files", total-stored)) {
				t.Errorf("re-run should download the %d missing files: %s", total-stored, lastLine(string(res)))
			}
			if got := serverStats(t, base).Kickoffs - before; got != 1 {
				t.Errorf("the killed and resumed export kicked off %d times, want 1", got)
			}
			compareExports(t, exportedData(t, out), want)
			if partials, _ := filepath.Glob(filepath.Join(out, ".*.partial-*")); len(partials) > 0 {
				t.Errorf("temporary files left: %v", partials)
			}
			if cp := readCheckpoint(out); cp == nil || !cp.Complete || !cp.Deleted {
				t.Errorf("final checkpoint not complete and deleted: %+v", cp)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(ref, "manifest.json")); err != nil {
		t.Error(err)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
