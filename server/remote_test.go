package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirdeid/audit"
	"fhirdeid/pipeline"
	"fhirdeid/risk"
	"fhirdeid/server"
	"fhirdeid/state"
)

// fakeRemote is a workflow engine that holds its runs in memory.
type fakeRemote struct {
	mu        sync.Mutex
	runs      []server.RemoteRun // newest first
	next      time.Time
	starts    []string
	cancelled []string
}

func (f *fakeRemote) Runs(_ context.Context, name string, limit int) ([]server.RemoteRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []server.RemoteRun
	for _, r := range f.runs {
		if r.Pipeline == name && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeRemote) Run(_ context.Context, id string) (*server.RemoteRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.runs {
		if r.ID == id {
			return &r, nil
		}
	}
	return nil, state.ErrNotFound
}

func (f *fakeRemote) Start(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.runs {
		if r.Pipeline == name && r.Running {
			return server.ErrRunning
		}
	}
	f.starts = append(f.starts, name)
	return nil
}

func (f *fakeRemote) Cancel(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, id)
	return nil
}

func (f *fakeRemote) NextRun(context.Context, string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next, nil
}

// set replaces the runs.
func (f *fakeRemote) set(runs ...server.RemoteRun) {
	f.mu.Lock()
	f.runs = runs
	f.mu.Unlock()
}

func TestRemoteRuns(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	clock := newFakeClock(t0.Add(2 * time.Hour))
	done := server.RemoteRun{ID: "0b5e6f2a-done", Pipeline: "ehr", Folder: "20261207T010000Z", Status: "succeeded",
		StartedAt: t0, FinishedAt: t0.Add(90 * time.Second),
		Report:   &pipeline.Report{Run: "20261207T010000Z", Status: "succeeded", Resources: 1234, BytesIn: 5000, BytesOut: 700},
		Workflow: &server.WorkflowRef{ID: "fhirdeid-ehr-2026-12-07T01:00:00Z", RunID: "0b5e6f2a-done", Status: "Completed", URL: "http://127.0.0.1:8233/namespaces/default/workflows/fhirdeid-ehr-2026-12-07T01:00:00Z/0b5e6f2a-done/history"}}
	failed := server.RemoteRun{ID: "77aa-failed", Pipeline: "ehr", Status: "failed", StartedAt: t0.Add(-24 * time.Hour),
		FinishedAt: t0.Add(-23 * time.Hour), Error: "kick-off: the server answered 403",
		Workflow: &server.WorkflowRef{ID: "fhirdeid-ehr", RunID: "77aa-failed", Status: "Failed"}}
	live := server.RemoteRun{ID: "c3d4-live", Pipeline: "ehr", Folder: "20261207T025900Z", Running: true, Status: "processing",
		StartedAt: t0.Add(119 * time.Minute), Progress: pipeline.Progress{FilesDone: 3, FilesTotal: 12, Resources: 40},
		Workflow: &server.WorkflowRef{ID: "fhirdeid-ehr", RunID: "c3d4-live", Status: "Running"}}
	rm := &fakeRemote{next: t0.Add(24 * time.Hour)}
	rm.set(live, done, failed)

	db, err := state.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := server.New(server.Options{State: db, Clock: clock, RemotePoll: time.Minute,
		Jobs: []*server.Job{{Name: "ehr", Schedule: mustCron(t, "0 1 * * *"), Remote: rm}}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	h := s.Handler()
	metric := func() string { _, b, _ := do(t, h, "GET", "/metrics", nil, nil); return b }
	waitFor(t, "the first look at the remote runs", func() bool {
		return strings.Contains(metric(), `fhirdeid_run_in_progress{pipeline="ehr"} 1`)
	})

	check := func(method, path string, code int, want ...string) string {
		t.Helper()
		c, body, _ := do(t, h, method, path, nil, nil)
		if c != code {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, c, code, body)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s %s: no %s in\n%s", method, path, w, body)
			}
		}
		return body
	}
	body := check("GET", "/api/runs", 200, `"id": "c3d4-live"`, `"running": true`, `"filesDone": 3`, `"filesTotal": 12`,
		`"id": "0b5e6f2a-done"`, `"folder": "20261207T010000Z"`, `"resources": 1234`, `"runId": "0b5e6f2a-done"`,
		`"url": "http://127.0.0.1:8233/namespaces/default/workflows/`, `"error": "kick-off: the server answered 403"`)
	if a, b, c := strings.Index(body, "c3d4-live"), strings.Index(body, "0b5e6f2a-done"), strings.Index(body, "77aa-failed"); !(a < b && b < c) {
		t.Errorf("runs not newest first:\n%s", body)
	}
	check("GET", "/api/runs?limit=1&offset=1", 200, `"id": "0b5e6f2a-done"`, `"more": true`)
	check("GET", "/api/pipelines", 200, `"running": true`, `"currentRun": "c3d4-live"`, `"nextRun": "2026-12-08T01:00:00Z"`)
	check("GET", "/api/runs/0b5e6f2a-done", 200, `"status": "succeeded"`, `"report": {`, `"status": "Completed"`)
	check("GET", "/api/runs/nosuch", 404)
	check("GET", "/runs/0b5e6f2a-done", 200, "Temporal workflow", "open in the Temporal UI", "20261207T010000Z")
	check("GET", "/", 200, `<a href="http://127.0.0.1:8233/namespaces/default/workflows/fhirdeid-ehr-2026-12-07T01:00:00Z/0b5e6f2a-done/history"`,
		"20261207T025900Z", `<circle class="pt ok"`)

	// Trigger and cancel go to the engine.
	check("POST", "/api/pipelines/ehr/run", 409)
	check("POST", "/api/runs/0b5e6f2a-done/cancel", 409)
	check("POST", "/api/runs/c3d4-live/cancel", 202)
	rm.mu.Lock()
	if len(rm.cancelled) != 1 || rm.cancelled[0] != "c3d4-live" {
		t.Errorf("cancelled %v, want [c3d4-live]", rm.cancelled)
	}
	rm.mu.Unlock()

	// The live run ends: the metrics count it once, the runs that ended
	// before the server started are not counted.
	live.Running, live.Status, live.FinishedAt = false, "partial", t0.Add(125*time.Minute)
	live.Report = &pipeline.Report{Run: live.Folder, Status: "partial", Resources: 500, BytesIn: 9000, BytesOut: 1000,
		Audit: &audit.Report{Leaks: 3}, Risk: &pipeline.RiskReport{Report: risk.Report{Records: 10, MinK: 4}}}
	rm.set(live, done, failed)
	clock.Advance(time.Minute)
	waitFor(t, "the end of the run in the metrics", func() bool {
		return strings.Contains(metric(), `fhirdeid_run_in_progress{pipeline="ehr"} 0`)
	})
	m := metric()
	for _, w := range []string{`fhirdeid_runs_total{outcome="partial",pipeline="ehr"} 1`, `fhirdeid_runs_total{outcome="succeeded",pipeline="ehr"} 0`,
		`fhirdeid_runs_total{outcome="failed",pipeline="ehr"} 0`, `fhirdeid_resources_processed_total{pipeline="ehr"} 500`,
		`fhirdeid_bytes_written_total{pipeline="ehr"} 1000`, `fhirdeid_next_run_timestamp_seconds{pipeline="ehr"} 1.7966916e+09`,
		`fhirdeid_last_success_timestamp_seconds{pipeline="ehr"} 1.7966127e+09`,
		`fhirdeid_audit_leaks_total{pipeline="ehr"} 3`, `fhirdeid_risk_min_k{pipeline="ehr"} 4`} {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
	clock.Advance(time.Minute)
	time.Sleep(50 * time.Millisecond)
	if m := metric(); !strings.Contains(m, `fhirdeid_runs_total{outcome="partial",pipeline="ehr"} 1`) {
		t.Errorf("the run was counted again")
	}

	check("POST", "/api/pipelines/ehr/run", 202)
	rm.mu.Lock()
	if len(rm.starts) != 1 {
		t.Errorf("starts %v, want one", rm.starts)
	}
	rm.mu.Unlock()
}
