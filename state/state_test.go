package state_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"fhirdeid/state"
)

func open(t *testing.T) (*state.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := state.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func TestRunLifecycle(t *testing.T) {
	ctx := context.Background()
	d, path := open(t)
	clock := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	d.Now = func() time.Time { return clock }

	r := &state.Run{ID: "r1", Source: "ehr", Status: state.RunExporting, Since: "2026-11-27T01:00:00Z"}
	if err := d.CreateRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateRun(ctx, r); err == nil {
		t.Error("creating a run twice succeeded")
	}
	got, err := d.UnfinishedRun(ctx, "ehr")
	if err != nil || got.ID != "r1" || got.Status != state.RunExporting || !got.StartedAt.Equal(clock) {
		t.Fatalf("UnfinishedRun = %+v, %v", got, err)
	}
	if _, err := d.UnfinishedRun(ctx, "other"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("UnfinishedRun(other) error = %v, want ErrNotFound", err)
	}

	clock = clock.Add(time.Minute)
	r.StatusURL = "http://fhir/status/1"
	r.Status = state.RunProcessing
	r.Manifest = []byte(`{"output":[]}`)
	if err := d.UpdateRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	files := []state.File{
		{URL: "http://fhir/f/2", Kind: "output", Type: "Patient", Seq: 1, Expected: 10},
		{URL: "http://fhir/f/1", Kind: "output", Type: "Patient", Seq: 0, Expected: -1},
		{URL: "http://fhir/d/1", Kind: "deleted", Type: "Bundle", Seq: 0, Expected: -1},
	}
	if err := d.AddFiles(ctx, "r1", files); err != nil {
		t.Fatal(err)
	}
	fs, err := d.Files(ctx, "r1")
	if err != nil || len(fs) != 3 || fs[0].URL != "http://fhir/f/1" || fs[2].Kind != "deleted" || fs[1].Expected != 10 {
		t.Fatalf("Files = %+v, %v", fs, err)
	}
	fs[0].Status, fs[0].Resources, fs[0].OutKey = state.FileDone, 5, "r1/Patient.000.ndjson.gz"
	if err := d.UpdateFile(ctx, fs[0]); err != nil {
		t.Fatal(err)
	}
	// Adding the manifest again (a restart) keeps the progress.
	if err := d.AddFiles(ctx, "r1", files); err != nil {
		t.Fatal(err)
	}

	// The state survives a reopen.
	d.Close()
	d2, err := state.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	d2.Now = func() time.Time { return clock }
	fs, err = d2.Files(ctx, "r1")
	if err != nil || fs[0].Status != state.FileDone || fs[0].Resources != 5 || fs[1].Status != state.FilePending {
		t.Fatalf("after reopen Files = %+v, %v", fs, err)
	}
	got, err = d2.Run(ctx, "r1")
	if err != nil || got.StatusURL != "http://fhir/status/1" || string(got.Manifest) != `{"output":[]}` {
		t.Fatalf("after reopen Run = %+v, %v", got, err)
	}

	if _, _, err := d2.Cursor(ctx, "ehr"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Cursor before success error = %v", err)
	}
	r.Status = state.RunSucceeded
	r.TransactionTime = "2026-11-28T01:00:05Z"
	if err := d2.FinishRun(ctx, r, r.TransactionTime); err != nil {
		t.Fatal(err)
	}
	tt, id, err := d2.Cursor(ctx, "ehr")
	if err != nil || tt != "2026-11-28T01:00:05Z" || id != "r1" {
		t.Errorf("Cursor = %q %q %v", tt, id, err)
	}
	if _, err := d2.UnfinishedRun(ctx, "ehr"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a succeeded run is still unfinished: %v", err)
	}
	got, _ = d2.Run(ctx, "r1")
	if got.FinishedAt.IsZero() {
		t.Error("FinishedAt not set for a terminal run")
	}

	// A failed run does not move the cursor.
	r2 := &state.Run{ID: "r2", Source: "ehr", Status: state.RunExporting}
	if err := d2.CreateRun(ctx, r2); err != nil {
		t.Fatal(err)
	}
	r2.Status = state.RunFailed
	if err := d2.FinishRun(ctx, r2, ""); err != nil {
		t.Fatal(err)
	}
	if tt, _, _ := d2.Cursor(ctx, "ehr"); tt != "2026-11-28T01:00:05Z" {
		t.Errorf("cursor moved to %q after a failed run", tt)
	}
	runs, err := d2.Runs(ctx, "ehr", 0)
	if err != nil || len(runs) != 2 {
		t.Fatalf("Runs = %v, %v", runs, err)
	}
	if err := d2.UpdateRun(ctx, &state.Run{ID: "nope", Status: state.RunFailed}); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("UpdateRun of a missing run error = %v", err)
	}
}

func TestLease(t *testing.T) {
	ctx := context.Background()
	d, _ := open(t)
	var mu sync.Mutex
	clock := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	d.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(dt time.Duration) { mu.Lock(); clock = clock.Add(dt); mu.Unlock() }

	l1, err := d.Acquire(ctx, "ehr", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Acquire(ctx, "ehr", "b", time.Hour)
	var le *state.LockedError
	if !errors.As(err, &le) || le.Owner != "a" {
		t.Fatalf("second owner got %v, want LockedError held by a", err)
	}
	// Another source is independent.
	l3, err := d.Acquire(ctx, "other", "b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Release(ctx)

	// The holder dies: it stops renewing (no Release) and the lease expires.
	advance(2 * time.Hour)
	l2, err := d.Acquire(ctx, "ehr", "b", time.Hour)
	if err != nil {
		t.Fatalf("an expired lease was not taken over: %v", err)
	}
	if err := l1.Renew(ctx); err == nil {
		t.Error("the old holder renewed a lease taken over by another owner")
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l2.Release(ctx); err != nil {
		t.Errorf("second Release: %v", err)
	}
	l4, err := d.Acquire(ctx, "ehr", "c", time.Hour)
	if err != nil {
		t.Fatalf("a released lease could not be acquired: %v", err)
	}
	l4.Release(ctx)
	l1.Release(ctx)
}

func TestLeaseTakeOver(t *testing.T) {
	ctx := context.Background()
	d, _ := open(t)
	l1, err := d.Acquire(ctx, "ehr", "host:1:a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Release(ctx)
	// Taking over from the wrong holder fails.
	if _, err := d.TakeOver(ctx, "ehr", "host:2:b", "host:3:c", time.Hour); err == nil {
		t.Fatal("took over a lease from a holder that does not hold it")
	}
	l2, err := d.TakeOver(ctx, "ehr", "host:1:a", "host:3:c", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release(ctx)
	if err := l1.Renew(ctx); err == nil {
		t.Error("the dead holder could still renew")
	}
	var le *state.LockedError
	if _, err := d.Acquire(ctx, "ehr", "host:4:d", time.Hour); !errors.As(err, &le) || le.Owner != "host:3:c" {
		t.Errorf("after take over, Acquire = %v", err)
	}
}

func TestLeaseRenewsInBackground(t *testing.T) {
	ctx := context.Background()
	d, _ := open(t)
	l, err := d.Acquire(ctx, "ehr", "a", 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	// Well past the ttl, the lease is still held because it is renewed.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if _, err := d.Acquire(ctx, "ehr", "b", time.Second); err == nil {
			t.Fatal("another owner acquired a lease that is being renewed")
		}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
}

// Workers that start together open one new database at once: each must
// find the schema in place, none fail with "table runs already exists".
func TestOpenConcurrentCreate(t *testing.T) {
	for round := range 5 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("state-%d.db", round))
		const n = 6
		errs := make(chan error, n)
		start := make(chan struct{})
		for range n {
			go func() {
				<-start
				d, err := state.Open(context.Background(), path)
				if err == nil {
					_, err = d.Runs(context.Background(), "p", 1)
					d.Close()
				}
				errs <- err
			}()
		}
		close(start)
		for range n {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
