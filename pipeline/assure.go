package pipeline

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/audit"
	"fhirdeid/bulk"
	"fhirdeid/risk"
	"fhirdeid/state"
)

// Assurance is the privacy checks of every run: a leak audit of the output
// against the direct identifiers of the raw input, and a re-identification
// risk analysis of the run's patients. Both go into report.json ("audit",
// "risk"); either can stop a run before it is published.
type Assurance struct {
	// Audit collects the identifiers of every raw resource (as keyed
	// hashes, in memory) while it is de-identified, and scans the stored
	// output for them before the run commits.
	Audit bool
	// FailOnLeak fails a run with any leak: report.json is written to the
	// run folder, but neither _SUCCESS nor "latest" is, and the cursor does
	// not move. Without it a leak makes the run partial.
	FailOnLeak bool
	// Risk analyses the run's Patient output.
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

// assureState is the identifiers collected for the run in progress.
type assureState struct {
	mu        sync.Mutex
	run       string
	collector *audit.Collector
	files     sync.Map // "Type.seq" of the files collected from
}

// collectingDeidentifier collects the identifiers of every raw resource
// before de-identifying it.
type collectingDeidentifier struct {
	Deidentifier
	st *assureState
	c  *audit.Collector
}

func (d *collectingDeidentifier) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	_ = d.c.Collect(res) // a resource that is not JSON fails in the engine
	if _, ok := d.st.files.Load(file); !ok {
		d.st.files.Store(file, true)
	}
	return d.Deidentifier.Resource(ctx, file, line, res, dst)
}

// collectDuring makes p's de-identifier collect identifiers for run, when
// the audit is on, and returns the function that restores it. A run resumed
// in the same process keeps what was collected before.
func (p *Pipeline) collectDuring(run *state.Run) func() {
	if p.Assurance == nil || !p.Assurance.Audit {
		return func() {}
	}
	st := &p.assure
	st.mu.Lock()
	if st.run != run.ID || st.collector == nil {
		st.run, st.collector = run.ID, audit.NewCollector()
		st.files = sync.Map{}
	}
	c := st.collector
	st.mu.Unlock()
	inner := p.Deidentifier
	p.Deidentifier = &collectingDeidentifier{Deidentifier: inner, st: st, c: c}
	return func() { p.Deidentifier = inner }
}

// assureRun runs the checks of p.Assurance on run's stored output, puts the
// results into rep (and warnings for what does not stop the run), and
// returns the reasons to stop the run, if any.
func (p *Pipeline) assureRun(ctx context.Context, run *state.Run, files []*state.File, rep *Report) ([]string, error) {
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
	var gate []string
	if a.Audit {
		ar, err := p.audit(ctx, run, outputs)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		rep.Audit = ar
		if ar.Incomplete != "" {
			// The data is whole; only the check is partial: a note in the
			// report and the log, not a warning that makes the run partial.
			p.Logger.Warn("audit incomplete: "+ar.Incomplete, "run", run.ID)
		}
		if ar.Leaks > 0 {
			msg := fmt.Sprintf("audit: %d identifiers of the input found in the output, in %d resources (see audit.byPath)", ar.Leaks, ar.ResourcesWithLeaks)
			p.Logger.Warn("audit found identifiers in the output", "run", run.ID, "leaks", ar.Leaks, "resources", ar.ResourcesWithLeaks)
			if a.FailOnLeak {
				gate = append(gate, msg+" (failOn: leak)")
			} else {
				rep.Warnings = append(rep.Warnings, msg)
			}
		}
	}
	if a.Risk {
		rr, err := p.riskReport(ctx, outputs)
		if err != nil {
			return nil, fmt.Errorf("risk: %w", err)
		}
		rep.Risk = rr
		if a.MinK > 0 && rr.Records > 0 && rr.MinK < int64(a.MinK) {
			msg := fmt.Sprintf("risk: the smallest class has %d patients, below minK %d (%d classes, %.1f %% of patients in classes below 5)",
				rr.MinK, a.MinK, rr.Classes, 100*rr.BelowK5)
			if a.RiskFail {
				gate = append(gate, msg+" (action: fail)")
			} else {
				rep.Warnings = append(rep.Warnings, msg)
			}
		}
	}
	return gate, nil
}

// audit scans the stored output files for the identifiers collected while
// they were de-identified.
func (p *Pipeline) audit(ctx context.Context, run *state.Run, outputs []*state.File) (*audit.Report, error) {
	st := &p.assure
	st.mu.Lock()
	c := st.collector
	if st.run != run.ID {
		c = nil
	}
	st.mu.Unlock()
	incomplete := 0
	if c == nil {
		c = audit.NewCollector()
	}
	for _, f := range outputs {
		if _, ok := st.files.Load(fmt.Sprintf("%s.%03d", f.Type, f.Seq)); !ok && f.Resources > 0 {
			incomplete++
		}
	}
	workers := max(1, min(p.Workers, len(outputs)))
	scanners := make([]*audit.Scanner, workers)
	for i := range scanners {
		scanners[i] = c.Scanner()
	}
	err := p.eachOutput(ctx, outputs, workers, func(w int, f *state.File, r io.Reader) error {
		return scanners[w].ScanNDJSON(path.Base(f.OutKey), r, p.Client.MaxLineBytes)
	})
	if err != nil {
		return nil, err
	}
	rep := audit.Summary(c, scanners...)
	if incomplete > 0 {
		if rep.Incomplete != "" {
			rep.Incomplete += "; "
		}
		rep.Incomplete += fmt.Sprintf("%d of %d output files were de-identified before a restart or by another process: their input's identifiers were not collected", incomplete, len(outputs))
	}
	return &rep, nil
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
	rr := &RiskReport{Report: a.Report(0, nil)}
	if p.Assurance.MinK > 0 {
		rr.RequiredK, rr.Action = p.Assurance.MinK, "warn"
		if p.Assurance.RiskFail {
			rr.Action = "fail"
		}
	}
	return rr, nil
}

// eachOutput reads stored output files (gzip), workers at a time.
func (p *Pipeline) eachOutput(ctx context.Context, files []*state.File, workers int, fn func(worker int, f *state.File, r io.Reader) error) error {
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
				if err := p.readOutput(ctx, f, func(r io.Reader) error { return fn(w, f, r) }); err != nil {
					errs[w] = fmt.Errorf("%s: %w", path.Base(f.OutKey), err)
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
