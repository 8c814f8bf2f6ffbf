package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/fhir/typed"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// The steps as values. The functions of this file take and return plain
// values (a run's description, a status URL, the files of a manifest, the
// result of one file) and touch neither the state database nor the lease:
// Run persists their results in SQLite through the steps of steps.go and
// finish.go, and a durable workflow engine keeps them in its own history.
// They need a pipeline that Prepare has readied, and are then safe for
// concurrent use.

// RunInfo is what the steps need to know about a run.
type RunInfo struct {
	// ID names the run and its folder in the destination.
	ID string `json:"id"`
	// Source is the pipeline's name.
	Source    string    `json:"source"`
	StartedAt time.Time `json:"startedAt"`
	// Since is the _since the export was kicked off with.
	Since string `json:"since,omitempty"`
	// Request is the export request, Since included.
	Request bulk.Request `json:"request"`
	// StatusURL is the export's status URL, once kicked off.
	StatusURL string `json:"statusURL,omitempty"`
	// TransactionTime is the manifest's, once complete.
	TransactionTime string `json:"transactionTime,omitempty"`
}

// FileSpec is one file of a completed export's manifest, numbered as it is
// stored.
type FileSpec struct {
	URL string `json:"url"`
	// Kind is bulk.KindOutput, KindDeleted or KindError.
	Kind string `json:"kind"`
	// Type is the manifest's resource type ("Resource" when it gave none).
	Type string `json:"type"`
	// Seq numbers the files of one kind and type from 0.
	Seq int `json:"seq"`
	// Expected is the manifest's count, or -1.
	Expected int64 `json:"expected"`
	// Token is the manifest's requiresAccessToken.
	Token bool `json:"token,omitempty"`
}

// Name is "<kind> file <Type>.<seq>", as errors and warnings name files.
func (f FileSpec) Name() string { return fmt.Sprintf("%s file %s.%03d", f.Kind, f.Type, f.Seq) }

// Export is a completed export: its transaction time and its files.
type Export struct {
	TransactionTime string     `json:"transactionTime"`
	Files           []FileSpec `json:"files"`
}

// FileResult is a processed file.
type FileResult struct {
	File      FileSpec `json:"file"`
	Resources int64    `json:"resources"`
	BytesIn   int64    `json:"bytesIn"`
	BytesOut  int64    `json:"bytesOut"`
	// OutKey is the blob key of the stored result ("" for error files).
	OutKey string `json:"outKey,omitempty"`
	// Warning is a problem that did not fail the file.
	Warning string `json:"warning,omitempty"`
	// Ops is what de-identification did (the JSON of a Counts).
	Ops json.RawMessage `json:"ops,omitempty"`
}

// FileProgress is how far ProcessManifestFile got with a file.
type FileProgress struct {
	// BytesIn counts the bytes read from the server (as sent: compressed
	// when the server compresses).
	BytesIn int64 `json:"bytesIn"`
	// Attempt counts the downloads of the file in this call (a cut
	// connection restarts the file).
	Attempt int `json:"attempt"`
}

// Prepare readies p for the value steps: it checks p and fills its defaults
// (p.State may be nil), and lets PollExport make a single status request.
// Call it once, before p is used concurrently. Run works the same with a
// prepared pipeline.
func Prepare(p *Pipeline) error {
	if err := p.stepDefaults(); err != nil {
		return err
	}
	if _, ok := p.Client.Clock.(*stepClock); !ok {
		base := p.Client.Clock
		if base == nil {
			base = bulk.SystemClock{}
		}
		p.Client.Clock = &stepClock{base: base}
	}
	return nil
}

// PlanRun describes a new run of p that starts at now: its id (the start
// time, or with suffix when not empty) and its export request, with _since
// set to since when p.SinceAuto is set and since is not empty.
func PlanRun(p *Pipeline, now time.Time, since, suffix string) (RunInfo, error) {
	req := p.Request
	if p.SinceAuto && since != "" {
		req.Since = since
	}
	if err := req.Validate(); err != nil {
		return RunInfo{}, fmt.Errorf("export request: %w", err)
	}
	now = now.UTC()
	id := now.Format(runIDLayout) + suffix
	return RunInfo{ID: id, Source: p.Name, StartedAt: now, Since: req.Since, Request: req}, nil
}

// PlanNewRun is PlanRun with an id that no run folder of p's destination
// has: the start time, with "-2", "-3", ... appended when taken.
func PlanNewRun(ctx context.Context, p *Pipeline, now time.Time, since string) (RunInfo, error) {
	for i := 1; ; i++ {
		suffix := ""
		if i > 1 {
			suffix = fmt.Sprintf("-%d", i)
		}
		run, err := PlanRun(p, now, since, suffix)
		if err != nil {
			return RunInfo{}, err
		}
		keys, err := p.Store.List(ctx, run.ID+"/")
		if err != nil {
			return RunInfo{}, err
		}
		if len(keys) == 0 {
			return run, nil
		}
	}
}

// LastCommitted returns the report of the newest committed run in p's
// destination, or nil when it holds none.
func LastCommitted(ctx context.Context, p *Pipeline) (*Report, error) {
	id, err := p.Store.Latest(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	data, err := p.Store.ReadAll(ctx, storage.RunKey(id, "report.json"))
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("the report of run %s: %w", id, err)
	}
	if rep.Run == "" {
		rep.Run = id
	}
	return &rep, nil
}

// KickOffExport kicks off the export of run and returns its status URL.
func KickOffExport(ctx context.Context, p *Pipeline, run RunInfo) (string, error) {
	return p.Client.Kickoff(ctx, &run.Request)
}

// PollResult is the answer to one status request: the completed export,
// or how long to wait before asking again.
type PollResult struct {
	// Export is set when the export is complete.
	Export *Export `json:"export,omitempty"`
	// Wait is the client's wait before the next request: the server's
	// Retry-After, else the client's first polling delay, clamped to its
	// policy's bounds; after a transient failure, its retry backoff.
	Wait time.Duration `json:"wait,omitempty"`
}

// PollExport asks the server once (following the pages of a paged
// manifest) whether run's export is complete. A job the server forgot
// returns bulk.ErrJobGone; an export past the policy's deadline returns
// bulk.ErrDeadline. p must be prepared.
func PollExport(ctx context.Context, p *Pipeline, run RunInfo) (PollResult, error) {
	if _, ok := p.Client.Clock.(*stepClock); !ok {
		return PollResult{}, errors.New("status: the pipeline is not prepared for single polls")
	}
	box := &pollBox{}
	m, err := p.Client.Poll(context.WithValue(ctx, pollOnceKey{}, box), run.StatusURL, run.StartedAt)
	if errors.Is(err, errPollAgain) {
		return PollResult{Wait: box.wait}, nil
	}
	if err != nil {
		return PollResult{}, err
	}
	// As Poll: blob keys are built only from checked type names.
	if err := bulk.CheckManifest(m, ""); err != nil {
		return PollResult{}, err
	}
	return PollResult{Export: ExportOf(m)}, nil
}

// ExportOf lists the files of a manifest, numbered by kind and type in
// manifest order.
func ExportOf(m *bulk.Manifest) *Export {
	e := &Export{TransactionTime: m.TransactionTime, Files: []FileSpec{}}
	seq := map[string]int{}
	add := func(kind string, fs []bulk.File) {
		for _, f := range fs {
			typ := f.Type
			if typ == "" || !typed.IsTypeName(typ) {
				typ = "Resource"
			}
			k := kind + "/" + typ
			exp := int64(-1)
			if f.Count != nil {
				exp = *f.Count
			}
			e.Files = append(e.Files, FileSpec{URL: f.URL, Kind: kind, Type: typ, Seq: seq[k], Expected: exp,
				Token: m.RequiresAccessToken})
			seq[k]++
		}
	}
	add(bulk.KindOutput, m.Output)
	add(bulk.KindDeleted, m.Deleted)
	add(bulk.KindError, m.Error)
	return e
}

// ProcessManifestFile downloads one file of run's export, de-identifies it
// and stores the result under its key, or, for an error file, summarises
// its issues. progress, if not nil, is called as bytes arrive (at most
// every 64 KiB read). The stored object becomes visible only when
// complete; a failed attempt leaves nothing. Errors name the file.
func ProcessManifestFile(ctx context.Context, p *Pipeline, runID string, f FileSpec, progress func(FileProgress)) (FileResult, error) {
	bf := bulk.File{Type: f.Type, URL: f.URL}
	if f.Expected >= 0 {
		n := f.Expected
		bf.Count = &n
	}
	m := &bulk.Manifest{RequiresAccessToken: f.Token}
	var (
		res fileResult
		err error
	)
	if f.Kind == bulk.KindError {
		res, err = readErrorFile(ctx, p, m, bf, progress)
	} else {
		res, err = storeFile(ctx, p, runID, m, f, bf, progress)
	}
	if err != nil {
		return FileResult{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return FileResult{File: f, Resources: res.resources, BytesIn: res.bytesIn, BytesOut: res.bytesOut,
		OutKey: res.key, Warning: res.warning, Ops: res.ops}, nil
}

// FinishRun commits run once every file of its export is processed:
// manifest.json, report.json and the export log, then the _SUCCESS marker
// and the "latest" pointer; then, when p has a state database (where an
// interrupted merge is remembered) and its snapshot is on, merges the
// committed runs into the snapshot ("current") under the pipeline's lease,
// as Run does; and finally releases the export on the server (a failure to
// release is logged). A snapshot that fails is logged and kept in
// rep.SnapshotError: the run stays committed, and the next run's merge
// takes its runs. It returns the report.
func FinishRun(ctx context.Context, p *Pipeline, run RunInfo, files []FileResult) (*Report, error) {
	return FinishAssuredRun(ctx, p, run, files, nil)
}

// FinishAssuredRun is FinishRun with the results of the run's privacy
// checks (AssureRun; nil: none): they go into report.json, and a failed
// check keeps the run unpublished — its report.json is written to the run
// folder, nothing is committed, and the error is an *AssuranceError. With
// a PartLog, the parts of the run's export log are merged into its
// log.ndjson first.
func FinishAssuredRun(ctx context.Context, p *Pipeline, run RunInfo, files []FileResult, as *Assured) (*Report, error) {
	var assure func(*Report) ([]string, error)
	if as != nil {
		assure = func(rep *Report) ([]string, error) { return as.apply(rep), nil }
	}
	if err := p.mergeLogParts(ctx, run.ID); err != nil {
		return nil, err
	}
	rep, err := commitRun(ctx, p, run, p.Client.KickoffURL(&run.Request), files, assure, nil)
	var ae *AssuranceError
	if err == nil || errors.As(err, &ae) {
		p.removeRunScratch(ctx, run.ID)
		// The run is over: this process's collected identifiers of it
		// can go (other processes let theirs go at their next run).
		p.dropAudit(run.ID)
	}
	if err != nil {
		return nil, err
	}
	if p.State != nil && !p.NoSnapshot {
		snap, err := RebuildSnapshot(ctx, p, SnapshotOptions{})
		if err != nil {
			p.Logger.Error("the snapshot was not updated", "run", rep.Run, "err", err)
			rep.SnapshotError = err.Error()
		} else {
			rep.Snapshot = snap
		}
	}
	ReleaseExport(ctx, p, run)
	return rep, nil
}

// IsIdentifierFile reports whether f is an output file that the scrub
// method's first pass reads (a type of anonymize.IdentifierTypes).
func IsIdentifierFile(f FileSpec) bool { return f.Kind == bulk.KindOutput && isIdentifierType(f.Type) }

// CollectRunIdentifiers is CollectIdentifiers for an orchestrator that
// keeps the run as values: it reads the identifier files among files
// (IsIdentifierFile; their URLs are needed) and, for an incremental run, a
// full export of the identifier types, and gives the identifiers to p's
// de-identifier for run. It does nothing when p does not scrub (Scrubs).
// Every process that calls ProcessManifestFile for a run of such a
// pipeline calls it first, once.
func CollectRunIdentifiers(ctx context.Context, p *Pipeline, run RunInfo, files []FileSpec) error {
	sc, ok := p.Deidentifier.(scrubCollector)
	if !ok {
		return nil
	}
	col := sc.newCollector()
	if col == nil {
		return nil
	}
	var idFiles []identifierFile
	for _, f := range files {
		if IsIdentifierFile(f) {
			idFiles = append(idFiles, identifierFile{m: &bulk.Manifest{RequiresAccessToken: f.Token},
				f: bulk.File{Type: f.Type, URL: f.URL}, name: fmt.Sprintf("%s.%03d", f.Type, f.Seq)})
		}
	}
	st := &state.Run{ID: run.ID, Source: run.Source, Since: run.Since}
	if run.Since != "" {
		req, err := json.Marshal(run.Request)
		if err != nil {
			return err
		}
		st.Request = req
	}
	return collectScrubInput(ctx, p, sc, col, st, idFiles)
}

// ReleaseExport tells the server that run's export files may be removed;
// a failure is only logged.
func ReleaseExport(ctx context.Context, p *Pipeline, run RunInfo) {
	if run.StatusURL == "" {
		return
	}
	if err := p.Client.Delete(ctx, run.StatusURL); err != nil {
		p.Logger.Warn("could not release the export on the server", "run", run.ID, "err", err)
	}
}

// Classify says whether a step's error may go away on a later attempt
// (Retryable) or needs a change (Fatal), as Run decides.
func Classify(err error) Outcome { return classify(err) }

// staleTemp matches the temporary files that a file:// destination (gocloud
// fileblob) leaves beside a key when the writing process is killed:
// "<key>.<hex nanoseconds>.tmp". No key of the run layout looks like that.
var staleTemp = regexp.MustCompile(`\.[0-9a-f]{8,}\.tmp$`)

// removeStale deletes from the run's folder the temporary files of writers
// that died (a killed process or worker), before the run is committed.
// Object stores keep no visible trace of an unfinished upload.
func removeStale(ctx context.Context, p *Pipeline, runID string) error {
	keys, err := p.Store.List(ctx, runID+"/")
	if err != nil {
		return err
	}
	for _, k := range keys {
		if staleTemp.MatchString(k) {
			p.Logger.Info("removing the temporary file of an interrupted write", "run", runID, "key", k)
			if err := p.Store.Delete(ctx, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// runInfo is the value of a stored run.
func runInfo(run *state.Run) (RunInfo, error) {
	req, err := runRequest(run)
	if err != nil {
		return RunInfo{}, err
	}
	return RunInfo{ID: run.ID, Source: run.Source, StartedAt: run.StartedAt, Since: run.Since, Request: *req,
		StatusURL: run.StatusURL, TransactionTime: run.TransactionTime}, nil
}

// fileSpec is the value of a stored file; token is the manifest's
// requiresAccessToken.
func fileSpec(f *state.File, token bool) FileSpec {
	return FileSpec{URL: f.URL, Kind: f.Kind, Type: f.Type, Seq: f.Seq, Expected: f.Expected, Token: token}
}

// countingReader counts the bytes read and reports them.
type countingReader struct {
	r        io.Reader
	n, last  int64
	attempt  int
	progress func(FileProgress)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.n-c.last >= 64<<10 {
		c.last = c.n
		c.progress(FileProgress{BytesIn: c.n, Attempt: c.attempt})
	}
	return n, err
}

// watch wraps raw to report progress, when progress is set.
func watch(raw io.Reader, attempt *int, progress func(FileProgress)) io.Reader {
	*attempt++
	if progress == nil {
		return raw
	}
	return &countingReader{r: raw, attempt: *attempt, progress: progress}
}

// stepClock is the client clock of a prepared pipeline: the base clock,
// except that a sleep of PollExport's single poll ends the poll instead.
type stepClock struct{ base bulk.Clock }

type pollOnceKey struct{}

type pollBox struct{ wait time.Duration }

var errPollAgain = errors.New("poll again later")

func (c *stepClock) Now() time.Time { return c.base.Now() }

func (c *stepClock) Sleep(ctx context.Context, d time.Duration) error {
	if box, ok := ctx.Value(pollOnceKey{}).(*pollBox); ok {
		box.wait = d
		return errPollAgain
	}
	return c.base.Sleep(ctx, d)
}
