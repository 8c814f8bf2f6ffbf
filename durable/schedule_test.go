package durable

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/storage"
)

// devServer connects to the Temporal service of FHIRDEID_TEMPORAL (set by
// .ci/run, which starts the CLI's dev server), or skips.
func devServer(t *testing.T) client.Client {
	t.Helper()
	addr := os.Getenv("FHIRDEID_TEMPORAL")
	if addr == "" {
		t.Skip("no Temporal service: start one with `temporal server start-dev --headless --ip 127.0.0.1` and set FHIRDEID_TEMPORAL=127.0.0.1:7233")
	}
	c, err := Dial(context.Background(), ConnectOptions{HostPort: addr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestScheduleRunsAndUpdates: a Schedule every few seconds starts runs of
// the pipeline on a worker without any cron of fhirdeid's, and ensuring it
// again with another cron updates it.
func TestScheduleRunsAndUpdates(t *testing.T) {
	c := devServer(t)
	ctx := context.Background()
	pop := synth.Generate(synth.Options{Patients: 5})
	var res [][]byte
	for _, typ := range pop.Types() {
		res = append(res, pop.Resources[typ]...)
	}
	srv, err := bulktest.New(bulktest.Options{Resources: res, PartSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	name := "sched" + time.Now().Format("150405.000000")
	p := newPipeline(t, srv, filepath.Join(dir, "lake"))
	p.Name = name
	acts, err := NewActivities(map[string]*pipeline.Pipeline{name: p})
	if err != nil {
		t.Fatal(err)
	}
	queue := "q-" + name
	w := NewWorker(c, queue, acts, WorkerOptions{})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	created, err := EnsureSchedule(ctx, c, queue, ScheduleSpec{Pipeline: name, Cron: "@every 3s"})
	if err != nil || !created {
		t.Fatalf("EnsureSchedule = %v, %v", created, err)
	}
	h := c.ScheduleClient().GetHandle(ctx, ScheduleID(name))
	defer h.Delete(context.Background())

	// Two committed runs, started by the Schedule alone.
	store, err := storage.Open(ctx, filepath.Join(dir, "lake"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		runs, err := store.Runs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		committed := 0
		for _, r := range runs {
			if r.Committed {
				committed++
			}
		}
		if committed >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs committed after 90 s of a schedule every 3 s", committed)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Ensuring again with another cron updates the Schedule in place.
	created, err = EnsureSchedule(ctx, c, queue, ScheduleSpec{Pipeline: name, Cron: "0 1 * * *", TimeZone: "Europe/Paris", CatchupWindow: time.Hour})
	if err != nil || created {
		t.Fatalf("second EnsureSchedule = %v, %v", created, err)
	}
	d, err := h.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spec := d.Schedule.Spec
	if spec.TimeZoneName != "Europe/Paris" || len(spec.Calendars)+len(spec.CronExpressions) == 0 || d.Schedule.Policy.CatchupWindow != time.Hour {
		t.Errorf("updated schedule: spec %+v, policy %+v", spec, d.Schedule.Policy)
	}
	if len(spec.Calendars) == 1 && (len(spec.Calendars[0].Hour) != 1 || spec.Calendars[0].Hour[0].Start != 1) {
		t.Errorf("updated schedule's calendar %+v, want 01:00", spec.Calendars[0])
	}
	if d.Info.NumActions < 2 {
		t.Errorf("%d actions taken", d.Info.NumActions)
	}
}

// TestContinueAsNewOnServer runs a workflow that continues as new every 3
// files on the dev server, with the zlib data converter: Follow follows the
// chain to the report, which counts every file once, and the progress query
// reports the executions.
func TestContinueAsNewOnServer(t *testing.T) {
	c := devServer(t)
	ctx := context.Background()
	pop := synth.Generate(synth.Options{Patients: 10})
	var res [][]byte
	for _, typ := range pop.Types() {
		res = append(res, pop.Resources[typ]...)
	}
	srv, err := bulktest.New(bulktest.Options{Resources: res, PartSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	name := "can" + time.Now().Format("150405.000000")
	p := newPipeline(t, srv, filepath.Join(dir, "lake"))
	p.Name = name
	acts, err := NewActivities(map[string]*pipeline.Pipeline{name: p})
	if err != nil {
		t.Fatal(err)
	}
	queue := "q-" + name
	w := NewWorker(c, queue, acts, WorkerOptions{MaxFiles: 3})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run, err := Start(ctx, c, queue, Input{Pipeline: name, Options: Options{FilesPerExecution: 3, Concurrency: 2}})
	if err != nil {
		t.Fatal(err)
	}
	var last Progress
	rep, err := Follow(ctx, c, run, 100*time.Millisecond, func(pr Progress) { last = pr })
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, tr := range rep.Types {
		files += tr.Files
	}
	if rep.Resources != int64(pop.Count()) || files < 7 {
		t.Fatalf("report: %d resources in %d files, want %d resources in 7 or more files", rep.Resources, files, pop.Count())
	}
	if last.Executions < 2 {
		t.Errorf("last progress %+v: want several executions", last)
	}
	// Starting again while nothing runs starts a new, incremental run.
	run2, err := Start(ctx, c, queue, Input{Pipeline: name})
	if err != nil {
		t.Fatal(err)
	}
	rep2, err := Follow(ctx, c, run2, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Run == rep.Run || rep2.Since != rep.TransactionTime {
		t.Errorf("second run %s since %q after %s (transactionTime %s)", rep2.Run, rep2.Since, rep.Run, rep.TransactionTime)
	}
}
