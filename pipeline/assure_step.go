package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"fhirdeid/audit"
	"fhirdeid/bulk"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// The privacy checks as value steps, for an orchestrator whose files are
// de-identified by several processes (package durable): each process
// audits the files it de-identifies in stream (AuditDuring), and one of
// them completes the run's checks (AssureRun) before the run is committed
// with their results (FinishAssuredRun).

// Assured is the outcome of a run's privacy checks (Pipeline.Assurance):
// report.json's audit and risk sections, the warnings that make the run
// partial and the reasons that keep it unpublished. It holds counts, paths
// and file positions, never a value.
type Assured struct {
	Audit *audit.Report `json:"audit,omitempty"`
	Risk  *RiskReport   `json:"risk,omitempty"`
	// Warnings make the run partial.
	Warnings []string `json:"warnings,omitempty"`
	// Gate lists the failed checks that keep the run unpublished.
	Gate []string `json:"gate,omitempty"`
}

// apply puts the checks' results into rep and returns the reasons to stop
// the run, if any.
func (as *Assured) apply(rep *Report) []string {
	if as.Audit != nil {
		rep.Audit = as.Audit
	}
	if as.Risk != nil {
		rep.Risk = as.Risk
	}
	rep.Warnings = append(rep.Warnings, as.Warnings...)
	return as.Gate
}

// AuditDuring makes this process audit the files of run that it
// de-identifies (ProcessManifestFile) when p's audit is on: the identifiers
// of their input are collected, as keyed hashes in memory only, and their
// output scanned in the same pass. Call it before each file; it keeps what
// was collected for run so far, and drops what was collected for another
// run.
func AuditDuring(p *Pipeline, run string) {
	key := runDayKey(p.Name, run)
	p.collectFor(run, &key)
}

// runDayKey is the day key (audit.Collector.SetDayKey) of the processes
// that audit run: the same in all of them, so that a file's rewritten days
// (StoreRewrittenDays) can be read by another. The day hashes are of the
// de-identified output's dates, which the output holds anyway: the key
// need not be secret. The identifiers' key stays random per process.
func runDayKey(pipeline, run string) [16]byte {
	sum := sha256.Sum256([]byte("fhirdeid audit days\x00" + pipeline + "\x00" + run))
	var k [16]byte
	copy(k[:], sum[:16])
	return k
}

// auditDir begins the names, in a run's folder, of the days that each
// output file's first scan saw only in rewritten date values
// (StoreRewrittenDays); they are deleted when the run is committed.
const auditDir = "_audit-"

// StoreRewrittenDays stores, beside the run, what the audit of the output
// file of f in this process (AuditDuring) needs to be read again by
// another process (AssureRun): the days it saw only in date values that
// de-identification rewrote (a shifted date equal to a birth date is no
// leak alone), as hashes under the run's day key. It does nothing when
// the file was not audited here or has no such day.
func StoreRewrittenDays(ctx context.Context, p *Pipeline, run string, f FileResult) error {
	if f.File.Kind != bulk.KindOutput || f.OutKey == "" {
		return nil
	}
	name := fmt.Sprintf("%s.%03d", f.File.Type, f.File.Seq)
	st := &p.assure
	st.mu.Lock()
	var fs *audit.FileScan
	if st.run == run {
		fs = st.scans[name]
	}
	st.mu.Unlock()
	if fs == nil {
		return nil
	}
	h := fs.RewrittenDayHashes()
	if len(h) == 0 {
		return nil
	}
	b := make([]byte, 8*len(h))
	for i, x := range h {
		binary.LittleEndian.PutUint64(b[8*i:], x)
	}
	if err := p.Store.WriteAll(ctx, storage.RunKey(run, auditDir+name+".days"), "application/octet-stream", b); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// recollection is what AssureRun gathered about the output files that
// another process de-identified: their names, and the rewritten days of
// their first scans.
type recollection struct {
	files map[string]bool
	days  map[string][]uint64
}

func (r *recollection) has(name string) bool { return r != nil && r.files[name] }

// readRewrittenDays reads the days stored for the output file name of run
// by StoreRewrittenDays, nil when there are none.
func (p *Pipeline) readRewrittenDays(ctx context.Context, run, name string) ([]uint64, error) {
	b, err := p.Store.ReadAll(ctx, storage.RunKey(run, auditDir+name+".days"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("%s: %d bytes, not a list of hashes", auditDir+name+".days", len(b))
	}
	h := make([]uint64, len(b)/8)
	for i := range h {
		h[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return h, nil
}

// AssureRun runs the privacy checks of p.Assurance on a run whose files
// were processed by any number of processes, once every file is stored,
// and returns their results for FinishAssuredRun (nil when no check is
// on). The audit needs every identifier of the run's input in one place,
// and a collected identifier never leaves its process (its hash key is
// random): the input files that this process did not de-identify are
// downloaded again (their URLs are needed; the export must not have been
// released) and their identifiers collected; then every output file whose
// scan in this process still stands is taken as it is, and the others are
// read back from storage and scanned (audit.filesScannedAgain). The risk
// analysis reads the run's Patient output, as Run does.
func AssureRun(ctx context.Context, p *Pipeline, run RunInfo, files []FileResult) (*Assured, error) {
	a := p.Assurance
	if a == nil || (!a.Audit && !a.Risk) {
		return nil, nil
	}
	sfs := make([]*state.File, 0, len(files))
	for _, r := range files {
		sfs = append(sfs, &state.File{URL: r.File.URL, Kind: r.File.Kind, Type: r.File.Type, Seq: r.File.Seq,
			Expected: r.File.Expected, Status: state.FileDone, Resources: r.Resources, OutKey: r.OutKey})
	}
	var recollected *recollection
	if a.Audit {
		p.beginAssure(run.ID)
		var err error
		if recollected, err = p.recollect(ctx, run.ID, files); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	return p.assureFiles(ctx, run.ID, sfs, recollected)
}

// beginAssure readies this process's audit of run for AssureRun. An
// earlier attempt of AssureRun in this process may have collected some
// input again before it failed: collecting it once more would count its
// resources twice and give its identifiers a second person each (a weak
// one could then pass for common), so the audit starts over, with nothing
// of run in memory — every input is collected again and every output
// scanned again, as for a file de-identified by another process.
func (p *Pipeline) beginAssure(run string) {
	st := &p.assure
	st.mu.Lock()
	if st.run == run && st.assuring {
		st.collector, st.scans = nil, map[string]*audit.FileScan{}
	}
	st.mu.Unlock()
	AuditDuring(p, run)
	st.mu.Lock()
	st.assuring = st.run == run
	st.mu.Unlock()
}

// recollect collects the identifiers of the input of the output files
// among files that this process did not de-identify for run, reading them
// from the server again, p.Workers files at a time; it returns their names
// ("Type.seq").
func (p *Pipeline) recollect(ctx context.Context, runID string, files []FileResult) (*recollection, error) {
	st := &p.assure
	st.mu.Lock()
	c := st.collector
	if st.run != runID {
		c = nil
	}
	var todo []FileResult
	for _, r := range files {
		name := fmt.Sprintf("%s.%03d", r.File.Type, r.File.Seq)
		if r.File.Kind == bulk.KindOutput && r.OutKey != "" && st.scans[name] == nil {
			todo = append(todo, r)
		}
	}
	st.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("no audit in progress for run %s", runID)
	}
	done := &recollection{files: make(map[string]bool, len(todo)), days: map[string][]uint64{}}
	if len(todo) == 0 {
		return done, nil
	}
	// Identifying types first, as Run processes them: most identifiers are
	// then known before the others are read (no effect on what is found).
	var ordered []*state.File
	for _, r := range todo {
		ordered = append(ordered, &state.File{URL: r.File.URL, Type: r.File.Type, Seq: r.File.Seq})
	}
	p.assureOrder(ordered)
	byName := make(map[string]FileResult, len(todo))
	for _, r := range todo {
		byName[fmt.Sprintf("%s.%03d", r.File.Type, r.File.Seq)] = r
		if r.File.URL == "" {
			return nil, fmt.Errorf("%s: no URL to read its input again", r.File.Name())
		}
	}
	workers := max(1, min(p.Workers, len(ordered)))
	var daysMu sync.Mutex
	err := eachFile(ctx, ordered, workers, func(ctx context.Context, _ int, f *state.File) error {
		name := fmt.Sprintf("%s.%03d", f.Type, f.Seq)
		if err := p.collectInput(ctx, c, name, byName[name].File); err != nil {
			if ctx.Err() == nil && Classify(err) == Fatal {
				// Gone from the server (released, expired): the audit
				// says it is incomplete, as after a restart.
				p.Logger.Warn("audit: the input of a file could not be read again: its identifiers are not collected",
					"run", runID, "file", name, "err", err)
				return nil
			}
			return fmt.Errorf("%s: read the input again: %w", byName[name].File.Name(), err)
		}
		h, err := p.readRewrittenDays(ctx, runID, name)
		if err != nil {
			return err
		}
		daysMu.Lock()
		done.days[name] = h
		daysMu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name := range done.days {
		done.files[name] = true
	}
	return done, nil
}

// collectInput downloads one input file of the export and collects the
// identifiers of its resources into c.
func (p *Pipeline) collectInput(ctx context.Context, c *audit.Collector, name string, f FileSpec) error {
	m := &bulk.Manifest{RequiresAccessToken: f.Token}
	bf := bulk.File{Type: f.Type, URL: f.URL}
	return p.Client.Fetch(ctx, m, bf, func(raw io.Reader, encoding string) error {
		r, closeDec, err := p.Client.Decode(raw, encoding, name)
		if err != nil {
			return err
		}
		defer closeDec()
		return c.CollectNDJSON(r, p.Client.MaxLineBytes)
	})
}
