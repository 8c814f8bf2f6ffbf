package durable

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/server"
)

// TestOverlapSkipsLaterRun: while a run started by hand is exporting, a
// run that a Schedule starts for the same pipeline is skipped before its
// kick-off (one export on the server), shows as cancelled with the reason,
// and the Monitor refuses to start a third; the first run completes.
func TestOverlapSkipsLaterRun(t *testing.T) {
	c := devServer(t)
	ctx := context.Background()
	pop := synth.Generate(synth.Options{Patients: 5})
	var res [][]byte
	for _, typ := range pop.Types() {
		res = append(res, pop.Resources[typ]...)
	}
	// The export takes several polls of 1 s: the first run is in progress
	// long enough.
	srv, err := bulktest.New(bulktest.Options{Resources: res, PartSize: 50, PollsBeforeComplete: 4, RetryAfter: "1"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Close()
	name := "ovl" + time.Now().Format("150405.000000")
	p := newPipeline(t, srv, filepath.Join(t.TempDir(), "lake"))
	p.Name = name
	acts, err := NewActivities(map[string]*pipeline.Pipeline{name: p})
	if err != nil {
		t.Fatal(err)
	}
	queue := "q-" + name
	m := &Monitor{Client: c, Namespace: "default", TaskQueue: queue}
	acts.Earlier = m.Earlier
	w := NewWorker(c, queue, acts, WorkerOptions{})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	first, err := Start(ctx, c, queue, Input{Pipeline: name, Options: Options{PollInitial: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		cur, err := m.InProgress(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if cur == first.GetID() && srv.Stats().Kickoffs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first run is not listed in progress (%q)", cur)
		}
	}
	// What a Schedule's action starts: the workflow id with the time.
	sched, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: WorkflowID(name) + "-2026-12-07T04:00:00Z",
		TaskQueue: queue, Memo: memo(name)}, WorkflowName, Input{Pipeline: name})
	if err != nil {
		t.Fatal(err)
	}
	var ae *temporal.ApplicationError
	if err := sched.Get(ctx, nil); !errors.As(err, &ae) || ae.Type() != ErrTypeOverlap {
		t.Fatalf("the overlapping run ended with %v, want an %s error", err, ErrTypeOverlap)
	}
	if err := m.Start(ctx, name); !errors.Is(err, server.ErrRunning) {
		t.Errorf("Monitor.Start while a run is in progress = %v, want ErrRunning", err)
	}
	rep, err := Follow(ctx, c, first, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resources != int64(pop.Count()) {
		t.Errorf("first run: %d resources, want %d", rep.Resources, pop.Count())
	}
	if k := srv.Stats().Kickoffs; k != 1 {
		t.Errorf("%d kick-offs, want 1", k)
	}
	skipped, err := m.Run(ctx, sched.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	if skipped.Status != "cancelled" || !strings.Contains(skipped.Error, "skipped: workflow "+first.GetID()) || skipped.Pipeline != name {
		t.Errorf("the skipped run shows as %+v", skipped)
	}
	runs, err := m.Runs(ctx, name, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].ID != sched.GetRunID() || runs[1].Folder != rep.Run || runs[1].Status != "succeeded" {
		t.Errorf("Runs = %+v", runs)
	}
	if cur, err := m.InProgress(ctx, name); cur != "" || err != nil {
		t.Errorf("InProgress after the runs = %q, %v", cur, err)
	}
}
