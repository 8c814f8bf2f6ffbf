package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	_ "gocloud.dev/blob/fileblob"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// fakeDeid is a stand-in de-identifier for testing the pipeline's plumbing:
// it hashes ids and drops every member but resourceType, id and meta.
type fakeDeid struct {
	calls  atomic.Int64
	failAt int64 // fail the call with this number (1-based); 0: never
	cancel context.CancelFunc
}

func hashID(id string) string {
	h := sha256.Sum256([]byte("k:" + id))
	return hex.EncodeToString(h[:8])
}

func (d *fakeDeid) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	n := d.calls.Add(1)
	if d.failAt > 0 && n == d.failAt {
		if d.cancel != nil {
			d.cancel() // simulate a kill: the context goes away mid-file
			return dst, anonymize.Stats{}, context.Canceled
		}
		return dst, anonymize.Stats{}, errors.New("de-identification failed")
	}
	var r struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return dst, anonymize.Stats{}, err
	}
	out, _ := json.Marshal(map[string]string{"resourceType": r.ResourceType, "id": hashID(r.ID)})
	st := anonymize.Stats{Operations: anonymize.Operations(0).Add(anonymize.OpCryptoHash).Add(anonymize.OpRedact), Resources: 1, Changed: 2}
	return append(dst, out...), st, nil
}

func (d *fakeDeid) ID(ctx context.Context, typ, id string) (string, error) { return hashID(id), nil }

type env struct {
	srv   *bulktest.Server
	pop   *synth.Population
	dir   string
	dest  string
	db    *state.DB
	store *storage.Store
}

func newEnv(t testing.TB, opts bulktest.Options) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	if opts.Resources == nil {
		e.pop = synth.Generate(synth.Options{Patients: 30})
		for _, typ := range e.pop.Types() {
			opts.Resources = append(opts.Resources, e.pop.Resources[typ]...)
		}
	}
	if opts.PartSize == 0 {
		opts.PartSize = 50
	}
	srv, err := bulktest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	e.srv = srv
	e.dest = filepath.Join(e.dir, "lake")
	e.db, err = state.Open(context.Background(), filepath.Join(e.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	e.store, err = storage.Open(context.Background(), e.dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	return e
}

func (e *env) pipeline(t testing.TB, d pipeline.Deidentifier) *pipeline.Pipeline {
	t.Helper()
	c, err := bulk.NewClient(e.srv.URL(), http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	c.Polling.InitialDelay, c.Polling.MinDelay, c.Polling.MaxDelay = time.Millisecond, time.Millisecond, 10*time.Millisecond
	c.Retries.BaseDelay, c.Retries.MaxDelay = time.Millisecond, 10*time.Millisecond
	return &pipeline.Pipeline{Name: "ehr", Client: c, Deidentifier: d, Store: e.store, State: e.db,
		LogDir: filepath.Join(e.dir, "logs"), SinceAuto: true, Workers: 2}
}

// readRun returns the lines of every output file of a committed run, sorted.
func readRun(t *testing.T, dir, run, sub string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, run, sub, "*.ndjson.gz"))
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		sc := bufio.NewScanner(zr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fh.Close()
	}
	sort.Strings(lines)
	return lines
}

func TestRunEndToEnd(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	d := &fakeDeid{}
	p := e.pipeline(t, d)
	rep, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != "succeeded" || rep.Resources != int64(e.pop.Count()) {
		t.Fatalf("report: status %s, %d resources, want %d", rep.Status, rep.Resources, e.pop.Count())
	}
	latest, err := os.ReadFile(filepath.Join(e.dest, "latest"))
	if err != nil || strings.TrimSpace(string(latest)) != rep.Run {
		t.Fatalf("latest = %q, %v", latest, err)
	}
	n := int64(e.pop.Count())
	if d := rep.Deidentification; d.Operations["CRYTOHASH"] != n || d.Operations["REDACTED"] != n || d.ValuesChanged != 2*n {
		t.Errorf("report de-identification counts %+v, want %d resources hashed and redacted", d, n)
	}
	if pt := rep.Types["Patient"]; pt == nil || pt.Deidentification.Operations["REDACTED"] != int64(len(e.pop.Resources["Patient"])) {
		t.Errorf("Patient counts %+v", pt)
	}
	for _, name := range []string{"_SUCCESS", "manifest.json", "report.json", "log.ndjson"} {
		if _, err := os.Stat(filepath.Join(e.dest, rep.Run, name)); err != nil {
			t.Errorf("missing %s: %v", name, err)
		}
	}
	lines := readRun(t, e.dest, rep.Run, "")
	if len(lines) != e.pop.Count() {
		t.Errorf("%d output lines, want %d", len(lines), e.pop.Count())
	}
	// Only de-identified bytes reached the destination.
	lc := synth.NewLeakChecker(e.pop.Identifiers)
	for _, l := range lines {
		lc.CheckLine([]byte(l))
	}
	if lc.Found() != 0 {
		t.Errorf("%d identifiers reached the destination", lc.Found())
	}
	// The manifest is a valid Bulk Data manifest pointing at the files.
	mj, _ := os.ReadFile(filepath.Join(e.dest, rep.Run, "manifest.json"))
	// (bulk.DecodeManifest wants http URLs, as a client should; these
	// point into the destination.)
	var m bulk.Manifest
	if err := json.Unmarshal(mj, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	var total int64
	for _, f := range m.Output {
		if f.Count == nil || !strings.HasPrefix(f.URL, "file://") {
			t.Errorf("manifest entry %+v", f)
			continue
		}
		total += *f.Count
	}
	if total != int64(e.pop.Count()) || m.TransactionTime == "" {
		t.Errorf("manifest counts %d resources, transactionTime %q", total, m.TransactionTime)
	}
	st := e.srv.Stats()
	if st.Kickoffs != 1 || st.Deletes != 1 {
		t.Errorf("server saw %d kick-offs and %d deletes, want 1 and 1", st.Kickoffs, st.Deletes)
	}
	runs, _ := e.db.Runs(context.Background(), "ehr", 0)
	if len(runs) != 1 || runs[0].Status != state.RunSucceeded {
		t.Errorf("state runs: %+v", runs)
	}
	logData, _ := os.ReadFile(filepath.Join(e.dest, rep.Run, "log.ndjson"))
	if !bytes.Contains(logData, []byte(`"kickoff"`)) || !bytes.Contains(logData, []byte(`"status_complete"`)) {
		t.Errorf("log.ndjson lacks kickoff/status_complete events: %.300s", logData)
	}
}

func TestRunResumesAfterKill(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	d := &fakeDeid{failAt: int64(e.pop.Count() / 2), cancel: cancel}
	p := e.pipeline(t, d)
	p.Concurrency = 1
	_, err := pipeline.Run(ctx, p)
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Outcome != pipeline.Retryable {
		t.Fatalf("interrupted run error = %v, want a retryable *pipeline.Error", err)
	}
	if _, err := os.Stat(filepath.Join(e.dest, "latest")); err == nil {
		t.Fatal("an interrupted run is visible")
	}
	files, _ := e.db.Files(context.Background(), pe.Run)
	doneBefore := 0
	for _, f := range files {
		if f.Status == state.FileDone {
			doneBefore++
		}
	}
	if doneBefore == 0 || doneBefore == len(files) {
		t.Fatalf("%d of %d files done before the kill; the test needs a kill mid-run", doneBefore, len(files))
	}
	downloadsBefore := e.srv.Stats().Downloads

	d2 := &fakeDeid{}
	p2 := e.pipeline(t, d2)
	rep, err := pipeline.Run(context.Background(), p2)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Run != pe.Run {
		t.Errorf("resumed as run %s, want %s", rep.Run, pe.Run)
	}
	if k := e.srv.Stats().Kickoffs; k != 1 {
		t.Errorf("%d kick-offs, want 1 (resume must not start a new export)", k)
	}
	if dl := e.srv.Stats().Downloads - downloadsBefore; dl != int64(len(files)-doneBefore) {
		t.Errorf("resume downloaded %d files, want %d", dl, len(files)-doneBefore)
	}
	lines := readRun(t, e.dest, rep.Run, "")
	if len(lines) != e.pop.Count() {
		t.Errorf("%d lines after resume, want %d", len(lines), e.pop.Count())
	}
	for i := 1; i < len(lines); i++ {
		if lines[i] == lines[i-1] {
			t.Fatalf("duplicate resource after resume")
		}
	}
}

func TestRunFatalErrorFailsRun(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	p := e.pipeline(t, &fakeDeid{failAt: 10})
	_, err := pipeline.Run(context.Background(), p)
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Outcome != pipeline.Fatal || pe.Step != "process" {
		t.Fatalf("error = %v, want a fatal process error", err)
	}
	r, _ := e.db.Run(context.Background(), pe.Run)
	if r.Status != state.RunFailed || !strings.Contains(r.Error, "de-identification failed") {
		t.Errorf("run state %s %q", r.Status, r.Error)
	}
	if ok, _ := e.store.Committed(context.Background(), pe.Run); ok {
		t.Error("a failed run was committed")
	}
	if _, _, err := e.db.Cursor(context.Background(), "ehr"); !errors.Is(err, state.ErrNotFound) {
		t.Error("a failed run moved the cursor")
	}
}

func TestRunIncremental(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 10})
	var all [][]byte
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	e := newEnv(t, bulktest.Options{Resources: all})
	rep1, err := pipeline.Run(context.Background(), e.pipeline(t, &fakeDeid{}))
	if err != nil {
		t.Fatal(err)
	}
	// The server moves on: two patients changed after the first export and
	// one was deleted.
	changed := synth.Generate(synth.Options{Patients: 2, Seed: 99, LastUpdated: time.Now().Add(time.Hour).UTC()})
	srv2, err := bulktest.New(bulktest.Options{Resources: append(all, changed.Resources["Patient"]...),
		Deleted: []string{"Patient/gone-1"}, PartSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	srv2.Start()
	defer srv2.Close()
	e.srv = srv2
	p := e.pipeline(t, &fakeDeid{})
	// The second run must start after the first one's id second.
	p.Now = func() time.Time { return time.Now().Add(2 * time.Second) }
	rep2, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Since != rep1.TransactionTime {
		t.Errorf("second run since %q, want the first run's transactionTime %q", rep2.Since, rep1.TransactionTime)
	}
	if rep2.Resources != 2 {
		t.Errorf("incremental run exported %d resources, want 2", rep2.Resources)
	}
	del := readRun(t, e.dest, rep2.Run, "deleted")
	if len(del) != 1 || !strings.Contains(del[0], "Patient/"+hashID("gone-1")) || strings.Contains(del[0], "gone-1") {
		t.Errorf("tombstones = %v", del)
	}
	latest, _ := e.store.Latest(context.Background())
	if latest != rep2.Run {
		t.Errorf("latest = %s, want %s", latest, rep2.Run)
	}
}
