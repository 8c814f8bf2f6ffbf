package server

import (
	"context"
	"errors"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/pipeline"
	"fhirdeid/state"
)

// Run outcomes, the values of the "outcome" metric label.
const (
	OutcomeSucceeded = "succeeded"
	OutcomePartial   = "partial"
	OutcomeRetryable = "retryable" // stopped; the next attempt resumes the run
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
)

// outcomes lists every outcome, for metrics initialisation.
var outcomes = []string{OutcomeSucceeded, OutcomePartial, OutcomeRetryable, OutcomeFailed, OutcomeCancelled}

// loop is the scheduler of one job.
func (s *Server) loop(ctx context.Context, j *jobState) {
	if j.job.Remote != nil {
		s.remoteLoop(ctx, j)
		return
	}
	if s.startup {
		if reason := s.startupReason(ctx, j); reason != "" {
			s.runOnce(ctx, j, reason)
		}
	}
	for ctx.Err() == nil {
		now := s.clock.Now()
		next := j.job.Schedule.Next(now)
		j.mu.Lock()
		if !j.retryAt.IsZero() && (next.IsZero() || j.retryAt.Before(next)) {
			next = j.retryAt
		}
		j.next = next
		j.mu.Unlock()
		s.metrics.setNext(j.job.Name, next)
		var fire <-chan time.Time
		var timer Timer
		if !next.IsZero() {
			timer = s.clock.NewTimer(next.Sub(now))
			fire = timer.C()
		}
		reason := ""
		select {
		case <-ctx.Done():
		case <-fire:
			reason = "schedule"
		case <-j.trigger:
			reason = "manual"
		}
		if timer != nil {
			timer.Stop()
		}
		if reason == "" {
			return
		}
		s.runOnce(ctx, j, reason)
	}
}

// startupReason tells whether a job runs at start-up: "resume" when it has an
// unfinished run, "missed" when RunMissed is set and a scheduled time passed
// since its last run started, "" otherwise. A job that never ran has missed
// nothing.
func (s *Server) startupReason(ctx context.Context, j *jobState) string {
	if _, err := s.db.UnfinishedRun(ctx, j.job.Name); err == nil {
		return "resume"
	} else if !errors.Is(err, state.ErrNotFound) {
		s.log.Error("start-up: read the state database", "pipeline", j.job.Name, "err", err)
		return ""
	}
	if !j.job.RunMissed {
		return ""
	}
	runs, err := s.db.Runs(ctx, j.job.Name, 1)
	if err != nil {
		s.log.Error("start-up: read the state database", "pipeline", j.job.Name, "err", err)
		return ""
	}
	if len(runs) == 0 {
		return ""
	}
	due := j.job.Schedule.Next(runs[0].StartedAt)
	if !due.IsZero() && !due.After(s.clock.Now()) {
		return "missed"
	}
	return ""
}

// runOnce runs the job's pipeline once, to the end, and records the outcome.
func (s *Server) runOnce(ctx context.Context, j *jobState, reason string) {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := s.clock.Now()
	j.mu.Lock()
	j.running, j.pending, j.cancel, j.cancelID = true, false, cancel, ""
	j.runID, j.attempt, j.progress, j.retryAt = "", start, pipeline.Progress{}, time.Time{}
	// A trigger that raced with this start is absorbed.
	select {
	case <-j.trigger:
	default:
	}
	j.mu.Unlock()
	name := j.job.Name
	s.metrics.running(name, true)
	s.log.Info("run starting", "pipeline", name, "trigger", reason)

	runID, outcome, errText := s.attempt(runCtx, j)

	j.mu.Lock()
	cancelID := j.cancelID
	j.running, j.cancel, j.runID = false, nil, ""
	j.mu.Unlock()
	if context.Cause(runCtx) == errOperatorCancel && outcome == OutcomeRetryable {
		if cancelID == "" {
			cancelID = runID
		}
		if cancelID != "" {
			if err := s.markCancelled(context.WithoutCancel(ctx), cancelID); err != nil {
				s.log.Error("could not record the cancellation", "pipeline", name, "run", cancelID, "err", err)
			}
		}
		outcome = OutcomeCancelled
	}
	if outcome == OutcomeRetryable && ctx.Err() == nil {
		j.mu.Lock()
		j.retryAt = s.clock.Now().Add(s.retry)
		j.mu.Unlock()
	}
	elapsed := s.clock.Now().Sub(start)
	s.metrics.finished(name, outcome, elapsed)
	s.metrics.running(name, false)
	attrs := []any{"pipeline", name, "run", runID, "outcome", outcome, "duration", elapsed.Round(time.Millisecond)}
	if errText != "" {
		attrs = append(attrs, "err", errText)
	}
	if outcome == OutcomeFailed {
		s.log.Error("run ended", attrs...)
	} else {
		s.log.Info("run ended", attrs...)
	}
}

// attempt opens the job's pipeline and runs it.
func (s *Server) attempt(ctx context.Context, j *jobState) (runID, outcome, errText string) {
	p, closeFn, err := j.job.Open(ctx)
	if err != nil {
		return "", OutcomeFailed, "open pipeline: " + err.Error()
	}
	defer func() {
		if err := closeFn(); err != nil {
			s.log.Warn("close pipeline", "pipeline", j.job.Name, "err", err)
		}
	}()
	name := j.job.Name
	var last pipeline.Progress
	p.Progress = func(pr pipeline.Progress) {
		j.mu.Lock()
		j.progress = pr
		if pr.Run != "" {
			j.runID = pr.Run
		}
		j.mu.Unlock()
		// Progress is called with the progress lock of the pipeline held,
		// so calls do not overlap.
		s.metrics.processed(name, pr.Resources-last.Resources, pr.BytesIn-last.BytesIn, pr.BytesOut-last.BytesOut)
		last = pr
	}
	if p.Client != nil {
		sink := s.metrics.eventSink(name, s.clock)
		if p.Client.Events != nil {
			p.Client.Events = bulk.MultiSink{p.Client.Events, sink}
		} else {
			p.Client.Events = sink
		}
	}
	rep, err := pipeline.Run(ctx, p)
	s.metrics.assurance.observe(name, rep, err)
	if err != nil {
		var pe *pipeline.Error
		if errors.As(err, &pe) {
			runID = pe.Run
			switch pe.Outcome {
			case pipeline.Retryable:
				return runID, OutcomeRetryable, err.Error()
			case pipeline.Partial:
				return runID, OutcomePartial, err.Error()
			}
		}
		return runID, OutcomeFailed, err.Error()
	}
	if rep.Status == string(state.RunPartial) {
		outcome = OutcomePartial
	} else {
		outcome = OutcomeSucceeded
	}
	s.metrics.succeeded(name, rep.FinishedAt)
	return rep.Run, outcome, ""
}
