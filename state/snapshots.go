package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SnapshotStatus is the life-cycle state of a merged snapshot.
type SnapshotStatus string

const (
	// SnapshotBuilding: the merge started; Progress says what is written.
	SnapshotBuilding SnapshotStatus = "building"
	// SnapshotPublished: the snapshot is complete and "current" names it.
	SnapshotPublished SnapshotStatus = "published"
)

// Snapshot is one merged snapshot of a source's runs. Plan, Progress and
// Report are JSON documents owned by the pipeline.
type Snapshot struct {
	Source string
	ID     string
	// LastRun is the newest run the snapshot contains.
	LastRun  string
	Status   SnapshotStatus
	Plan     []byte
	Progress []byte
	Report   []byte
	Updated  time.Time
}

const snapshotColumns = `source, id, last_run, status, plan, progress, report, updated_at`

func scanSnapshot(row interface{ Scan(...any) error }) (*Snapshot, error) {
	var s Snapshot
	var status string
	var updated int64
	if err := row.Scan(&s.Source, &s.ID, &s.LastRun, &status, &s.Plan, &s.Progress, &s.Report, &updated); err != nil {
		return nil, err
	}
	s.Status = SnapshotStatus(status)
	s.Updated = time.UnixMilli(updated).UTC()
	return &s, nil
}

// SaveSnapshot inserts or replaces the snapshot row (source, id).
func (d *DB) SaveSnapshot(ctx context.Context, s *Snapshot) error {
	now := d.now()
	_, err := d.db.ExecContext(ctx, `INSERT INTO snapshots (`+snapshotColumns+`) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT (source, id) DO UPDATE SET last_run=excluded.last_run, status=excluded.status, plan=excluded.plan,
		progress=excluded.progress, report=excluded.report, updated_at=excluded.updated_at`,
		s.Source, s.ID, s.LastRun, string(s.Status), s.Plan, s.Progress, s.Report, now)
	if err != nil {
		return fmt.Errorf("state: save snapshot %s of %s: %w", s.ID, s.Source, err)
	}
	s.Updated = time.UnixMilli(now).UTC()
	return nil
}

// BuildingSnapshot returns the source's snapshot whose merge started and did
// not publish, or ErrNotFound.
func (d *DB) BuildingSnapshot(ctx context.Context, source string) (*Snapshot, error) {
	row := d.db.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots WHERE source=? AND status=?
		ORDER BY updated_at DESC LIMIT 1`, source, string(SnapshotBuilding))
	s, err := scanSnapshot(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("state: building snapshot of %s: %w", source, err)
	}
	return s, nil
}

// SnapshotOfRun returns the published snapshot of source whose newest run is
// runID, or ErrNotFound.
func (d *DB) SnapshotOfRun(ctx context.Context, source, runID string) (*Snapshot, error) {
	row := d.db.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots WHERE source=? AND last_run=? AND status=?
		ORDER BY updated_at DESC LIMIT 1`, source, runID, string(SnapshotPublished))
	s, err := scanSnapshot(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("state: snapshot of run %s: %w", runID, err)
	}
	return s, nil
}

// DropSnapshot deletes the snapshot row (source, id); a missing row is not
// an error.
func (d *DB) DropSnapshot(ctx context.Context, source, id string) error {
	if _, err := d.db.ExecContext(ctx, `DELETE FROM snapshots WHERE source=? AND id=?`, source, id); err != nil {
		return fmt.Errorf("state: drop snapshot %s of %s: %w", id, source, err)
	}
	return nil
}
