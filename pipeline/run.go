package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"fhirdeid/bulk"
	"fhirdeid/internal/ndjson"
	"fhirdeid/state"
)

// Run runs p once, in this process: it takes the source's lease, starts or
// resumes a run, kicks the export off, polls it, processes every file not yet
// done (p.Concurrency at a time) and finishes the run. On failure the run is
// left resumable when a retry may succeed (the returned *Error's Outcome is
// Retryable), and marked failed otherwise.
func Run(ctx context.Context, p *Pipeline) (*Report, error) {
	if err := p.defaults(); err != nil {
		return nil, &Error{Step: "configure", Outcome: Fatal, Err: err}
	}
	owner := p.Owner
	if owner == "" {
		owner = defaultOwner()
	}
	lease, err := p.State.Acquire(ctx, p.Name, owner, p.LeaseTTL)
	var le *state.LockedError
	if errors.As(err, &le) && deadLocalOwner(le.Owner) {
		// The holder was a process of this host that died (killed, or the
		// machine rebooted): take over rather than wait for the lease to
		// expire.
		p.Logger.Warn("taking over the lease of a dead process", "pipeline", p.Name, "owner", le.Owner)
		lease, err = p.State.TakeOver(ctx, p.Name, le.Owner, owner, p.LeaseTTL)
	}
	if err != nil {
		return nil, &Error{Step: "lock source", Outcome: Retryable, Err: err}
	}
	defer lease.Release(context.WithoutCancel(ctx))

	run, _, err := Start(ctx, p)
	if err != nil {
		return nil, &Error{Step: "start", Outcome: classify(err), Err: err}
	}
	restore, err := p.openLog(run)
	if err != nil {
		return nil, &Error{Step: "start", Run: run.ID, Outcome: Fatal, Err: err}
	}
	defer restore()
	defer p.collectDuring(run)()

	fail := func(step string, err error) (*Report, error) {
		out := classify(err)
		run.Error = fmt.Sprintf("%s: %v", step, err)
		ctx := context.WithoutCancel(ctx)
		if out == Fatal {
			run.Status = state.RunFailed
			if ferr := p.State.FinishRun(ctx, run, ""); ferr != nil {
				p.Logger.Error("could not record the run's failure", "run", run.ID, "err", ferr)
			}
		} else if uerr := p.State.UpdateRun(ctx, run); uerr != nil {
			p.Logger.Error("could not record the run's error", "run", run.ID, "err", uerr)
		}
		return nil, &Error{Step: step, Run: run.ID, Outcome: out, Err: err}
	}
	if err := KickOff(ctx, p, run); err != nil {
		return fail("kick-off", err)
	}
	if p.Progress != nil && p.Client.Progress == nil {
		p.Client.Progress = func(x string) {
			p.progMu.Lock()
			p.prog.Run, p.prog.ExportStatus = run.ID, x
			pr := p.prog
			p.progMu.Unlock()
			p.Progress(pr)
		}
		defer func() { p.Client.Progress = nil }()
	}
	if err := Poll(ctx, p, run); err != nil {
		return fail("status", err)
	}
	if err := CollectIdentifiers(ctx, p, run); err != nil {
		return fail("collect identifiers", err)
	}
	if err := processAll(ctx, p, run); err != nil {
		return fail("process", err)
	}
	if err := lease.Err(); err != nil {
		return fail("lock source", err)
	}
	rep, err := Finish(ctx, p, run)
	if err != nil {
		return fail("commit", err)
	}
	if rep.SnapshotError != "" {
		// The run is committed, but the snapshot could not take it.
		return rep, &Error{Step: "snapshot", Run: run.ID, Outcome: Fatal, Err: errors.New(rep.SnapshotError)}
	}
	return rep, nil
}

// processAll processes the run's files that are not done, p.Concurrency at a
// time, stopping at the first failure.
func processAll(ctx context.Context, p *Pipeline, run *state.Run) error {
	files, err := p.State.Files(ctx, run.ID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		done     int
	)
	for _, f := range files {
		if f.Status == state.FileDone {
			done++
		}
	}
	p.progress(Progress{Run: run.ID, FilesDone: done, FilesTotal: len(files)})
	p.assureOrder(files)
	sem := make(chan struct{}, p.Concurrency)
	for _, f := range files {
		if f.Status == state.FileDone {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(f *state.File) {
			defer wg.Done()
			defer func() { <-sem }()
			err := ProcessFile(ctx, p, run, f)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			done++
			p.progress(Progress{Run: run.ID, FilesDone: done, FilesTotal: len(files)})
		}(f)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// progress merges file-level counts into the totals and calls p.Progress.
func (p *Pipeline) progress(pr Progress) {
	if p.Progress == nil {
		return
	}
	p.progMu.Lock()
	defer p.progMu.Unlock()
	p.prog.Run, p.prog.FilesDone, p.prog.FilesTotal = pr.Run, pr.FilesDone, pr.FilesTotal
	p.Progress(p.prog)
}

// report adds the counts of a finished file to the progress totals.
func (p *Pipeline) report(run string, st ndjson.Stats) {
	if p.Progress == nil {
		return
	}
	p.progMu.Lock()
	p.prog.Resources += st.Written
	p.prog.BytesIn += st.BytesIn
	p.prog.BytesOut += st.BytesOut
	p.progMu.Unlock()
}

// openLog points the client's events at the run's export log, kept in
// p.LogDir so that it survives a crash, and returns a function that restores
// the client's previous sink.
func (p *Pipeline) openLog(run *state.Run) (func(), error) {
	if p.LogDir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(p.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("export log: %w", err)
	}
	f, err := os.OpenFile(logPath(p, run.ID), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("export log: %w", err)
	}
	log := bulk.NewNDJSONLog(f, run.ID)
	prev := p.Client.Events
	if prev != nil {
		p.Client.Events = bulk.MultiSink{prev, log}
	} else {
		p.Client.Events = log
	}
	return func() {
		p.Client.Events = prev
		f.Close()
	}, nil
}

// defaultOwner names this process in leases: "host:pid:nonce".
func defaultOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// deadLocalOwner reports whether a lease owner written by defaultOwner is a
// process of this host that no longer runs.
func deadLocalOwner(owner string) bool {
	parts := strings.Split(owner, ":")
	if len(parts) != 3 {
		return false
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(parts[1])
	if err != nil || parts[0] != host || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return !processAlive(pid)
}
