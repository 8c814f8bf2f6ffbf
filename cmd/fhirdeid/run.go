package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"fhirdeid/config"
	"fhirdeid/pipeline"
	"fhirdeid/state"
)

func init() {
	register(command{name: "run", summary: "run a configured pipeline once: export, de-identify, store", run: runRun})
}

// Exit codes of "fhirdeid run".
const (
	exitPartial   = 3  // the run committed with warnings
	exitRetryable = 75 // EX_TEMPFAIL: try again later; the run resumes
)

func runRun(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("fhirdeid run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	name := fs.String("pipeline", "", "the pipeline to run (default: the only one in the file)")
	verbose := fs.Bool("v", false, "log each step")
	quiet := fs.Bool("q", false, "print no progress")
	newKeys := fs.Bool("new-keys", false, "accept anonymizer keys that differ from the last successful run's: start a new lake with a full export")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run (this process) to this file (go tool pprof)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid run [-pipeline NAME] [-v] [-q] [-new-keys] [-cpuprofile FILE] CONFIG

Runs one pipeline of the configuration file once: kicks off (or resumes) the
export, de-identifies every file into the destination and commits the run.

Exit status: 0 success, 3 committed with warnings (partial), 75 interrupted or
temporarily failed (run again: it resumes), 1 failed, 2 bad configuration.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"need exactly one configuration file"}
	}
	cfg, pname, err := loadPipeline(ctx, e, fs.Arg(0), *name)
	if err != nil {
		return err
	}
	logger := cmdLogger(e, *verbose)
	stopProfile, err := startCPUProfile(*cpuProfile, "run", logger)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer stopProfile()
	if cfg.Temporal != nil {
		return runDurable(ctx, e, cfg, pname, *newKeys, *quiet, logger)
	}

	db, err := openState(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	p, store, err := cfg.Open(ctx, pname, db, config.OpenOptions{UserAgent: userAgent(), Logger: logger, NewKeys: *newKeys})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer store.Close()
	stop := func() {}
	if !*quiet && isTerminal(e.stderr) {
		stop = showProgress(e.stderr, p)
	}
	start := time.Now()
	rep, err := pipeline.Run(ctx, p)
	stop()
	if err != nil {
		var pe *pipeline.Error
		if errors.As(err, &pe) && pe.Outcome == pipeline.Retryable {
			return &exitError{code: exitRetryable, err: fmt.Errorf("%w (run again to resume)", err)}
		}
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(e.stdout, "run %s %s: %d resources (%d deletion bundles) in %s, %.0f resources/s → %s\n",
		rep.Run, rep.Status, rep.Resources, rep.Deleted, elapsed.Round(time.Millisecond),
		float64(rep.Resources)/elapsed.Seconds(), store.URL(rep.Run+"/"))
	for _, w := range rep.Warnings {
		fmt.Fprintln(e.stdout, "warning:", w)
	}
	printAssurance(e.stdout, rep)
	printSnapshot(e.stdout, store.String(), rep.Snapshot)
	if rep.Status == "partial" {
		return &exitError{code: exitPartial}
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// statusLine redraws one line on w every 250 ms with the text line
// returns, until the returned function is called, which clears it.
func statusLine(w io.Writer, line func() string) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprint(w, "\r\033[K"+line())
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// showProgress shows p's progress on the terminal w, and returns a
// function that clears it.
func showProgress(w io.Writer, p *pipeline.Pipeline) func() {
	var mu sync.Mutex
	var last pipeline.Progress
	p.Progress = func(pr pipeline.Progress) { mu.Lock(); last = pr; mu.Unlock() }
	start := time.Now()
	return statusLine(w, func() string {
		mu.Lock()
		pr := last
		mu.Unlock()
		if pr.FilesTotal == 0 {
			status := ""
			if pr.ExportStatus != "" {
				status = " (server: " + sanitizeProgress(pr.ExportStatus) + ")"
			}
			return fmt.Sprintf("waiting for the export… %s%s", time.Since(start).Round(time.Second), status)
		}
		return fmt.Sprintf("files %d/%d · %d resources · %.1f MB/s in", pr.FilesDone, pr.FilesTotal,
			pr.Resources, float64(pr.BytesIn)/time.Since(start).Seconds()/1e6)
	})
}

// sanitizeProgress keeps a server's X-Progress text printable and short.
func sanitizeProgress(s string) string {
	b := []rune{}
	for _, r := range s {
		if r >= 0x20 && r != 0x7f {
			b = append(b, r)
		}
		if len(b) == 60 {
			break
		}
	}
	return string(b)
}

// openState opens the state database of cfg, creating its folder.
func openState(ctx context.Context, cfg *config.File) (*state.DB, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.State), 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return state.Open(ctx, cfg.State)
}
