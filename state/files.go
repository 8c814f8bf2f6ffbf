package state

import (
	"context"
	"fmt"
	"time"
)

// FileStatus is the state of one file of a run.
type FileStatus string

const (
	// FilePending: listed in the manifest, not processed yet.
	FilePending FileStatus = "pending"
	// FileDone: processed and stored under OutKey.
	FileDone FileStatus = "done"
	// FileFailed: processing failed for good (Error says why).
	FileFailed FileStatus = "failed"
)

// File is one file of an export manifest and what became of it.
type File struct {
	RunID string
	// URL is the file's URL in the manifest; unique within a run.
	URL string
	// Kind is "output", "deleted" or "error".
	Kind string
	// Type is the manifest's resource type.
	Type string
	// Seq numbers the files of one kind and type from 0, in manifest order;
	// it names the output file (Type.NNN.ndjson.gz).
	Seq int
	// Expected is the manifest's count, or -1 when it gave none.
	Expected int64
	Status   FileStatus
	// Resources, BytesIn and BytesOut are filled when the file is done.
	Resources int64
	BytesIn   int64
	BytesOut  int64
	// OutKey is the blob key of the stored result.
	OutKey string
	// Ops is a JSON document owned by the pipeline: what de-identification
	// did to the file's resources.
	Ops      []byte
	Attempts int
	Error    string
	Updated  time.Time
}

// AddFiles records the files of a run's manifest. Files already recorded
// (same run and URL) are left as they are, so that adding a manifest again
// after a restart keeps the progress made.
func (d *DB) AddFiles(ctx context.Context, runID string, files []File) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state: add files of run %s: %w", runID, err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO files (run_id, url, kind, type, seq, expected, status, updated_at)
		VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (run_id, url) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("state: add files of run %s: %w", runID, err)
	}
	defer stmt.Close()
	now := d.now()
	for _, f := range files {
		st := f.Status
		if st == "" {
			st = FilePending
		}
		if _, err := stmt.ExecContext(ctx, runID, f.URL, f.Kind, f.Type, f.Seq, f.Expected, string(st), now); err != nil {
			return fmt.Errorf("state: add files of run %s: %w", runID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state: add files of run %s: %w", runID, err)
	}
	return nil
}

// UpdateFile writes the progress fields of f (Status, Resources, BytesIn,
// BytesOut, OutKey, Attempts, Error, Ops).
func (d *DB) UpdateFile(ctx context.Context, f *File) error {
	now := d.now()
	res, err := d.db.ExecContext(ctx, `UPDATE files SET status=?, resources=?, bytes_in=?, bytes_out=?, out_key=?,
		attempts=?, error=?, ops=?, updated_at=? WHERE run_id=? AND url=?`,
		string(f.Status), f.Resources, f.BytesIn, f.BytesOut, f.OutKey, f.Attempts, f.Error, f.Ops, now, f.RunID, f.URL)
	if err != nil {
		return fmt.Errorf("state: update file %s/%s.%03d: %w", f.RunID, f.Type, f.Seq, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: update file %s/%s.%03d: %w", f.RunID, f.Type, f.Seq, ErrNotFound)
	}
	f.Updated = time.UnixMilli(now).UTC()
	return nil
}

// Files returns the files of a run in manifest order (kind, type, seq).
func (d *DB) Files(ctx context.Context, runID string) ([]*File, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT run_id, url, kind, type, seq, expected, status, resources, bytes_in,
		bytes_out, out_key, attempts, error, ops, updated_at FROM files WHERE run_id=?
		ORDER BY CASE kind WHEN 'output' THEN 0 WHEN 'deleted' THEN 1 ELSE 2 END, type, seq`, runID)
	if err != nil {
		return nil, fmt.Errorf("state: files of run %s: %w", runID, err)
	}
	defer rows.Close()
	var files []*File
	for rows.Next() {
		var f File
		var status string
		var updated int64
		if err := rows.Scan(&f.RunID, &f.URL, &f.Kind, &f.Type, &f.Seq, &f.Expected, &status, &f.Resources,
			&f.BytesIn, &f.BytesOut, &f.OutKey, &f.Attempts, &f.Error, &f.Ops, &updated); err != nil {
			return nil, fmt.Errorf("state: files of run %s: %w", runID, err)
		}
		f.Status = FileStatus(status)
		f.Updated = time.UnixMilli(updated).UTC()
		files = append(files, &f)
	}
	return files, rows.Err()
}
