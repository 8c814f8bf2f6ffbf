package durable

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	_ "gocloud.dev/blob/fileblob"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// hashDeid keeps resourceType and a keyed hash of the id.
type hashDeid struct{}

func hashID(id string) string {
	h := sha256.Sum256([]byte("k:" + id))
	return hex.EncodeToString(h[:8])
}

func (hashDeid) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	var r struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return dst, anonymize.Stats{}, err
	}
	out, _ := json.Marshal(map[string]string{"resourceType": r.ResourceType, "id": hashID(r.ID)})
	return append(dst, out...), anonymize.Stats{Operations: anonymize.Operations(0).Add(anonymize.OpCryptoHash), Resources: 1, Changed: 1}, nil
}

func (hashDeid) ID(ctx context.Context, typ, id string) (string, error) { return hashID(id), nil }

// readLines returns the sorted lines of every output file of a run.
func readLines(t *testing.T, dir, run string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, run, "*.ndjson.gz"))
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		fh.Close()
	}
	sort.Strings(lines)
	return lines
}

func newPipeline(t *testing.T, srv *bulktest.Server, dest string) *pipeline.Pipeline {
	t.Helper()
	c, err := bulk.NewClient(srv.URL(), http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	c.Polling.InitialDelay, c.Polling.MinDelay, c.Polling.MaxDelay = time.Millisecond, time.Millisecond, 10*time.Millisecond
	c.Retries.BaseDelay, c.Retries.MaxDelay = time.Millisecond, 10*time.Millisecond
	store, err := storage.Open(context.Background(), dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &pipeline.Pipeline{Name: "ehr", Client: c, Deidentifier: hashDeid{}, Store: store, SinceAuto: true, Workers: 2,
		KeyFingerprints: map[string]string{"cryptoHashKey": "aaaa"}}
}

// TestWorkflowWithStepsMatchesRun runs the workflow with the real
// activities against a Bulk Data test server, then pipeline.Run on the same
// data into another destination: the two runs hold the same lines and
// counts. A second workflow run is incremental, and one with other keys is
// refused.
func TestWorkflowWithStepsMatchesRun(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 20})
	var res [][]byte
	for _, typ := range pop.Types() {
		res = append(res, pop.Resources[typ]...)
	}
	srv, err := bulktest.New(bulktest.Options{Resources: res, PartSize: 40, PollsBeforeComplete: 2, RetryAfter: "120"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	ctx := context.Background()

	// pipeline.Run, with its state database.
	p := newPipeline(t, srv, filepath.Join(dir, "run"))
	db, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p.State = db
	want, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}

	q := newPipeline(t, srv, filepath.Join(dir, "durable"))
	acts, err := NewActivities(map[string]*pipeline.Pipeline{"ehr": q})
	if err != nil {
		t.Fatal(err)
	}
	acts.HeartbeatEvery = 50 * time.Millisecond
	run := func(in Input) (*pipeline.Report, []time.Duration, error) {
		var s testsuite.WorkflowTestSuite
		e := s.NewTestWorkflowEnvironment()
		e.SetDataConverter(DataConverter())
		e.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 20 * time.Second})
		e.SetTestTimeout(time.Minute)
		e.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: WorkflowName})
		e.RegisterActivity(acts)
		var timers []time.Duration
		e.SetOnTimerScheduledListener(func(id string, d time.Duration) { timers = append(timers, d) })
		e.ExecuteWorkflow(Workflow, in)
		if err := e.GetWorkflowError(); err != nil {
			return nil, timers, err
		}
		var rep pipeline.Report
		if err := e.GetWorkflowResult(&rep); err != nil {
			t.Fatal(err)
		}
		return &rep, timers, nil
	}
	kickoffs := srv.Stats().Kickoffs
	rep, timers, err := run(Input{Pipeline: "ehr", Options: Options{Concurrency: 3, FilesPerExecution: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().Kickoffs - kickoffs; n != 1 {
		t.Errorf("%d kick-offs", n)
	}
	// The bulk client clamps Retry-After to its MaxDelay (10 ms); the
	// workflow's own backoff (by default 1 s, then 1.5 s) is longer.
	if len(timers) != 2 || timers[0] != time.Second || timers[1] != 1500*time.Millisecond {
		t.Errorf("poll timers %v", timers)
	}
	got := readLines(t, filepath.Join(dir, "durable"), rep.Run)
	if len(got) != pop.Count() || !slices.Equal(got, readLines(t, filepath.Join(dir, "run"), want.Run)) {
		t.Errorf("the workflow wrote %d lines, pipeline.Run %d; they differ", len(got), pop.Count())
	}
	if rep.Resources != want.Resources || rep.Status != "succeeded" || len(rep.Types) != len(want.Types) {
		t.Errorf("reports differ: %+v / %+v", rep, want)
	}
	for typ, tr := range want.Types {
		if g := rep.Types[typ]; g == nil || g.Files != tr.Files || g.Resources != tr.Resources || g.Deidentification.ValuesChanged != tr.Deidentification.ValuesChanged {
			t.Errorf("%s: %+v, want %+v", typ, g, tr)
		}
	}
	man, err := os.ReadFile(filepath.Join(dir, "durable", rep.Run, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m bulk.Manifest
	if err := json.Unmarshal(man, &m); err != nil || len(m.Output) != countFiles(want) {
		t.Errorf("manifest.json: %d output files, err %v", len(m.Output), err)
	}

	// The next run is incremental: _since is the committed run's
	// transactionTime.
	rep2, _, err := run(Input{Pipeline: "ehr"})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Since != rep.TransactionTime || rep2.Run == rep.Run {
		t.Errorf("second run since %q, want %q", rep2.Since, rep.TransactionTime)
	}

	// Other keys are refused before any kick-off, unless NewKeys.
	q.KeyFingerprints = map[string]string{"cryptoHashKey": "bbbb"}
	kickoffs = srv.Stats().Kickoffs
	if _, _, err := run(Input{Pipeline: "ehr"}); err == nil {
		t.Error("a run with other keys was not refused")
	}
	if n := srv.Stats().Kickoffs - kickoffs; n != 0 {
		t.Errorf("%d kick-offs with other keys", n)
	}
	rep3, _, err := run(Input{Pipeline: "ehr", NewKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep3.Since != "" || rep3.Resources != want.Resources {
		t.Errorf("a new lake: since %q, %d resources", rep3.Since, rep3.Resources)
	}
}

func countFiles(rep *pipeline.Report) int {
	n := 0
	for _, t := range rep.Types {
		n += t.Files
	}
	return n
}

// TestWorkflowChecksWithSteps runs the workflow with the real activities
// and the privacy checks on: the audit runs (in stream, in this one
// process) and the risk check fails the run (minK above the population,
// action: fail): the workflow fails with the run's report, which says why,
// the run folder keeps report.json and log.ndjson, and nothing is
// published.
func TestWorkflowChecksWithSteps(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 20})
	var res [][]byte
	for _, typ := range pop.Types() {
		res = append(res, pop.Resources[typ]...)
	}
	srv, err := bulktest.New(bulktest.Options{Resources: res, PartSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Close()
	dest := t.TempDir()
	q := newPipeline(t, srv, dest)
	q.Assurance = &pipeline.Assurance{Audit: true, Risk: true, MinK: 1000, RiskFail: true}
	acts, err := NewActivities(map[string]*pipeline.Pipeline{"ehr": q})
	if err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.SetDataConverter(DataConverter())
	e.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 20 * time.Second})
	e.SetTestTimeout(time.Minute)
	e.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: WorkflowName})
	e.RegisterActivity(acts)
	e.ExecuteWorkflow(Workflow, Input{Pipeline: "ehr"})
	err = e.GetWorkflowError()
	rep := ChecksReport(err)
	if rep == nil {
		t.Fatalf("workflow error %v, want a failure with the checks' report", err)
	}
	if rep.Status != "failed" || rep.Risk == nil || rep.Risk.RequiredK != 1000 || rep.Risk.Records != 20 ||
		rep.Audit == nil || rep.Audit.ResourcesScanned != int64(pop.Count()) || rep.Audit.FilesScannedAgain != 0 {
		t.Errorf("report: status %s, risk %+v, audit %+v", rep.Status, rep.Risk, rep.Audit)
	}
	for _, name := range []string{"latest", "current", filepath.Join(rep.Run, "_SUCCESS")} {
		if _, err := os.Stat(filepath.Join(dest, name)); !os.IsNotExist(err) {
			t.Errorf("%s published: %v", name, err)
		}
	}
	for _, name := range []string{"report.json", "log.ndjson"} {
		if _, err := os.Stat(filepath.Join(dest, rep.Run, name)); err != nil {
			t.Errorf("the unpublished run has no %s: %v", name, err)
		}
	}
	if ChecksReport(errors.New("other")) != nil {
		t.Error("ChecksReport of another error")
	}
}
