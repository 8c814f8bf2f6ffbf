package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/internal/testshared"
	"fhirdeid/pipeline"
	"fhirdeid/state"
)

// engineDeid returns the real de-identifier with the default configuration,
// with extra rules in front of it.
func engineDeid(t *testing.T, extra ...map[string]any) pipeline.Deidentifier {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(defaultconfig.SafeHarbor(), &cfg); err != nil {
		t.Fatal(err)
	}
	rules := cfg["fhirPathRules"].([]any)
	for i := len(extra) - 1; i >= 0; i-- {
		rules = append([]any{extra[i]}, rules...)
	}
	cfg["fhirPathRules"] = rules
	params := cfg["parameters"].(map[string]any)
	params["cryptoHashKey"], params["dateShiftKey"] = "test-hash-key", "test-shift-key"
	data, _ := json.Marshal(cfg)
	c, err := anonymize.ParseConfig(data, anonymize.Options{Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := anonymize.NewEngine(c, anonymize.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.NewEngineDeidentifier(eng)
}

func logTo(p *pipeline.Pipeline) *bytes.Buffer {
	var b bytes.Buffer
	p.Logger = slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &b
}

// noPHI fails if text holds any identifier planted in the population.
func noPHI(t *testing.T, pop *synth.Population, what string, text []byte) {
	t.Helper()
	lc := synth.NewLeakChecker(pop.Identifiers)
	lc.CheckLine(text)
	if lc.Found() != 0 {
		t.Errorf("%s holds %d planted identifiers", what, lc.Found())
	}
}

func TestAssuranceCleanRun(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	p := e.pipeline(t, engineDeid(t))
	p.Assurance = &pipeline.Assurance{Audit: true, FailOnLeak: true, Risk: true, MinK: 1, RiskFail: true}
	logs := logTo(p)
	rep, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != "succeeded" || rep.Audit == nil || rep.Risk == nil {
		t.Fatalf("status %s audit %v risk %v warnings %q", rep.Status, rep.Audit, rep.Risk, rep.Warnings)
	}
	a := rep.Audit
	if a.Leaks != 0 || a.IdentifiersCollected < 100 || a.ResourcesCollected != int64(e.pop.Count()) ||
		a.ResourcesScanned != int64(e.pop.Count()) || a.Incomplete != "" {
		t.Errorf("audit %+v", a)
	}
	if r := rep.Risk; r.Records != int64(len(e.pop.Resources["Patient"])) || r.MinK < 1 || r.RequiredK != 1 || r.Action != "fail" {
		t.Errorf("risk %+v", r)
	}
	for _, name := range []string{"latest", "current"} {
		if _, err := os.Stat(filepath.Join(e.dest, name)); err != nil {
			t.Errorf("a clean run did not publish %s: %v", name, err)
		}
	}
	// The merged snapshot's patients are analysed too; after a second run
	// of the same export they are the same patients, not twice as many.
	patients := int64(len(e.pop.Resources["Patient"]))
	if s := rep.Snapshot; s == nil || s.Risk == nil || s.Risk.Records != patients || s.Risk.MinK != rep.Risk.MinK {
		t.Fatalf("snapshot %+v", s)
	}
	rep2, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if s := rep2.Snapshot; s == nil || s.Risk == nil || len(s.Runs) != 2 || s.Risk.Records != patients || s.Risk.Classes != rep.Risk.Classes {
		t.Errorf("snapshot of two runs: %+v", s)
	}
	sj, err := os.ReadFile(filepath.Join(e.dest, "snapshots", rep2.Snapshot.Snapshot, "snapshot.json"))
	if err != nil || !bytes.Contains(sj, []byte(`"risk"`)) || !bytes.Contains(sj, []byte(`"histogram"`)) {
		t.Errorf("snapshot.json without risk: %v %.300s", err, sj)
	}
	noPHI(t, e.pop, "snapshot.json", sj)
	rj, err := os.ReadFile(filepath.Join(e.dest, rep.Run, "report.json"))
	if err != nil || !bytes.Contains(rj, []byte(`"identifiersCollected"`)) || !bytes.Contains(rj, []byte(`"shareBelow5"`)) {
		t.Errorf("report.json without audit and risk: %v %s", err, rj)
	}
	noPHI(t, e.pop, "report.json", rj)
	noPHI(t, e.pop, "the log", logs.Bytes())
}

// TestAssuranceFailOnLeak keeps the patients' names: the audit finds them,
// failOn: leak stops the run before it is published, and the run folder
// keeps a report.json saying where the names are, without them.
func TestAssuranceFailOnLeak(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	p := e.pipeline(t, engineDeid(t, map[string]any{"path": "Patient.name", "method": "keep"}))
	p.Assurance = &pipeline.Assurance{Audit: true, FailOnLeak: true}
	logs := logTo(p)
	_, runErr := pipeline.Run(context.Background(), p)
	var pe *pipeline.Error
	var ae *pipeline.AssuranceError
	if !errors.As(runErr, &pe) || pe.Outcome != pipeline.Fatal || !errors.As(runErr, &ae) {
		t.Fatalf("run: %v", runErr)
	}
	rep := ae.Report
	patients := int64(len(e.pop.Resources["Patient"]))
	if rep.Status != "failed" || rep.Audit.ResourcesWithLeaks != patients || rep.Audit.ByPath["Patient.name.family"] < patients ||
		rep.Audit.ByPath["Patient.name.given"] < patients {
		t.Errorf("status %s audit %+v", rep.Status, rep.Audit)
	}
	for path := range rep.Audit.ByPath {
		if !strings.HasPrefix(path, "Patient.name.") {
			t.Errorf("leak at %s", path)
		}
	}
	// Nothing published: no _SUCCESS, no latest; the report is there.
	for _, name := range []string{filepath.Join(rep.Run, "_SUCCESS"), "latest", "current"} {
		if _, err := os.Stat(filepath.Join(e.dest, name)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a failed audit: %v", name, err)
		}
	}
	rj, err := os.ReadFile(filepath.Join(e.dest, rep.Run, "report.json"))
	if err != nil || !bytes.Contains(rj, []byte(`"Patient.name.family"`)) || !bytes.Contains(rj, []byte(`"status": "failed"`)) {
		t.Fatalf("report.json: %v %s", err, rj)
	}
	noPHI(t, e.pop, "report.json", rj)
	noPHI(t, e.pop, "the log", logs.Bytes())
	noPHI(t, e.pop, "the error", []byte(runErr.Error()))
	run, err := e.db.Run(context.Background(), rep.Run)
	if err != nil || run.Status != state.RunFailed || !bytes.Contains(run.Report, []byte(`"leaks"`)) {
		t.Errorf("state: %v %+v", err, run)
	}
	if _, _, err := e.db.Cursor(context.Background(), "ehr"); err == nil {
		t.Error("the incremental cursor moved after a failed audit")
	}

	// Without failOn the same leak makes the run partial, and publishes it.
	e2 := newEnv(t, bulktest.Options{})
	p2 := e2.pipeline(t, engineDeid(t, map[string]any{"path": "Patient.name", "method": "keep"}))
	p2.Assurance = &pipeline.Assurance{Audit: true}
	rep2, err := pipeline.Run(context.Background(), p2)
	if err != nil || rep2.Status != "partial" || rep2.Audit.Leaks == 0 {
		t.Fatalf("without failOn: %v %+v", err, rep2)
	}
}

func TestAssuranceRiskGate(t *testing.T) {
	for _, fail := range []bool{true, false} {
		e := newEnv(t, bulktest.Options{})
		p := e.pipeline(t, engineDeid(t))
		p.Assurance = &pipeline.Assurance{Risk: true, MinK: 1000, RiskFail: fail}
		rep, err := pipeline.Run(context.Background(), p)
		if fail {
			var ae *pipeline.AssuranceError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), "below minK 1000") {
				t.Fatalf("action fail: %v", err)
			}
			if _, err := os.Stat(filepath.Join(e.dest, "latest")); !os.IsNotExist(err) {
				t.Error("published")
			}
			continue
		}
		if err != nil || rep.Status != "partial" || rep.Audit != nil || rep.Risk.Action != "warn" {
			t.Fatalf("action warn: %v %+v", err, rep)
		}
	}
}

// TestAssuranceSynthea100 runs synthea-100 through the pipeline with a
// configuration that keeps Patient.name and failOn: leak: the run fails,
// exactly the 100 patients leak, at Patient.name, and nothing is published.
func TestAssuranceSynthea100(t *testing.T) {
	if testing.Short() {
		t.Skip("de-identifies synthea-100 twice: not with -short")
	}
	dir := testshared.Dir(t, "data", "synthea-100")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	var res [][]byte
	for _, p := range paths {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			res = append(res, append([]byte(nil), sc.Bytes()...))
		}
		fh.Close()
	}
	for _, keep := range []bool{false, true} {
		e := newEnv(t, bulktest.Options{Resources: res, PartSize: 5000})
		var extra []map[string]any
		if keep {
			extra = append(extra, map[string]any{"path": "Patient.name", "method": "keep"})
		}
		p := e.pipeline(t, engineDeid(t, extra...))
		p.Assurance = &pipeline.Assurance{Audit: true, FailOnLeak: true, Risk: true}
		rep, err := pipeline.Run(context.Background(), p)
		if !keep {
			if err != nil || rep.Audit.Leaks != 0 || rep.Audit.ResourcesScanned != int64(len(res)) || rep.Risk.Records != 100 {
				t.Fatalf("default configuration: %v %+v", err, rep)
			}
			continue
		}
		var ae *pipeline.AssuranceError
		if !errors.As(err, &ae) {
			t.Fatalf("names kept: %v", err)
		}
		a := ae.Report.Audit
		if a.ResourcesWithLeaks != 100 || a.ByPath["Patient.name.family"] < 100 || a.ByPath["Patient.name.given"] < 100 || len(a.ByPath) != 2 {
			t.Errorf("audit %+v", a)
		}
		for _, name := range []string{"latest", "current", filepath.Join(ae.Report.Run, "_SUCCESS")} {
			if _, err := os.Stat(filepath.Join(e.dest, name)); !os.IsNotExist(err) {
				t.Errorf("%s published: %v", name, err)
			}
		}
	}
	// The longitudinal profile shifts dates per patient: about one shifted
	// date in 300 equals some patient's birth date (136 such matches on
	// synthea-100, before the audit told rewritten dates from kept ones),
	// and none is a leak.
	e := newEnv(t, bulktest.Options{Resources: res, PartSize: 5000})
	p := e.pipeline(t, longitudinalDeid(t))
	p.Assurance = &pipeline.Assurance{Audit: true, FailOnLeak: true}
	rep, err := pipeline.Run(context.Background(), p)
	if err != nil || rep.Audit.Leaks != 0 || rep.Audit.ResourcesScanned != int64(len(res)) {
		t.Fatalf("longitudinal: %v %+v", err, rep)
	}
	t.Logf("longitudinal: 0 leaks; %d files scanned in stream, %d again", rep.Audit.FilesScannedInStream, rep.Audit.FilesScannedAgain)
}

// TestAssuranceLateIdentifier plants an Encounter's identifier in the kept
// note of a Condition, whose file is de-identified (and scanned) before the
// Encounter file is read: the scan made while the Condition file streamed
// could not know the identifier, so the audit reads that file again, and
// finds the leak; a file de-identified after the last identifier was
// collected keeps its first scan.
func TestAssuranceLateIdentifier(t *testing.T) {
	res := [][]byte{
		[]byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"Quillfeather","given":["Ottoline"]}],"gender":"female","birthDate":"1961-04-07"}`),
		[]byte(`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"note":[{"text":"follow-up of encounter ENCQ77314410"}]}`),
		[]byte(`{"resourceType":"Encounter","id":"e1","status":"finished","subject":{"reference":"Patient/p1"},"identifier":[{"system":"urn:x","value":"ENCQ77314410"}]}`),
		[]byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"}}`),
	}
	e := newEnv(t, bulktest.Options{Resources: res})
	p := e.pipeline(t, engineDeid(t, map[string]any{"path": "Condition.note", "method": "keep"}))
	p.Concurrency = 1
	p.Assurance = &pipeline.Assurance{Audit: true}
	logs := logTo(p)
	rep, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	a := rep.Audit
	if a.Leaks != 1 || a.ByPath["Condition.note.text"] != 1 || a.ByKind["identifier"] != 1 || a.ResourcesScanned != 4 {
		t.Errorf("audit %+v", a)
	}
	if a.FilesScannedAgain < 1 || a.FilesScannedInStream < 1 || a.FilesScannedAgain+a.FilesScannedInStream != 4 {
		t.Errorf("files scanned in stream %d, again %d", a.FilesScannedInStream, a.FilesScannedAgain)
	}
	if bytes.Contains(logs.Bytes(), []byte("ENCQ77314410")) || bytes.Contains(logs.Bytes(), []byte("Quillfeather")) {
		t.Error("a value in the log")
	}
}
