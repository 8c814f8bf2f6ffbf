package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// RunStatus is the life-cycle state of a run.
type RunStatus string

const (
	// RunExporting: the export was (or is about to be) kicked off and the
	// server is preparing it.
	RunExporting RunStatus = "exporting"
	// RunProcessing: the manifest is known; files are being processed.
	RunProcessing RunStatus = "processing"
	// RunCommitting: every file is stored; the run's manifest, report and
	// success marker are being written.
	RunCommitting RunStatus = "committing"
	// RunSucceeded: the run is complete and visible.
	RunSucceeded RunStatus = "succeeded"
	// RunPartial: the run completed but some files or resources failed.
	RunPartial RunStatus = "partial"
	// RunFailed: the run stopped with an error that a retry will not fix.
	RunFailed RunStatus = "failed"
	// RunCancelled: an operator cancelled the run.
	RunCancelled RunStatus = "cancelled"
)

// Terminal reports whether a run in status s is over.
func (s RunStatus) Terminal() bool {
	switch s {
	case RunSucceeded, RunPartial, RunFailed, RunCancelled:
		return true
	}
	return false
}

// Run is one pipeline run of a source.
type Run struct {
	ID         string
	Source     string
	Status     RunStatus
	StartedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time // zero until the run is over
	// Since is the _since the export was kicked off with ("" for a full
	// export).
	Since string
	// TransactionTime is the manifest's transactionTime, once known.
	TransactionTime string
	// StatusURL is the export's status (Content-Location) URL, once known.
	StatusURL string
	// Request, Manifest and Report are JSON documents owned by the pipeline.
	Request  []byte
	Manifest []byte
	Report   []byte
	// Error is the run's last error message (never with resource values).
	Error string
}

const runColumns = `id, source, status, started_at, updated_at, finished_at, since, transaction_time, status_url, request, manifest, report, error`

func scanRun(row interface{ Scan(...any) error }) (*Run, error) {
	var r Run
	var started, updated, finished sql.NullInt64
	var status string
	err := row.Scan(&r.ID, &r.Source, &status, &started, &updated, &finished, &r.Since, &r.TransactionTime,
		&r.StatusURL, &r.Request, &r.Manifest, &r.Report, &r.Error)
	if err != nil {
		return nil, err
	}
	r.Status = RunStatus(status)
	r.StartedAt, r.UpdatedAt, r.FinishedAt = fromMillis(started), fromMillis(updated), fromMillis(finished)
	return &r, nil
}

// CreateRun records a new run. Its ID, Source and Status must be set;
// StartedAt defaults to now.
func (d *DB) CreateRun(ctx context.Context, r *Run) error {
	if r.ID == "" || r.Source == "" || r.Status == "" {
		return errors.New("state: create run: id, source and status are required")
	}
	now := d.now()
	if r.StartedAt.IsZero() {
		r.StartedAt = time.UnixMilli(now).UTC()
	}
	r.UpdatedAt = time.UnixMilli(now).UTC()
	_, err := d.db.ExecContext(ctx, `INSERT INTO runs (`+runColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.ID, r.Source, string(r.Status), r.StartedAt.UnixMilli(), now, finishedArg(r.FinishedAt), r.Since,
		r.TransactionTime, r.StatusURL, r.Request, r.Manifest, r.Report, r.Error)
	if err != nil {
		return fmt.Errorf("state: create run %s: %w", r.ID, err)
	}
	return nil
}

func finishedArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// UpdateRun writes every field of r (but ID, Source and StartedAt) and sets
// UpdatedAt, and FinishedAt when the status becomes terminal.
func (d *DB) UpdateRun(ctx context.Context, r *Run) error {
	return d.updateRun(ctx, d.db, r)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (d *DB) updateRun(ctx context.Context, db execer, r *Run) error {
	now := d.now()
	r.UpdatedAt = time.UnixMilli(now).UTC()
	if r.Status.Terminal() && r.FinishedAt.IsZero() {
		r.FinishedAt = r.UpdatedAt
	}
	res, err := db.ExecContext(ctx, `UPDATE runs SET status=?, updated_at=?, finished_at=?, since=?, transaction_time=?,
		status_url=?, request=?, manifest=?, report=?, error=? WHERE id=?`,
		string(r.Status), now, finishedArg(r.FinishedAt), r.Since, r.TransactionTime, r.StatusURL,
		r.Request, r.Manifest, r.Report, r.Error, r.ID)
	if err != nil {
		return fmt.Errorf("state: update run %s: %w", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: update run %s: %w", r.ID, ErrNotFound)
	}
	return nil
}

// Run returns the run with the given id.
func (d *DB) Run(ctx context.Context, id string) (*Run, error) {
	r, err := scanRun(d.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("state: run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("state: run %s: %w", id, err)
	}
	return r, nil
}

// UnfinishedRun returns the newest run of source that is not over, the one a
// restarted pipeline resumes, or ErrNotFound.
func (d *DB) UnfinishedRun(ctx context.Context, source string) (*Run, error) {
	r, err := scanRun(d.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs
		WHERE source=? AND status NOT IN ('succeeded','partial','failed','cancelled')
		ORDER BY started_at DESC, id DESC LIMIT 1`, source))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("state: unfinished run of %s: %w", source, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("state: unfinished run of %s: %w", source, err)
	}
	return r, nil
}

// Runs returns the runs of source ("" for every source), newest first, at
// most limit of them (0 for all).
func (d *DB) Runs(ctx context.Context, source string, limit int) ([]*Run, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := d.db.QueryContext(ctx, `SELECT `+runColumns+` FROM runs
		WHERE ?='' OR source=? ORDER BY started_at DESC, id DESC LIMIT ?`, source, source, limit)
	if err != nil {
		return nil, fmt.Errorf("state: list runs: %w", err)
	}
	defer rows.Close()
	var runs []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("state: list runs: %w", err)
		}
		runs = append(runs, r)
	}
	return runs, rows.Err()
}

// FinishRun writes the final state of r and, when cursor is not "", moves
// the source's incremental cursor to it, in one transaction: the cursor never
// moves unless the run's success is recorded too.
func (d *DB) FinishRun(ctx context.Context, r *Run, cursor string) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state: finish run %s: %w", r.ID, err)
	}
	defer tx.Rollback()
	if err := d.updateRun(ctx, tx, r); err != nil {
		return err
	}
	if cursor != "" {
		_, err := tx.ExecContext(ctx, `INSERT INTO cursors (source, transaction_time, run_id, updated_at) VALUES (?,?,?,?)
			ON CONFLICT (source) DO UPDATE SET transaction_time=excluded.transaction_time, run_id=excluded.run_id, updated_at=excluded.updated_at`,
			r.Source, cursor, r.ID, d.now())
		if err != nil {
			return fmt.Errorf("state: finish run %s: move cursor: %w", r.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state: finish run %s: %w", r.ID, err)
	}
	return nil
}

// Cursor returns the transactionTime of the source's last successful run and
// that run's id, or ErrNotFound when there is none.
func (d *DB) Cursor(ctx context.Context, source string) (transactionTime, runID string, err error) {
	err = d.db.QueryRowContext(ctx, `SELECT transaction_time, run_id FROM cursors WHERE source=?`, source).Scan(&transactionTime, &runID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("state: cursor of %s: %w", source, ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("state: cursor of %s: %w", source, err)
	}
	return transactionTime, runID, nil
}
