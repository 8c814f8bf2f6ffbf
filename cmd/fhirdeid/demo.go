package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/config"
	"fhirdeid/internal/synth"
	"fhirdeid/jsontree"
	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

func init() {
	register(command{name: "demo", summary: "run the whole pipeline on a synthetic population, no setup needed", run: runDemo})
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("fhirdeid demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("out", "fhirdeid-demo", "the demo's folder (data lake, state, configuration)")
	patients := fs.Int("patients", 300, "the number of synthetic patients")
	seed := fs.Uint64("seed", 1, "the seed of the synthetic population")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid demo [-out DIR] [-patients N]

Generates a synthetic patient population full of identifiers (names,
addresses, phone numbers, SSN/MRN/licence/passport numbers, birth dates,
narratives, notes), serves it from a local Bulk Data server on 127.0.0.1,
exports it with $export, de-identifies it with the built-in HIPAA Safe Harbor
configuration into DIR/lake, and checks that no planted identifier reached
the output. Then a second night: the server's data changes (updates,
deletions, new resources), an incremental export brings only the changes,
and the merged snapshot (DIR/lake/current) holds the latest version of every
resource.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *patients <= 0 {
		fs.Usage()
		return usageError{"no arguments expected"}
	}
	w := e.stdout
	abs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}

	fmt.Fprintf(w, "1. Generating %d synthetic patients…\n", *patients)
	pop := synth.Generate(synth.Options{Patients: *patients, Seed: *seed})
	var all [][]byte
	for _, t := range pop.Types() {
		all = append(all, pop.Resources[t]...)
		fmt.Fprintf(w, "   %-18s %6d\n", t, len(pop.Resources[t]))
	}
	fmt.Fprintf(w, "   %d resources with %d distinct identifiers planted\n", len(all), len(pop.Identifiers))

	srv, err := bulktest.New(bulktest.Options{Resources: all, PartSize: 2000, PollsBeforeComplete: 2, RetryAfter: "1"})
	if err != nil {
		return err
	}
	hs, base, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer hs.Close()
	fmt.Fprintf(w, "2. Serving them through a Bulk Data server at %s\n", base)

	lake := filepath.Join(abs, "lake")
	stateDir := filepath.Join(abs, "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	db, err := state.Open(ctx, filepath.Join(stateDir, "state.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := storage.Open(ctx, lake)
	if err != nil {
		return err
	}
	defer store.Close()
	cfg, err := anonymize.ParseConfig(defaultconfig.SafeHarbor(), anonymize.Options{FHIRVersion: "R4", Compiler: config.CheckedCompiler("R4", true)})
	if err != nil {
		return fmt.Errorf("built-in configuration: %w", err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		return err
	}
	client, err := bulk.NewClient(base, &http.Client{})
	if err != nil {
		return err
	}
	client.Polling.MaxDelay = 2 * time.Second
	deid := pipeline.NewEngineDeidentifier(eng)
	deid.Folder = "demo"
	p := &pipeline.Pipeline{Name: "demo", Client: client, Deidentifier: deid, Store: store, State: db,
		LogDir: filepath.Join(stateDir, "logs")}
	fmt.Fprintf(w, "3. Exporting, de-identifying (%d Safe Harbor rules) and storing into %s\n", cfg.NumRules(), lake)
	start := time.Now()
	rep, err := pipeline.Run(ctx, p)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	d := rep.Deidentification
	fmt.Fprintf(w, "   run %s %s in %s: %d resources, %d values changed, %d resources dropped on errors\n",
		rep.Run, rep.Status, elapsed.Round(time.Millisecond), rep.Resources, d.ValuesChanged, d.Skipped)
	ops := d.Operations
	var names []string
	for k := range ops {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "   %-12s applied to %6d resources\n", k, ops[k])
	}

	fmt.Fprintln(w, "4. Leak check: looking for every planted identifier in the output…")
	runDir := filepath.Join(lake, rep.Run)
	lc := synth.NewLeakChecker(pop.Identifiers)
	files, _ := filepath.Glob(filepath.Join(runDir, "*.ndjson.gz"))
	var lines int
	var example string
	for _, f := range files {
		n, ex, err := scanFile(f, lc)
		if err != nil {
			return err
		}
		lines += n
		if strings.HasPrefix(filepath.Base(f), "Patient.") && example == "" {
			example = ex
		}
	}
	if lc.Found() != 0 {
		return &exitError{code: 1, err: fmt.Errorf("leak check FAILED: %d of %d planted identifiers found in the output", lc.Found(), len(pop.Identifiers))}
	}
	fmt.Fprintf(w, "   clean: 0 of %d identifiers found in %d de-identified resources (base64 attachments decoded too)\n",
		len(pop.Identifiers), lines)
	if example != "" {
		fmt.Fprintln(w, "5. One de-identified Patient:")
		if root, err := jsontree.Parse([]byte(example)); err == nil {
			fmt.Fprintf(w, "   %s\n", root.AppendIndent(nil, "   ", "  "))
		}
	}
	if err := demoNightTwo(ctx, w, p, srv, all, *seed, lake, pop); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nOutput: %s\n  manifest.json, report.json, log.ndjson, _SUCCESS, and the data as Type.NNN.ndjson.gz\n", runDir)
	fmt.Fprintf(w, "Merged: %s names the snapshot folder under %s\n", filepath.Join(lake, storage.CurrentKey),
		filepath.Join(lake, storage.SnapshotsDir))
	fmt.Fprintf(w, "State:  %s (pipeline runs resume from it after a crash)\n", filepath.Join(stateDir, "state.db"))
	return nil
}

// scanFile feeds every line of a gzip NDJSON file to the leak checker and
// returns the number of lines and the first one.
func scanFile(path string, lc *synth.LeakChecker) (int, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", path, err)
	}
	br := bufio.NewReaderSize(zr, 1<<20)
	n := 0
	first := ""
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			n++
			if first == "" {
				first = string(line)
			}
			lc.CheckLine(line)
		}
		if err == io.EOF {
			return n, first, nil
		}
		if err != nil {
			return n, first, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// demoNightTwo changes the server's data, runs the pipeline again (an
// incremental export) and shows the merged snapshot that results.
func demoNightTwo(ctx context.Context, w io.Writer, p *pipeline.Pipeline, srv *bulktest.Server, all [][]byte,
	seed uint64, lake string, pop *synth.Population) error {
	ups, dels, news := min(60, len(all)/8), min(25, len(all)/16), min(25, len(all)/16)
	cs, err := bulktest.RandomChanges(all, seed, ups, dels, news)
	if err != nil {
		return err
	}
	if err := srv.Apply(cs); err != nil {
		return err
	}
	fmt.Fprintf(w, "6. Night two: the server's data changes: %d resources updated, %d deleted, %d new\n", ups, dels, news)
	// Night one was a full export; night two asks for what changed since.
	p.SinceAuto = true
	start := time.Now()
	rep, err := pipeline.Run(ctx, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   run %s %s in %s: an incremental export since %s brought %d resources and %d deletion bundles\n",
		rep.Run, rep.Status, time.Since(start).Round(time.Millisecond), rep.Since, rep.Resources, rep.Deleted)
	sn := rep.Snapshot
	if sn == nil {
		return fmt.Errorf("no snapshot after run %s", rep.Run)
	}
	fmt.Fprintf(w, "7. The merged snapshot %s (runs %s):\n", sn.Snapshot, strings.Join(sn.Runs, ", "))
	fmt.Fprintf(w, "   %d resources, the latest version of each (%d deleted since night one)\n", sn.Resources, sn.Deleted)
	var types []string
	for t := range sn.Types {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		fmt.Fprintf(w, "   %-18s %6d\n", t, sn.Types[t].Resources)
	}
	fmt.Fprintf(w, "   referential integrity: %d of %d references resolve to nothing in the snapshot\n",
		sn.Integrity.Unresolved, sn.Integrity.References)
	lc := synth.NewLeakChecker(pop.Identifiers)
	files, _ := filepath.Glob(filepath.Join(lake, storage.SnapshotsDir, sn.Snapshot, "*.ndjson.gz"))
	for _, f := range files {
		if _, _, err := scanFile(f, lc); err != nil {
			return err
		}
	}
	if lc.Found() != 0 {
		return &exitError{code: 1, err: fmt.Errorf("leak check FAILED: %d planted identifiers found in the snapshot", lc.Found())}
	}
	fmt.Fprintf(w, "   leak check of the snapshot: clean\n")
	return nil
}
