package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"fhirdeid/config"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/state"
	"fhirdeid/storage"
)

func init() {
	register(command{name: "serve", summary: "run the configured pipelines on their schedules, with an HTTP API, a dashboard and metrics", run: runServe})
}

// defaultServeAddr listens on the loopback interface only.
const defaultServeAddr = "127.0.0.1:8080"

func runServe(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("fhirdeid serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var sc config.Serve
	fs.StringVar(&sc.Addr, "addr", defaultServeAddr, "listen address; a non-loopback address requires -token-env")
	fs.StringVar(&sc.TokenEnv, "token-env", "", "environment variable holding the bearer token required by the API and dashboard")
	verbose := fs.Bool("v", false, "log debug messages")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid serve [-addr HOST:PORT] [-token-env VAR] [-v] [-q] CONFIG

Runs every pipeline of the configuration file on its schedule (cron syntax in
the pipeline's timezone, default "0 1 * * *" UTC), never two runs of a
pipeline at once. Serves a dashboard at /, a JSON API under /api/, Prometheus
metrics at /metrics and health checks at /healthz and /readyz.

At start-up an interrupted run is resumed, and a pipeline with runMissed: true
runs once if a scheduled time passed while the service was down. SIGTERM or
SIGINT stops the service: running runs checkpoint and resume at the next start.`)
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
	if err := cfg.ResolveSecrets(ctx, nil); err != nil {
		return &exitError{code: 1, err: err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["addr"] && cfg.Serve.Addr != "" {
		sc.Addr = cfg.Serve.Addr
	}
	if !set["token-env"] && cfg.Serve.TokenEnv != "" {
		sc.TokenEnv = cfg.Serve.TokenEnv
	}
	token := ""
	if sc.TokenEnv != "" {
		if token = e.getenv(sc.TokenEnv); token == "" {
			return &exitError{code: 2, err: fmt.Errorf("-token-env: environment variable %s is not set", sc.TokenEnv)}
		}
		if token, err = config.ResolveValue(ctx, "-token-env "+sc.TokenEnv, token, nil); err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	if loop, err := server.IsLoopback(sc.Addr); err != nil {
		return usageError{err.Error()}
	} else if !loop && token == "" {
		return usageError{fmt.Sprintf("-addr %s is not a loopback address: set -token-env to require a token", sc.Addr)}
	}
	level := slog.LevelInfo
	switch {
	case *verbose:
		level = slog.LevelDebug
	case *quiet:
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

	db, err := openState(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	var jobs []*server.Job
	for _, name := range cfg.Names() {
		job, closeFn, err := serveJob(ctx, cfg, fs.Arg(0), name, db, logger)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		defer closeFn()
		jobs = append(jobs, job)
	}
	if cfg.Temporal != nil {
		c, err := temporalSchedules(ctx, e, cfg, jobs, logger)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		defer c.Close()
	}
	srv, err := server.New(server.Options{State: db, Jobs: jobs, Token: token, Logger: logger})
	if err != nil {
		return err
	}
	ln, err := srv.Listen(sc.Addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "fhirdeid serve: listening on http://%s/\n", ln.Addr())
	logger.Info("serving", "addr", ln.Addr().String(), "pipelines", len(jobs), "token", token != "")
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// serveJob builds the server job of one configured pipeline. It wires the
// pipeline once to check its configuration (the anonymizer rules, the
// destination), then again for every run.
func serveJob(ctx context.Context, cfg *config.File, path, name string, db *state.DB, logger *slog.Logger) (*server.Job, func() error, error) {
	pc := cfg.Pipelines[name]
	field := "pipelines." + name
	loc := time.UTC
	if pc.Timezone != "" {
		var err error
		if loc, err = time.LoadLocation(pc.Timezone); err != nil {
			return nil, nil, &config.Error{File: path, Field: field + ".timezone", Msg: "unknown time zone"}
		}
	}
	sched, err := server.ParseCron(pc.Schedule, loc)
	if err != nil {
		return nil, nil, &config.Error{File: path, Field: field + ".schedule", Msg: err.Error()}
	}
	_, store, err := cfg.Open(ctx, name, db, config.OpenOptions{UserAgent: userAgent(), Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	store.Close()
	logStore, err := storage.Open(ctx, pc.Destination)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.destination: %w", field, err)
	}
	quiet := slog.New(slog.DiscardHandler) // configuration warnings were logged once above
	job := &server.Job{
		Name:      name,
		Schedule:  sched,
		RunMissed: pc.RunMissed,
		Store:     logStore,
		LogDir:    cfg.LogDir(),
		Open: func(ctx context.Context) (*pipeline.Pipeline, func() error, error) {
			p, store, err := cfg.Open(ctx, name, db, config.OpenOptions{UserAgent: userAgent(), Logger: quiet})
			if err != nil {
				return nil, nil, err
			}
			p.Logger = logger
			return p, store.Close, nil
		},
	}
	return job, logStore.Close, nil
}
