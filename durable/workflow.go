// Package durable runs fhirdeid's pipeline as a Temporal workflow, so that
// a run survives the loss of a machine and its files are de-identified by
// any number of workers on any number of machines.
//
// Workflow only orchestrates: one workflow execution per run, whose
// activities (Activities) are one-line adapters over the value steps of
// package pipeline — the very steps that pipeline.Run calls. The run's
// state (its export request, status URL, manifest files and file results)
// lives in the workflow's history instead of the local state database;
// polling is a durable timer honouring Retry-After, so that an export that
// takes days costs no worker; each manifest file is one ProcessFile
// activity, Options.Concurrency at a time, heartbeating its progress; very
// large manifests continue as new executions. Before the commit an Assure
// activity completes the run's privacy checks (each worker audits the
// files it de-identifies in stream; see pipeline.AssureRun), and Finish
// commits with their results, or keeps the run unpublished. Each activity
// stores its worker's export events as a part of the run's log, which
// Finish merges into log.ndjson. It is the only package that imports the
// Temporal SDK (cmd wires it); it holds no business logic.
//
// Monitor shows the runs on Temporal to fhirdeid serve (server.Remote) and
// keeps one run of a pipeline at a time: a run that starts while an
// earlier one is in progress is skipped by its Start activity
// (ErrTypeOverlap). Workers whose pipelines scrub free text collect the
// run's identifiers once each, from the files the workflow names
// (QueryScrubInput); Activities.HostFiles caps a worker's downloads per
// host across its pipelines.
package durable

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"fhirdeid/bulk"
	"fhirdeid/pipeline"
)

// WorkflowName is the registered name of Workflow.
const WorkflowName = "fhirdeid.Pipeline"

// QueryProgress is the name of the query that returns a run's Progress.
const QueryProgress = "progress"

// QueryScrubInput is the name of the query that returns a run's
// ScrubInput, once its export is complete.
const QueryScrubInput = "scrubInput"

// ScrubInput is what a worker needs to collect the identifiers of a run
// for the scrub method (pipeline.CollectRunIdentifiers): the run and its
// identifier files.
type ScrubInput struct {
	Run   pipeline.RunInfo
	Files []pipeline.FileSpec
}

// Options tune a run's workflow; zero values take the defaults.
type Options struct {
	// Concurrency is the number of files scheduled at once (default 4):
	// each is processed by a worker, or waits in the task queue for a free
	// slot. Scheduling more files than the workers process at once hides
	// the latency between the end of one file and the start of the next
	// (a workflow task, then a dispatch).
	Concurrency int
	// PollInitial and PollMax bound the wait between status polls: the
	// workflow waits the server's Retry-After, but no less than its own
	// backoff, which starts at PollInitial (default 1 s) and grows by half
	// up to PollMax (default 5 min), so that an export of days costs a
	// bounded history.
	PollInitial, PollMax time.Duration
	// FileTimeout bounds one attempt at one file (default 12 h).
	FileTimeout time.Duration
	// HeartbeatTimeout is how long a file's attempt may go without a
	// heartbeat before another worker takes it over (default 1 min).
	HeartbeatTimeout time.Duration
	// MaxAttempts bounds the attempts of every activity (default 10).
	MaxAttempts int32
	// FilesPerExecution is the number of files after which the workflow
	// continues as new, keeping each history far below Temporal's limits
	// (default 1000).
	FilesPerExecution int
	// MaxKickOffs bounds the kick-offs of one run when the server forgets
	// the export (default 3).
	MaxKickOffs int
}

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	def(&o.PollInitial, time.Second)
	def(&o.PollMax, 5*time.Minute)
	def(&o.FileTimeout, 12*time.Hour)
	def(&o.HeartbeatTimeout, time.Minute)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.FilesPerExecution <= 0 {
		o.FilesPerExecution = 1000
	}
	if o.MaxKickOffs <= 0 {
		o.MaxKickOffs = 3
	}
	return o
}

// Input is the input of Workflow. A single input structure is preferred to
// multiple workflow arguments to simplify backward compatible changes.
type Input struct {
	// Pipeline names the pipeline in the workers' configuration.
	Pipeline string
	// NewKeys accepts anonymizer keys that differ from the last committed
	// run's (a new lake, with a full export).
	NewKeys bool
	Options Options

	// The state carried to a continued execution: the run, the files not
	// yet processed and the results of those that are.
	Run     *pipeline.RunInfo     `json:",omitempty"`
	Pending []pipeline.FileSpec   `json:",omitempty"`
	Done    []pipeline.FileResult `json:",omitempty"`
	// Executions counts the executions before this one.
	Executions int `json:",omitempty"`
}

// Progress is what the progress query returns.
type Progress struct {
	// Phase is starting, exporting, processing or committing (the
	// privacy checks included).
	Phase      string
	Run        string
	FilesDone  int
	FilesTotal int
	Resources  int64
	BytesIn    int64
	BytesOut   int64
	// Executions counts the executions of the run (continue-as-new).
	Executions int
}

// Workflow runs one pipeline run: start, kick-off, poll, process every
// file, commit. It returns the run's report.
func Workflow(ctx workflow.Context, in Input) (*pipeline.Report, error) {
	o := in.Options.withDefaults()
	var a *Activities
	prog := Progress{Phase: "starting"}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return prog, nil }); err != nil {
		return nil, err
	}
	retry := &temporal.RetryPolicy{InitialInterval: 5 * time.Second, BackoffCoefficient: 2,
		MaximumInterval: 5 * time.Minute, MaximumAttempts: o.MaxAttempts}
	short := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 15 * time.Minute, RetryPolicy: retry})

	if in.Run == nil {
		var run pipeline.RunInfo
		err := workflow.ExecuteActivity(short, a.Start, StartInput{Pipeline: in.Pipeline, Now: workflow.Now(ctx), NewKeys: in.NewKeys}).Get(ctx, &run)
		if err != nil {
			return nil, err
		}
		prog.Run, prog.Phase = run.ID, "exporting"
		exp, err := export(ctx, short, o, in.Pipeline, &run)
		if err != nil {
			return nil, err
		}
		run.TransactionTime = exp.TransactionTime
		in.Run, in.Pending = &run, exp.Files
	}
	run := *in.Run
	// Version 1 runs the privacy checks (Assure) before the commit: the
	// identifying types' files first, as pipeline.Run orders them for its
	// audit, and file URLs kept for the audit's second reading. Histories
	// recorded before it replay without them.
	checks := workflow.GetVersion(ctx, "assure", workflow.DefaultVersion, 1) >= 1
	if checks {
		slices.SortStableFunc(in.Pending, func(x, y pipeline.FileSpec) int {
			return cmp.Compare(identifierRank(x), identifierRank(y))
		})
	}
	// The identifier files, for the workers that scrub free text (queries
	// leave no trace in the history).
	scrub := ScrubInput{Run: run}
	for _, f := range in.Pending {
		if pipeline.IsIdentifierFile(f) {
			scrub.Files = append(scrub.Files, f)
		}
	}
	for _, r := range in.Done {
		if pipeline.IsIdentifierFile(r.File) && r.File.URL != "" {
			scrub.Files = append(scrub.Files, r.File)
		}
	}
	if err := workflow.SetQueryHandler(ctx, QueryScrubInput, func() (ScrubInput, error) { return scrub, nil }); err != nil {
		return nil, err
	}
	prog.Run, prog.Phase, prog.FilesTotal, prog.FilesDone = run.ID, "processing", len(in.Pending)+len(in.Done), len(in.Done)
	prog.Executions = in.Executions + 1
	for _, r := range in.Done {
		prog.Resources += r.Resources
		prog.BytesIn += r.BytesIn
		prog.BytesOut += r.BytesOut
	}

	fileCtx, cancelFiles := workflow.WithCancel(ctx)
	fileCtx = workflow.WithActivityOptions(fileCtx, workflow.ActivityOptions{StartToCloseTimeout: o.FileTimeout,
		HeartbeatTimeout: o.HeartbeatTimeout, RetryPolicy: retry, WaitForCancellation: true})
	sel := workflow.NewSelector(ctx)
	pending, done := in.Pending, in.Done
	var firstErr error
	inflight, started := 0, 0
	for {
		for firstErr == nil && inflight < o.Concurrency && len(pending) > 0 && started < o.FilesPerExecution {
			f := pending[0]
			pending = pending[1:]
			started++
			inflight++
			fut := workflow.ExecuteActivity(fileCtx, a.ProcessFile, FileInput{Pipeline: in.Pipeline, Run: run.ID, File: f})
			sel.AddFuture(fut, func(fu workflow.Future) {
				inflight--
				var r pipeline.FileResult
				if err := fu.Get(ctx, &r); err != nil {
					if firstErr == nil {
						firstErr = err
						cancelFiles()
					}
					return
				}
				// The URL is not needed to commit, but the audit reads the
				// input files again (Assure). Before version 1, only the
				// identifier files kept theirs: a worker that joins after a
				// continue-as-new collects from them.
				if !checks && !pipeline.IsIdentifierFile(r.File) {
					r.File.URL = ""
				}
				done = append(done, r)
				prog.FilesDone++
				prog.Resources += r.Resources
				prog.BytesIn += r.BytesIn
				prog.BytesOut += r.BytesOut
			})
		}
		if inflight == 0 {
			break
		}
		sel.Select(ctx)
	}
	if firstErr != nil {
		if temporal.IsCanceledError(firstErr) || errors.Is(ctx.Err(), workflow.ErrCanceled) {
			release(ctx, in.Pipeline, run)
		}
		return nil, firstErr
	}
	if len(pending) > 0 {
		in.Pending, in.Done = pending, done
		in.Executions++
		return nil, workflow.NewContinueAsNewError(ctx, Workflow, in)
	}

	prog.Phase = "committing"
	slices.SortFunc(done, func(x, y pipeline.FileResult) int {
		return cmp.Or(cmp.Compare(kindRank(x.File.Kind), kindRank(y.File.Kind)),
			cmp.Compare(x.File.Type, y.File.Type), cmp.Compare(x.File.Seq, y.File.Seq))
	})
	var rep *pipeline.Report
	// The commit merges the snapshot too, which may take long on a big lake:
	// it heartbeats, so that another worker takes over a commit whose
	// worker died (the commit and the merge are idempotent). So do the
	// checks, which may read the run again.
	commit := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: o.FileTimeout,
		HeartbeatTimeout: o.HeartbeatTimeout, RetryPolicy: retry})
	fin := FinishInput{Pipeline: in.Pipeline, Run: run, Files: done}
	if checks {
		if err := workflow.ExecuteActivity(commit, a.Assure, fin).Get(ctx, &fin.Assured); err != nil {
			return nil, err
		}
	}
	err := workflow.ExecuteActivity(commit, a.Finish, fin).Get(ctx, &rep)
	if err != nil {
		return nil, err
	}
	prog.Phase = rep.Status
	return rep, nil
}

// export kicks the run's export off and polls it until it completes, on
// workflow timers. A job the server forgets is kicked off again, up to
// o.MaxKickOffs times.
func export(ctx, actx workflow.Context, o Options, name string, run *pipeline.RunInfo) (*pipeline.Export, error) {
	var a *Activities
	in := RunInput{Pipeline: name}
	for kickoffs := 1; ; kickoffs++ {
		in.Run = *run
		if err := workflow.ExecuteActivity(actx, a.KickOff, in).Get(ctx, &run.StatusURL); err != nil {
			return nil, err
		}
		in.Run = *run
		backoff := o.PollInitial
		for {
			var res pipeline.PollResult
			err := workflow.ExecuteActivity(actx, a.Poll, in).Get(ctx, &res)
			var ae *temporal.ApplicationError
			if errors.As(err, &ae) && ae.Type() == ErrTypeJobGone && kickoffs < o.MaxKickOffs {
				workflow.GetLogger(ctx).Warn("the server forgot the export: kicking it off again", "run", run.ID)
				run.StatusURL = ""
				break
			}
			if err != nil {
				if temporal.IsCanceledError(err) {
					release(ctx, name, *run)
				}
				return nil, err
			}
			if res.Export != nil {
				return res.Export, nil
			}
			wait := max(res.Wait, backoff)
			backoff = min(backoff+backoff/2, o.PollMax)
			if err := workflow.Sleep(ctx, wait); err != nil {
				release(ctx, name, *run)
				return nil, err
			}
		}
	}
}

// release tells the server, from a context that outlives the workflow's
// cancellation, that the run's export will not be collected.
func release(ctx workflow.Context, name string, run pipeline.RunInfo) {
	if run.StatusURL == "" {
		return
	}
	var a *Activities
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3}})
	if err := workflow.ExecuteActivity(dctx, a.Release, RunInput{Pipeline: name, Run: run}).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("could not release the export", "run", run.ID, "error", err)
	}
}

// identifierRank puts the output files of the identifying resource types
// first.
func identifierRank(f pipeline.FileSpec) int {
	if pipeline.IsIdentifierFile(f) {
		return 0
	}
	return 1
}

// kindRank orders files as the state database lists them.
func kindRank(kind string) int {
	switch kind {
	case bulk.KindOutput:
		return 0
	case bulk.KindDeleted:
		return 1
	}
	return 2
}
