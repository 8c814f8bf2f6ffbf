package durable

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"fhirdeid/audit"
	"fhirdeid/bulk"
	"fhirdeid/pipeline"
)

// fakeRun is the run the mocked Start returns.
var fakeRun = pipeline.RunInfo{ID: "20260101T000000Z", Source: "ehr"}

func files(n int) []pipeline.FileSpec {
	var fs []pipeline.FileSpec
	for i := range n {
		fs = append(fs, pipeline.FileSpec{URL: fmt.Sprintf("https://fhir.test/f/%d", i), Kind: bulk.KindOutput,
			Type: "Patient", Seq: i, Expected: 10})
	}
	return fs
}

// mockEnv is a workflow test environment whose activities are mocked:
// Start returns fakeRun, KickOff a status URL, Poll waits twice with a
// Retry-After of 30 s and then returns an export of nFiles files, every file
// succeeds with 10 resources, Finish builds a report from the results.
type mockEnv struct {
	*testsuite.TestWorkflowEnvironment
	mu       sync.Mutex
	timers   []time.Duration
	inflight int
	peak     int
	kickoffs int
	polls    int
	finished []pipeline.FileResult
	released int
	// assured is what Assure returned, assuredFiles what it got, and
	// finishAssured what Finish got from it.
	assured       *pipeline.Assured
	assuredFiles  []pipeline.FileResult
	finishAssured *pipeline.Assured
	// assure, if set, replaces the default Assure (which returns assured).
	assure func(ctx context.Context, in FinishInput) (*pipeline.Assured, error)
	// poll and processFile, if set, replace the default Poll and
	// ProcessFile.
	poll        func(ctx context.Context, in RunInput) (pipeline.PollResult, error)
	processFile func(ctx context.Context, in FileInput) (pipeline.FileResult, error)
}

func newMockEnv(t *testing.T, nFiles int) *mockEnv {
	var s testsuite.WorkflowTestSuite
	e := &mockEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment()}
	e.SetDataConverter(DataConverter())
	// The test machine may be loaded: the default of 1 s reports slow
	// scheduling as a deadlock.
	e.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 20 * time.Second})
	var a *Activities
	e.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: WorkflowName})
	e.RegisterActivity(&Activities{})
	e.SetOnTimerScheduledListener(func(id string, d time.Duration) {
		e.mu.Lock()
		e.timers = append(e.timers, d)
		e.mu.Unlock()
	})
	e.SetOnActivityStartedListener(func(info *activity.Info, ctx context.Context, args converter.EncodedValues) {
		if info.ActivityType.Name == "ProcessFile" {
			e.mu.Lock()
			e.inflight++
			e.peak = max(e.peak, e.inflight)
			e.mu.Unlock()
		}
	})
	e.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, _ error) {
		if info.ActivityType.Name == "ProcessFile" {
			e.mu.Lock()
			e.inflight--
			e.mu.Unlock()
		}
	})
	e.OnActivity(a.Start, mock.Anything, mock.Anything).Return(fakeRun, nil)
	e.OnActivity(a.KickOff, mock.Anything, mock.Anything).Return(func(ctx context.Context, in RunInput) (string, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.kickoffs++
		return fmt.Sprintf("https://fhir.test/status/%d", e.kickoffs), nil
	})
	e.OnActivity(a.Poll, mock.Anything, mock.Anything).Return(func(ctx context.Context, in RunInput) (pipeline.PollResult, error) {
		if e.poll != nil {
			return e.poll(ctx, in)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.polls++
		if e.polls <= 2 {
			return pipeline.PollResult{Wait: 30 * time.Second}, nil
		}
		return pipeline.PollResult{Export: &pipeline.Export{TransactionTime: "2026-01-01T00:00:00Z", Files: files(nFiles)}}, nil
	})
	e.OnActivity(a.ProcessFile, mock.Anything, mock.Anything).Return(func(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
		if e.processFile != nil {
			return e.processFile(ctx, in)
		}
		return okFile(ctx, in)
	})
	e.OnActivity(a.Release, mock.Anything, mock.Anything).Return(func(ctx context.Context, in RunInput) error {
		e.mu.Lock()
		e.released++
		e.mu.Unlock()
		return nil
	})
	e.OnActivity(a.Assure, mock.Anything, mock.Anything).Return(func(ctx context.Context, in FinishInput) (*pipeline.Assured, error) {
		e.mu.Lock()
		e.assuredFiles = in.Files
		e.mu.Unlock()
		if e.assure != nil {
			return e.assure(ctx, in)
		}
		return e.assured, nil
	})
	e.OnActivity(a.Finish, mock.Anything, mock.Anything).Return(func(ctx context.Context, in FinishInput) (*pipeline.Report, error) {
		e.mu.Lock()
		e.finished = in.Files
		e.finishAssured = in.Assured
		e.mu.Unlock()
		rep := &pipeline.Report{Run: in.Run.ID, Status: "succeeded", TransactionTime: in.Run.TransactionTime}
		for _, f := range in.Files {
			rep.Resources += f.Resources
		}
		return rep, nil
	})
	return e
}

func okFile(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
	return pipeline.FileResult{File: in.File, Resources: 10, BytesIn: 100, BytesOut: 50,
		OutKey: fmt.Sprintf("%s/%s.%03d.ndjson.gz", in.Run, in.File.Type, in.File.Seq)}, nil
}

func TestWorkflowPollsOnTimersAndCapsConcurrency(t *testing.T) {
	e := newMockEnv(t, 9)
	// The first three files wait until all three run, so that the peak
	// reaches the cap whatever the scheduling of the test's goroutines
	// (a workflow that ran files one at a time would wait out the timeout
	// and show a peak of 1).
	var (
		startedMu sync.Mutex
		started   int
		allIn     = make(chan struct{})
	)
	e.processFile = func(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
		startedMu.Lock()
		if started++; started == 3 {
			close(allIn)
		}
		startedMu.Unlock()
		select {
		case <-allIn:
		case <-time.After(5 * time.Second):
		}
		return okFile(ctx, in)
	}
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr", Options: Options{Concurrency: 3, PollInitial: 2 * time.Second, PollMax: time.Minute}})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var rep pipeline.Report
	if err := e.GetWorkflowResult(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.Resources != 90 || rep.TransactionTime != "2026-01-01T00:00:00Z" {
		t.Errorf("report %+v", rep)
	}
	// Two waits, each the server's Retry-After (longer than the backoff).
	if len(e.timers) != 2 || e.timers[0] != 30*time.Second || e.timers[1] != 30*time.Second {
		t.Errorf("timers %v, want two of 30s", e.timers)
	}
	if e.peak != 3 {
		t.Errorf("peak of %d files at once, want the cap of 3", e.peak)
	}
	if e.kickoffs != 1 || e.polls != 3 {
		t.Errorf("%d kick-offs, %d polls", e.kickoffs, e.polls)
	}
	// Finish gets every file once, in state-database order; Patient files
	// keep their URLs (the scrub method's workers read them), others would
	// not.
	if len(e.finished) != 9 {
		t.Fatalf("Finish got %d files", len(e.finished))
	}
	for i, f := range e.finished {
		if f.File.Seq != i || f.File.URL != fmt.Sprintf("https://fhir.test/f/%d", i) {
			t.Errorf("file %d: %+v", i, f.File)
		}
	}
}

// TestWorkflowBackoffWithoutRetryAfter: a server that asks to come back
// at once is polled on the workflow's growing backoff, up to PollMax.
func TestWorkflowBackoffWithoutRetryAfter(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 20 * time.Second})
	var a *Activities
	e.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: WorkflowName})
	e.RegisterActivity(&Activities{})
	var timers []time.Duration
	e.SetOnTimerScheduledListener(func(id string, d time.Duration) { timers = append(timers, d) })
	polls := 0
	e.OnActivity(a.Start, mock.Anything, mock.Anything).Return(fakeRun, nil)
	e.OnActivity(a.KickOff, mock.Anything, mock.Anything).Return("https://fhir.test/status", nil)
	e.OnActivity(a.Poll, mock.Anything, mock.Anything).Return(func(ctx context.Context, in RunInput) (pipeline.PollResult, error) {
		polls++
		if polls <= 6 {
			return pipeline.PollResult{Wait: time.Second}, nil
		}
		return pipeline.PollResult{Export: &pipeline.Export{Files: files(1)}}, nil
	})
	e.OnActivity(a.ProcessFile, mock.Anything, mock.Anything).Return(okFile)
	e.OnActivity(a.Assure, mock.Anything, mock.Anything).Return(nil, nil)
	e.OnActivity(a.Finish, mock.Anything, mock.Anything).Return(&pipeline.Report{Status: "succeeded"}, nil)
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr", Options: Options{PollInitial: 2 * time.Second, PollMax: 5 * time.Second}})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{2 * time.Second, 3 * time.Second, 4500 * time.Millisecond, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	if fmt.Sprint(timers) != fmt.Sprint(want) {
		t.Errorf("timers %v, want %v", timers, want)
	}
}

func TestWorkflowRetriesTransientFileErrors(t *testing.T) {
	e := newMockEnv(t, 3)
	attempts := map[int]int{}
	var mu sync.Mutex
	e.processFile = func(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
		mu.Lock()
		attempts[in.File.Seq]++
		n := attempts[in.File.Seq]
		mu.Unlock()
		if in.File.Seq == 1 && n <= 2 {
			return pipeline.FileResult{}, temporal.NewApplicationError("process: download: connection reset", "retryable")
		}
		return okFile(ctx, in)
	}
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr"})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if attempts[1] != 3 || attempts[0] != 1 || attempts[2] != 1 {
		t.Errorf("attempts %v", attempts)
	}
	if len(e.finished) != 3 {
		t.Errorf("Finish got %d files", len(e.finished))
	}
}

// TestWorkflowFatalFileErrorFailsRun: a non-retryable error is not retried,
// the other files are cancelled, and the run is not committed.
func TestWorkflowFatalFileErrorFailsRun(t *testing.T) {
	e := newMockEnv(t, 6)
	var calls int
	var mu sync.Mutex
	e.processFile = func(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		if in.File.Seq == 0 {
			return pipeline.FileResult{}, classify("process", errors.New("output file Patient.000: 9 resources where the manifest says 10"))
		}
		return okFile(ctx, in)
	}
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr", Options: Options{Concurrency: 1}})
	err := e.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeFatal {
		t.Fatalf("workflow error %v, want a fatal application error", err)
	}
	if calls != 1 {
		t.Errorf("%d file attempts, want 1 (no retry, no further file)", calls)
	}
	if e.finished != nil {
		t.Error("the run was committed")
	}
}

// TestWorkflowKicksOffAgainWhenJobGone: a server that forgets the export
// gets a new kick-off, and the run completes.
func TestWorkflowKicksOffAgainWhenJobGone(t *testing.T) {
	e := newMockEnv(t, 2)
	polls := 0
	e.poll = func(ctx context.Context, in RunInput) (pipeline.PollResult, error) {
		polls++
		if polls == 1 {
			if in.Run.StatusURL != "https://fhir.test/status/1" {
				t.Errorf("first poll of %q", in.Run.StatusURL)
			}
			return pipeline.PollResult{}, classify("status", fmt.Errorf("status: x: %w", bulk.ErrJobGone))
		}
		if in.Run.StatusURL != "https://fhir.test/status/2" {
			t.Errorf("poll %d of %q", polls, in.Run.StatusURL)
		}
		return pipeline.PollResult{Export: &pipeline.Export{Files: files(2)}}, nil
	}
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr"})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if e.kickoffs != 2 {
		t.Errorf("%d kick-offs, want 2", e.kickoffs)
	}
}

// TestWorkflowCancelReleasesExport: cancelling a run while it polls ends
// the workflow as cancelled and releases the export on the server.
func TestWorkflowCancelReleasesExport(t *testing.T) {
	e := newMockEnv(t, 2)
	e.RegisterDelayedCallback(e.CancelWorkflow, 40*time.Second)
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr"})
	err := e.GetWorkflowError()
	var ce *temporal.CanceledError
	if !errors.As(err, &ce) {
		t.Fatalf("workflow error %v, want cancelled", err)
	}
	if e.released != 1 || e.finished != nil {
		t.Errorf("released %d times, finished %v", e.released, e.finished != nil)
	}
}

// TestWorkflowCancelWhileProcessing: cancelling while files are processed
// cancels the running activities and releases the export.
func TestWorkflowCancelWhileProcessing(t *testing.T) {
	e := newMockEnv(t, 4)
	// The test clock stands still while activities run: the first file
	// cancels the workflow, and every file waits for its cancellation.
	var once sync.Once
	e.processFile = func(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
		once.Do(func() { go e.CancelWorkflow() })
		select {
		case <-ctx.Done():
			return pipeline.FileResult{}, ctx.Err()
		case <-time.After(10 * time.Second):
			return pipeline.FileResult{}, errors.New("not cancelled")
		}
	}
	e.SetTestTimeout(30 * time.Second)
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr", Options: Options{HeartbeatTimeout: time.Hour}})
	var ce *temporal.CanceledError
	if err := e.GetWorkflowError(); !errors.As(err, &ce) {
		t.Fatalf("workflow error %v, want cancelled", err)
	}
	if e.released != 1 {
		t.Errorf("released %d times", e.released)
	}
}

// TestWorkflowContinuesAsNew: past FilesPerExecution files the workflow
// continues as new with the remaining files and the results so far; the
// continued execution commits them all.
func TestWorkflowContinuesAsNew(t *testing.T) {
	e := newMockEnv(t, 5)
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr", Options: Options{FilesPerExecution: 2}})
	err := e.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow error %v, want continue-as-new", err)
	}
	var next Input
	if err := DataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.Run == nil || next.Run.ID != fakeRun.ID || len(next.Pending) != 3 || len(next.Done) != 2 || next.Executions != 1 {
		t.Fatalf("continued with run %v, %d pending, %d done, %d executions", next.Run, len(next.Pending), len(next.Done), next.Executions)
	}
	// The continued execution neither starts nor kicks off again.
	e2 := newMockEnv(t, 0)
	e2.ExecuteWorkflow(Workflow, next)
	err = e2.GetWorkflowError()
	if !errors.As(err, &can) {
		t.Fatalf("second execution: %v, want continue-as-new", err)
	}
	var last Input
	if err := DataConverter().FromPayloads(can.Input, &last); err != nil {
		t.Fatal(err)
	}
	e3 := newMockEnv(t, 0)
	e3.ExecuteWorkflow(Workflow, last)
	if err := e3.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(e3.finished) != 5 || e2.kickoffs+e3.kickoffs != 0 {
		t.Errorf("finished %d files, %d kick-offs after the first execution", len(e3.finished), e2.kickoffs+e3.kickoffs)
	}
	for i, f := range e3.finished {
		if f.File.Seq != i {
			t.Errorf("file %d is %d", i, f.File.Seq)
		}
	}
}

// TestWorkflowRunsChecksBeforeCommit: the files of the identifying types
// are processed first; Assure gets every file with its URL (it reads the
// input again) once all are stored, and Finish gets its results.
func TestWorkflowRunsChecksBeforeCommit(t *testing.T) {
	e := newMockEnv(t, 0)
	mixed := []pipeline.FileSpec{
		{URL: "https://fhir.test/o/0", Kind: bulk.KindOutput, Type: "Observation", Seq: 0, Expected: 10},
		{URL: "https://fhir.test/p/0", Kind: bulk.KindOutput, Type: "Patient", Seq: 0, Expected: 10},
		{URL: "https://fhir.test/o/1", Kind: bulk.KindOutput, Type: "Observation", Seq: 1, Expected: 10},
		{URL: "https://fhir.test/pr/0", Kind: bulk.KindOutput, Type: "Practitioner", Seq: 0, Expected: 10},
	}
	e.poll = func(ctx context.Context, in RunInput) (pipeline.PollResult, error) {
		return pipeline.PollResult{Export: &pipeline.Export{Files: mixed}}, nil
	}
	var order []string
	e.processFile = func(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
		e.mu.Lock()
		order = append(order, in.File.Type)
		e.mu.Unlock()
		return okFile(ctx, in)
	}
	e.assured = &pipeline.Assured{Audit: &audit.Report{IdentifiersCollected: 7}, Warnings: []string{"risk: low k"}}
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr", Options: Options{Concurrency: 1}})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[Patient Practitioner Observation Observation]" {
		t.Errorf("files processed in the order %v, want the identifying types first", order)
	}
	if len(e.assuredFiles) != 4 {
		t.Fatalf("Assure got %d files", len(e.assuredFiles))
	}
	for _, f := range e.assuredFiles {
		if f.File.URL == "" {
			t.Errorf("Assure got %s without its URL", f.File.Name())
		}
	}
	if e.finishAssured == nil || e.finishAssured.Audit == nil || e.finishAssured.Audit.IdentifiersCollected != 7 ||
		len(e.finishAssured.Warnings) != 1 {
		t.Errorf("Finish got the checks %+v", e.finishAssured)
	}
}

// TestWorkflowChecksFailure: checks that cannot run fail the run before
// anything is committed.
func TestWorkflowChecksFailure(t *testing.T) {
	e := newMockEnv(t, 2)
	e.assure = func(ctx context.Context, in FinishInput) (*pipeline.Assured, error) {
		return nil, temporal.NewNonRetryableApplicationError("assure: audit: risk: bad quasi-identifier", ErrTypeFatal, nil)
	}
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr"})
	var ae *temporal.ApplicationError
	if err := e.GetWorkflowError(); !errors.As(err, &ae) || ae.Type() != ErrTypeFatal {
		t.Fatalf("workflow error %v, want the checks' fatal error", e.GetWorkflowError())
	}
	if e.finished != nil {
		t.Error("Finish ran after the checks failed")
	}
}
