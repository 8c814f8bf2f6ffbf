package server_test

import (
	"strings"
	"testing"
	"time"

	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
	"fhirdeid/state"
)

// The run page lists the research tables of report.json with their rows.
func TestRunPageTables(t *testing.T) {
	e := testenv.New(t, 1)
	r := &state.Run{ID: "run1", Source: "ehr", Status: state.RunExporting, StartedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := e.DB.CreateRun(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	r.Status = state.RunSucceeded
	r.Report = []byte(`{"resources":10,"types":{"Observation":{"files":1,"resources":10}},"tables":{"observations":1234567,"encounters":0}}`)
	if err := e.DB.FinishRun(t.Context(), r, ""); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Options{State: e.DB, DisableStartup: true,
		Jobs: []*server.Job{e.Job(t, "ehr", server.Every(time.Hour), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	code, body, _ := do(t, s.Handler(), "GET", "/runs/run1", nil, nil)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	i := strings.Index(body, "<h2>Research tables</h2>")
	if i < 0 {
		t.Fatalf("no research tables on the run page:\n%s", body)
	}
	rest := body[i:]
	enc, obs := strings.Index(rest, "<td>encounters</td>"), strings.Index(rest, "<td>observations</td>")
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, rest[obs:min(len(rest), obs+80)])
	if enc < 0 || obs < enc || !strings.HasPrefix(digits, "1234567") {
		t.Fatalf("research tables not listed by name with their rows:\n%s", rest)
	}
}
