package state_test

import (
	"context"
	"errors"
	"testing"

	"fhirdeid/state"
)

func TestSnapshots(t *testing.T) {
	d, _ := open(t)
	ctx := context.Background()
	if _, err := d.BuildingSnapshot(ctx, "ehr"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("no snapshot yet: %v", err)
	}
	s := &state.Snapshot{Source: "ehr", ID: "R1", LastRun: "R1", Status: state.SnapshotBuilding, Plan: []byte(`{"id":"R1"}`)}
	if err := d.SaveSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Progress = []byte(`{"done":{"Patient":{}}}`)
	if err := d.SaveSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	b, err := d.BuildingSnapshot(ctx, "ehr")
	if err != nil || b.ID != "R1" || string(b.Progress) != `{"done":{"Patient":{}}}` || string(b.Plan) != `{"id":"R1"}` {
		t.Fatalf("building snapshot: %+v, %v", b, err)
	}
	if _, err := d.BuildingSnapshot(ctx, "other"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("another source's snapshot: %v", err)
	}
	if _, err := d.SnapshotOfRun(ctx, "ehr", "R1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("an unpublished snapshot is the run's: %v", err)
	}
	s.Status, s.Report = state.SnapshotPublished, []byte(`{"resources":3}`)
	if err := d.SaveSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := d.BuildingSnapshot(ctx, "ehr"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("published snapshot still building: %v", err)
	}
	p, err := d.SnapshotOfRun(ctx, "ehr", "R1")
	if err != nil || string(p.Report) != `{"resources":3}` {
		t.Fatalf("snapshot of run R1: %+v, %v", p, err)
	}
	if err := d.DropSnapshot(ctx, "ehr", "R1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SnapshotOfRun(ctx, "ehr", "R1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("dropped snapshot: %v", err)
	}
}
