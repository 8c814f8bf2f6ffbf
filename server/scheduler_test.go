package server_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
	"fhirdeid/state"
)

func mustCron(t *testing.T, expr string) *server.Cron {
	t.Helper()
	c, err := server.ParseCron(expr, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startServer runs s's scheduler until the test ends (or the returned stop
// is called) and returns stop.
func startServer(t *testing.T, s *server.Server) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func TestSchedulerFollowsCron(t *testing.T) {
	e := testenv.New(t, 5)
	clock := newFakeClock(time.Date(2026, 3, 10, 10, 2, 0, 0, time.UTC))
	e.DB.Now = clock.Now
	s, err := server.New(server.Options{State: e.DB, Clock: clock,
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "*/5 * * * *"), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)

	steps := []struct {
		advance  time.Duration
		wantRuns int
		wantNext string // the scheduler's timer after the step
	}{
		{0, 0, "10:05"},
		{3 * time.Minute, 1, "10:10"},  // 10:05: first run
		{4 * time.Minute, 1, "10:10"},  // 10:09: nothing due
		{time.Minute, 2, "10:15"},      // 10:10: second run
		{12 * time.Minute, 3, "10:25"}, // 10:22: the missed 10:15 and 10:20 fire once
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		waitFor(t, "runs to finish", func() bool { return finishedRuns(t, e.DB, "ehr") >= st.wantRuns })
		next := clock.waitTimer(t)
		if got := next.Format("15:04"); got != st.wantNext {
			t.Errorf("step %d: next run at %s, want %s", i, got, st.wantNext)
		}
		if got := finishedRuns(t, e.DB, "ehr"); got != st.wantRuns {
			t.Errorf("step %d: %d runs, want %d", i, got, st.wantRuns)
		}
	}
	for _, r := range runs(t, e.DB, "ehr") {
		if r.Status != state.RunSucceeded {
			t.Errorf("run %s: %s (%s)", r.ID, r.Status, r.Error)
		}
	}
}

func TestSchedulerStartup(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		runMissed bool
		lastRun   time.Time // zero: none
		wantRun   bool
	}{
		{"missed daily run", true, now.Add(-36 * time.Hour), true},
		{"missed, runMissed off", false, now.Add(-36 * time.Hour), false},
		{"last run after the previous schedule", true, now.Add(-10 * time.Hour), false}, // 02:00 > 01:00
		{"never ran", true, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testenv.New(t, 3)
			clock := newFakeClock(now)
			e.DB.Now = clock.Now
			ctx := context.Background()
			before := 0
			if !tt.lastRun.IsZero() {
				r := &state.Run{ID: "seeded", Source: "ehr", Status: state.RunExporting, StartedAt: tt.lastRun}
				if err := e.DB.CreateRun(ctx, r); err != nil {
					t.Fatal(err)
				}
				r.Status = state.RunSucceeded
				if err := e.DB.FinishRun(ctx, r, ""); err != nil {
					t.Fatal(err)
				}
				before = 1
			}
			job := e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)
			job.RunMissed = tt.runMissed
			s, err := server.New(server.Options{State: e.DB, Clock: clock, Jobs: []*server.Job{job}})
			if err != nil {
				t.Fatal(err)
			}
			startServer(t, s)
			// The start-up run, if any, ends before the first timer.
			if got := clock.waitTimer(t).Format("2006-01-02 15:04"); got != "2026-03-11 01:00" {
				t.Errorf("next run %s", got)
			}
			got := len(runs(t, e.DB, "ehr")) - before
			if want := map[bool]int{true: 1, false: 0}[tt.wantRun]; got != want {
				t.Errorf("%d start-up runs, want %d", got, want)
			}
		})
	}
}

func TestShutdownCheckpointsAndResumes(t *testing.T) {
	e := testenv.New(t, 10)
	g := newGate()
	s, err := server.New(server.Options{State: e.DB,
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), g.wrap)}})
	if err != nil {
		t.Fatal(err)
	}
	stop := startServer(t, s)
	if err := s.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	if err := s.Trigger("ehr"); !errors.Is(err, server.ErrRunning) {
		t.Errorf("second trigger during a run: %v, want ErrRunning", err)
	}
	stop() // SIGTERM: cancels the run's context
	rs := runs(t, e.DB, "ehr")
	if len(rs) != 1 || rs[0].Status.Terminal() {
		t.Fatalf("after shutdown: %d runs, status %v; want 1 unfinished", len(rs), rs[0].Status)
	}
	id := rs[0].ID
	// The log of the unfinished run is served from the local file.
	if code, body, _ := do(t, s.Handler(), "GET", "/api/runs/"+id+"/log", nil, nil); code != 200 || !strings.Contains(body, `"eventId":"kickoff"`) {
		t.Errorf("log of the unfinished run: %d %.300s", code, body)
	}

	// The next start resumes the run without a second kick-off.
	close(g.open)
	s2, err := server.New(server.Options{State: e.DB,
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s2)
	waitFor(t, "the resumed run", func() bool { return finishedRuns(t, e.DB, "ehr") == 1 })
	rs = runs(t, e.DB, "ehr")
	if len(rs) != 1 || rs[0].ID != id || rs[0].Status != state.RunSucceeded {
		t.Errorf("after restart: %d runs, %s %s, want run %s succeeded", len(rs), rs[0].ID, rs[0].Status, id)
	}
	if k := e.Bulk.Stats().Kickoffs; k != 1 {
		t.Errorf("%d kick-offs, want 1 (resumed)", k)
	}
}

func TestCancelRun(t *testing.T) {
	e := testenv.New(t, 5)
	g := newGate()
	s, err := server.New(server.Options{State: e.DB,
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), g.wrap)}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	if err := s.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	rs := runs(t, e.DB, "ehr")
	if len(rs) != 1 {
		t.Fatalf("%d runs", len(rs))
	}
	h := s.Handler()
	code, body, _ := do(t, h, "POST", "/api/runs/"+rs[0].ID+"/cancel", nil, nil)
	if code != 202 {
		t.Fatalf("cancel: %d %s", code, body)
	}
	waitFor(t, "the cancelled run", func() bool { return finishedRuns(t, e.DB, "ehr") == 1 })
	r, _ := e.DB.Run(context.Background(), rs[0].ID)
	if r.Status != state.RunCancelled {
		t.Errorf("status %s, want cancelled", r.Status)
	}
	code, body, _ = do(t, h, "POST", "/api/runs/"+rs[0].ID+"/cancel", nil, nil)
	if code != 409 {
		t.Errorf("cancel of a cancelled run: %d %s, want 409", code, body)
	}
	// An unfinished run that no process is running is cancelled at once.
	orphan := &state.Run{ID: "orphan", Source: "ehr", Status: state.RunProcessing}
	if err := e.DB.CreateRun(context.Background(), orphan); err != nil {
		t.Fatal(err)
	}
	// (through the dashboard's form this time)
	code, _, hdr := do(t, h, "POST", "/runs/orphan/cancel", map[string]string{"Origin": "http://127.0.0.1:8080"}, nil)
	if code != 303 || hdr.Get("Location") != "/runs/orphan?flash=cancelling" {
		t.Errorf("cancel form: %d, location %q", code, hdr.Get("Location"))
	}
	if r, _ := e.DB.Run(context.Background(), "orphan"); r.Status != state.RunCancelled {
		t.Errorf("orphan: %s, want cancelled", r.Status)
	}
}

// A run that stops on a retryable error is retried after RetryDelay.
func TestRetryAfterRetryableFailure(t *testing.T) {
	e := testenv.New(t, 3)
	clock := newFakeClock(time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC))
	e.DB.Now = clock.Now
	var fail atomic.Bool
	fail.Store(true)
	job := e.Job(t, "ehr", mustCron(t, "0 1 * * *"), func(p *pipeline.Pipeline) {
		if fail.Load() {
			p.Client.Retries.MaxRetries = 0
			e.Bulk.SetFaults(bulktest.Faults{Status5xx: 1})
		}
	})
	s, err := server.New(server.Options{State: e.DB, Clock: clock, RetryDelay: 10 * time.Minute, Jobs: []*server.Job{job}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	clock.waitTimer(t)
	if err := s.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry timer", func() bool {
		return clock.waitTimer(t).Equal(clock.Now().Add(10 * time.Minute))
	})
	fail.Store(false)
	clock.Advance(10 * time.Minute)
	waitFor(t, "the resumed run", func() bool { return finishedRuns(t, e.DB, "ehr") == 1 })
	if rs := runs(t, e.DB, "ehr"); len(rs) != 1 || rs[0].Status != state.RunSucceeded {
		t.Errorf("runs: %d, %s", len(rs), rs[0].Status)
	}
}

// Two servers on one state database (two processes) never run a pipeline at
// the same time: the second finds the lease taken and retries later.
func TestLeaseAcrossServers(t *testing.T) {
	e := testenv.New(t, 5)
	g := newGate()
	a, err := server.New(server.Options{State: e.DB, Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), g.wrap)}})
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	b, err := server.New(server.Options{State: e.DB, Logger: logs.logger(),
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, a)
	startServer(t, b)
	if err := a.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	if err := b.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second server's attempt", func() bool { return strings.Contains(logs.String(), "outcome=retryable") })
	if !strings.Contains(logs.String(), "lock source") {
		t.Errorf("the second server's attempt did not stop on the lease:\n%s", logs.String())
	}
	close(g.open)
	waitFor(t, "the first server's run", func() bool { return finishedRuns(t, e.DB, "ehr") == 1 })
	if rs := runs(t, e.DB, "ehr"); len(rs) != 1 || rs[0].Status != state.RunSucceeded {
		t.Errorf("%d runs, want 1 succeeded", len(rs))
	}
}
