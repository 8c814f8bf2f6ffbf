package server_test

import (
	"context"
	"strings"
	"testing"

	"fhirdeid/anonymize"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
)

// keepPatients passes Patient resources through unchanged: every identifier
// of the patients leaks.
type keepPatients struct{ pipeline.Deidentifier }

func (k keepPatients) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	if strings.HasPrefix(file, "Patient.") {
		return append(dst, res...), anonymize.Stats{}, nil
	}
	return k.Deidentifier.Resource(ctx, file, line, res, dst)
}

// TestAssurancePages: a clean pipeline's run page shows the audit (0 leaks)
// and the risk histogram; a leaking pipeline with failOn: leak fails, its
// page and the metrics count the leaks, and no value is shown anywhere.
func TestAssurancePages(t *testing.T) {
	e := testenv.New(t, 12)
	assure := func(p *pipeline.Pipeline) {
		p.Assurance = &pipeline.Assurance{Audit: true, FailOnLeak: true, Risk: true, MinK: 1}
	}
	leaky := func(p *pipeline.Pipeline) {
		assure(p)
		p.Deidentifier = keepPatients{p.Deidentifier}
	}
	s, err := server.New(server.Options{State: e.DB, Jobs: []*server.Job{
		e.Job(t, "clean", mustCron(t, "0 1 * * *"), assure), e.Job(t, "leaky", mustCron(t, "0 1 * * *"), leaky)}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	for _, name := range []string{"clean", "leaky"} {
		if err := s.Trigger(name); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" run", func() bool { return finishedRuns(t, e.DB, name) == 1 })
	}
	waitFor(t, "the scheduler", func() bool { return !running(t, s) })
	h := s.Handler()

	clean := runs(t, e.DB, "clean")[0]
	if clean.Status != "succeeded" {
		t.Fatalf("clean run %s: %s", clean.Status, clean.Error)
	}
	code, body, _ := do(t, h, "GET", "/runs/"+clean.ID, nil, nil)
	for _, want := range []string{"Leak audit", `id="audit-leaks">0<`, "Re-identification risk", `id="risk-histogram"`, `<rect class="bar"`, "Prosecutor"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("clean run page lacks %q (%d)", want, code)
		}
	}

	leak := runs(t, e.DB, "leaky")[0]
	if leak.Status != "failed" || !strings.Contains(leak.Error, "failOn: leak") {
		t.Fatalf("leaky run %s: %s", leak.Status, leak.Error)
	}
	code, body, _ = do(t, h, "GET", "/runs/"+leak.ID, nil, nil)
	for _, want := range []string{"Leak audit", `class="status bad" id="audit-leaks"`, "Patient.name.family", "Patient.telecom.value", "Patient.identifier.value"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("leaky run page lacks %q (%d)", want, code)
		}
	}
	_, metrics, _ := do(t, h, "GET", "/metrics", nil, nil)
	if !strings.Contains(metrics, `fhirdeid_audit_leaks_total{pipeline="clean"} 0`) ||
		strings.Contains(metrics, `fhirdeid_audit_leaks_total{pipeline="leaky"} 0`) ||
		!strings.Contains(metrics, `fhirdeid_audit_leaks_total{pipeline="leaky"}`) ||
		!strings.Contains(metrics, `fhirdeid_risk_min_k{pipeline="clean"}`) {
		t.Errorf("metrics:\n%s", grepLines(metrics, "fhirdeid_audit", "fhirdeid_risk"))
	}
	_, api, _ := do(t, h, "GET", "/api/runs/"+leak.ID, nil, nil)
	for what, text := range map[string]string{"run page": body, "metrics": metrics, "API": api} {
		lc := synth.NewLeakChecker(e.Pop.Identifiers)
		lc.CheckLine([]byte(text))
		if lc.Found() != 0 {
			t.Errorf("the %s shows %d planted identifiers", what, lc.Found())
		}
	}
}

func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
