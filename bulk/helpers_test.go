package bulk_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

// fakeClock advances on Sleep instead of waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// population returns nPatients patients, each with obsPer Observations and
// one Encounter, plus an Organization without a patient reference.
// lastUpdated alternates between 2025 and 2026 dates.
func population(nPatients, obsPer int) [][]byte {
	var out [][]byte
	add := func(v map[string]any) {
		b, _ := json.Marshal(v)
		out = append(out, b)
	}
	for p := 0; p < nPatients; p++ {
		pid := fmt.Sprintf("p%03d", p)
		lu := "2025-06-01T00:00:00Z"
		if p%2 == 1 {
			lu = "2026-06-01T00:00:00Z"
		}
		add(map[string]any{"resourceType": "Patient", "id": pid, "meta": map[string]any{"lastUpdated": lu},
			"name": []map[string]any{{"family": "Secretname" + pid}}, "birthDate": "1970-01-01"})
		add(map[string]any{"resourceType": "Encounter", "id": "e" + pid, "meta": map[string]any{"lastUpdated": lu},
			"subject": map[string]string{"reference": "Patient/" + pid}, "status": "finished"})
		for o := 0; o < obsPer; o++ {
			add(map[string]any{"resourceType": "Observation", "id": fmt.Sprintf("o%s-%d", pid, o),
				"meta":          map[string]any{"lastUpdated": lu},
				"status":        "final",
				"subject":       map[string]string{"reference": "Patient/" + pid},
				"valueQuantity": map[string]any{"value": o, "unit": "mg"}})
		}
	}
	add(map[string]any{"resourceType": "Organization", "id": "org1", "name": "Clinic"})
	return out
}

// ids returns the "Type/id" of each resource.
func ids(resources [][]byte) []string {
	var out []string
	for _, r := range resources {
		var v struct{ ResourceType, ID string }
		_ = json.Unmarshal(r, &v)
		out = append(out, v.ResourceType+"/"+v.ID)
	}
	sort.Strings(out)
	return out
}

// storedIDs reads every output file of an export directory and returns the
// "Type/id" of each line, sorted, checking that each file holds its type.
func storedIDs(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	var out []string
	for _, f := range files {
		typ := strings.SplitN(filepath.Base(f), ".", 2)[0]
		for _, line := range readGz(t, f) {
			var v struct{ ResourceType, ID string }
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("%s: line is not JSON: %v", f, err)
			}
			if v.ResourceType != typ {
				t.Fatalf("%s holds a %s", f, v.ResourceType)
			}
			out = append(out, v.ResourceType+"/"+v.ID)
		}
	}
	sort.Strings(out)
	return out
}

func readGz(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// env is a server and an exporter writing into a temp directory.
type env struct {
	srv   *bulktest.Server
	url   string
	clock *fakeClock
	dir   string
	logMu *lockedBuffer
	exp   *bulk.Exporter
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newEnv starts a server with opts and an exporter with fast policies.
func newEnv(t *testing.T, opts bulktest.Options) *env {
	t.Helper()
	clock := newFakeClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	srv, err := bulktest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	u := srv.Start()
	t.Cleanup(srv.Close)
	e := &env{srv: srv, url: u, clock: clock, dir: t.TempDir(), logMu: &lockedBuffer{}}
	c, err := bulk.NewClient(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Clock = e.clock
	c.Retries = bulk.RetryPolicy{MaxRetries: 4, BaseDelay: time.Second, MaxDelay: 5 * time.Minute}
	log := bulk.NewNDJSONLog(e.logMu, "test")
	log.Clock = e.clock
	c.Events = log
	e.exp = &bulk.Exporter{Client: c, Store: bulk.FileCheckpointStore{Path: filepath.Join(e.dir, ".checkpoint.json")},
		Sink: bulk.DirSink{Dir: e.dir}, Events: log}
	return e
}

func (e *env) run(t *testing.T, req bulk.Request) (*bulk.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.exp.Run(ctx, req)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// diff describes the first difference between two sorted lists.
func diff(got, want []string) string {
	seen := map[string]int{}
	for _, s := range got {
		seen[s]++
	}
	for _, s := range want {
		seen[s]--
	}
	var missing, extra []string
	for k, v := range seen {
		if v < 0 {
			missing = append(missing, k)
		}
		if v > 0 {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Sprintf("got %d, want %d; missing %d %v; duplicated/extra %d %v", len(got), len(want),
		len(missing), head(missing), len(extra), head(extra))
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

func filterIDs(all []string, keep func(string) bool) []string {
	var out []string
	for _, s := range all {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

func sprintf(format string, v any) string { return fmt.Sprintf(format, v) }

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
