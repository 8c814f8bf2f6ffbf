package pipeline

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/audit"
	"fhirdeid/bulk"
	"fhirdeid/jsontree"
	"fhirdeid/risk"
	"fhirdeid/state"
)

// Assurance is the privacy checks of every run: a leak audit of the output
// against the direct identifiers of the raw input, and a re-identification
// risk analysis of the run's patients. Both go into report.json ("audit",
// "risk"); either can stop a run before it is published.
type Assurance struct {
	// Audit collects the identifiers of every raw resource (as keyed
	// hashes, in memory) while it is de-identified, and scans the
	// de-identified resource in the same pass; a file whose scan may have
	// missed identifiers collected after it began is read back from
	// storage and scanned again before the run commits.
	Audit bool
	// FailOnLeak fails a run with any leak: report.json is written to the
	// run folder, but neither _SUCCESS nor "latest" is, and the cursor does
	// not move. Without it a leak makes the run partial.
	FailOnLeak bool
	// Risk analyses the run's Patient output, and the merged snapshot's
	// patients (SnapshotReport.Risk).
	Risk bool
	// QuasiIdentifiers of the risk analysis (default risk.DefaultQI).
	QuasiIdentifiers []string
	// MinK is the smallest acceptable equivalence class (0: no check); a
	// smaller one fails the run when RiskFail is set and makes it partial
	// otherwise.
	MinK     int
	RiskFail bool
}

// RiskReport is report.json's "risk": the analysis and the check applied.
type RiskReport struct {
	risk.Report
	RequiredK int    `json:"requiredK,omitempty"`
	Action    string `json:"action,omitempty"`
}

// AssuranceError is a run stopped by its privacy checks. Its report was
// written to the run folder as report.json, but the run was not committed.
type AssuranceError struct {
	Reasons []string
	Report  *Report
}

func (e *AssuranceError) Error() string {
	return "not published: " + strings.Join(e.Reasons, "; ")
}

// assureState is the audit of the run in progress: the identifiers
// collected from its raw resources, and the scans of the output files
// written so far.
type assureState struct {
	mu        sync.Mutex
	run       string
	collector *audit.Collector
	// scans holds, by output file name ("Type.seq"), the scan of the
	// file's last complete attempt.
	scans map[string]*audit.FileScan
	// assuring: AssureRun began for run in this process (beginAssure).
	assuring bool
}

// collectDuring makes storeFile collect identifiers and scan the output
// for run, when the audit is on, and returns the function that ends it: it
// lets the collected identifiers go once the run is over (committed, kept
// unpublished by its checks, or failed for good), so that a long-lived
// process (serve) does not hold them until its next run. A run that
// stopped to be resumed keeps them for its resumption in the same process.
func (p *Pipeline) collectDuring(run *state.Run) func() {
	p.collectFor(run.ID, nil)
	return func() {
		if run.Status.Terminal() {
			p.dropAudit(run.ID)
		}
	}
}

// dropAudit lets this process's audit state of run go, if it holds it.
func (p *Pipeline) dropAudit(runID string) {
	st := &p.assure
	st.mu.Lock()
	if st.run == runID {
		st.run, st.collector, st.scans, st.assuring = "", nil, nil, false
	}
	st.mu.Unlock()
}

// collectFor makes storeFile collect and scan for the run runID, when the
// audit is on; a new collector gets dayKey, if set (AuditDuring).
func (p *Pipeline) collectFor(runID string, dayKey *[16]byte) {
	if p.Assurance == nil || !p.Assurance.Audit {
		return
	}
	st := &p.assure
	st.mu.Lock()
	if st.run != runID || st.collector == nil {
		if st.run != runID {
			st.assuring = false
		}
		st.run, st.collector = runID, audit.NewCollector()
		if dayKey != nil {
			st.collector.SetDayKey(*dayKey)
		}
		st.scans = map[string]*audit.FileScan{}
	}
	st.mu.Unlock()
}

// auditFile is the audit of one attempt at an output file: each raw
// resource's identifiers are collected, and its de-identified form scanned,
// as the file streams through the de-identifier. With the engine, both read
// the tree it parses (an anonymize.Inspector); another de-identifier's
// resources are read from their JSON text.
type auditFile struct {
	st   *assureState
	run  string
	name string
	c    *audit.Collector
	fs   *audit.FileScan
	g    []*audit.Gatherer // one per worker
	insp []fileInspector
	ctxs []context.Context
}

// fileInspector is one worker's anonymize.Inspector.
type fileInspector struct {
	f      *auditFile
	worker int
	line   int64
	text   []byte // the raw resource
	raw    bool   // the engine showed the raw tree
	out    bool   // and the de-identified one
}

func (i *fileInspector) Raw(root *jsontree.Node) {
	i.f.g[i.worker].Parsed(i.text, root)
	i.raw = true
}

func (i *fileInspector) Output(root *jsontree.Node) {
	i.f.fs.ScanTree(i.worker, i.line, root)
	i.out = true
}

type inspectorKey struct{}

// inspectorFrom returns the inspector a worker's context carries, if any.
func inspectorFrom(ctx context.Context) anonymize.Inspector {
	if i, ok := ctx.Value(inspectorKey{}).(*fileInspector); ok {
		return i
	}
	return nil
}

// auditFile starts the audit of an attempt at the output file name (the
// name of its stored object), when the audit of runID is on.
func (p *Pipeline) auditFile(ctx context.Context, runID, file, object string, workers int) *auditFile {
	if p.Assurance == nil || !p.Assurance.Audit {
		return nil
	}
	st := &p.assure
	st.mu.Lock()
	c := st.collector
	if st.run != runID {
		c = nil
	}
	st.mu.Unlock()
	if c == nil {
		return nil // not collected in this process (ProcessFile from another orchestrator): the audit rescans
	}
	f := &auditFile{st: st, run: runID, name: file, c: c, fs: c.ScanFile(object, workers),
		insp: make([]fileInspector, workers), ctxs: make([]context.Context, workers)}
	f.g = make([]*audit.Gatherer, workers)
	for w := range workers {
		f.g[w] = c.Gatherer()
		f.insp[w] = fileInspector{f: f, worker: w}
		f.ctxs[w] = context.WithValue(ctx, inspectorKey{}, &f.insp[w])
	}
	return f
}

// begin returns the context in which worker de-identifies raw, found at
// line.
func (f *auditFile) begin(worker int, line int64, raw []byte) context.Context {
	i := &f.insp[worker]
	i.line, i.text, i.raw, i.out = line, raw, false, false
	return f.ctxs[worker]
}

// end collects and scans, from their text, what the de-identifier did not
// show as trees.
func (f *auditFile) end(worker int, line int64, raw, out []byte) {
	i := &f.insp[worker]
	i.text = nil
	if !i.raw {
		_ = f.g[worker].Text(raw) // a resource that is not JSON fails in the engine
	}
	if !i.out && len(out) > 0 {
		f.fs.Scan(worker, line, out)
	}
}

// commit keeps the scan of a complete attempt at the file.
func (f *auditFile) commit() {
	for _, g := range f.g {
		g.Flush()
	}
	f.fs.Seal()
	f.st.mu.Lock()
	// A file of another run (a late attempt of a cancelled run, in a
	// durable worker) is not this run's scan.
	if f.st.scans != nil && f.st.run == f.run {
		f.st.scans[f.name] = f.fs
	}
	f.st.mu.Unlock()
}

// assureOrder puts the files of the identifying resource types (Patient,
// Practitioner, ...) first when the audit is on, so that most files are
// scanned after their identifiers were collected and need no second
// reading (see Pipeline.audit).
func (p *Pipeline) assureOrder(files []*state.File) {
	if p.Assurance == nil || !p.Assurance.Audit {
		return
	}
	sort.SliceStable(files, func(i, j int) bool {
		return isIdentifierType(files[i].Type) && !isIdentifierType(files[j].Type)
	})
}

// assureRun runs the checks of p.Assurance on run's stored output, puts the
// results into rep (and warnings for what does not stop the run), and
// returns the reasons to stop the run, if any.
func (p *Pipeline) assureRun(ctx context.Context, run *state.Run, files []*state.File, rep *Report) ([]string, error) {
	as, err := p.assureFiles(ctx, run.ID, files, nil)
	if err != nil || as == nil {
		return nil, err
	}
	return as.apply(rep), nil
}

// assureFiles runs the checks of p.Assurance on the stored output files
// among files, and returns their results (nil when no check is on).
// recollected, if set, names the output files whose input's identifiers
// were collected by reading the input again, not while the file was
// de-identified here (AssureRun).
func (p *Pipeline) assureFiles(ctx context.Context, runID string, files []*state.File, recollected *recollection) (*Assured, error) {
	a := p.Assurance
	if a == nil || (!a.Audit && !a.Risk) {
		return nil, nil
	}
	var outputs []*state.File
	for _, f := range files {
		if f.Kind == bulk.KindOutput && f.OutKey != "" {
			outputs = append(outputs, f)
		}
	}
	as := &Assured{}
	if a.Audit {
		ar, err := p.audit(ctx, runID, outputs, recollected)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		as.Audit = ar
		if ar.Incomplete != "" {
			// The data is whole; only the check is partial: a note in the
			// report and the log, not a warning that makes the run partial.
			p.Logger.Warn("audit incomplete: "+ar.Incomplete, "run", runID)
		}
		if ar.Leaks > 0 {
			msg := fmt.Sprintf("audit: %d identifiers of the input found in the output, in %d resources (see audit.byPath)", ar.Leaks, ar.ResourcesWithLeaks)
			p.Logger.Warn("audit found identifiers in the output", "run", runID, "leaks", ar.Leaks, "resources", ar.ResourcesWithLeaks)
			if a.FailOnLeak {
				as.Gate = append(as.Gate, msg+" (failOn: leak)")
			} else {
				as.Warnings = append(as.Warnings, msg)
			}
		}
	}
	if a.Risk {
		rr, err := p.riskReport(ctx, outputs)
		if err != nil {
			return nil, fmt.Errorf("risk: %w", err)
		}
		as.Risk = rr
		if a.MinK > 0 && rr.Records > 0 && rr.MinK < int64(a.MinK) {
			msg := fmt.Sprintf("risk: the smallest class has %d patients, below minK %d (%d classes, %.1f %% of patients in classes below 5)",
				rr.MinK, a.MinK, rr.Classes, 100*rr.BelowK5)
			if a.RiskFail {
				as.Gate = append(as.Gate, msg+" (action: fail)")
			} else {
				as.Warnings = append(as.Warnings, msg)
			}
		}
	}
	return as, nil
}

// audit completes the audit of run: the scans made while the files were
// written stand for the files whose scan saw every identifier of the run
// (no identifier was collected or changed after it began); the other
// output files are read again from storage and scanned.
func (p *Pipeline) audit(ctx context.Context, runID string, outputs []*state.File, recollected *recollection) (*audit.Report, error) {
	st := &p.assure
	st.mu.Lock()
	c, scans := st.collector, st.scans
	if st.run != runID {
		c, scans = nil, nil
	}
	st.mu.Unlock()
	if c == nil {
		c = audit.NewCollector()
	}
	var reps []audit.Report
	var again []*state.File
	var fss []*audit.FileScan
	var fssFiles []*state.File
	incomplete := 0
	for _, f := range outputs {
		name := fmt.Sprintf("%s.%03d", f.Type, f.Seq)
		fs := scans[name]
		switch {
		case fs != nil:
			fss, fssFiles = append(fss, fs), append(fssFiles, f)
		case f.Resources > 0 && !recollected.has(name):
			incomplete++
			again = append(again, f)
		default:
			again = append(again, f)
		}
	}
	for i, ok := range audit.CompleteScans(c, fss...) {
		if ok {
			reps = append(reps, fss[i].Report())
		} else {
			again = append(again, fssFiles[i])
		}
	}
	workers := max(1, min(p.Workers, len(again)))
	scanners := make([]*audit.Scanner, workers)
	for i := range scanners {
		scanners[i] = c.Scanner()
	}
	err := p.eachOutput(ctx, again, workers, func(w int, f *state.File, r io.Reader) error {
		// Dates the first scan saw de-identification write stay judged
		// as such (a shifted date equal to a birth date is no leak).
		name := fmt.Sprintf("%s.%03d", f.Type, f.Seq)
		if fs := scans[name]; fs != nil || !recollected.has(name) {
			scanners[w].RewrittenDates(fs)
		} else {
			// First scanned by another process (AuditDuring).
			scanners[w].RewrittenDayHashes(recollected.days[name])
		}
		return scanners[w].ScanNDJSON(path.Base(f.OutKey), r, p.Client.MaxLineBytes)
	})
	if err != nil {
		return nil, err
	}
	for _, s := range scanners {
		reps = append(reps, s.Report())
	}
	rep := audit.SummaryOf(c, reps...)
	rep.FilesScannedInStream, rep.FilesScannedAgain = len(outputs)-len(again), len(again)
	if incomplete > 0 {
		if rep.Incomplete != "" {
			rep.Incomplete += "; "
		}
		rep.Incomplete += fmt.Sprintf("%d of %d output files were de-identified before a restart or by another process: their input's identifiers were not collected", incomplete, len(outputs))
	}
	return &rep, nil
}

// snapshotRisk returns the analyzer of a snapshot's patients when the
// risk analysis is on, else nil.
func (p *Pipeline) snapshotRisk() (*risk.Analyzer, error) {
	if p.Assurance == nil || !p.Assurance.Risk {
		return nil, nil
	}
	a, err := risk.New(p.Assurance.QuasiIdentifiers)
	if err != nil {
		return nil, fmt.Errorf("risk: %w", err)
	}
	return a, nil
}

// riskOf reports a, with the check the pipeline applies (a snapshot's
// risk is reported, not gated: the run it follows is already committed).
func (p *Pipeline) riskOf(a *risk.Analyzer) *RiskReport {
	rr := &RiskReport{Report: a.Report(0, nil)}
	if p.Assurance.MinK > 0 {
		rr.RequiredK, rr.Action = p.Assurance.MinK, "warn"
		if p.Assurance.RiskFail {
			rr.Action = "fail"
		}
	}
	return rr
}

// riskReport analyses the run's Patient output.
func (p *Pipeline) riskReport(ctx context.Context, outputs []*state.File) (*RiskReport, error) {
	a, err := risk.New(p.Assurance.QuasiIdentifiers)
	if err != nil {
		return nil, err
	}
	var patients []*state.File
	for _, f := range outputs {
		if f.Type == "Patient" || f.Type == "Resource" {
			patients = append(patients, f)
		}
	}
	err = p.eachOutput(ctx, patients, 1, func(_ int, _ *state.File, r io.Reader) error {
		return a.AddNDJSON(r, p.Client.MaxLineBytes)
	})
	if err != nil {
		return nil, err
	}
	return p.riskOf(a), nil
}

// eachOutput reads stored output files (gzip), workers at a time.
func (p *Pipeline) eachOutput(ctx context.Context, files []*state.File, workers int, fn func(worker int, f *state.File, r io.Reader) error) error {
	return eachFile(ctx, files, workers, func(ctx context.Context, w int, f *state.File) error {
		if err := p.readOutput(ctx, f, func(r io.Reader) error { return fn(w, f, r) }); err != nil {
			return fmt.Errorf("%s: %w", path.Base(f.OutKey), err)
		}
		return nil
	})
}

// eachFile calls fn for each of files, workers at a time (fn's w, from 0,
// names the goroutine: calls with one w are sequential). The first error
// cancels the context of the calls in progress, skips the files not yet
// begun and is returned.
func eachFile(ctx context.Context, files []*state.File, workers int, fn func(ctx context.Context, w int, f *state.File) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan *state.File)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				if errs[w] != nil {
					continue
				}
				if err := fn(ctx, w, f); err != nil {
					errs[w] = err
					cancel()
				}
			}
		}()
	}
	for _, f := range files {
		if ctx.Err() != nil {
			break
		}
		next <- f
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (p *Pipeline) readOutput(ctx context.Context, f *state.File, fn func(io.Reader) error) error {
	rc, err := p.Store.Open(ctx, f.OutKey)
	if err != nil {
		return err
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		return err
	}
	defer zr.Close()
	return fn(zr)
}
