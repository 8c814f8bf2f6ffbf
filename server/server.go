// Package server is fhirdeid's long-running service: it runs each configured
// pipeline on its schedule, never two runs of one pipeline at once, and
// serves a JSON API, an HTML dashboard, Prometheus metrics and health checks
// over HTTP.
//
// # Scheduling
//
// Each Job has a goroutine that sleeps until the job's next scheduled time (or
// a manual trigger), then runs the pipeline to the end in that goroutine, so
// runs of one job never overlap; a scheduled time that passes while a run is
// in progress is skipped. The pipeline's lease in the state database keeps
// other processes off the same source. At start-up a job resumes its
// unfinished run, if it has one, and otherwise runs once if RunMissed is set
// and a scheduled time passed since its last run started. A run that stops on
// a retryable error is attempted again after Options.RetryDelay, or at the
// next scheduled time if that comes first.
//
// Stopping the server (cancelling the context given to Run) cancels the
// running runs' contexts: the pipeline checkpoints and leaves them
// resumable, and the next start resumes them.
//
// A job with a Remote (a workflow engine such as Temporal, see Remote) is
// not run here: the engine schedules and runs it, and the server lists its
// runs beside the state database's (with the engine's workflow id, run id,
// status and UI link), sends "run now" and cancellations to the engine,
// and reads the engine every Options.RemotePoll for the metrics.
//
// # HTTP
//
//	GET  /api/pipelines                 pipelines: schedule, next run, last run
//	GET  /api/runs?pipeline=&limit=&offset=  runs, newest first
//	GET  /api/runs/{id}                 one run with its report
//	GET  /api/runs/{id}/log             the run's export log (NDJSON)
//	POST /api/pipelines/{name}/run      start a run now (409 if one is running)
//	POST /api/runs/{id}/cancel          cancel a run
//	GET  /metrics                       Prometheus metrics
//	GET  /healthz, /readyz              liveness, readiness (state database)
//	GET  /                              the dashboard
//
// # Metrics
//
// /metrics serves, from a registry of the server's own (plus the Go and
// process collectors):
//
//	fhirdeid_runs_total{pipeline,outcome}            attempts by outcome
//	fhirdeid_run_duration_seconds{pipeline,outcome}  histogram of attempt durations
//	fhirdeid_resources_processed_total{pipeline}     resources de-identified and stored
//	fhirdeid_bytes_read_total{pipeline}              NDJSON bytes read from the server
//	fhirdeid_bytes_written_total{pipeline}           bytes written to the destination
//	fhirdeid_export_wait_seconds{pipeline}           histogram of kick-off to manifest
//	fhirdeid_retries_total{pipeline,cause}           retried requests (kickoff, status_error, download_error)
//	fhirdeid_last_success_timestamp_seconds{pipeline}
//	fhirdeid_next_run_timestamp_seconds{pipeline}
//	fhirdeid_run_in_progress{pipeline}
//
// Outcomes are succeeded, partial, retryable (stopped; the next attempt
// resumes the run), failed and cancelled.
//
// # Security
//
// When a token is configured, every path but /healthz, /readyz and the
// dashboard's login and static assets requires it, as a bearer token or as
// the session cookie the login form sets. Listen refuses a non-loopback
// address without a token; without one, only requests whose Host names the
// loopback interface are served (against DNS rebinding). A state-changing
// request must be same-origin (its Origin, or Referer, names the server), and
// the dashboard's forms carry a CSRF field derived from the token.
//
// Nothing the server answers, logs or labels holds a resource value or a
// secret: runs' errors and warnings are written without values by the
// pipeline, and metric labels are pipeline names and outcomes.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// Job is a pipeline that the server runs on a schedule.
type Job struct {
	// Name is the pipeline's name, the source name in the state database.
	Name string
	// Schedule tells when the pipeline runs.
	Schedule Schedule
	// RunMissed runs the pipeline once at start-up when a scheduled time
	// passed since its last run started (the service was down).
	RunMissed bool
	// Open builds a fresh pipeline for one run; closeFn releases what it
	// opened (its destination, for example). The pipeline's State must be
	// the server's state database.
	Open func(ctx context.Context) (p *pipeline.Pipeline, closeFn func() error, err error)
	// Store is the pipeline's destination, from which the log of a
	// committed run is read; nil serves only local logs.
	Store *storage.Store
	// LogDir is the pipeline's LogDir, where the log of an unfinished run
	// is kept.
	LogDir string
	// Remote, if set, runs the pipeline instead of this process (a
	// workflow engine): Schedule is only shown, Open is not called, and
	// the job's runs are read from Remote (see remoteLoop).
	Remote Remote
}

// Options configure a Server.
type Options struct {
	// State is the state database shared by every job.
	State *state.DB
	// Jobs are the pipelines to run; their names must be unique.
	Jobs []*Job
	// Token, if not empty, is required by every request but the health
	// checks, the login page and static assets.
	Token string
	// Clock is the time source of the scheduler (default: the system clock).
	Clock Clock
	// Logger receives operational messages (default: discarded).
	Logger *slog.Logger
	// RetryDelay is the wait before a run that stopped on a retryable
	// error is attempted again (default 5 minutes); the next scheduled
	// time wins if it comes first.
	RetryDelay time.Duration
	// PageSize is the number of runs per dashboard page (default 25).
	PageSize int
	// DisableStartup skips the start-up resume and missed-run checks
	// (tests).
	DisableStartup bool
	// RemotePoll is how often the runs of jobs with a Remote are read for
	// the metrics and the next run (default 15 s).
	RemotePoll time.Duration
}

// Errors returned by Trigger and Cancel.
var (
	// ErrUnknownPipeline: no job has that name.
	ErrUnknownPipeline = errors.New("unknown pipeline")
	// ErrRunning: the pipeline has a run in progress (or one about to
	// start).
	ErrRunning = errors.New("a run of the pipeline is in progress")
	// ErrRunOver: the run has already ended.
	ErrRunOver = errors.New("the run is over")
	// ErrRunElsewhere: another process holds the pipeline's lease.
	ErrRunElsewhere = errors.New("another process is running the pipeline")
)

// errOperatorCancel is the cause of a run context cancelled by an operator.
var errOperatorCancel = errors.New("cancelled by an operator")

// Server runs jobs and serves the HTTP interface. Create one with New.
type Server struct {
	db         *state.DB
	jobs       []*jobState
	byName     map[string]*jobState
	token      string
	clock      Clock
	log        *slog.Logger
	retry      time.Duration
	pageSize   int
	startup    bool
	remotePoll time.Duration
	metrics    *metrics
	handler    http.Handler
	started    time.Time
	owner      string
}

// jobState is a job and what the scheduler knows of it.
type jobState struct {
	job     *Job
	trigger chan struct{}

	mu       sync.Mutex
	running  bool
	pending  bool // triggered, not started yet
	cancel   context.CancelCauseFunc
	cancelID string // the run an operator cancelled
	runID    string
	attempt  time.Time // start of the current attempt
	progress pipeline.Progress
	next     time.Time
	retryAt  time.Time
}

// New returns a server for opts. It does not start anything.
func New(opts Options) (*Server, error) {
	if opts.State == nil {
		return nil, errors.New("server: no state database")
	}
	s := &Server{db: opts.State, byName: map[string]*jobState{}, token: opts.Token, clock: opts.Clock,
		log: opts.Logger, retry: opts.RetryDelay, pageSize: opts.PageSize, startup: !opts.DisableStartup}
	if s.clock == nil {
		s.clock = SystemClock()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.retry <= 0 {
		s.retry = 5 * time.Minute
	}
	if s.pageSize <= 0 {
		s.pageSize = 25
	}
	s.remotePoll = opts.RemotePoll
	if s.remotePoll <= 0 {
		s.remotePoll = 15 * time.Second
	}
	for _, j := range opts.Jobs {
		switch {
		case j == nil || j.Name == "":
			return nil, errors.New("server: a job has no name")
		case j.Schedule == nil:
			return nil, fmt.Errorf("server: job %s: no schedule", j.Name)
		case j.Open == nil && j.Remote == nil:
			return nil, fmt.Errorf("server: job %s: no Open function", j.Name)
		}
		if _, dup := s.byName[j.Name]; dup {
			return nil, fmt.Errorf("server: job %s: duplicate name", j.Name)
		}
		js := &jobState{job: j, trigger: make(chan struct{}, 1)}
		s.jobs = append(s.jobs, js)
		s.byName[j.Name] = js
	}
	sort.Slice(s.jobs, func(a, b int) bool { return s.jobs[a].job.Name < s.jobs[b].job.Name })
	s.metrics = newMetrics(s)
	s.handler = s.routes()
	s.started = s.clock.Now()
	s.owner = fmt.Sprintf("serve:%d", s.started.UnixNano())
	// The next scheduled run is known before the jobs' loops start (the
	// API may be asked at once); each loop keeps it up to date.
	for _, j := range s.jobs {
		if j.job.Remote == nil && j.job.Schedule != nil {
			j.next = j.job.Schedule.Next(s.started)
		}
	}
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen listens on addr (host:port). A host that is not a loopback address
// (an empty host listens on every interface) requires the server to have a
// token.
func (s *Server) Listen(addr string) (net.Listener, error) {
	loop, err := IsLoopback(addr)
	if err != nil {
		return nil, err
	}
	if !loop && s.token == "" {
		return nil, fmt.Errorf("listen on %s: a non-loopback address needs a token", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// IsLoopback reports whether addr (host:port) names only loopback
// interfaces: "localhost" or a loopback IP address.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("listen address: %w", err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// Serve runs the scheduler and serves HTTP on ln until ctx is done, then
// cancels the running runs, waits for them to checkpoint and shuts the HTTP
// server down. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	runCtx, stopRuns := context.WithCancel(ctx)
	defer stopRuns()
	runDone := make(chan struct{})
	go func() { s.Run(runCtx); close(runDone) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		stopRuns() // the HTTP server failed: stop the scheduler too
	}
	<-runDone
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if serr := hs.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Run runs the scheduler until ctx is done, then waits for the running runs
// to stop. Runs' contexts derive from ctx.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, j := range s.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, j)
		}()
	}
	wg.Wait()
}

// Trigger starts a run of the named pipeline now. It fails with
// ErrUnknownPipeline or ErrRunning.
func (s *Server) Trigger(name string) error {
	j := s.byName[name]
	if j == nil {
		return ErrUnknownPipeline
	}
	if j.job.Remote != nil {
		return s.remoteTrigger(j)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running || j.pending {
		return ErrRunning
	}
	j.pending = true
	j.trigger <- struct{}{}
	return nil
}

// Cancel cancels the run with the given id. A run in progress in this
// process has its context cancelled and is marked cancelled when the
// pipeline has stopped; an unfinished run that no process is running is
// marked cancelled at once. It fails with state.ErrNotFound, ErrRunOver or
// ErrRunElsewhere.
func (s *Server) Cancel(ctx context.Context, id string) error {
	run, err := s.db.Run(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		rr, j, rerr := s.remoteRun(ctx, id)
		if rerr != nil {
			return rerr
		}
		if !rr.Running {
			return ErrRunOver
		}
		return j.job.Remote.Cancel(ctx, id)
	}
	if err != nil {
		return err
	}
	if run.Status.Terminal() {
		return ErrRunOver
	}
	if j := s.byName[run.Source]; j != nil {
		j.mu.Lock()
		if j.running && j.cancel != nil {
			j.cancelID = id
			j.cancel(errOperatorCancel)
			j.mu.Unlock()
			return nil
		}
		j.mu.Unlock()
	}
	lease, err := s.db.Acquire(ctx, run.Source, s.owner, time.Minute)
	if err != nil {
		var le *state.LockedError
		if errors.As(err, &le) {
			return ErrRunElsewhere
		}
		return fmt.Errorf("cancel run %s: %w", id, err)
	}
	defer lease.Release(context.WithoutCancel(ctx))
	return s.markCancelled(ctx, id)
}

// markCancelled records an unfinished run as cancelled.
func (s *Server) markCancelled(ctx context.Context, id string) error {
	run, err := s.db.Run(ctx, id)
	if err != nil {
		return fmt.Errorf("cancel run %s: %w", id, err)
	}
	if run.Status.Terminal() {
		return nil
	}
	run.Status = state.RunCancelled
	run.Error = errOperatorCancel.Error()
	if err := s.db.FinishRun(ctx, run, ""); err != nil {
		return fmt.Errorf("cancel run %s: %w", id, err)
	}
	return nil
}

// snapshot is what the API and the dashboard show of a job.
type snapshot struct {
	Name     string
	Schedule string
	Timezone string
	Running  bool
	Pending  bool
	RunID    string
	Attempt  time.Time
	Progress pipeline.Progress
	Next     time.Time
}

func (j *jobState) snapshot() snapshot {
	j.mu.Lock()
	defer j.mu.Unlock()
	tz := ""
	if c, ok := j.job.Schedule.(*Cron); ok && c.Location != nil {
		tz = c.Location.String()
	}
	return snapshot{Name: j.job.Name, Schedule: j.job.Schedule.String(), Timezone: tz, Running: j.running, Pending: j.pending,
		RunID: j.runID, Attempt: j.attempt, Progress: j.progress, Next: j.next}
}
