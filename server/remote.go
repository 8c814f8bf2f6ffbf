package server

import (
	"context"
	"errors"
	"sort"
	"time"

	"fhirdeid/pipeline"
	"fhirdeid/state"
)

// Remote runs a job's pipeline outside this process — on a durable
// workflow engine such as Temporal, wired by the command — and tells the
// server about its runs, so that the API, the dashboard and the metrics
// show them beside the runs of the state database. A job with a Remote is
// never run by the server's own scheduler: the engine schedules it.
//
// Errors: Run returns state.ErrNotFound for an unknown id, Start returns
// ErrRunning when a run of the pipeline is in progress, Cancel returns
// ErrRunOver when the run has ended.
type Remote interface {
	// Runs lists the pipeline's runs, newest first, at most limit.
	Runs(ctx context.Context, pipeline string, limit int) ([]RemoteRun, error)
	// Run returns the run with id RemoteRun.ID.
	Run(ctx context.Context, id string) (*RemoteRun, error)
	// Start starts a run of the pipeline now.
	Start(ctx context.Context, pipeline string) error
	// Cancel asks a run in progress to stop.
	Cancel(ctx context.Context, id string) error
	// NextRun is the pipeline's next scheduled time (zero when none).
	NextRun(ctx context.Context, pipeline string) (time.Time, error)
}

// RemoteRun is a run on a Remote.
type RemoteRun struct {
	// ID names the run among the remote's (Temporal: the execution's run
	// id); the API and the dashboard address the run by it.
	ID       string
	Pipeline string
	// Folder is the run's folder in the destination, once known.
	Folder string
	// Running is set while the run is in progress.
	Running bool
	// Status is a run status of the state database: exporting, processing
	// or committing while it runs, then succeeded, partial, failed or
	// cancelled.
	Status     string
	StartedAt  time.Time
	FinishedAt time.Time
	// Progress is the progress of a run in progress.
	Progress pipeline.Progress
	// Report is the report of a committed run.
	Report *pipeline.Report
	// Error says why a run failed, without a resource value.
	Error string
	// Workflow identifies the run on the engine.
	Workflow *WorkflowRef
}

// WorkflowRef identifies a run on a workflow engine.
type WorkflowRef struct {
	// ID and RunID are the workflow's id and its execution's run id.
	ID    string `json:"id"`
	RunID string `json:"runId"`
	// Status is the engine's status of the execution (Running, Completed,
	// Failed, Canceled, Terminated, TimedOut).
	Status string `json:"status"`
	// URL is the execution's page in the engine's web UI, if known.
	URL string `json:"url,omitempty"`
}

// remoteView is the RunView of a remote run.
func (s *Server) remoteView(r *RemoteRun) RunView {
	v := RunView{ID: r.ID, Pipeline: r.Pipeline, Status: r.Status, StartedAt: r.StartedAt, Error: r.Error,
		Folder: r.Folder, Workflow: r.Workflow, report: r.Report}
	if !r.FinishedAt.IsZero() {
		f := r.FinishedAt
		v.FinishedAt = &f
		v.DurationSeconds = f.Sub(r.StartedAt).Seconds()
	} else if !r.StartedAt.IsZero() {
		v.DurationSeconds = s.clock.Now().Sub(r.StartedAt).Seconds()
	}
	if rep := r.Report; rep != nil {
		v.Resources, v.Deleted, v.BytesIn, v.BytesOut = rep.Resources, rep.Deleted, rep.BytesIn, rep.BytesOut
		v.Warnings = len(rep.Warnings)
		v.Since, v.TransactionTime = rep.Since, rep.TransactionTime
	}
	if r.Running {
		v.Running = true
		pr := r.Progress
		v.Resources, v.BytesIn, v.BytesOut = pr.Resources, pr.BytesIn, pr.BytesOut
		v.FilesDone, v.FilesTotal = pr.FilesDone, pr.FilesTotal
	}
	return v
}

// remotes lists the distinct remotes of the jobs.
func (s *Server) remotes() []Remote {
	var out []Remote
	seen := map[Remote]bool{}
	for _, j := range s.jobs {
		if r := j.job.Remote; r != nil && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// remoteRuns lists the remote runs of pipelineName ("" for all), newest
// first, at most limit per job.
func (s *Server) remoteRuns(ctx context.Context, pipelineName string, limit int) ([]RunView, error) {
	var out []RunView
	for _, j := range s.jobs {
		if j.job.Remote == nil || (pipelineName != "" && j.job.Name != pipelineName) {
			continue
		}
		runs, err := j.job.Remote.Runs(ctx, j.job.Name, limit)
		if err != nil {
			return nil, err
		}
		for i := range runs {
			out = append(out, s.remoteView(&runs[i]))
		}
	}
	return out, nil
}

// remoteRun finds a run by id on the remotes; state.ErrNotFound when none
// has it. It also returns the job it belongs to.
func (s *Server) remoteRun(ctx context.Context, id string) (*RemoteRun, *jobState, error) {
	for _, rm := range s.remotes() {
		r, err := rm.Run(ctx, id)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		j := s.byName[r.Pipeline]
		if j == nil || j.job.Remote != rm {
			return nil, nil, state.ErrNotFound
		}
		return r, j, nil
	}
	return nil, nil, state.ErrNotFound
}

// sortRuns orders runs newest first.
func sortRuns(runs []RunView) {
	sort.SliceStable(runs, func(a, b int) bool { return runs[a].StartedAt.After(runs[b].StartedAt) })
}

// remoteLoop follows the runs of a job that a Remote runs: every
// Options.RemotePoll it reads the pipeline's recent runs and its next
// scheduled time into the job's state and the metrics. Runs that end while
// the server watches are counted once; those that ended before it started
// only set the last success.
func (s *Server) remoteLoop(ctx context.Context, j *jobState) {
	name := j.job.Name
	seen := map[string]bool{}
	first := true
	for {
		s.remoteObserve(ctx, j, seen, first)
		first = false
		t := s.clock.NewTimer(s.remotePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			s.metrics.running(name, false)
			return
		case <-t.C():
		case <-j.trigger:
			t.Stop()
		}
	}
}

// remoteObserve is one look of remoteLoop at a job's runs.
func (s *Server) remoteObserve(ctx context.Context, j *jobState, seen map[string]bool, first bool) {
	name := j.job.Name
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	next, err := j.job.Remote.NextRun(rctx, name)
	if err != nil {
		s.log.Warn("read the pipeline's schedule from the workflow engine", "pipeline", name, "err", err)
	} else {
		j.mu.Lock()
		j.next = next
		j.mu.Unlock()
		s.metrics.setNext(name, next)
	}
	runs, err := j.job.Remote.Runs(rctx, name, 50)
	if err != nil {
		s.log.Warn("list the pipeline's runs on the workflow engine", "pipeline", name, "err", err)
		return
	}
	running := false
	var cur RemoteRun
	for i := range runs {
		r := &runs[i]
		if r.Running {
			if !running {
				cur = *r
			}
			running = true
			continue
		}
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		if first {
			continue
		}
		outcome := r.Status
		if outcome == string(state.RunFailed) || outcome == string(state.RunCancelled) ||
			outcome == OutcomeSucceeded || outcome == OutcomePartial {
			s.metrics.finished(name, outcome, r.FinishedAt.Sub(r.StartedAt))
		}
		if rep := r.Report; rep != nil {
			s.metrics.processed(name, rep.Resources, rep.BytesIn, rep.BytesOut)
			// The privacy checks of durable runs, as of in-process ones.
			s.metrics.assurance.observe(name, rep, nil)
		}
	}
	// The last success is the newest committed run's.
	for i := range runs {
		if st := runs[i].Status; st == OutcomeSucceeded || st == OutcomePartial {
			s.metrics.succeeded(name, runs[i].FinishedAt)
			break
		}
	}
	j.mu.Lock()
	j.running = running
	j.runID = ""
	j.progress = pipeline.Progress{}
	if running {
		j.runID, j.attempt, j.progress = cur.ID, cur.StartedAt, cur.Progress
	}
	j.mu.Unlock()
	s.metrics.running(name, running)
}

// remoteTrigger starts a run of a remote job.
func (s *Server) remoteTrigger(j *jobState) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := j.job.Remote.Start(ctx, j.job.Name); err != nil {
		return err
	}
	// Let the job's loop look at the new run at once.
	select {
	case j.trigger <- struct{}{}:
	default:
	}
	return nil
}
