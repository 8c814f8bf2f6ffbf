package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/pipeline"
	"fhirdeid/storage"
)

// badPatient is a Patient the de-identifier cannot type: birthDate is an
// object. It carries a value that must never appear in a report or log.
const badPatient = `{"resourceType":"Patient","id":"bad1","birthDate":{"secret":"PLANTED-VALUE-77"}}`

func invalidEnv(t *testing.T) *env {
	return newEnv(t, bulktest.Options{Resources: [][]byte{
		[]byte(`{"resourceType":"Patient","id":"a"}`),
		[]byte(badPatient),
		[]byte(`{"resourceType":"Patient","id":"b"}`),
	}})
}

// With onInvalid: fail (the default) an invalid line fails the run.
func TestOnInvalidFail(t *testing.T) {
	e := invalidEnv(t)
	p := e.pipeline(t, safeHarbor(t))
	_, err := pipeline.Run(context.Background(), p)
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Outcome != pipeline.Fatal {
		t.Fatalf("error = %v, want a fatal error", err)
	}
	if !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %q does not name line 2", err)
	}
}

// With onInvalid: skip the line is dropped, counted with its number and
// reason in report.json and log.ndjson, and the run is partial.
func TestOnInvalidSkip(t *testing.T) {
	e := invalidEnv(t)
	p := e.pipeline(t, safeHarbor(t))
	p.OnInvalid = pipeline.OnInvalidSkip
	rep, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != "partial" {
		t.Errorf("status %s, want partial", rep.Status)
	}
	if rep.Resources != 2 {
		t.Errorf("%d resources, want 2", rep.Resources)
	}
	if len(rep.InvalidLines) != 1 || rep.InvalidLines[0].Line != 2 || rep.InvalidLines[0].File != "Patient.000" ||
		!strings.Contains(rep.InvalidLines[0].Reason, "not a valid Patient") {
		t.Errorf("invalid lines %+v", rep.InvalidLines)
	}
	if rep.Deidentification.Invalid != 1 {
		t.Errorf("invalid count %d", rep.Deidentification.Invalid)
	}
	ctx := context.Background()
	rj, _ := e.store.ReadAll(ctx, storage.RunKey(rep.Run, "report.json"))
	lj, _ := e.store.ReadAll(ctx, storage.RunKey(rep.Run, "log.ndjson"))
	var back pipeline.Report
	if err := json.Unmarshal(rj, &back); err != nil || len(back.InvalidLines) != 1 {
		t.Errorf("report.json invalidLines: %v %+v", err, back.InvalidLines)
	}
	if !strings.Contains(string(lj), `"invalid_line"`) || !strings.Contains(string(lj), `"line":2`) {
		t.Error("log.ndjson has no invalid_line event for line 2")
	}
	keys, _ := e.store.List(ctx, rep.Run+"/")
	for _, k := range append(keys, "") {
		var data []byte
		if k != "" {
			data, _ = e.store.ReadAll(ctx, k)
		}
		if strings.Contains(string(data), "PLANTED-VALUE-77") || strings.Contains(string(data), "Patient/bad1") {
			t.Errorf("%s holds the invalid line's content: %+v", k, rep.InvalidLines)
		}
	}
	entries, _ := os.ReadDir(p.LogDir)
	for _, en := range entries {
		b, _ := os.ReadFile(p.LogDir + "/" + en.Name())
		if strings.Contains(string(b), "PLANTED-VALUE-77") {
			t.Error("the local log holds the invalid line's content")
		}
	}
}

// A line over the limit fails the run at once (fatal, not retried), naming
// the file, the line and the limit.
func TestLineLimitFailsRun(t *testing.T) {
	big := `{"resourceType":"Patient","id":"big","text":{"status":"generated","div":"<div>` + strings.Repeat("x", 2<<20) + `</div>"}}`
	e := newEnv(t, bulktest.Options{Resources: [][]byte{[]byte(`{"resourceType":"Patient","id":"a"}`), []byte(big)}})
	p := e.pipeline(t, safeHarbor(t))
	p.Client.MaxLineBytes = 1 << 20
	_, err := pipeline.Run(context.Background(), p)
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Outcome != pipeline.Fatal {
		t.Fatalf("error = %v, want fatal", err)
	}
	if !strings.Contains(err.Error(), "limit: Patient.000 line 2: longer than 1048576 bytes") || !strings.Contains(err.Error(), "maxLineBytes") {
		t.Errorf("error %q", err)
	}
}

// The manifest count is checked while streaming: a file whose count is 1
// fails at its second line, with a message naming allowCountMismatch.
func TestCountExceededStopsEarly(t *testing.T) {
	e := newEnv(t, bulktest.Options{Faults: bulktest.Faults{CountOne: true}})
	var seen atomic.Int64
	p := e.pipeline(t, countingDeid{safeHarbor(t), &seen})
	p.Concurrency = 1
	_, err := pipeline.Run(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "more resources than the manifest count 1") || !strings.Contains(err.Error(), "allowCountMismatch") {
		t.Fatalf("error %v", err)
	}
	if !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %q does not stop at line 2", err)
	}
	if n := seen.Load(); n > 20 {
		t.Errorf("%d resources de-identified before the count check stopped the file", n)
	}
}

type countingDeid struct {
	pipeline.Deidentifier
	n *atomic.Int64
}

func (d countingDeid) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	d.n.Add(1)
	return d.Deidentifier.Resource(ctx, file, line, res, dst)
}

// A kick-off answered 500 with a non-transient OperationOutcome (the
// reference server's case) fails the run at once as fatal, after one try.
func TestKickoff500FailsRunAtOnce(t *testing.T) {
	e := newEnv(t, bulktest.Options{Faults: bulktest.Faults{KickoffStatus: 500, KickoffDiagnostics: "An unknown error occurred"}})
	p := e.pipeline(t, safeHarbor(t))
	p.Client.Retries = bulk.DefaultRetryPolicy()
	_, err := pipeline.Run(context.Background(), p)
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Outcome != pipeline.Fatal || pe.Step != "kick-off" {
		t.Fatalf("error = %v, want a fatal kick-off error", err)
	}
	if n := e.srv.Stats().Kickoffs; n != 1 {
		t.Errorf("%d kick-offs, want 1", n)
	}
}
