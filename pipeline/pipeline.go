// Package pipeline runs fhirdeid's job: export a FHIR server's data with
// Bulk Data $export, de-identify every resource, and land the result in blob
// storage as a complete, self-describing run, resumable after a crash and
// incremental from one run to the next.
//
// Each step is an exported function (Start, KickOff, Poll, ProcessFile,
// Finish) that reads and writes the state database, so that an orchestrator —
// Run in this process, or a durable workflow engine — can call the steps and
// pass only run ids, blob keys and counts between them, never NDJSON bodies.
//
// After a run commits, Snapshot merges it into the destination's merged
// snapshot ("current"): the latest version of every resource, deletions
// applied, with referential-integrity counts.
//
// The raw export never reaches the destination: files are streamed from the
// server through the de-identifier into storage, and only de-identified bytes
// are written.
package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// Deidentifier de-identifies resources. It must be safe for concurrent use.
type Deidentifier interface {
	// Resource appends the de-identified form of one resource (a compact
	// JSON document) to dst, and says what it did. Returning dst unchanged
	// drops the resource. Errors must not quote values from the resource.
	Resource(ctx context.Context, file string, line int64, resource, dst []byte) ([]byte, anonymize.Stats, error)
	// ID returns the de-identified logical id of a resource of the given
	// type, as Resource would write it, so that a deletion names the id the
	// de-identified copy has. It returns "" when the configuration removes
	// ids, and the deletion is then dropped.
	ID(ctx context.Context, resourceType, id string) (string, error)
}

// DefaultConcurrency is the number of files a run processes at once
// unless its pipeline says otherwise.
const DefaultConcurrency = 2

// Pipeline is one configured source → destination job.
type Pipeline struct {
	// Name identifies the source in the state database: its runs, its
	// incremental cursor and its lease.
	Name string
	// Client talks to the FHIR server.
	Client *bulk.Client
	// Request is the export to kick off. Its Since is overridden when
	// SinceAuto is set and a previous run succeeded.
	Request bulk.Request
	// SinceAuto exports only what changed since the last successful run's
	// transactionTime.
	SinceAuto bool
	// Deidentifier de-identifies resources.
	Deidentifier Deidentifier
	// Store is the destination.
	Store *storage.Store
	// State is the state database.
	State *state.DB
	// LogDir holds the export log of each run until it is uploaded; it must
	// survive a crash (put it beside the state database).
	LogDir string
	// Concurrency is the number of files processed at once (default
	// DefaultConcurrency).
	Concurrency int
	// Workers is the number of de-identification goroutines per file
	// (default GOMAXPROCS).
	Workers int
	// GzipLevel is the compression level of output files, 1–9 (default 2:
	// as small as level 3 on de-identified NDJSON, with less CPU).
	GzipLevel int
	// AllowCountMismatch accepts a file whose line count differs from the
	// manifest's count (the run is then partial instead of failed).
	AllowCountMismatch bool
	// OnInvalid is OnInvalidFail ("" too) or OnInvalidSkip: what happens
	// to a line that cannot be parsed or typed as a resource.
	OnInvalid string
	// LeaseTTL is how long the source lease lives without renewal
	// (default 1 minute).
	LeaseTTL time.Duration
	// Owner names this process in the lease (default host:pid:random).
	Owner string
	// ConfigHash and KeyFingerprints go into the run report.
	ConfigHash      string
	KeyFingerprints map[string]string
	// NewKeys lets a run use keys whose fingerprints differ from those of
	// the source's last successful run (a new lake); without it such a run
	// stops before writing anything (CheckKeys).
	NewKeys bool
	// newLake is set by CheckKeys when NewKeys let different keys through.
	newLake bool
	// Logger receives operational messages (never resource values).
	Logger *slog.Logger
	// Tables, if set, computes research tables from each output file's
	// de-identified resources as they are written (see Tables).
	Tables Tables
	// Progress, if set, receives counters while files are processed.
	Progress func(Progress)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Assurance, if set, audits every run's output for identifiers of its
	// input and measures its patients' re-identification risk (assure.go).
	Assurance *Assurance
	assure    assureState
	// parts, if set, keeps the export events for the parts of a run's
	// log (InstallPartLog).
	parts *PartLog
	// NoSnapshot skips the merged snapshot after a run (see Snapshot).
	NoSnapshot bool
	// SnapshotMemory bounds the sort buffers of the snapshot merge, in
	// bytes (default 64 MiB); SpillDir holds its temporary files (default
	// the system's temporary folder).
	SnapshotMemory int
	SpillDir       string

	progMu sync.Mutex
	prog   Progress
}

// Progress is a snapshot of a run's progress.
type Progress struct {
	Run          string
	FilesDone    int
	FilesTotal   int
	Resources    int64
	BytesIn      int64
	BytesOut     int64
	ExportStatus string // the server's X-Progress while polling
}

func (p *Pipeline) defaults() error {
	if err := p.stepDefaults(); err != nil {
		return err
	}
	if p.State == nil {
		return errors.New("pipeline: no state database")
	}
	return nil
}

// stepDefaults checks and completes what the steps need; the value steps
// (values.go) do without a state database.
func (p *Pipeline) stepDefaults() error {
	switch {
	case p.Name == "":
		return errors.New("pipeline: no name")
	case p.Client == nil:
		return errors.New("pipeline: no FHIR client")
	case p.Deidentifier == nil:
		return errors.New("pipeline: no de-identifier")
	case p.Store == nil:
		return errors.New("pipeline: no destination")
	}
	if p.Concurrency <= 0 {
		p.Concurrency = DefaultConcurrency
	}
	if p.Workers <= 0 {
		p.Workers = runtime.GOMAXPROCS(0)
	}
	if p.GzipLevel == 0 {
		p.GzipLevel = 2
	}
	if p.LeaseTTL <= 0 {
		p.LeaseTTL = time.Minute
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return nil
}

// Outcome classifies how a run ended; the command maps it to an exit code.
type Outcome int

const (
	// Succeeded: every file was processed and the run committed.
	Succeeded Outcome = iota
	// Partial: the run committed, but some resources or files were dropped
	// or the server reported errors.
	Partial
	// Retryable: the run stopped on a condition that a later attempt may
	// not meet (network, server busy, lease held); its state is kept and
	// the next run resumes it.
	Retryable
	// Fatal: the run cannot succeed without a change (configuration,
	// authorisation, invalid data with processingErrors raise).
	Fatal
)

func (o Outcome) String() string {
	switch o {
	case Succeeded:
		return "succeeded"
	case Partial:
		return "partial"
	case Retryable:
		return "retryable"
	}
	return "fatal"
}

// Error is a failed run: the step, the run, and whether a retry may help.
type Error struct {
	Step    string
	Run     string
	Outcome Outcome
	Err     error
}

func (e *Error) Error() string {
	msg := e.Err.Error()
	if !strings.HasPrefix(msg, e.Step+":") {
		// The bulk client's errors already name their step.
		msg = e.Step + ": " + msg
	}
	if e.Run == "" {
		return msg
	}
	return "run " + e.Run + ": " + msg
}

func (e *Error) Unwrap() error { return e.Err }

// classify decides whether err is worth retrying later.
func classify(err error) Outcome {
	var he *bulk.HTTPError
	var le *state.LockedError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Retryable
	case errors.As(err, &le):
		return Retryable
	case errors.As(err, &he):
		if he.Transient || he.StatusCode == 429 || (he.StatusCode >= 500 && !he.Permanent) {
			return Retryable
		}
		return Fatal
	case errors.Is(err, bulk.ErrDeadline), errors.Is(err, bulk.ErrJobGone):
		return Retryable
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) {
		return Retryable
	}
	return Fatal
}
