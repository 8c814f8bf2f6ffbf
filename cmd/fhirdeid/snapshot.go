package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"fhirdeid/config"
	"fhirdeid/pipeline"
	"fhirdeid/state"
)

func init() {
	register(command{name: "snapshot", summary: "rebuild a pipeline's merged snapshot (current) from all its runs", run: runSnapshot})
}

func runSnapshot(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("fhirdeid snapshot", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	name := fs.String("pipeline", "", "the pipeline (default: the only one in the file)")
	verbose := fs.Bool("v", false, "log each step")
	incremental := fs.Bool("incremental", false, "merge only the runs newer than the published snapshot onto it, as a run does")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid snapshot [-pipeline NAME] [-incremental] [-v] CONFIG

Rebuilds the pipeline's merged snapshot from every committed run of its
destination, reading them from the destination itself: the latest version of
every resource, de-duplicated by type and id, deletions applied, written to
snapshots/<id>/ with a manifest.json and a snapshot.json, then published by
moving "current". Every run already does this incrementally (unless the
pipeline says snapshot: false); use this after deleting runs, or to check a
snapshot. With -incremental, only the runs newer than the published snapshot
are merged onto it.`)
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
	db, err := openState(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	p, store, err := cfg.Open(ctx, pname, db, config.OpenOptions{UserAgent: userAgent(), Logger: logger})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer store.Close()
	rep, err := pipeline.RebuildSnapshot(ctx, p, pipeline.SnapshotOptions{Rebuild: !*incremental})
	if err != nil {
		var le *state.LockedError
		if errors.As(err, &le) || errors.Is(err, context.Canceled) {
			return &exitError{code: exitRetryable, err: err}
		}
		return err
	}
	if rep == nil {
		fmt.Fprintln(e.stdout, "no committed run to merge: the snapshot is up to date")
		return nil
	}
	printSnapshot(e.stdout, store.String(), rep)
	return nil
}

// printSnapshot prints one line about a published snapshot.
func printSnapshot(w io.Writer, dest string, rep *pipeline.SnapshotReport) {
	if rep == nil {
		return
	}
	fmt.Fprintf(w, "snapshot %s: %d resources of %d types from %d runs (%d deleted, %d replaced), %d of %d references unresolved → %s/snapshots/%s/ (current)\n",
		rep.Snapshot, rep.Resources, len(rep.Types), len(rep.Runs), rep.Deleted, rep.Replaced,
		rep.Integrity.Unresolved, rep.Integrity.References, dest, rep.Snapshot)
}
