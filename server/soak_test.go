package server_test

import (
	"context"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
	"fhirdeid/state"
)

// limited is a schedule that stops after the job's attempts reach max.
type limited struct {
	server.Schedule
	attempts *atomic.Int64
	max      int64
}

func (l limited) Next(t time.Time) time.Time {
	if l.attempts.Load() >= l.max {
		return time.Time{}
	}
	return l.Schedule.Next(t)
}

// TestSoak runs 50 scheduled runs, one a second, against a Bulk Data server
// that injects faults: some are retried within the run, others stop it and
// the next scheduled run resumes it. Runs must never overlap, every run must
// end succeeded, and the heap and the goroutine count must stay flat.
//
// It takes about a minute: set FHIRDEID_SOAK=1 to run it.
func TestSoak(t *testing.T) {
	if os.Getenv("FHIRDEID_SOAK") == "" || testing.Short() {
		t.Skip("soak test: set FHIRDEID_SOAK=1 to run it (about a minute)")
	}
	const attempts = 50
	e := testenv.New(t, 10)
	var (
		n          atomic.Int64 // attempts started
		ended      atomic.Int64
		active     atomic.Int64
		overlaps   atomic.Int64
		hardFaults atomic.Int64
	)
	job := e.Job(t, "ehr", nil, func(p *pipeline.Pipeline) {
		switch i := n.Load(); {
		case i%7 == 3: // stop the run while polling: resumed next time
			p.Client.Retries.MaxRetries = 0
			e.Bulk.SetFaults(bulktest.Faults{Status5xx: 1})
			hardFaults.Add(1)
		case i%7 == 5: // stop the run mid-processing: resumed next time
			p.Client.Retries.MaxRetries = 0
			e.Bulk.SetFaults(bulktest.Faults{Download5xx: 1})
			hardFaults.Add(1)
		case i%2 == 0: // faults retried within the run
			e.Bulk.SetFaults(bulktest.Faults{Status5xx: 1, StatusTransient: 1, CutDownloads: 1, Download5xx: 1})
		default:
			e.Bulk.SetFaults(bulktest.Faults{})
		}
	})
	job.Schedule = limited{server.Every(time.Second), &n, attempts}
	open := job.Open
	job.Open = func(ctx context.Context) (*pipeline.Pipeline, func() error, error) {
		if active.Add(1) > 1 {
			overlaps.Add(1)
		}
		p, closeFn, err := open(ctx)
		n.Add(1)
		if err != nil {
			active.Add(-1)
			ended.Add(1)
			return nil, nil, err
		}
		return p, func() error { err := closeFn(); active.Add(-1); ended.Add(1); return err }, nil
	}
	var logs logBuffer
	s, err := server.New(server.Options{State: e.DB, Jobs: []*server.Job{job}, RetryDelay: time.Hour, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Run(ctx) }()

	type sample struct {
		heap       uint64
		goroutines int
	}
	measure := func() sample {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return sample{ms.HeapInuse, runtime.NumGoroutine()}
	}
	waitEnded := func(k int64) {
		deadline := time.Now().Add(3 * time.Minute)
		for ended.Load() < k {
			if time.Now().After(deadline) {
				t.Fatalf("only %d attempts ended", ended.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	start := time.Now()
	waitEnded(5) // warm up: caches, connection pools, the SQLite page cache
	first := measure()
	waitEnded(attempts / 2)
	middle := measure()
	waitEnded(attempts)
	time.Sleep(100 * time.Millisecond) // let the scheduler record the last outcome
	last := measure()
	elapsed := time.Since(start)
	cancel()
	wg.Wait()

	t.Logf("%d attempts in %s; heap in use %.1f MiB after 5 attempts, %.1f MiB after %d, %.1f MiB after %d; goroutines %d → %d → %d",
		attempts, elapsed.Round(time.Second), float64(first.heap)/(1<<20), float64(middle.heap)/(1<<20), attempts/2,
		float64(last.heap)/(1<<20), attempts, first.goroutines, middle.goroutines, last.goroutines)
	if overlaps.Load() != 0 {
		t.Errorf("%d attempts overlapped another", overlaps.Load())
	}
	if last.goroutines > first.goroutines+3 {
		t.Errorf("goroutines grew from %d to %d", first.goroutines, last.goroutines)
	}
	if last.heap > first.heap*3/2+8<<20 {
		t.Errorf("heap in use grew from %d to %d bytes", first.heap, last.heap)
	}

	// Every run ended succeeded; the ones stopped by a fault were resumed
	// (one run per successful attempt, the others resumed).
	rs := runs(t, e.DB, "ehr")
	sort.Slice(rs, func(a, b int) bool { return rs[a].StartedAt.Before(rs[b].StartedAt) })
	for i, r := range rs {
		if r.Status != state.RunSucceeded {
			t.Errorf("run %s: %s (%s)", r.ID, r.Status, r.Error)
		}
		if i > 0 && r.StartedAt.Before(rs[i-1].FinishedAt) {
			t.Errorf("run %s started before run %s finished", r.ID, rs[i-1].ID)
		}
	}
	_, metrics, _ := do(t, s.Handler(), "GET", "/metrics", nil, nil)
	want := map[string]int64{"succeeded": int64(len(rs)), "retryable": hardFaults.Load(), "failed": 0, "partial": 0, "cancelled": 0}
	for outcome, n := range want {
		line := `fhirdeid_runs_total{outcome="` + outcome + `",pipeline="ehr"} ` + strconv.FormatInt(n, 10) + "\n"
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", strings.TrimSpace(line))
		}
	}
	if int64(len(rs))+hardFaults.Load() != attempts {
		t.Errorf("%d runs and %d stopped attempts, want %d attempts in all", len(rs), hardFaults.Load(), attempts)
	}
	t.Logf("%d runs succeeded, %d of them after a resume; %d retries inside runs", len(rs), hardFaults.Load(),
		countRetries(metrics))
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs.String())
	}
}

// countRetries sums the fhirdeid_retries_total series of a metrics page.
func countRetries(metrics string) int {
	total := 0
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "fhirdeid_retries_total{") {
			f := strings.Fields(line)
			v, _ := strconv.Atoi(f[len(f)-1])
			total += v
		}
	}
	return total
}
