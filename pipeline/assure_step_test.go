package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"fhirdeid/audit"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/pipeline"
	"fhirdeid/storage"
)

// TestAssureStepsAcrossProcesses runs a run's value steps as two workers
// would — two pipelines (two processes' memories) sharing one destination,
// each de-identifying half of the files, concurrently, with the audit in
// stream — then completes the checks on one of them (AssureRun) and
// commits (FinishAssuredRun): the audit and risk sections equal Run's
// (but for how files were scanned), the run's log is merged from the
// parts of both, and the temporary objects are gone. With Patient.name
// kept and failOn: leak, nothing is published and the audit equals Run's.
func TestAssureStepsAcrossProcesses(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "clean", true: "names kept"}[keep], func(t *testing.T) {
			testAssureStepsAcrossProcesses(t, keep)
		})
	}
}

func testAssureStepsAcrossProcesses(t *testing.T, keep bool) {
	ctx := context.Background()
	e := newEnv(t, bulktest.Options{PartSize: 20})
	var extra []map[string]any
	if keep {
		extra = append(extra, map[string]any{"path": "Patient.name", "method": "keep"})
	}
	assurance := func() *pipeline.Assurance {
		return &pipeline.Assurance{Audit: true, FailOnLeak: true, Risk: true}
	}
	p := e.pipeline(t, engineDeid(t, extra...))
	p.Assurance = assurance()
	want, err := pipeline.Run(ctx, p)
	var ae *pipeline.AssuranceError
	if keep {
		if !errors.As(err, &ae) {
			t.Fatalf("Run with the names kept: %v", err)
		}
		want = ae.Report
	} else if err != nil {
		t.Fatal(err)
	}

	dest := filepath.Join(e.dir, "lake2")
	store, err := storage.Open(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	workers := make([]*pipeline.Pipeline, 2)
	for i := range workers {
		q := e.pipeline(t, engineDeid(t, extra...))
		q.State, q.LogDir, q.Store, q.Assurance = nil, "", store, assurance()
		if err := pipeline.Prepare(q); err != nil {
			t.Fatal(err)
		}
		pipeline.InstallPartLog(q)
		workers[i] = q
	}
	q0, q1 := workers[0], workers[1]
	run, err := pipeline.PlanRun(q0, time.Now(), "", "-w")
	if err != nil {
		t.Fatal(err)
	}
	pipeline.BeginLogPart(q0, run.ID)
	if run.StatusURL, err = pipeline.KickOffExport(ctx, q0, run); err != nil {
		t.Fatal(err)
	}
	var exp *pipeline.Export
	for exp == nil {
		res, err := pipeline.PollExport(ctx, q0, run)
		if err != nil {
			t.Fatal(err)
		}
		exp = res.Export
		time.Sleep(res.Wait)
	}
	if err := pipeline.FlushLogPart(ctx, q0, run.ID, "kickoff"); err != nil {
		t.Fatal(err)
	}
	run.TransactionTime = exp.TransactionTime
	if len(exp.Files) < 4 {
		t.Fatalf("%d files: too few to share", len(exp.Files))
	}
	results := make([]pipeline.FileResult, len(exp.Files))
	errs := make([]error, len(exp.Files))
	var wg sync.WaitGroup
	for i, f := range exp.Files {
		q := workers[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			pipeline.BeginLogPart(q, run.ID)
			pipeline.AuditDuring(q, run.ID)
			r, err := pipeline.ProcessManifestFile(ctx, q, run.ID, f, nil)
			if err == nil {
				err = pipeline.StoreRewrittenDays(ctx, q, run.ID, r)
			}
			if err == nil {
				err = pipeline.FlushLogPart(ctx, q, run.ID, "file-"+f.Name())
			}
			results[i], errs[i] = r, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	as, err := pipeline.AssureRun(ctx, q1, run, results)
	if err != nil {
		t.Fatal(err)
	}
	if as == nil || as.Audit == nil || as.Risk == nil {
		t.Fatalf("checks %+v", as)
	}
	outputs := as.Audit.FilesScannedInStream + as.Audit.FilesScannedAgain
	if as.Audit.FilesScannedInStream == 0 || as.Audit.FilesScannedAgain == 0 || as.Audit.Incomplete != "" {
		t.Errorf("audit of %d output files: %d in stream, %d again, incomplete %q; want some of each, complete",
			outputs, as.Audit.FilesScannedInStream, as.Audit.FilesScannedAgain, as.Audit.Incomplete)
	}
	// The activity tried again in the same process (its first attempt
	// lost, say, by a timeout) finds the same: nothing counted twice.
	again, err := pipeline.AssureRun(ctx, q1, run, results)
	if err != nil {
		t.Fatal(err)
	}
	sameChecks(t, &pipeline.Report{Audit: again.Audit, Risk: again.Risk}, &pipeline.Report{Audit: as.Audit, Risk: as.Risk})
	got, err := pipeline.FinishAssuredRun(ctx, q1, run, results, as)
	if keep {
		if !errors.As(err, &ae) {
			t.Fatalf("FinishAssuredRun with the names kept: %v", err)
		}
		got = ae.Report
		for _, name := range []string{filepath.Join(run.ID, "_SUCCESS"), "latest", "current"} {
			if _, err := os.Stat(filepath.Join(dest, name)); !os.IsNotExist(err) {
				t.Errorf("%s exists after a failed audit: %v", name, err)
			}
		}
		if _, err := os.Stat(filepath.Join(dest, run.ID, "report.json")); err != nil {
			t.Errorf("no report.json in the unpublished run: %v", err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	if got.Status != want.Status {
		t.Errorf("status %s, Run's %s", got.Status, want.Status)
	}
	sameChecks(t, got, want)
	// The process that committed lets the run's identifiers go; Run too.
	if held := pipeline.AuditHeld(q1); held != "" {
		t.Errorf("the committing process still holds the audit of run %s", held)
	}
	if held := pipeline.AuditHeld(p); held != "" {
		t.Errorf("Run's process still holds the audit of run %s", held)
	}
	// log.ndjson: both workers' events, in time order; no part is left,
	// nor the audit's temporary objects.
	lg, err := os.ReadFile(filepath.Join(dest, run.ID, "log.ndjson"))
	if err != nil || !bytes.Contains(lg, []byte(`"eventId":"kickoff"`)) || !bytes.Contains(lg, []byte(`"eventId":"status_complete"`)) {
		t.Errorf("log.ndjson: %v\n%s", err, lg)
	}
	for _, pat := range []string{"_log*", "_audit*"} {
		if left, _ := filepath.Glob(filepath.Join(dest, run.ID, pat)); len(left) > 0 {
			t.Errorf("left in the run folder: %v", left)
		}
	}
}

// sameChecks compares the audit (but for how files were scanned) and risk
// sections of two reports.
func sameChecks(t *testing.T, got, want *pipeline.Report) {
	t.Helper()
	norm := func(a *audit.Report) []byte {
		if a == nil {
			return nil
		}
		c := *a
		c.FilesScannedInStream, c.FilesScannedAgain = 0, 0
		b, _ := json.Marshal(c)
		return b
	}
	if g, w := norm(got.Audit), norm(want.Audit); g == nil || !bytes.Equal(g, w) {
		t.Errorf("audit\n%s\nRun's\n%s", g, w)
	}
	g, _ := json.Marshal(got.Risk)
	w, _ := json.Marshal(want.Risk)
	if got.Risk == nil || !bytes.Equal(g, w) {
		t.Errorf("risk\n%s\nRun's\n%s", g, w)
	}
}

// TestAssureRunInputGone: when the export was released before the checks,
// the input files de-identified by another process cannot be read again:
// the audit is complete for the files of this process, says it is
// incomplete for the others, and the checks do not fail.
func TestAssureRunInputGone(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, bulktest.Options{PartSize: 20})
	workers := make([]*pipeline.Pipeline, 2)
	for i := range workers {
		q := e.pipeline(t, engineDeid(t))
		q.State, q.LogDir, q.Assurance = nil, "", &pipeline.Assurance{Audit: true, FailOnLeak: true}
		if err := pipeline.Prepare(q); err != nil {
			t.Fatal(err)
		}
		workers[i] = q
	}
	run, err := pipeline.PlanRun(workers[0], time.Now(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if run.StatusURL, err = pipeline.KickOffExport(ctx, workers[0], run); err != nil {
		t.Fatal(err)
	}
	var exp *pipeline.Export
	for exp == nil {
		res, err := pipeline.PollExport(ctx, workers[0], run)
		if err != nil {
			t.Fatal(err)
		}
		exp = res.Export
		time.Sleep(res.Wait)
	}
	var results []pipeline.FileResult
	for i, f := range exp.Files {
		q := workers[i%2]
		pipeline.AuditDuring(q, run.ID)
		r, err := pipeline.ProcessManifestFile(ctx, q, run.ID, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	pipeline.ReleaseExport(ctx, workers[0], run)
	as, err := pipeline.AssureRun(ctx, workers[1], run, results)
	if err != nil {
		t.Fatalf("checks after the export was released: %v", err)
	}
	if as.Audit == nil || as.Audit.Incomplete == "" || len(as.Gate) != 0 || as.Audit.ResourcesScanned == 0 {
		t.Errorf("audit %+v, gate %v: want incomplete, not failed", as.Audit, as.Gate)
	}
}
