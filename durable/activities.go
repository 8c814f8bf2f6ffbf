package durable

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"fhirdeid/bulk"
	"fhirdeid/pipeline"
)

// Error types of the non-retryable application errors the activities
// return; the workflow matches them.
const (
	// ErrTypeFatal: the run cannot succeed without a change (bad
	// configuration, a 4xx other than 429, keys that differ, invalid data).
	ErrTypeFatal = "fatal"
	// ErrTypeJobGone: the server forgot the export; kick it off again.
	ErrTypeJobGone = "jobGone"
	// ErrTypeDeadline: the export did not complete within its deadline.
	ErrTypeDeadline = "deadline"
	// ErrTypeOverlap: another run of the pipeline, started earlier, is in
	// progress; this one is skipped before it kicks anything off.
	ErrTypeOverlap = "overlap"
)

// Activities adapts the pipeline steps to Temporal. It holds no logic: each
// method looks its pipeline up and calls one step. Any state shared by the
// worker among the activities is stored here.
type Activities struct {
	// Pipelines are the configured pipelines by name, readied with
	// pipeline.Prepare (NewActivities does it).
	Pipelines map[string]*pipeline.Pipeline
	// HeartbeatEvery is the period of ProcessFile's heartbeats when no
	// bytes arrive (default 1 s; the SDK throttles what it sends).
	HeartbeatEvery time.Duration
	// Earlier, if set, returns the workflow id of a run of the pipeline in
	// progress that started before the workflow (wid, rid), "" when there
	// is none: Start then skips the run (Monitor.Earlier is one).
	Earlier func(ctx context.Context, pipeline, wid, rid string) (string, error)
	// HostFiles caps the files that this worker downloads at once from one
	// host, across all its pipelines (0: no cap but the worker's own).
	// Several pipelines exporting from one FHIR server then load it with at
	// most HostFiles × workers downloads, whatever their own concurrency.
	HostFiles int
	// Client, if set, lets ProcessFile ask its workflow for the run's
	// identifier files (QueryScrubInput) when the pipeline scrubs free
	// text: every worker collects the identifiers of a run once, before
	// its first file of that run. Without it such files are scrubbed by
	// patterns and vocabulary only.
	Client client.Client

	hosts hostLimiter

	scrubMu sync.Mutex
	scrub   map[string]*scrubOnce // by pipeline
}

// scrubOnce records the run whose identifiers a pipeline's de-identifier
// holds in this worker.
type scrubOnce struct {
	mu  sync.Mutex
	run string
}

// collect makes p's de-identifier hold the identifiers of in's run, once
// per run in this worker.
func (a *Activities) collect(ctx context.Context, p *pipeline.Pipeline, in FileInput) error {
	if a.Client == nil || in.File.Kind != bulk.KindOutput || !pipeline.Scrubs(p) {
		return nil
	}
	a.scrubMu.Lock()
	if a.scrub == nil {
		a.scrub = map[string]*scrubOnce{}
	}
	s := a.scrub[in.Pipeline]
	if s == nil {
		s = &scrubOnce{}
		a.scrub[in.Pipeline] = s
	}
	a.scrubMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == in.Run {
		return nil
	}
	we := activity.GetInfo(ctx).WorkflowExecution
	v, err := a.Client.QueryWorkflow(ctx, we.ID, "", QueryScrubInput)
	if err != nil {
		return fmt.Errorf("identifiers for scrubbing: ask workflow %s for the run's files: %w", we.ID, err)
	}
	var si ScrubInput
	if err := v.Get(&si); err != nil {
		return fmt.Errorf("identifiers for scrubbing: %w", err)
	}
	if si.Run.ID != in.Run {
		return fmt.Errorf("identifiers for scrubbing: workflow %s runs %s, not %s", we.ID, si.Run.ID, in.Run)
	}
	if err := pipeline.CollectRunIdentifiers(ctx, p, si.Run, si.Files); err != nil {
		return err
	}
	s.run = in.Run
	return nil
}

// hostLimiter counts the files in progress per host.
type hostLimiter struct {
	mu    sync.Mutex
	slots map[string]chan struct{}
	// peak is the most files seen at once per host (tests).
	peak map[string]int
}

// acquire waits for a slot of host among limit, or for ctx.
func (l *hostLimiter) acquire(ctx context.Context, host string, limit int) (release func(), err error) {
	l.mu.Lock()
	if l.slots == nil {
		l.slots, l.peak = map[string]chan struct{}{}, map[string]int{}
	}
	ch := l.slots[host]
	if ch == nil {
		ch = make(chan struct{}, limit)
		l.slots[host] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.mu.Lock()
	l.peak[host] = max(l.peak[host], len(ch))
	l.mu.Unlock()
	return func() { <-ch }, nil
}

// fileHost is the host a file is downloaded from.
func fileHost(p *pipeline.Pipeline, f pipeline.FileSpec) string {
	if u, err := url.Parse(f.URL); err == nil && u.Host != "" {
		return strings.ToLower(u.Host)
	}
	if p.Client != nil && p.Client.Base != nil {
		return strings.ToLower(p.Client.Base.Host)
	}
	return ""
}

// NewActivities prepares the pipelines and returns their activities.
func NewActivities(ps map[string]*pipeline.Pipeline) (*Activities, error) {
	for name, p := range ps {
		if p.Name != name {
			return nil, fmt.Errorf("pipeline %q is registered as %q", p.Name, name)
		}
		if err := pipeline.Prepare(p); err != nil {
			return nil, fmt.Errorf("pipeline %s: %w", name, err)
		}
	}
	for _, p := range ps {
		// A durable run's export log: each activity stores the events of
		// its worker as a part of the run's log, merged into log.ndjson at
		// commit; no local file (a run's steps are spread over workers).
		p.LogDir = ""
		pipeline.InstallPartLog(p)
	}
	return &Activities{Pipelines: ps}, nil
}

// logPart makes p's events belong to run and returns the function, to be
// deferred, that stores them as a part of the run's log: one part per
// activity attempt, named by the workflow execution, the activity and the
// attempt. A part that cannot be stored is logged, not fatal: its events
// stay for the next part.
func logPart(ctx context.Context, p *pipeline.Pipeline, run string) func() {
	pipeline.BeginLogPart(p, run)
	return func() {
		info := activity.GetInfo(ctx)
		part := fmt.Sprintf("%s-%s-%d", info.WorkflowExecution.RunID, info.ActivityID, info.Attempt)
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := pipeline.FlushLogPart(fctx, p, run, part); err != nil {
			p.Logger.Warn("could not store a part of the export log", "run", run, "err", err)
		}
	}
}

func (a *Activities) pipeline(name string) (*pipeline.Pipeline, error) {
	p, ok := a.Pipelines[name]
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("this worker has no pipeline %q: start workers with the same configuration", name), ErrTypeFatal, nil)
	}
	return p, nil
}

// StartInput is the input of Start.
type StartInput struct {
	Pipeline string
	// Now is the run's start time (the workflow's), which names the run.
	Now time.Time
	// NewKeys accepts keys that differ from the last committed run's.
	NewKeys bool
}

// Start plans a run: it checks the keys against the destination's last
// committed run and takes that run's transactionTime as _since.
func (a *Activities) Start(ctx context.Context, in StartInput) (pipeline.RunInfo, error) {
	p, err := a.pipeline(in.Pipeline)
	if err != nil {
		return pipeline.RunInfo{}, err
	}
	// One run of a pipeline at a time: a scheduled run that fires while a
	// run started by hand is in progress (or the reverse, in a race) yields
	// to the one that started first.
	if a.Earlier != nil {
		we := activity.GetInfo(ctx).WorkflowExecution
		other, err := a.Earlier(ctx, in.Pipeline, we.ID, we.RunID)
		if err != nil {
			return pipeline.RunInfo{}, classify("start", err)
		}
		if other != "" {
			return pipeline.RunInfo{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("start: skipped: workflow %s, a run of pipeline %s started earlier, is in progress", other, in.Pipeline), ErrTypeOverlap, nil)
		}
	}
	prev, err := pipeline.LastCommitted(ctx, p)
	if err != nil {
		return pipeline.RunInfo{}, classify("start", err)
	}
	newLake, err := pipeline.CheckKeysAgainst(p, prev, in.NewKeys)
	if err != nil {
		return pipeline.RunInfo{}, classify("start", err)
	}
	since := ""
	if prev != nil && !newLake {
		since = prev.TransactionTime
	}
	run, err := pipeline.PlanNewRun(ctx, p, in.Now, since)
	return run, classify("start", err)
}

// RunInput names a pipeline and its run.
type RunInput struct {
	Pipeline string
	Run      pipeline.RunInfo
}

// KickOff kicks the run's export off and returns its status URL.
func (a *Activities) KickOff(ctx context.Context, in RunInput) (string, error) {
	p, err := a.pipeline(in.Pipeline)
	if err != nil {
		return "", err
	}
	defer logPart(ctx, p, in.Run.ID)()
	u, err := pipeline.KickOffExport(ctx, p, in.Run)
	return u, classify("kick-off", err)
}

// Poll asks once whether the export is complete.
func (a *Activities) Poll(ctx context.Context, in RunInput) (pipeline.PollResult, error) {
	p, err := a.pipeline(in.Pipeline)
	if err != nil {
		return pipeline.PollResult{}, err
	}
	defer logPart(ctx, p, in.Run.ID)()
	res, err := pipeline.PollExport(ctx, p, in.Run)
	return res, classify("status", err)
}

// Release tells the server that the export may be removed (or cancels it).
func (a *Activities) Release(ctx context.Context, in RunInput) error {
	p, err := a.pipeline(in.Pipeline)
	if err != nil {
		return err
	}
	pipeline.ReleaseExport(ctx, p, in.Run)
	return nil
}

// FileInput is one file of a run to process.
type FileInput struct {
	Pipeline string
	Run      string
	File     pipeline.FileSpec
}

// ProcessFile processes one file, heartbeating its progress (bytes read,
// download attempt). A retried attempt restarts the file: a blob is written
// whole or not at all. With the pipeline's audit on, the worker audits the
// file in stream (pipeline.AuditDuring): Assure completes the run's audit.
func (a *Activities) ProcessFile(ctx context.Context, in FileInput) (pipeline.FileResult, error) {
	p, err := a.pipeline(in.Pipeline)
	if err != nil {
		return pipeline.FileResult{}, err
	}
	hb := newHeartbeat(ctx, a.HeartbeatEvery)
	defer hb.stop()
	if a.HostFiles > 0 {
		// Heartbeats go on while the file waits for its host.
		release, err := a.hosts.acquire(ctx, fileHost(p, in.File), a.HostFiles)
		if err != nil {
			return pipeline.FileResult{}, temporal.NewApplicationError("process: "+in.File.Name()+": waiting for the host: "+err.Error(), "retryable")
		}
		defer release()
	}
	defer logPart(ctx, p, in.Run)()
	if err := a.collect(ctx, p, in); err != nil {
		return pipeline.FileResult{}, classify("process", err)
	}
	pipeline.AuditDuring(p, in.Run)
	res, err := pipeline.ProcessManifestFile(ctx, p, in.Run, in.File, hb.progress)
	if err == nil {
		err = pipeline.StoreRewrittenDays(ctx, p, in.Run, res)
	}
	return res, classify("process", err)
}

// FinishInput is the input of Assure and Finish.
type FinishInput struct {
	Pipeline string
	Run      pipeline.RunInfo
	Files    []pipeline.FileResult
	// Assured is what Assure returned (Finish only; nil: no checks).
	Assured *pipeline.Assured `json:",omitempty"`
}

// Assure runs the run's privacy checks (the leak audit and the risk
// analysis), once every file is stored, and returns their results:
// counts and paths, never a value. It reads again the input files that
// this worker did not de-identify (for their identifiers) and the output
// files whose in-stream scan does not stand here.
func (a *Activities) Assure(ctx context.Context, in FinishInput) (*pipeline.Assured, error) {
	p, err := a.pipeline(in.Pipeline)
	if err != nil {
		return nil, err
	}
	hb := newHeartbeat(ctx, a.HeartbeatEvery)
	defer hb.stop()
	defer logPart(ctx, p, in.Run.ID)()
	as, err := pipeline.AssureRun(ctx, p, in.Run, in.Files)
	return as, classify("assure", err)
}

// Finish commits the run, with the results of its checks, and releases the
// export. A failed check keeps the run unpublished: a non-retryable error.
func (a *Activities) Finish(ctx context.Context, in FinishInput) (*pipeline.Report, error) {
	p, err := a.pipeline(in.Pipeline)
	if err != nil {
		return nil, err
	}
	hb := newHeartbeat(ctx, a.HeartbeatEvery)
	defer hb.stop()
	pipeline.BeginLogPart(p, in.Run.ID)
	rep, err := pipeline.FinishAssuredRun(ctx, p, in.Run, in.Files, in.Assured)
	var ae *pipeline.AssuranceError
	if errors.As(err, &ae) {
		// The run's report (counts, never a value) goes with the failure,
		// for "run" and the dashboard (ChecksReport).
		return nil, temporal.NewNonRetryableApplicationError("commit: "+err.Error(), ErrTypeFatal, nil, ae.Report)
	}
	return rep, classify("commit", err)
}

// ChecksReport returns the report of a run that its privacy checks kept
// unpublished, from the run's failure (a workflow's error), or nil when
// the failure is another.
func ChecksReport(err error) *pipeline.Report {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeFatal || !ae.HasDetails() {
		return nil
	}
	var rep pipeline.Report
	if ae.Details(&rep) != nil || rep.Run == "" {
		return nil
	}
	return &rep
}

// classify turns a step's error into a Temporal error: non-retryable for
// what pipeline.Classify calls fatal and for a forgotten or overdue export
// (the workflow decides), as is otherwise. Messages are the pipeline's,
// which never quote resource values.
func classify(step string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, step+":") {
		msg = step + ": " + msg
	}
	switch {
	case errors.Is(err, bulk.ErrJobGone):
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeJobGone, nil)
	case errors.Is(err, bulk.ErrDeadline):
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeDeadline, nil)
	case pipeline.Classify(err) == pipeline.Fatal:
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeFatal, nil)
	}
	return temporal.NewApplicationError(msg, "retryable")
}

// heartbeat records the progress of an activity: at every progress call
// (the SDK throttles them) and every period when none comes, so that a
// slow but live attempt is not timed out.
type heartbeat struct {
	ctx  context.Context
	mu   sync.Mutex
	last pipeline.FileProgress
	done chan struct{}
	wg   sync.WaitGroup
}

func newHeartbeat(ctx context.Context, every time.Duration) *heartbeat {
	if every <= 0 {
		every = time.Second
	}
	h := &heartbeat{ctx: ctx, done: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				h.mu.Lock()
				last := h.last
				h.mu.Unlock()
				activity.RecordHeartbeat(ctx, last)
			}
		}
	}()
	return h
}

func (h *heartbeat) progress(fp pipeline.FileProgress) {
	h.mu.Lock()
	h.last = fp
	h.mu.Unlock()
	activity.RecordHeartbeat(h.ctx, fp)
}

func (h *heartbeat) stop() {
	close(h.done)
	h.wg.Wait()
}
