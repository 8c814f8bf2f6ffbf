package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.temporal.io/sdk/client"

	"fhirdeid/durable"
	"fhirdeid/internal/testshared"
)

// temporalAddr returns the address of the Temporal service for the
// integration tests (FHIRDEID_TEMPORAL, set by .ci/run, which starts
// "temporal server start-dev"), or skips.
func temporalAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("FHIRDEID_TEMPORAL")
	if addr == "" {
		t.Skip("no Temporal service: start one with `temporal server start-dev --headless --ip 127.0.0.1` and set FHIRDEID_TEMPORAL=127.0.0.1:7233")
	}
	if testing.Short() {
		t.Skip("builds the binary and runs workflows")
	}
	return addr
}

func randomName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// durableSetup is a Bulk Data server serving synthea-100, a key file and a
// way to write pipeline configurations with or without temporal:.
type durableSetup struct {
	bin, base, keys, name, queue, addr string
	// profile is the anonymizer's built-in profile ("": the default).
	profile string
	// anonymizer is the anonymizer's configuration file ("": none), and
	// extra more settings of the pipeline (YAML lines, indented).
	anonymizer, extra string
}

func newDurableSetup(t *testing.T, serverArgs ...string) *durableSetup {
	addr := temporalAddr(t)
	data := testshared.Dir(t, "data", "synthea-100")
	bin := buildBinary(t)
	s := &durableSetup{bin: bin, addr: addr, name: randomName("it"), queue: randomName("q")}
	s.base = startBulkServer(t, bin, append([]string{"--data", data, "--polls", "2", "--retry-after", "1"}, serverArgs...)...)
	s.keys = filepath.Join(t.TempDir(), "keys.json")
	if out, err := exec.Command(bin, "keys", "init", s.keys).CombinedOutput(); err != nil {
		t.Fatalf("keys init: %v: %s", err, out)
	}
	return s
}

// config writes a configuration of one pipeline into dir, landing in
// dir/lake, run by Temporal when durable is set.
func (s *durableSetup) config(t *testing.T, dir string, durable bool) string {
	t.Helper()
	cfg := fmt.Sprintf(`state: state.db
pipelines:
  %s:
    source: {url: %s, maxPollInterval: 1s}
    anonymizer: {keysFile: %s%s}
    destination: file://%s
    concurrency: 4
`, s.name, s.base, s.keys, profileSetting(s.profile)+anonymizerSetting(s.anonymizer), filepath.ToSlash(filepath.Join(dir, "lake")))
	cfg += s.extra
	if durable {
		cfg += fmt.Sprintf("temporal:\n  hostPort: %s\n  taskQueue: %s\n  heartbeatTimeout: 4s\n  workerFiles: 2\n", s.addr, s.queue)
	}
	p := filepath.Join(dir, "fhirdeid.yml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func anonymizerSetting(path string) string {
	if path == "" {
		return ""
	}
	return ", config: " + filepath.ToSlash(path)
}

func profileSetting(profile string) string {
	if profile == "" {
		return ""
	}
	return ", profile: " + profile
}

// proc is a started fhirdeid process.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
		}
	})
	return p
}

// wait waits for p to exit within d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return annotate(err, p.out.String())
	case <-time.After(d):
		t.Fatalf("%v did not end within %s: %s", p.cmd.Args, d, p.out.String())
		return nil
	}
}

// startWorkers starts n workers of cfg and waits until they are connected.
func startWorkers(t *testing.T, bin, cfg string, n int) []*proc {
	t.Helper()
	var ws []*proc
	for range n {
		ws = append(ws, start(t, bin, "worker", cfg))
	}
	for _, w := range ws {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(w.out.String(), "worker on task queue") {
			select {
			case err := <-w.done:
				t.Fatalf("worker exited: %v: %s", err, w.out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker did not start: %s", w.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return ws
}

// runFiles lists the objects of the latest committed run in lake, by name.
func runFiles(t *testing.T, lake string) []string {
	t.Helper()
	latest, err := os.ReadFile(filepath.Join(lake, "latest"))
	if err != nil {
		t.Fatalf("no committed run: %v", err)
	}
	run := filepath.Join(lake, strings.TrimSpace(string(latest)))
	var names []string
	err = filepath.Walk(run, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(run, p)
		names = append(names, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// lineSets digests the data files of the latest committed run in lake, by
// name: a hash of the sorted hashes of each file's lines, so that equal
// digests mean equal line sets. It streams: the test process stays small
// (a child process's peak RSS on Linux includes its parent's, and another
// test measures its children's).
func lineSets(t *testing.T, lake string) map[string]string {
	t.Helper()
	latest, err := os.ReadFile(filepath.Join(lake, "latest"))
	if err != nil {
		t.Fatalf("no committed run: %v", err)
	}
	return folderLineSets(t, filepath.Join(lake, strings.TrimSpace(string(latest))))
}

// snapshotLineSets is lineSets of the merged snapshot that lake's
// "current" names.
func snapshotLineSets(t *testing.T, lake string) map[string]string {
	t.Helper()
	cur, err := os.ReadFile(filepath.Join(lake, "current"))
	if err != nil {
		t.Fatalf("no snapshot: %v", err)
	}
	return folderLineSets(t, filepath.Join(lake, "snapshots", strings.TrimSpace(string(cur))))
}

// folderLineSets is lineSets of the data files of one folder.
func folderLineSets(t *testing.T, run string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pat := range []string{"*.ndjson.gz", "deleted/*.ndjson.gz"} {
		files, _ := filepath.Glob(filepath.Join(run, pat))
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
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			var sums [][32]byte
			for sc.Scan() {
				sums = append(sums, sha256.Sum256(sc.Bytes()))
			}
			if err := sc.Err(); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			fh.Close()
			slices.SortFunc(sums, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
			h := sha256.New()
			for _, s := range sums {
				h.Write(s[:])
			}
			rel, _ := filepath.Rel(run, f)
			out[rel] = fmt.Sprintf("%d lines %x", len(sums), h.Sum(nil))
		}
	}
	return out
}

// sameOutput checks that two runs' data files hold the same line sets.
func sameOutput(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d data files, want %d", len(got), len(want))
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Fatalf("%s is missing", name)
		} else if g != w {
			t.Fatalf("%s: %s, pipeline.Run's %s", name, g, w)
		}
	}
}

// TestDurableRunMatchesInProcess: two workers and "fhirdeid run" with
// temporal: produce the same de-identified output as "fhirdeid run" in
// process, with the same keys, with one kick-off.
func TestDurableRunMatchesInProcess(t *testing.T) {
	testDurableRunMatchesInProcess(t, "")
}

// TestDurableScrubMatchesInProcess: with the longitudinal profile, whose
// scrub method needs the patients' identifiers collected first, the
// workers' output equals the in-process run's: each worker collects them
// from the files the workflow names.
func TestDurableScrubMatchesInProcess(t *testing.T) {
	testDurableRunMatchesInProcess(t, "longitudinal")
}

func testDurableRunMatchesInProcess(t *testing.T, profile string) {
	s := newDurableSetup(t)
	s.profile = profile
	refDir := t.TempDir()
	if err := start(t, s.bin, "run", "-q", s.config(t, refDir, false)).wait(t, 10*time.Minute); err != nil {
		t.Fatalf("in-process run: %v", err)
	}
	want := lineSets(t, filepath.Join(refDir, "lake"))

	dir := t.TempDir()
	cfg := s.config(t, dir, true)
	startWorkers(t, s.bin, cfg, 2)
	before := serverStats(t, s.base).Kickoffs
	r := start(t, s.bin, "run", "-q", cfg)
	if err := r.wait(t, 10*time.Minute); err != nil {
		t.Fatalf("durable run: %v", err)
	}
	if !strings.Contains(r.out.String(), "succeeded") || !strings.Contains(r.out.String(), "workflow fhirdeid-"+s.name) {
		t.Errorf("run printed %q", r.out.String())
	}
	sameOutput(t, lineSets(t, filepath.Join(dir, "lake")), want)
	if k := serverStats(t, s.base).Kickoffs - before; k != 1 {
		t.Errorf("%d kick-offs", k)
	}
	// The privacy checks (on by default) found what pipeline.Run's found:
	// with the longitudinal profile, no shifted date taken for a birth
	// date, also in the files that the worker completing the audit read
	// again after the other worker had de-identified them.
	refLake, lake := filepath.Join(refDir, "lake"), filepath.Join(dir, "lake")
	wantRep, gotRep := runReport(t, refLake, latestRun(t, refLake)), runReport(t, lake, latestRun(t, lake))
	sameJSON(t, "audit", auditOf(t, gotRep), auditOf(t, wantRep))
	sameJSON(t, "risk", gotRep["risk"], wantRep["risk"])
	// The workers merge the run into the snapshot, as pipeline.Run does.
	wantSnap := snapshotLineSets(t, filepath.Join(refDir, "lake"))
	if len(wantSnap) == 0 {
		t.Fatal("the in-process run made an empty snapshot")
	}
	sameOutput(t, snapshotLineSets(t, filepath.Join(dir, "lake")), wantSnap)
	wantFiles := runFiles(t, filepath.Join(refDir, "lake"))
	gotFiles := runFiles(t, filepath.Join(dir, "lake"))
	// log.ndjson included: the workers' parts merged at commit.
	if !slices.Equal(gotFiles, wantFiles) {
		t.Errorf("run folder %v, want %v", gotFiles, wantFiles)
	}
	t.Logf("%d data files identical to the in-process run's", len(want))
}

// TestDurableWorkerCrash kills one of two workers with SIGKILL at random
// points while files are processed, ten times: every run completes on the
// survivor, with output identical to the in-process run, no duplicated or
// extra file, and one kick-off.
func TestDurableWorkerCrash(t *testing.T) {
	// Slow downloads, so that files are in flight on both workers.
	s := newDurableSetup(t, "--download-delay", "300ms", "--part-size", "2000")
	refDir := t.TempDir()
	if err := start(t, s.bin, "run", "-q", s.config(t, refDir, false)).wait(t, 10*time.Minute); err != nil {
		t.Fatalf("in-process run: %v", err)
	}
	want := lineSets(t, filepath.Join(refDir, "lake"))
	wantFiles := runFiles(t, filepath.Join(refDir, "lake"))

	// A run without a kill measures the processing time: from the first
	// download to the end.
	measure := func(dir string) (*proc, []*proc, time.Time) {
		cfg := s.config(t, dir, true)
		ws := startWorkers(t, s.bin, cfg, 2)
		downloads := serverStats(t, s.base).Downloads
		r := start(t, s.bin, "run", "-q", cfg)
		for serverStats(t, s.base).Downloads == downloads {
			select {
			case err := <-r.done:
				t.Fatalf("run ended before any download: %v: %s", err, r.out.String())
			default:
			}
			time.Sleep(20 * time.Millisecond)
		}
		return r, ws, time.Now()
	}
	// Workers of one task queue must share one configuration: each
	// iteration stops its workers before the next starts others.
	stop := func(ws []*proc) {
		for _, w := range ws {
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, w := range ws {
			select {
			case err := <-w.done:
				w.done <- err // for the cleanup, which waits for it too
			case <-time.After(30 * time.Second):
				t.Fatalf("worker did not stop: %s", w.out.String())
			}
		}
	}
	r, ws, first := measure(t.TempDir())
	if err := r.wait(t, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	processing := time.Since(first)
	stop(ws)
	t.Logf("uninterrupted durable run: %s of processing", processing.Round(time.Millisecond))

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 17))
	const iterations = 10
	var killedAt []string
	for i := range iterations {
		dir := t.TempDir()
		before := serverStats(t, s.base).Kickoffs
		r, ws, first := measure(dir)
		at := time.Duration(rng.Int64N(int64(processing * 8 / 10)))
		time.Sleep(time.Until(first.Add(at)))
		victim := ws[rng.IntN(2)]
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killedAt = append(killedAt, at.Round(time.Millisecond).String())
		if err := r.wait(t, 10*time.Minute); err != nil {
			t.Fatalf("iteration %d (kill after %s): %v", i, at, err)
		}
		sameOutput(t, lineSets(t, filepath.Join(dir, "lake")), want)
		if got := runFiles(t, filepath.Join(dir, "lake")); !slices.Equal(got, wantFiles) {
			t.Fatalf("iteration %d: run folder %v, want %v", i, got, wantFiles)
		}
		if k := serverStats(t, s.base).Kickoffs - before; k != 1 {
			t.Fatalf("iteration %d: %d kick-offs", i, k)
		}
		stop(ws)
	}
	t.Logf("%d runs completed after a worker was killed %v into processing", iterations, killedAt)
}

// TestTemporalBadConfig: validate --online, worker and run name the
// setting at fault when the Temporal service cannot be reached, has no such
// namespace, or does not speak TLS. The unreachable case needs no server.
func TestTemporalBadConfig(t *testing.T) {
	dir := t.TempDir()
	// A port that nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	write := func(temporal string) string {
		p := filepath.Join(dir, "p.yml")
		cfg := fmt.Sprintf("state: state.db\npipelines:\n  ehr:\n    source: {url: http://127.0.0.1:1/fhir}\n    destination: file://%s\ntemporal:\n%s",
			filepath.ToSlash(filepath.Join(dir, "lake")), temporal)
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(cfg, want string) {
		t.Helper()
		for _, args := range [][]string{{"validate", "--online", cfg}, {"worker", cfg}, {"run", "-q", cfg}} {
			code, _, stderr := runCmd(t, "", nil, args...)
			if code != 2 || !strings.Contains(stderr, want) {
				t.Errorf("%s: exit %d, stderr %q; want 2 and %q", args[0], code, stderr, want)
			}
		}
	}
	check(write("  hostPort: "+closed+"\n"), "temporal.hostPort: cannot reach the Temporal service at "+closed)
	// Offline, validate only checks the section.
	if code, out, _ := runCmd(t, "", nil, "validate", write("  hostPort: "+closed+"\n")); code != 0 || !strings.Contains(out, "not contacted") {
		t.Errorf("offline validate: exit %d, %q", code, out)
	}
	if code, _, stderr := runCmd(t, "", nil, "validate", write("  hostPort: h:1\n  tls: {caFile: absent.pem}\n")); code != 2 || !strings.Contains(stderr, "temporal.tls.caFile: cannot read the file") {
		t.Errorf("offline validate of a missing CA file: exit %d, %q", code, stderr)
	}

	addr := os.Getenv("FHIRDEID_TEMPORAL")
	if addr == "" {
		t.Skip("no Temporal service for the namespace and TLS cases (FHIRDEID_TEMPORAL)")
	}
	check(write("  hostPort: "+addr+"\n  namespace: no-such-namespace\n"), `temporal.namespace: the Temporal service at `+addr+` has no namespace "no-such-namespace"`)
	check(write("  hostPort: "+addr+"\n  tls: {enabled: true}\n"), "temporal.tls: the TLS connection to "+addr+" failed")
}

// TestServeTemporalSchedules: with temporal:, serve creates one Temporal
// Schedule per pipeline, and a changed cron updates it at the next start.
func TestServeTemporalSchedules(t *testing.T) {
	addr := temporalAddr(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	name := randomName("sv")
	write := func(cron string) string {
		p := filepath.Join(dir, "p.yml")
		cfg := fmt.Sprintf("state: state.db\npipelines:\n  %s:\n    source: {url: http://127.0.0.1:1/fhir}\n    destination: file://%s\n    schedule: %q\n    timezone: Europe/Paris\ntemporal:\n  hostPort: %s\n  taskQueue: %s\n",
			name, filepath.ToSlash(filepath.Join(dir, "lake")), cron, addr, randomName("q"))
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := durable.Dial(context.Background(), durable.ConnectOptions{HostPort: addr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.ScheduleClient().GetHandle(context.Background(), durable.ScheduleID(name))
	defer h.Delete(context.Background())

	serve := func(cron, verb string) {
		t.Helper()
		s := start(t, bin, "serve", "-addr", "127.0.0.1:0", write(cron))
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(s.out.String(), "listening on") {
			if time.Now().After(deadline) {
				t.Fatalf("serve did not start: %s", s.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if want := "Temporal schedule " + durable.ScheduleID(name) + " " + verb; !strings.Contains(s.out.String(), want) {
			t.Errorf("serve printed %q, want %q", s.out.String(), want)
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.wait(t, 30*time.Second); err != nil {
			t.Fatalf("serve: %v", err)
		}
	}
	hourMinute := func() (int, int, string) {
		t.Helper()
		d, err := h.Describe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sp := d.Schedule.Spec
		if len(sp.Calendars) != 1 || len(sp.Calendars[0].Hour) != 1 || len(sp.Calendars[0].Minute) != 1 {
			t.Fatalf("schedule spec %+v", sp)
		}
		return sp.Calendars[0].Hour[0].Start, sp.Calendars[0].Minute[0].Start, sp.TimeZoneName
	}
	serve("0 1 * * *", "created")
	if h, m, tz := hourMinute(); h != 1 || m != 0 || tz != "Europe/Paris" {
		t.Errorf("schedule at %02d:%02d %s, want 01:00 Europe/Paris", h, m, tz)
	}
	serve("30 2 * * *", "updated")
	if h, m, _ := hourMinute(); h != 2 || m != 30 {
		t.Errorf("updated schedule at %02d:%02d, want 02:30", h, m)
	}
}

// TestServeShowsTemporalRuns: with temporal:, serve's "Run now" starts a
// workflow on the workers, a second one while it runs is refused, and the
// API, the dashboard and the metrics show the run from Temporal: workflow
// id and run id, status, the run's folder, its report and a link to the
// Temporal UI.
func TestServeShowsTemporalRuns(t *testing.T) {
	s := newDurableSetup(t)
	dir := t.TempDir()
	cfg := s.config(t, dir, true)
	c, err := durable.Dial(context.Background(), durable.ConnectOptions{HostPort: s.addr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer c.ScheduleClient().GetHandle(context.Background(), durable.ScheduleID(s.name)).Delete(context.Background())
	startWorkers(t, s.bin, cfg, 1)
	sv := start(t, s.bin, "serve", "-addr", "127.0.0.1:0", cfg)
	re := regexp.MustCompile(`listening on (http://[0-9.:]+)/`)
	var base string
	for deadline := time.Now().Add(60 * time.Second); base == ""; time.Sleep(50 * time.Millisecond) {
		if m := re.FindStringSubmatch(sv.out.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", sv.out.String())
		}
	}
	call := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		req.Header.Set("Origin", base)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("POST", "/api/pipelines/"+s.name+"/run"); code != http.StatusAccepted {
		t.Fatalf("run now: %d %s", code, body)
	}
	var pipes []struct {
		Running    bool       `json:"running"`
		CurrentRun string     `json:"currentRun"`
		NextRun    *time.Time `json:"nextRun"`
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, body := call("GET", "/api/pipelines")
		if err := json.Unmarshal([]byte(body), &pipes); err != nil || len(pipes) != 1 {
			t.Fatalf("pipelines: %v: %s", err, body)
		}
		if pipes[0].Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not show as running: %s", body)
		}
	}
	if pipes[0].NextRun == nil || pipes[0].NextRun.UTC().Hour() != 1 {
		t.Errorf("next run %v, want the Schedule's next 01:00 UTC", pipes[0].NextRun)
	}
	if code, body := call("POST", "/api/pipelines/"+s.name+"/run"); code != http.StatusConflict {
		t.Errorf("a second run now while one runs: %d %s, want 409", code, body)
	}
	type runView struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		Folder    string `json:"folder"`
		Resources int64  `json:"resources"`
		Workflow  *struct {
			ID, RunID, Status, URL string
		} `json:"workflow"`
	}
	var list struct{ Runs []runView }
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		_, body := call("GET", "/api/runs")
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("runs: %v: %s", err, body)
		}
		if len(list.Runs) == 1 && list.Runs[0].Status == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not succeed: %s", body)
		}
	}
	r := list.Runs[0]
	latest, _ := os.ReadFile(filepath.Join(dir, "lake", "latest"))
	if r.Folder == "" || r.Folder != strings.TrimSpace(string(latest)) || r.Resources == 0 {
		t.Errorf("run %+v, want the folder %q with its resources", r, latest)
	}
	host, port, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(port)
	wantURL := "http://" + net.JoinHostPort(host, strconv.Itoa(n+1000)) // the dev server's UI
	if w := r.Workflow; w == nil || w.ID != durable.WorkflowID(s.name) || w.RunID != r.ID || w.Status != "Completed" ||
		!strings.HasPrefix(w.URL, wantURL) || !strings.HasSuffix(w.URL, "/namespaces/default/workflows/"+w.ID+"/"+w.RunID+"/history") {
		t.Errorf("workflow %+v", r.Workflow)
	}
	if code, body := call("GET", "/api/runs/"+r.ID); code != 200 || !strings.Contains(body, `"report": {`) {
		t.Errorf("run detail: %d %s", code, body)
	}
	if _, body := call("GET", "/runs/"+r.ID); !strings.Contains(body, "open in the Temporal UI") {
		t.Errorf("the run page has no link to the Temporal UI: %s", body)
	}
	if _, body := call("GET", "/"); !strings.Contains(body, r.Folder) {
		t.Errorf("the dashboard does not list the run")
	}
	want := fmt.Sprintf(`fhirdeid_runs_total{outcome="succeeded",pipeline=%q} 1`, s.name)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		_, body := call("GET", "/metrics")
		if strings.Contains(body, want) && strings.Contains(body, fmt.Sprintf(`fhirdeid_run_in_progress{pipeline=%q} 0`, s.name)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

// TestRunFollowsScheduledRun: "fhirdeid run" while a run that the Schedule
// started is in progress follows that run instead of starting a second
// one: one kick-off, and run reports the scheduled workflow's result.
func TestRunFollowsScheduledRun(t *testing.T) {
	s := newDurableSetup(t)
	dir := t.TempDir()
	cfg := s.config(t, dir, true)
	ctx := context.Background()
	c, err := durable.Dial(ctx, durable.ConnectOptions{HostPort: s.addr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	startWorkers(t, s.bin, cfg, 1)
	if _, err := durable.EnsureSchedule(ctx, c, s.queue, durable.ScheduleSpec{Pipeline: s.name, Cron: "0 1 1 1 *"}); err != nil {
		t.Fatal(err)
	}
	h := c.ScheduleClient().GetHandle(ctx, durable.ScheduleID(s.name))
	defer h.Delete(context.Background())
	before := serverStats(t, s.base).Kickoffs
	if err := h.Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	m := &durable.Monitor{Client: c, Namespace: "default", TaskQueue: s.queue}
	var cur string
	for deadline := time.Now().Add(30 * time.Second); cur == ""; time.Sleep(100 * time.Millisecond) {
		if cur, err = m.InProgress(ctx, s.name); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduled run did not start")
		}
	}
	if !strings.HasPrefix(cur, durable.WorkflowID(s.name)+"-") {
		t.Fatalf("run in progress %q is not the Schedule's", cur)
	}
	r := start(t, s.bin, "run", "-q", cfg)
	if err := r.wait(t, 5*time.Minute); err != nil {
		t.Fatalf("run: %v", err)
	}
	out := r.out.String()
	if !strings.Contains(out, "is in progress (workflow "+cur+"): following it") || !strings.Contains(out, "succeeded") ||
		!strings.Contains(out, "(workflow "+cur+")") {
		t.Errorf("run printed %q", out)
	}
	if k := serverStats(t, s.base).Kickoffs - before; k != 1 {
		t.Errorf("%d kick-offs, want 1", k)
	}
	if n := len(lineSets(t, filepath.Join(dir, "lake"))); n == 0 {
		t.Error("no data file committed")
	}
}
