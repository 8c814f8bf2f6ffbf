package server_test

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
	"fhirdeid/state"
)

// BenchmarkCronNext measures finding the next time of a schedule that
// skips most days.
func BenchmarkCronNext(b *testing.B) {
	c, err := server.ParseCron("30 2 1-7 * mon", nil)
	if err != nil {
		b.Fatal(err)
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		t = c.Next(t)
	}
}

// BenchmarkDashboard renders the dashboard's first page with 500 runs in the
// state database (the page lists 25 and charts 60).
func BenchmarkDashboard(b *testing.B) {
	e := testenv.New(b, 1)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 500 {
		r := &state.Run{ID: fmt.Sprintf("run%04d", i), Source: "ehr", Status: state.RunExporting, StartedAt: base.Add(time.Duration(i) * time.Hour)}
		if err := e.DB.CreateRun(b.Context(), r); err != nil {
			b.Fatal(err)
		}
		r.Status = state.RunSucceeded
		r.Report = fmt.Appendf(nil, `{"resources":%d,"types":{"Patient":{"files":1,"resources":%d}}}`, 1000+i, 1000+i)
		if err := e.DB.FinishRun(b.Context(), r, ""); err != nil {
			b.Fatal(err)
		}
	}
	s, err := server.New(server.Options{State: e.DB, DisableStartup: true,
		Jobs: []*server.Job{e.Job(b, "ehr", server.Every(time.Hour), nil)}})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = "127.0.0.1:8080"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
		b.SetBytes(int64(w.Body.Len()))
	}
}
