package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/state"
)

// fakeClock is a Clock whose time moves only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	ch    chan time.Time
	fired bool
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) server.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.fired = true
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.fired = true
			t.ch <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}

// waitTimer waits until a timer is pending and returns its deadline.
func (c *fakeClock) waitTimer(t *testing.T) time.Time {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		if len(c.timers) > 0 {
			at := c.timers[0].at
			c.mu.Unlock()
			return at
		}
		c.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the scheduler did not start waiting")
	return time.Time{}
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// runs returns the runs of the state database, newest first.
func runs(t *testing.T, db *state.DB, source string) []*state.Run {
	t.Helper()
	rs, err := db.Runs(context.Background(), source, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// finishedRuns counts the terminal runs of source.
func finishedRuns(t *testing.T, db *state.DB, source string) int {
	n := 0
	for _, r := range runs(t, db, source) {
		if r.Status.Terminal() {
			n++
		}
	}
	return n
}

// gate holds runs in progress: the pipelines it wraps block on every
// resource until it is opened.
type gate struct {
	entered chan struct{} // closed when a resource first waits
	once    sync.Once
	open    chan struct{} // close to let resources through
}

func newGate() *gate { return &gate{entered: make(chan struct{}), open: make(chan struct{})} }

// wrap installs g in a pipeline.
func (g *gate) wrap(p *pipeline.Pipeline) { p.Deidentifier = &gateRef{g: g, inner: p.Deidentifier} }

// gateRef lets one gate serve many pipelines.
type gateRef struct {
	g     *gate
	inner pipeline.Deidentifier
}

func (r *gateRef) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	r.g.once.Do(func() { close(r.g.entered) })
	select {
	case <-r.g.open:
	case <-ctx.Done():
		return dst, anonymize.Stats{}, ctx.Err()
	}
	return r.inner.Resource(ctx, file, line, res, dst)
}

func (r *gateRef) ID(ctx context.Context, typ, id string) (string, error) {
	return r.inner.ID(ctx, typ, id)
}

// logBuffer is a concurrency-safe buffer for a slog handler.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// do sends a request to h and returns the status and body.
func do(t *testing.T, h http.Handler, method, target string, hdr map[string]string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	req.Host = "127.0.0.1:8080"
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String(), w.Header()
}
