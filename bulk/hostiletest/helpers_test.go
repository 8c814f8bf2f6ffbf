package hostiletest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fhirdeid/bulk"
)

const token = "SECRET-FHIR-TOKEN-1234"

// fakeClock advances on Sleep instead of waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	return ctx.Err()
}

// fhir is a minimal, scriptable Bulk Data server: kick-off at $export,
// status at /fhir/status, files served by files.
type fhir struct {
	// kickoff, if set, answers the kick-off.
	kickoff http.HandlerFunc
	// location is the Content-Location of the kick-off (default
	// /fhir/status on the same origin).
	location string
	// manifest returns the manifest body, given the server's base URL.
	manifest func(base string) string
	// status, if set, answers status polls instead.
	status http.HandlerFunc
	// files serves /files/.
	files http.HandlerFunc
	// redirect, if set, answers the kick-off with a 307 to it.
	redirect string
	base     string
	polls    atomic.Int64
	deletes  atomic.Int64
}

func (f *fhir) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/$export"):
		if f.redirect != "" {
			http.Redirect(w, r, f.redirect, http.StatusTemporaryRedirect)
			return
		}
		if f.kickoff != nil {
			f.kickoff(w, r)
			return
		}
		loc := f.location
		if loc == "" {
			loc = f.base + "/fhir/status"
		}
		w.Header().Set("Content-Location", loc)
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/fhir/status" && r.Method == http.MethodDelete:
		f.deletes.Add(1)
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/fhir/status":
		f.polls.Add(1)
		if f.status != nil {
			f.status(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, f.manifest(f.base))
	case strings.HasPrefix(r.URL.Path, "/files/") && f.files != nil:
		f.files(w, r)
	default:
		http.NotFound(w, r)
	}
}

// startFHIR starts f on 127.0.0.1 (TLS when useTLS).
func startFHIR(t *testing.T, f *fhir, useTLS bool) *Origin {
	t.Helper()
	o, err := Start("127.0.0.1", useTLS, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	f.base = o.URL
	return o
}

// startOther starts h on 127.0.0.2, skipping when that address is not
// available.
func startOther(t *testing.T, h http.Handler) *Origin {
	t.Helper()
	o, err := Start("127.0.0.2", false, h)
	if err != nil {
		t.Skipf("127.0.0.2 is not a usable loopback address here: %v", err)
	}
	t.Cleanup(o.Close)
	return o
}

// ndjsonLines serves n Patient lines.
func patients(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"resourceType":"Patient","id":"p%d"}`+"\n", i)
	}
	return b.String()
}

func serveString(s string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		_, _ = io.WriteString(w, s)
	}
}

type exportEnv struct {
	client *bulk.Client
	exp    *bulk.Exporter
	dir    string
	log    *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newExport returns an exporter for the FHIR server at base with a static
// token, fast policies and a fake clock.
func newExport(t *testing.T, base string, hc *http.Client) *exportEnv {
	t.Helper()
	c, err := bulk.NewClient(base+"/fhir", hc)
	if err != nil {
		t.Fatal(err)
	}
	c.Auth = bulk.StaticToken{Value: bulk.NewSecret(token)}
	c.Clock = &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.Retries = bulk.RetryPolicy{MaxRetries: 3, BaseDelay: time.Second, MaxDelay: time.Minute}
	c.IdleTimeout = 5 * time.Second
	e := &exportEnv{client: c, dir: t.TempDir(), log: &lockedBuf{}}
	lg := bulk.NewNDJSONLog(e.log, "test")
	c.Events = lg
	e.exp = &bulk.Exporter{Client: c, Store: bulk.FileCheckpointStore{Path: filepath.Join(e.dir, ".cp.json")},
		Sink: bulk.DirSink{Dir: e.dir}, Events: lg}
	// Every case is memory-bounded; cases that move data set a tighter
	// bound of their own.
	mw := watchMemory()
	t.Cleanup(func() { memBound(t, mw, 128) })
	return e
}

func (e *exportEnv) run(t *testing.T) (*bulk.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.exp.Run(ctx, bulk.Request{Level: bulk.SystemLevel})
}

// wantErr fails unless err is non-nil and contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("the error quotes the token: %q", err)
	}
}

// noToken fails if any of the origins received the token.
func noToken(t *testing.T, origins ...*Origin) {
	t.Helper()
	for _, o := range origins {
		if got := o.WithToken(token); len(got) > 0 {
			t.Errorf("%s received the token %d times: %v", o.URL, len(got), got)
		}
	}
}

// memWatch samples the process's resident memory (on Linux; elsewhere the
// heap in use) while a test runs and returns its peak above the level at
// the start. The test's own servers run in the same process and count too.
type memWatch struct {
	stop chan struct{}
	done chan struct{}
	base uint64
	peak atomic.Uint64
}

// resident returns the resident set size from /proc/self/statm, or the
// heap and stacks in use where there is no /proc.
func resident() uint64 {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				return n * uint64(os.Getpagesize())
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

func watchMemory() *memWatch {
	runtime.GC()
	debug.FreeOSMemory()
	m := &memWatch{stop: make(chan struct{}), done: make(chan struct{}), base: resident()}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := resident(); v > m.base && v-m.base > m.peak.Load() {
				m.peak.Store(v - m.base)
			}
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// Peak stops watching and returns the peak growth of resident memory.
func (m *memWatch) Peak() uint64 {
	close(m.stop)
	<-m.done
	return m.peak.Load()
}

// memBound fails when the peak exceeds limit MiB.
func memBound(t *testing.T, m *memWatch, limitMiB uint64) {
	t.Helper()
	p := m.Peak()
	t.Logf("peak resident memory growth: %.1f MiB", float64(p)/(1<<20))
	if p > limitMiB<<20 {
		t.Errorf("peak resident memory growth %.1f MiB, bound %d MiB", float64(p)/(1<<20), limitMiB)
	}
}
