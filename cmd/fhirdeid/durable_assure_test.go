package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// runReport reads report.json of the run folder run in lake.
func runReport(t *testing.T, lake, run string) map[string]json.RawMessage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(lake, run, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]json.RawMessage
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// latestRun is the run that lake's "latest" names.
func latestRun(t *testing.T, lake string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(lake, "latest"))
	if err != nil {
		t.Fatalf("no committed run: %v", err)
	}
	return strings.TrimSpace(string(data))
}

// onlyRun is the one run folder of lake (committed or not).
func onlyRun(t *testing.T, lake string) string {
	t.Helper()
	ents, err := os.ReadDir(lake)
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != "snapshots" {
			runs = append(runs, e.Name())
		}
	}
	if len(runs) != 1 {
		t.Fatalf("run folders %v, want one", runs)
	}
	return runs[0]
}

// auditOf is report.json's audit section without the counts of how files
// were scanned (in stream or read again), which depend on which process
// de-identified which file.
func auditOf(t *testing.T, rep map[string]json.RawMessage) map[string]any {
	t.Helper()
	var a map[string]any
	if err := json.Unmarshal(rep["audit"], &a); err != nil || a == nil {
		t.Fatalf("report without an audit: %s", rep["audit"])
	}
	delete(a, "filesScannedInStream")
	delete(a, "filesScannedAgain")
	return a
}

func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s of the durable run:\n%s\npipeline.Run's:\n%s", what, g, w)
	}
}

// logEvents counts the events of a log.ndjson by id, checking that every
// line names the run.
func logEvents(t *testing.T, path, run string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := map[string]int{}
	sc := bufio.NewScanner(f)
	var last time.Time
	for sc.Scan() {
		var ev struct {
			ExportID  string    `json:"exportId"`
			Timestamp time.Time `json:"timestamp"`
			EventID   string    `json:"eventId"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if ev.ExportID != run {
			t.Errorf("log line of export %q, want %q", ev.ExportID, run)
		}
		if ev.Timestamp.Before(last) {
			t.Errorf("log line at %s after one at %s", ev.Timestamp, last)
		}
		last = ev.Timestamp
		n[ev.EventID]++
	}
	return n
}

// TestDurableChecksMatchInProcess: a durable run on two workers runs the
// privacy checks of an in-process run: with the same keys its report has
// the same audit (but for how files were scanned) and risk sections, its
// run folder the same files — log.ndjson included, merged from the
// workers' parts —; and with a configuration that keeps Patient.name and
// failOn: leak, the durable run fails with the same audit and nothing is
// published.
func TestDurableChecksMatchInProcess(t *testing.T) {
	s := newDurableSetup(t)
	refDir := t.TempDir()
	if err := start(t, s.bin, "run", "-q", s.config(t, refDir, false)).wait(t, 10*time.Minute); err != nil {
		t.Fatalf("in-process run: %v", err)
	}
	refLake := filepath.Join(refDir, "lake")
	want := runReport(t, refLake, latestRun(t, refLake))

	dir := t.TempDir()
	cfg := s.config(t, dir, true)
	ws := startWorkers(t, s.bin, cfg, 2)
	r := start(t, s.bin, "run", "-q", cfg)
	if err := r.wait(t, 10*time.Minute); err != nil {
		t.Fatalf("durable run: %v", err)
	}
	lake := filepath.Join(dir, "lake")
	run := latestRun(t, lake)
	got := runReport(t, lake, run)
	wa, ga := auditOf(t, want), auditOf(t, got)
	if wa["resourcesScanned"].(float64) < 30000 || wa["identifiersCollected"].(float64) == 0 {
		t.Fatalf("in-process audit %v", wa)
	}
	sameJSON(t, "audit", ga, wa)
	sameJSON(t, "risk", got["risk"], want["risk"])
	sameJSON(t, "status", got["status"], want["status"])
	var ra map[string]any
	_ = json.Unmarshal(got["audit"], &ra)
	t.Logf("durable audit: %v files scanned in stream, %v read again; %v identifiers, %v leaks",
		ra["filesScannedInStream"], ra["filesScannedAgain"], ra["identifiersCollected"], ra["leaks"])
	sameOutput(t, lineSets(t, lake), lineSets(t, refLake))
	if gotFiles, wantFiles := runFiles(t, lake), runFiles(t, refLake); !slices.Equal(gotFiles, wantFiles) {
		t.Errorf("run folder %v, want %v", gotFiles, wantFiles)
	}
	// The export log: the same events as the in-process run's, from both
	// workers' activities.
	ev := logEvents(t, filepath.Join(lake, run, "log.ndjson"), run)
	wev := logEvents(t, filepath.Join(refLake, latestRun(t, refLake), "log.ndjson"), latestRun(t, refLake))
	t.Logf("log.ndjson events: durable %v, pipeline.Run %v", ev, wev)
	if ev["kickoff"] != 1 || ev["status_complete"] != 1 {
		t.Errorf("log.ndjson events %v, want one kickoff and one status_complete", ev)
	}
	for id, n := range wev {
		// The number of status requests depends on timing.
		if id != "status_progress" && ev[id] != n {
			t.Errorf("log.ndjson has %d %s events, pipeline.Run's %d", ev[id], id, n)
		}
	}
	for _, w := range ws {
		_ = w.cmd.Process.Signal(os.Interrupt)
	}
	for _, w := range ws {
		_ = w.wait(t, time.Minute)
	}

	// Names kept, failOn: leak.
	show := cmdOutput(t, s.bin, "config", "show")
	var ac map[string]any
	if err := json.Unmarshal([]byte(show), &ac); err != nil {
		t.Fatal(err)
	}
	ac["fhirPathRules"] = append([]any{map[string]any{"path": "Patient.name", "method": "keep"}}, ac["fhirPathRules"].([]any)...)
	data, _ := json.Marshal(ac)
	s.anonymizer = filepath.Join(t.TempDir(), "keep-names.json")
	if err := os.WriteFile(s.anonymizer, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s.extra = "    audit: {failOn: leak}\n"
	s.queue = randomName("q")
	refDir = t.TempDir()
	ref := start(t, s.bin, "run", "-q", s.config(t, refDir, false))
	if err := ref.wait(t, 10*time.Minute); err == nil {
		t.Fatalf("in-process run with the names kept succeeded: %s", ref.out.String())
	}
	refLake = filepath.Join(refDir, "lake")
	want = runReport(t, refLake, onlyRun(t, refLake))

	dir = t.TempDir()
	cfg = s.config(t, dir, true)
	startWorkers(t, s.bin, cfg, 2)
	r = start(t, s.bin, "run", "-q", cfg)
	err := r.wait(t, 10*time.Minute)
	if err == nil || r.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(r.out.String(), "failOn: leak") ||
		!strings.Contains(r.out.String(), "failed its privacy checks: not published; report: ") {
		t.Fatalf("durable run with the names kept: %v (exit %d): %s", err, r.cmd.ProcessState.ExitCode(), r.out.String())
	}
	lake = filepath.Join(dir, "lake")
	run = onlyRun(t, lake)
	for _, name := range []string{"latest", "current", filepath.Join(run, "_SUCCESS")} {
		if _, err := os.Stat(filepath.Join(lake, name)); !os.IsNotExist(err) {
			t.Errorf("%s published: %v", name, err)
		}
	}
	got = runReport(t, lake, run)
	ga, wa = auditOf(t, got), auditOf(t, want)
	if wa["resourcesWithLeaks"].(float64) != 100 {
		t.Errorf("in-process audit with the names kept: %v", wa)
	}
	sameJSON(t, "audit with the names kept", ga, wa)
	sameJSON(t, "status with the names kept", got["status"], want["status"])
	parts, _ := filepath.Glob(filepath.Join(lake, run, "_log-*"))
	days, _ := filepath.Glob(filepath.Join(lake, run, "_audit-*"))
	parts = append(parts, days...)
	if len(parts) > 0 {
		t.Errorf("the log's parts are left: %v", parts)
	}
	if ev := logEvents(t, filepath.Join(lake, run, "log.ndjson"), run); ev["kickoff"] != 1 {
		t.Errorf("log.ndjson of the failed run: events %v", ev)
	}
}

// cmdOutput runs the binary and returns its standard output.
func cmdOutput(t *testing.T, bin string, args ...string) string {
	t.Helper()
	p := start(t, bin, args...)
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return p.out.String()
}
