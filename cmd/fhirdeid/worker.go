package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"fhirdeid/config"
	"fhirdeid/durable"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/storage"
)

func init() {
	register(command{name: "worker", summary: "run the pipelines' Temporal workflows and activities (temporal: in CONFIG)", run: runWorker})
}

func runWorker(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("fhirdeid worker", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	verbose := fs.Bool("v", false, "log each step")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the worker, when it stops, to this file (go tool pprof)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid worker [-v] [-cpuprofile FILE] CONFIG

Runs the workflows and activities of every pipeline of the configuration file
on the Temporal service of its temporal: section, until interrupted. Start
any number of workers, on any number of machines, with the same file; they
share the pipelines' destinations. "fhirdeid run CONFIG" starts a run.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"need exactly one configuration file"}
	}
	cfg, err := config.Load(fs.Arg(0), e.getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if cfg.Temporal == nil {
		return &exitError{code: 2, err: fmt.Errorf("%s: temporal: missing (a worker needs the Temporal service's hostPort)", cfg.Path())}
	}
	if err := cfg.ResolveSecrets(ctx, nil); err != nil {
		return &exitError{code: 2, err: err}
	}
	logger := cmdLogger(e, *verbose)
	stopProfile, err := startCPUProfile(*cpuProfile, "worker", logger)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer stopProfile()
	// The worker's local state database remembers only an interrupted
	// snapshot merge (the runs live in the workflow histories): a merge cut
	// short on one worker is planned anew from the destination by the next.
	// Workers started together on one machine may create the database at
	// once: a migration that lost the race succeeds when tried again.
	db, err := openState(ctx, cfg)
	for try := 1; err != nil && try < 5 && ctx.Err() == nil; try++ {
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		db, err = openState(ctx, cfg)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	pipelines := map[string]*pipeline.Pipeline{}
	for _, name := range cfg.Names() {
		p, store, err := cfg.Open(ctx, name, db, config.OpenOptions{UserAgent: userAgent(), Logger: logger})
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		defer store.Close()
		// The run's export log is stored in parts by the activities and
		// merged at commit (durable.NewActivities); the privacy checks run
		// as in process: each worker audits the files it de-identifies, and
		// the workflow's Assure activity completes the run's checks before
		// the commit.
		// The scrub method's first pass (the patients' identifiers) runs in
		// every worker, once per run, before its first file of the run.
		pipelines[name] = p
	}
	acts, err := durable.NewActivities(pipelines)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	c, err := dialTemporal(ctx, cfg, logger)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer c.Close()
	acts.HostFiles = cfg.Temporal.HostFiles
	acts.Client = c
	acts.Earlier = (&durable.Monitor{Client: c, Namespace: cfg.Temporal.Namespace, TaskQueue: cfg.Temporal.TaskQueue}).Earlier
	w := durable.NewWorker(c, cfg.Temporal.TaskQueue, acts, durable.WorkerOptions{MaxFiles: cfg.Temporal.WorkerFiles})
	if err := w.Start(); err != nil {
		return fmt.Errorf("temporal worker: %w", err)
	}
	logger.Info("worker started", "taskQueue", cfg.Temporal.TaskQueue, "namespace", cfg.Temporal.Namespace, "pipelines", len(pipelines))
	fmt.Fprintf(e.stderr, "worker on task queue %s of %s (namespace %s): %d pipelines; interrupt to stop\n",
		cfg.Temporal.TaskQueue, cfg.Temporal.HostPort, cfg.Temporal.Namespace, len(pipelines))
	<-ctx.Done()
	w.Stop()
	return nil
}

// loadPipeline loads the configuration file at path, picks the pipeline
// named name (or the only one) and resolves the file's Key Vault
// references, before anything is created: a bad file or name exits 2, a
// secret that cannot be read 1.
func loadPipeline(ctx context.Context, e *env, path, name string) (*config.File, string, error) {
	cfg, err := config.Load(path, e.getenv)
	if err != nil {
		return nil, "", &exitError{code: 2, err: err}
	}
	pname, err := cfg.Pick(name)
	if err != nil {
		return nil, "", &exitError{code: 2, err: err}
	}
	if err := cfg.ResolveSecrets(ctx, nil); err != nil {
		return nil, "", &exitError{code: 1, err: err}
	}
	return cfg, pname, nil
}

// startCPUProfile starts a CPU profile of the command into file ("": none)
// and returns the function that writes it, logging a failure to write.
func startCPUProfile(file, command string, logger *slog.Logger) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	stopProfiles, err := startProfiles(file, "")
	if err != nil {
		return nil, err
	}
	return func() {
		if err := stopProfiles(); err != nil {
			logger.Error(command + ": " + err.Error())
		}
	}, nil
}

// cmdLogger logs warnings, or every step with verbose, to stderr.
func cmdLogger(e *env, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// dialTemporal connects to the Temporal service of cfg's temporal: section.
func dialTemporal(ctx context.Context, cfg *config.File, logger *slog.Logger) (client.Client, error) {
	tc := cfg.Temporal
	tlsConf, err := tc.TLSConfig("temporal")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path(), err)
	}
	key, err := tc.Key("temporal")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path(), err)
	}
	host, _ := os.Hostname()
	c, err := durable.Dial(ctx, durable.ConnectOptions{HostPort: tc.HostPort, Namespace: tc.Namespace, TLS: tlsConf,
		APIKey: key, Logger: logger, Identity: fmt.Sprintf("fhirdeid@%s:%d", host, os.Getpid()), Field: "temporal"})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path(), err)
	}
	return c, nil
}

// validateTemporal checks the temporal: section of cfg, if any: its TLS
// files and API key offline, and with online a connection and the
// namespace.
func validateTemporal(ctx context.Context, e *env, cfg *config.File, online bool) error {
	tc := cfg.Temporal
	if tc == nil {
		return nil
	}
	if !online {
		if _, err := tc.TLSConfig("temporal"); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s: %w", cfg.Path(), err)}
		}
		if _, err := tc.Key("temporal"); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s: %w", cfg.Path(), err)}
		}
		fmt.Fprintf(e.stdout, "temporal: %s, namespace %s, task queue %s (not contacted; --online connects)\n", tc.HostPort, tc.Namespace, tc.TaskQueue)
		return nil
	}
	c, err := dialTemporal(ctx, cfg, nil)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	c.Close()
	fmt.Fprintf(e.stdout, "temporal: %s, namespace %s reachable, task queue %s\n", tc.HostPort, tc.Namespace, tc.TaskQueue)
	return nil
}

// temporalSchedules creates or updates one Temporal Schedule per pipeline
// of cfg (its cron, time zone, and with runMissed a catch-up window of a
// day), and hands the jobs to Temporal: the pipelines run on the workers,
// never in this process, and the server shows their workflows. It returns
// the connection, which the caller closes after the server.
func temporalSchedules(ctx context.Context, e *env, cfg *config.File, jobs []*server.Job, logger *slog.Logger) (client.Client, error) {
	c, err := dialTemporal(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	if err := ensureSchedules(ctx, e, c, cfg, jobs); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func ensureSchedules(ctx context.Context, e *env, c client.Client, cfg *config.File, jobs []*server.Job) error {
	tc := cfg.Temporal
	monitor := &durable.Monitor{Client: c, Namespace: tc.Namespace, TaskQueue: tc.TaskQueue, UI: tc.UIURL(),
		Options: func(name string) durable.Options { return durableOptions(cfg, name) }}
	for _, job := range jobs {
		pc := cfg.Pipelines[job.Name]
		window := time.Minute
		if pc.RunMissed {
			window = 24 * time.Hour
		}
		opts := durableOptions(cfg, job.Name)
		created, err := durable.EnsureSchedule(ctx, c, tc.TaskQueue, durable.ScheduleSpec{Pipeline: job.Name, Cron: pc.Schedule,
			TimeZone: pc.Timezone, CatchupWindow: window, Options: opts})
		if err != nil {
			return fmt.Errorf("%s: temporal: %w", cfg.Path(), err)
		}
		verb := "updated"
		if created {
			verb = "created"
		}
		fmt.Fprintf(e.stdout, "fhirdeid serve: Temporal schedule %s %s: %q in %s\n", durable.ScheduleID(job.Name), verb, pc.Schedule, pc.Location())
		job.Schedule = temporalSchedule{expr: pc.Schedule}
		job.RunMissed = false
		job.Open = nil
		job.Remote = monitor
	}
	return nil
}

// durableOptions are the workflow options of a pipeline's runs. Their
// concurrency, the files handed to the workers at once, is the temporal:
// section's, else the pipeline's when it sets one (a cap on the FHIR
// server's load that the user chose), else enough for two workers' slots
// (2 × workerFiles), so that while one of a worker's files waits between
// activities its others keep the cores busy.
func durableOptions(cfg *config.File, name string) durable.Options {
	tc := cfg.Temporal
	opts := durable.Options{Concurrency: tc.Concurrency, HeartbeatTimeout: tc.HeartbeatTimeoutDuration()}
	if opts.Concurrency == 0 {
		opts.Concurrency = cmp.Or(cfg.Pipelines[name].Concurrency, 2*cmp.Or(tc.WorkerFiles, durable.DefaultWorkerFiles))
	}
	return opts
}

// temporalSchedule is the schedule of a job that Temporal runs: never in
// this process.
type temporalSchedule struct{ expr string }

func (temporalSchedule) Next(time.Time) time.Time { return time.Time{} }
func (s temporalSchedule) String() string         { return s.expr + " (Temporal schedule)" }

// runDurable is "fhirdeid run" with a temporal: section: it starts the
// pipeline's workflow (or follows the one in progress) and waits for its
// end, with the same summary and exit codes as a run in process.
func runDurable(ctx context.Context, e *env, cfg *config.File, name string, newKeys, quiet bool, logger *slog.Logger) error {
	c, err := dialTemporal(ctx, cfg, logger)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer c.Close()
	tc := cfg.Temporal
	opts := durableOptions(cfg, name)
	start := time.Now()
	// One run of a pipeline at a time: a run in progress, started by hand or
	// by the Schedule, is followed rather than doubled.
	monitor := &durable.Monitor{Client: c, Namespace: tc.Namespace, TaskQueue: tc.TaskQueue}
	cur, err := monitor.InProgress(ctx, name)
	if err != nil {
		return &exitError{code: exitRetryable, err: fmt.Errorf("look for a run in progress: %w", err)}
	}
	var wr client.WorkflowRun
	if cur != "" {
		fmt.Fprintf(e.stderr, "a run of pipeline %s is in progress (workflow %s): following it\n", name, cur)
		if newKeys {
			fmt.Fprintln(e.stderr, "warning: -new-keys applies to a new run only; it is ignored")
		}
		wr = c.GetWorkflow(ctx, cur, "")
	} else if wr, err = durable.Start(ctx, c, tc.TaskQueue, durable.Input{Pipeline: name, NewKeys: newKeys, Options: opts}); err != nil {
		return &exitError{code: exitRetryable, err: fmt.Errorf("start the workflow: %w", err)}
	}
	logger.Info("following workflow", "workflowID", wr.GetID(), "runID", wr.GetRunID())
	var progress func(durable.Progress)
	stop := func() {}
	if !quiet && isTerminal(e.stderr) {
		var mu sync.Mutex
		var last durable.Progress
		progress = func(pr durable.Progress) { mu.Lock(); last = pr; mu.Unlock() }
		stop = statusLine(e.stderr, func() string {
			mu.Lock()
			pr := last
			mu.Unlock()
			if pr.FilesTotal == 0 {
				return fmt.Sprintf("waiting for the export… %s (workflow %s)", time.Since(start).Round(time.Second), wr.GetID())
			}
			return fmt.Sprintf("files %d/%d · %d resources · %.1f MB/s in", pr.FilesDone, pr.FilesTotal,
				pr.Resources, float64(pr.BytesIn)/time.Since(start).Seconds()/1e6)
		})
	}
	rep, err := durable.Follow(ctx, c, wr, time.Second, progress)
	stop()
	if err != nil {
		var ae *temporal.ApplicationError
		switch {
		case ctx.Err() != nil:
			return &exitError{code: exitRetryable, err: fmt.Errorf("workflow %s continues on the workers (run again to follow it)", wr.GetID())}
		case errors.As(err, &ae) && ae.Type() == durable.ErrTypeOverlap:
			return &exitError{code: exitRetryable, err: fmt.Errorf("workflow %s: %w (run again to follow the run in progress)", wr.GetID(), err)}
		case errors.As(err, &ae) && (ae.Type() == durable.ErrTypeFatal || ae.Type() == durable.ErrTypeDeadline):
			if rep := durable.ChecksReport(err); rep != nil {
				fmt.Fprintf(e.stdout, "run %s failed its privacy checks: not published; report: %s/%s/report.json (workflow %s)\n",
					rep.Run, storage.Redact(cfg.Pipelines[name].Destination), rep.Run, wr.GetID())
			}
			return fmt.Errorf("workflow %s: %w", wr.GetID(), err)
		}
		return &exitError{code: exitRetryable, err: fmt.Errorf("workflow %s: %w (run again for a new run)", wr.GetID(), err)}
	}
	elapsed := time.Since(start)
	store := cfg.Pipelines[name].Destination
	fmt.Fprintf(e.stdout, "run %s %s: %d resources (%d deletion bundles) in %s, %.0f resources/s → %s/%s/ (workflow %s)\n",
		rep.Run, rep.Status, rep.Resources, rep.Deleted, elapsed.Round(time.Millisecond),
		float64(rep.Resources)/elapsed.Seconds(), storage.Redact(store), rep.Run, wr.GetID())
	for _, w := range rep.Warnings {
		fmt.Fprintln(e.stdout, "warning:", w)
	}
	if rep.Status == "partial" {
		return &exitError{code: exitPartial}
	}
	return nil
}
