package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/storage"
)

// A run's export log (log.ndjson) when its steps run in several processes
// (package durable): each process keeps the events of its steps in memory
// (PartLog), each step stores them as a part of the log in the run's folder
// (FlushLogPart, "<run>/_log-<part>.ndjson"), and FinishRun merges the
// parts into log.ndjson, in time order, before the run is committed, then
// deletes them. Parts of different steps never share an object, so any
// number of processes may write them at once.

// logPartsDir begins the names of the log parts in a run's folder (not a
// folder of its own, which a file:// destination would keep, empty, once
// the parts are deleted).
const logPartsDir = "_log-"

// PartLog is a pipeline's sink of export events in one process, for the
// run in progress (one at a time per pipeline).
type PartLog struct {
	mu  sync.Mutex
	run string
	buf bytes.Buffer
	log *bulk.NDJSONLog
}

// Write receives the lines of the NDJSON log.
func (l *PartLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

// Event records one event for the run in progress.
func (l *PartLog) Event(id string, detail map[string]any) { l.log.Event(id, detail) }

// InstallPartLog makes p keep its export events for the parts of its
// runs' logs, beside its client's other sink, if any. Call it once, before
// p is used concurrently.
func InstallPartLog(p *Pipeline) *PartLog {
	if p.parts != nil {
		return p.parts
	}
	l := &PartLog{}
	l.log = bulk.NewNDJSONLog(l, "")
	if p.Client.Clock != nil {
		l.log.Clock = p.Client.Clock
	}
	if prev := p.Client.Events; prev != nil {
		p.Client.Events = bulk.MultiSink{prev, l}
	} else {
		p.Client.Events = l
	}
	p.parts = l
	return l
}

// BeginLogPart makes the following events of p belong to run. Events kept
// for another run and not stored are dropped.
func BeginLogPart(p *Pipeline, run string) {
	l := p.parts
	if l == nil {
		return
	}
	l.mu.Lock()
	changed := l.run != run
	if changed {
		l.run = run
		l.buf.Reset()
	}
	l.mu.Unlock()
	if changed {
		// Not under l.mu: the log calls Write under its own lock.
		l.log.SetExportID(run)
	}
}

// FlushLogPart stores the events of run kept so far (those of every step
// of run in progress in this process) as the part named part of its log;
// part must be unique to the step's attempt. It does nothing without a
// PartLog or events.
func FlushLogPart(ctx context.Context, p *Pipeline, run, part string) error {
	l := p.parts
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.run != run || l.buf.Len() == 0 {
		l.mu.Unlock()
		return nil
	}
	data := bytes.Clone(l.buf.Bytes())
	l.buf.Reset()
	l.mu.Unlock()
	if err := p.Store.WriteAll(ctx, storage.RunKey(run, logPartsDir+part+".ndjson"), "application/x-ndjson", data); err != nil {
		// Kept for the next part.
		l.mu.Lock()
		if l.run == run {
			rest := bytes.Clone(l.buf.Bytes())
			l.buf.Reset()
			l.buf.Write(data)
			l.buf.Write(rest)
		}
		l.mu.Unlock()
		return fmt.Errorf("export log: %w", err)
	}
	return nil
}

// mergeLogParts writes run's log.ndjson from its parts, when p keeps a
// PartLog: the lines of every part, and of a log.ndjson written by an
// earlier attempt, without repeats, in time order.
func (p *Pipeline) mergeLogParts(ctx context.Context, run string) error {
	if p.parts == nil {
		return nil
	}
	keys, err := p.Store.List(ctx, storage.RunKey(run, logPartsDir))
	if err != nil {
		return fmt.Errorf("export log: %w", err)
	}
	logKey := storage.RunKey(run, "log.ndjson")
	type line struct {
		t    time.Time
		text string
	}
	var lines []line
	seen := map[string]bool{}
	add := func(data []byte) {
		for _, l := range strings.Split(string(data), "\n") {
			if l == "" || seen[l] {
				continue
			}
			seen[l] = true
			var ev struct {
				Timestamp time.Time `json:"timestamp"`
			}
			_ = json.Unmarshal([]byte(l), &ev)
			lines = append(lines, line{ev.Timestamp, l})
		}
	}
	prev, err := p.Store.ReadAll(ctx, logKey)
	switch {
	case err == nil:
		add(prev)
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("export log: %w", err)
	}
	for _, k := range keys {
		data, err := p.Store.ReadAll(ctx, k)
		if err != nil {
			return fmt.Errorf("export log: %w", err)
		}
		add(data)
	}
	slices.SortStableFunc(lines, func(a, b line) int { return a.t.Compare(b.t) })
	var out bytes.Buffer
	for _, l := range lines {
		out.WriteString(l.text)
		out.WriteByte('\n')
	}
	return p.Store.WriteAll(ctx, logKey, "application/x-ndjson", out.Bytes())
}

// removeRunScratch deletes, once the run is committed (or kept
// unpublished by its checks), the parts of its log — merged, or merged
// again without repeats by a retry — and the audit's rewritten days
// (StoreRewrittenDays); a failure is logged.
func (p *Pipeline) removeRunScratch(ctx context.Context, run string) {
	for _, dir := range []string{logPartsDir, auditDir} {
		keys, err := p.Store.List(ctx, storage.RunKey(run, dir))
		if err == nil {
			for _, k := range keys {
				if err = p.Store.Delete(ctx, k); err != nil {
					break
				}
			}
		}
		if err != nil {
			p.Logger.Warn("could not remove the run's temporary objects", "run", run, "folder", dir, "err", err)
		}
	}
}
