package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/pipeline"
	"fhirdeid/storage"
)

// TestValueStepsMatchRun runs the value steps by hand, as a workflow engine
// would, without a state database, into one destination, and Run into
// another: the two runs hold the same lines.
func TestValueStepsMatchRun(t *testing.T) {
	e := newEnv(t, bulktest.Options{PollsBeforeComplete: 2, RetryAfter: "7"})
	ctx := context.Background()

	p := e.pipeline(t, &fakeDeid{})
	rep, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	want := readRun(t, e.dest, rep.Run, "")

	dest2 := filepath.Join(e.dir, "lake2")
	store2, err := storage.Open(ctx, dest2)
	if err != nil {
		t.Fatal(err)
	}
	defer store2.Close()
	q := e.pipeline(t, &fakeDeid{})
	q.State, q.LogDir, q.Store = nil, "", store2
	if err := pipeline.Prepare(q); err != nil {
		t.Fatal(err)
	}
	prev, err := pipeline.LastCommitted(ctx, q)
	if err != nil || prev != nil {
		t.Fatalf("LastCommitted of an empty destination = %v, %v; want nil, nil", prev, err)
	}
	now := time.Now()
	run, err := pipeline.PlanRun(q, now, "", "-w")
	if err != nil {
		t.Fatal(err)
	}
	if run.ID != now.UTC().Format("20060102T150405Z")+"-w" {
		t.Errorf("run id %q", run.ID)
	}
	kickoffs := e.srv.Stats().Kickoffs
	run.StatusURL, err = pipeline.KickOffExport(ctx, q, run)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Stats().Kickoffs - kickoffs; n != 1 {
		t.Fatalf("%d kick-offs", n)
	}
	var exp *pipeline.Export
	for i := 0; exp == nil; i++ {
		polls := e.srv.Stats().StatusPolls
		res, err := pipeline.PollExport(ctx, q, run)
		if err != nil {
			t.Fatal(err)
		}
		if n := e.srv.Stats().StatusPolls - polls; n != 1 {
			t.Fatalf("poll %d made %d status requests, want 1", i, n)
		}
		if res.Export == nil {
			// The client clamps Retry-After to its MaxDelay (10ms here).
			if res.Wait != 10*time.Millisecond {
				t.Errorf("poll %d: wait %s, want the clamped Retry-After", i, res.Wait)
			}
			if i > 3 {
				t.Fatal("the export never completed")
			}
		}
		exp = res.Export
	}
	run.TransactionTime = exp.TransactionTime
	var results []pipeline.FileResult
	for _, f := range exp.Files {
		var last pipeline.FileProgress
		r, err := pipeline.ProcessManifestFile(ctx, q, run.ID, f, func(fp pipeline.FileProgress) { last = fp })
		if err != nil {
			t.Fatal(err)
		}
		if r.File != f || r.BytesIn <= 0 {
			t.Errorf("result %+v of %+v", r, f)
		}
		if r.BytesIn > 64<<10 && (last.BytesIn < 64<<10 || last.Attempt != 1) {
			t.Errorf("%s: progress %+v for %d bytes", f.Name(), last, r.BytesIn)
		}
		results = append(results, r)
	}
	// A writer killed mid-file leaves a temporary file beside the key in a
	// file:// destination; the commit removes it.
	stray := filepath.Join(dest2, run.ID, "Patient.000.ndjson.gz.18eed4ce8053331e.tmp")
	if err := os.WriteFile(stray, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep2, err := pipeline.FinishRun(ctx, q, run, results)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stray temporary file is still there: %v", err)
	}
	got := readRun(t, dest2, rep2.Run, "")
	if !slices.Equal(got, want) || len(got) == 0 {
		t.Errorf("value steps wrote %d lines, Run %d; they differ", len(got), len(want))
	}
	if rep2.Resources != rep.Resources || rep2.Status != rep.Status || rep2.Types["Patient"].Files != rep.Types["Patient"].Files {
		t.Errorf("reports differ: %+v vs %+v", rep2, rep)
	}
	last, err := pipeline.LastCommitted(ctx, q)
	if err != nil || last == nil || last.Run != run.ID || last.TransactionTime != exp.TransactionTime {
		t.Fatalf("LastCommitted = %+v, %v", last, err)
	}
	// The export was released.
	if _, err := pipeline.PollExport(ctx, q, run); !errors.Is(err, bulk.ErrJobGone) {
		t.Errorf("poll after finish: %v, want ErrJobGone", err)
	}
}

// TestPollExportNeedsPrepare: a pipeline that is not prepared would poll
// until the export completes; PollExport refuses it.
func TestPollExportNeedsPrepare(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	q := e.pipeline(t, &fakeDeid{})
	if _, err := pipeline.PollExport(context.Background(), q, pipeline.RunInfo{StatusURL: e.srv.URL() + "/x"}); err == nil {
		t.Fatal("no error")
	}
}
