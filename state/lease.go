package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// LockedError is returned by Acquire when another owner holds a live lease.
type LockedError struct {
	Source  string
	Owner   string
	Expires time.Time
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("state: source %s is locked by %s until %s", e.Source, e.Owner, e.Expires.Format(time.RFC3339))
}

// Lease is a time-limited lock on a source. A process that dies stops
// renewing it, so the lease expires and another process can take the source
// over; a live holder renews it in the background until Release.
type Lease struct {
	d      *DB
	source string
	owner  string
	ttl    time.Duration

	mu     sync.Mutex
	lost   error
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// Acquire takes the lease on source for owner (for example "host:pid:nonce")
// for ttl, and renews it every ttl/3 until Release. It fails with a
// *LockedError when another owner holds a lease that has not expired. The
// same owner may acquire its own lease again.
func (d *DB) Acquire(ctx context.Context, source, owner string, ttl time.Duration) (*Lease, error) {
	if ttl <= 0 {
		return nil, errors.New("state: acquire: ttl must be positive")
	}
	if err := d.take(ctx, source, owner, ttl); err != nil {
		return nil, err
	}
	l := &Lease{d: d, source: source, owner: owner, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l, nil
}

func (d *DB) take(ctx context.Context, source, owner string, ttl time.Duration) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state: acquire %s: %w", source, err)
	}
	defer tx.Rollback()
	now := d.now()
	var holder string
	var expires int64
	err = tx.QueryRowContext(ctx, `SELECT owner, expires_at FROM leases WHERE source=?`, source).Scan(&holder, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("state: acquire %s: %w", source, err)
	case holder != owner && expires > now:
		return &LockedError{Source: source, Owner: holder, Expires: time.UnixMilli(expires).UTC()}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO leases (source, owner, acquired, expires_at) VALUES (?,?,?,?)
		ON CONFLICT (source) DO UPDATE SET owner=excluded.owner, acquired=excluded.acquired, expires_at=excluded.expires_at`,
		source, owner, now, now+ttl.Milliseconds())
	if err != nil {
		return fmt.Errorf("state: acquire %s: %w", source, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state: acquire %s: %w", source, err)
	}
	return nil
}

// TakeOver acquires the lease on source for owner even though it has not
// expired, provided that it is still held by holder — the caller has made
// sure holder is dead (for example a process of this host that no longer
// exists). If someone else took or renewed it meanwhile under another owner,
// it fails with a *LockedError.
func (d *DB) TakeOver(ctx context.Context, source, holder, owner string, ttl time.Duration) (*Lease, error) {
	if ttl <= 0 {
		return nil, errors.New("state: take over: ttl must be positive")
	}
	now := d.now()
	res, err := d.db.ExecContext(ctx, `UPDATE leases SET owner=?, acquired=?, expires_at=? WHERE source=? AND owner=?`,
		owner, now, now+ttl.Milliseconds(), source, holder)
	if err != nil {
		return nil, fmt.Errorf("state: take over %s: %w", source, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Released or taken meanwhile: try the normal way.
		return d.Acquire(ctx, source, owner, ttl)
	}
	l := &Lease{d: d, source: source, owner: owner, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l, nil
}

func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.Renew(context.Background()); err != nil {
				l.mu.Lock()
				l.lost = err
				l.mu.Unlock()
				return
			}
		}
	}
}

// Renew extends the lease by its ttl from now. It fails if the lease was
// taken over by another owner (after it had expired).
func (l *Lease) Renew(ctx context.Context) error {
	now := l.d.now()
	res, err := l.d.db.ExecContext(ctx, `UPDATE leases SET expires_at=? WHERE source=? AND owner=?`,
		now+l.ttl.Milliseconds(), l.source, l.owner)
	if err != nil {
		return fmt.Errorf("state: renew lease on %s: %w", l.source, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: lease on %s was lost to another owner", l.source)
	}
	return nil
}

// Err returns why background renewal stopped, or nil while the lease is
// held.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Release stops renewing and gives the lease up.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	_, err := l.d.db.ExecContext(ctx, `DELETE FROM leases WHERE source=? AND owner=?`, l.source, l.owner)
	if err != nil {
		return fmt.Errorf("state: release lease on %s: %w", l.source, err)
	}
	return nil
}
