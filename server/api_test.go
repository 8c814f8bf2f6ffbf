package server_test

import (
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"testing"
	"time"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
	"fhirdeid/state"
)

// apiFixture runs one pipeline to completion and returns the server and the
// run's id.
func apiFixture(t *testing.T, token string, logs *logBuffer) (*server.Server, *testenv.Env, string) {
	t.Helper()
	e := testenv.New(t, 8)
	opts := server.Options{State: e.DB, Token: token,
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil), e.Job(t, "claims", mustCron(t, "30 2 * * 1-5"), nil)}}
	if logs != nil {
		opts.Logger = logs.logger()
	}
	s, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	if err := s.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run", func() bool { return finishedRuns(t, e.DB, "ehr") == 1 })
	// Wait until the scheduler has recorded the end of the run too.
	waitFor(t, "the scheduler", func() bool { return s.Trigger("nosuch") == server.ErrUnknownPipeline && !running(t, s) })
	return s, e, runs(t, e.DB, "ehr")[0].ID
}

func running(t *testing.T, s *server.Server) bool {
	_, body, _ := do(t, s.Handler(), "GET", "/api/pipelines", nil, nil)
	return strings.Contains(body, `"running": true`)
}

func TestAPI(t *testing.T) {
	s, e, id := apiFixture(t, "", nil)
	h := s.Handler()
	tests := []struct {
		method, path string
		hdr          map[string]string
		code         int
		want         []string
	}{
		{"GET", "/healthz", nil, 200, []string{"ok"}},
		{"GET", "/readyz", nil, 200, []string{"ready"}},
		{"GET", "/api/pipelines", nil, 200, []string{`"name": "claims"`, `"schedule": "30 2 * * 1-5"`, `"name": "ehr"`, `"status": "succeeded"`, `"nextRun": "`}},
		{"GET", "/api/runs", nil, 200, []string{`"id": "` + id + `"`, `"resources": ` + fmt.Sprint(e.Pop.Count()), `"more": false`}},
		{"GET", "/api/runs?pipeline=claims", nil, 200, []string{`"runs": []`}},
		{"GET", "/api/runs?pipeline=nosuch", nil, 404, []string{`"error": "unknown pipeline"`}},
		{"GET", "/api/runs?limit=x", nil, 400, []string{"non-negative integers"}},
		{"GET", "/api/runs?limit=1&offset=1", nil, 200, []string{`"runs": []`}},
		{"GET", "/api/runs/" + id, nil, 200, []string{`"report": {`, `"Patient": {`, `"status": "done"`, `"kind": "output"`}},
		{"GET", "/api/runs/nosuch", nil, 404, []string{"no such run"}},
		{"GET", "/api/runs/" + id + "/log", nil, 200, []string{`"eventId":"kickoff"`, `"eventId":"status_complete"`}},
		{"POST", "/api/pipelines/nosuch/run", nil, 404, []string{"unknown pipeline"}},
		{"POST", "/api/runs/" + id + "/cancel", nil, 409, []string{"the run is over"}},
		// Cross-origin POSTs are refused, same-origin ones accepted.
		{"POST", "/api/pipelines/claims/run", map[string]string{"Origin": "https://evil.example"}, 403, []string{"cross-origin"}},
		{"POST", "/pipelines/claims/run", nil, 403, []string{"cross-origin"}}, // a form post without Origin or Referer
		{"POST", "/pipelines/claims/run", map[string]string{"Referer": "http://evil.example/x"}, 403, []string{"cross-origin"}},
		// DNS rebinding: without a token only loopback Host names are served.
		{"GET", "/api/pipelines", map[string]string{"Host": "evil.example"}, 403, []string{"host not allowed"}},
		{"GET", "/", nil, 200, []string{"<h1>Pipelines</h1>", "ehr", "claims", `<svg class="chart"`, id, "succeeded"}},
		{"GET", "/runs/" + id, nil, 200, []string{"Resources by type", "Patient", "succeeded", "Merged snapshot",
			`<dd id="snapshot-unresolved">0</dd>`, "Referential integrity", "Observation.subject"}},
		{"GET", "/runs/nosuch", nil, 404, []string{"no such run"}},
		{"GET", "/static/style.css", nil, 200, []string{"svg.chart"}},
		{"GET", "/metrics", nil, 200, []string{`fhirdeid_runs_total{outcome="succeeded",pipeline="ehr"} 1`,
			fmt.Sprintf(`fhirdeid_resources_processed_total{pipeline="ehr"} %d`, e.Pop.Count()),
			`fhirdeid_run_duration_seconds_count{outcome="succeeded",pipeline="ehr"} 1`,
			`fhirdeid_export_wait_seconds_count{pipeline="ehr"} 1`,
			`fhirdeid_last_success_timestamp_seconds{pipeline="ehr"}`,
			`fhirdeid_next_run_timestamp_seconds{pipeline="claims"}`}},
	}
	for _, tt := range tests {
		hdr := map[string]string{}
		for k, v := range tt.hdr {
			hdr[k] = v
		}
		code, body, _ := do(t, h, tt.method, tt.path, hdr, nil)
		if code != tt.code {
			t.Errorf("%s %s: %d, want %d: %.300s", tt.method, tt.path, code, tt.code, body)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s %s: body lacks %q:\n%.2000s", tt.method, tt.path, w, body)
			}
		}
	}

	// The run's detail decodes into the API's types.
	_, body, _ := do(t, h, "GET", "/api/runs/"+id, nil, nil)
	var d server.RunDetail
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Run.Status != string(state.RunSucceeded) || d.Report == nil || d.Report.Resources != int64(e.Pop.Count()) || len(d.Files) == 0 {
		t.Errorf("run detail: %+v", d.Run)
	}

	// Trigger by API, and 409 while that run is in progress.
	code, body, _ := do(t, h, "POST", "/api/pipelines/claims/run", nil, nil)
	if code != 202 {
		t.Fatalf("trigger: %d %s", code, body)
	}
	if code, body, _ := do(t, h, "POST", "/api/pipelines/claims/run", nil, nil); code != 409 {
		t.Errorf("second trigger: %d %s, want 409", code, body)
	}
	waitFor(t, "the claims run", func() bool { return finishedRuns(t, e.DB, "claims") == 1 })
}

func TestPagination(t *testing.T) {
	e := testenv.New(t, 1)
	ctx := t.Context()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 230 {
		r := &state.Run{ID: fmt.Sprintf("run%04d", i), Source: "ehr", Status: state.RunExporting, StartedAt: base.Add(time.Duration(i) * time.Hour)}
		if err := e.DB.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Status = state.RunSucceeded
		r.Report = fmt.Appendf(nil, `{"resources":%d,"types":{}}`, 1000+i*7%300)
		if err := e.DB.FinishRun(ctx, r, ""); err != nil {
			t.Fatal(err)
		}
	}
	s, err := server.New(server.Options{State: e.DB, PageSize: 25, DisableStartup: true,
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	tests := []struct {
		page      int
		first     string
		prev, nxt bool
	}{
		{1, "run0229", false, true},
		{2, "run0204", true, true},
		{10, "run0004", true, false},
	}
	for _, tt := range tests {
		code, body, _ := do(t, h, "GET", fmt.Sprintf("/?page=%d", tt.page), nil, nil)
		if code != 200 {
			t.Fatalf("page %d: %d", tt.page, code)
		}
		if n := strings.Count(body, `<tr data-run=`); n != min(25, 230-(tt.page-1)*25) {
			t.Errorf("page %d: %d rows", tt.page, n)
		}
		if i := strings.Index(body, `<tr data-run="`); i < 0 || !strings.HasPrefix(body[i+len(`<tr data-run="`):], tt.first) {
			t.Errorf("page %d does not start with %s", tt.page, tt.first)
		}
		if got := strings.Contains(body, "← newer"); got != tt.prev {
			t.Errorf("page %d: newer link %v", tt.page, got)
		}
		if got := strings.Contains(body, "older →"); got != tt.nxt {
			t.Errorf("page %d: older link %v", tt.page, got)
		}
		// The chart shows the last 60 runs.
		if n := strings.Count(body, `<circle class="pt`); n != 60 {
			t.Errorf("page %d: chart has %d points, want 60", tt.page, n)
		}
	}
	code, body, _ := do(t, h, "GET", "/api/runs?limit=10&offset=225", nil, nil)
	var page struct {
		Runs []server.RunView
		More bool
	}
	if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil {
		t.Fatalf("%d %v", code, err)
	}
	if len(page.Runs) != 5 || page.More || page.Runs[0].ID != "run0004" {
		t.Errorf("last API page: %d runs, more %v", len(page.Runs), page.More)
	}
}

// A run that fails for good shows its error on the dashboard, the API and
// the metrics.
func TestFailedRunShown(t *testing.T) {
	e := testenv.NewWith(t, 2, func(o *bulktest.Options) {
		o.Faults = bulktest.Faults{KickoffStatus: 403, KickoffDiagnostics: "export not permitted for this client"}
	})
	s, err := server.New(server.Options{State: e.DB, Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	if err := s.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run", func() bool { return finishedRuns(t, e.DB, "ehr") == 1 })
	waitFor(t, "the scheduler", func() bool { return !running(t, s) })
	r := runs(t, e.DB, "ehr")[0]
	if r.Status != state.RunFailed || !strings.Contains(r.Error, "kick-off") {
		t.Fatalf("run: %s %q", r.Status, r.Error)
	}
	h := s.Handler()
	for _, tt := range []struct{ path, want string }{
		{"/", `<span class="status bad">failed</span>`},
		{"/", template.HTMLEscapeString(r.Error)},
		{"/runs/" + r.ID, `<pre class="error">` + template.HTMLEscapeString(r.Error) + `</pre>`},
		{"/api/runs/" + r.ID, `"status": "failed"`},
		{"/metrics", `fhirdeid_runs_total{outcome="failed",pipeline="ehr"} 1`},
		{"/metrics", `fhirdeid_runs_total{outcome="succeeded",pipeline="ehr"} 0`},
	} {
		code, body, _ := do(t, h, "GET", tt.path, nil, nil)
		if code != 200 || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: %d, want %q in:\n%.3000s", tt.path, code, tt.want, body)
		}
	}
}

// TestAPINextRunBeforeLoops: the next scheduled run is in the API from the
// start, before the scheduler's loops run (serve answered at once without
// it, which failed a test of the command under load).
func TestAPINextRunBeforeLoops(t *testing.T) {
	e := testenv.New(t, 1)
	s, err := server.New(server.Options{State: e.DB, Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	code, body, _ := do(t, s.Handler(), "GET", "/api/pipelines", nil, nil)
	if code != 200 || !strings.Contains(body, `"nextRun": "`) {
		t.Errorf("GET /api/pipelines before the loops: %d %s", code, body)
	}
}
