package durable

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
)

// TestHostFilesCapsAcrossPipelines: two pipelines export from one server;
// with HostFiles 1 the worker downloads one file of that host at a time,
// although the files of both pipelines are processed at once.
func TestHostFilesCapsAcrossPipelines(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 10})
	var res [][]byte
	for _, typ := range pop.Types() {
		res = append(res, pop.Resources[typ]...)
	}
	srv, err := bulktest.New(bulktest.Options{Resources: res, PartSize: 30, DownloadDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Close()
	ctx := context.Background()
	dir := t.TempDir()
	ps := map[string]*pipeline.Pipeline{}
	for _, name := range []string{"a", "b"} {
		p := newPipeline(t, srv, filepath.Join(dir, name))
		p.Name = name
		ps[name] = p
	}
	acts, err := NewActivities(ps)
	if err != nil {
		t.Fatal(err)
	}
	acts.HostFiles = 1
	// Each pipeline's export, through the value steps.
	var inputs []FileInput
	for name, p := range ps {
		run, err := pipeline.PlanRun(p, time.Now(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		if run.StatusURL, err = pipeline.KickOffExport(ctx, p, run); err != nil {
			t.Fatal(err)
		}
		var exp *pipeline.Export
		for exp == nil {
			r, err := pipeline.PollExport(ctx, p, run)
			if err != nil {
				t.Fatal(err)
			}
			exp = r.Export
			time.Sleep(r.Wait)
		}
		for _, f := range exp.Files[:min(3, len(exp.Files))] {
			inputs = append(inputs, FileInput{Pipeline: name, Run: run.ID, File: f})
		}
	}
	if len(inputs) < 4 {
		t.Fatalf("%d files", len(inputs))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(inputs))
	for _, in := range inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			env.RegisterActivity(acts)
			v, err := env.ExecuteActivity(acts.ProcessFile, in)
			var r pipeline.FileResult
			if err == nil {
				err = v.Get(&r)
			}
			if err == nil && r.Resources == 0 {
				t.Errorf("%s: no resource", in.File.Name())
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	acts.hosts.mu.Lock()
	defer acts.hosts.mu.Unlock()
	if len(acts.hosts.peak) != 1 {
		t.Fatalf("hosts %v, want the test server's alone", acts.hosts.peak)
	}
	for h, n := range acts.hosts.peak {
		if n != 1 {
			t.Errorf("%d files of %s at once, want 1", n, h)
		}
	}
}
