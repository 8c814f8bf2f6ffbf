// Package state keeps fhirdeid's durable state in a SQLite database: runs,
// the per-file progress of each run, the incremental-export cursor of each
// source and the lease that lets only one process run a source at a time.
//
// It uses modernc.org/sqlite (pure Go, no cgo). The database is opened in WAL
// mode with synchronous=FULL, so a row written before a crash is there after
// it: the pipeline records each step the moment it is done and resumes from
// the database after a kill.
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned when a run or file does not exist.
var ErrNotFound = errors.New("state: not found")

// DB is an open state database. It is safe for concurrent use.
type DB struct {
	db *sql.DB
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// schema is applied in order; user_version records how many steps ran.
var schema = []string{
	`CREATE TABLE runs (
		id               TEXT PRIMARY KEY,
		source           TEXT NOT NULL,
		status           TEXT NOT NULL,
		started_at       INTEGER NOT NULL,
		updated_at       INTEGER NOT NULL,
		finished_at      INTEGER,
		since            TEXT NOT NULL DEFAULT '',
		transaction_time TEXT NOT NULL DEFAULT '',
		status_url       TEXT NOT NULL DEFAULT '',
		request          BLOB,
		manifest         BLOB,
		report           BLOB,
		error            TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX runs_source ON runs (source, started_at)`,
	`CREATE TABLE files (
		run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
		url        TEXT NOT NULL,
		kind       TEXT NOT NULL,
		type       TEXT NOT NULL,
		seq        INTEGER NOT NULL,
		expected   INTEGER NOT NULL DEFAULT -1,
		status     TEXT NOT NULL,
		resources  INTEGER NOT NULL DEFAULT 0,
		bytes_in   INTEGER NOT NULL DEFAULT 0,
		bytes_out  INTEGER NOT NULL DEFAULT 0,
		out_key    TEXT NOT NULL DEFAULT '',
		attempts   INTEGER NOT NULL DEFAULT 0,
		error      TEXT NOT NULL DEFAULT '',
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (run_id, url)
	)`,
	`CREATE TABLE cursors (
		source           TEXT PRIMARY KEY,
		transaction_time TEXT NOT NULL,
		run_id           TEXT NOT NULL,
		updated_at       INTEGER NOT NULL
	)`,
	`CREATE TABLE leases (
		source     TEXT PRIMARY KEY,
		owner      TEXT NOT NULL,
		acquired   INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	)`,
	`ALTER TABLE files ADD COLUMN ops BLOB`,
	`CREATE TABLE snapshots (
		source     TEXT NOT NULL,
		id         TEXT NOT NULL,
		last_run   TEXT NOT NULL,
		status     TEXT NOT NULL,
		plan       BLOB,
		progress   BLOB,
		report     BLOB,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (source, id)
	)`,
}

// Open opens (creating if needed) the state database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	// busy_timeout comes first: the pragmas run in order, and switching a
	// new database to WAL must wait for another process doing the same.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	// One writer at a time is what SQLite allows; a single connection also
	// makes transactions simple and keeps the busy handler out of the way.
	db.SetMaxOpenConns(1)
	d := &DB{db: db, Now: time.Now}
	if err := d.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// migrate brings the schema up to date. The version is read and the steps
// applied in one IMMEDIATE transaction, which takes SQLite's write lock
// before reading: processes that open a new database at once (workers
// started together) wait for each other instead of each seeing version 0
// and creating the same tables.
func (d *DB) migrate(ctx context.Context) (err error) {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		}
	}()
	var v int
	if err := conn.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return err
	}
	if v > len(schema) {
		return fmt.Errorf("database schema version %d is newer than this fhirdeid (%d)", v, len(schema))
	}
	for ; v < len(schema); v++ {
		if _, err := conn.ExecContext(ctx, schema[v]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v)); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, `COMMIT`)
	return err
}

func (d *DB) now() int64 { return d.Now().UnixMilli() }

func fromMillis(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return time.UnixMilli(ms.Int64).UTC()
}
