package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/audit"
	"fhirdeid/pipeline"
)

func init() {
	register(command{name: "audit", summary: "check a de-identified run folder for identifiers of a raw export folder (leak audit)", run: runAudit})
}

func runAudit(ctx context.Context, e *env, args []string) error {
	fl := flag.NewFlagSet("audit", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	raw := fl.String("raw", "", "the raw export folder (NDJSON files, .ndjson or .ndjson.gz) the run was made from")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	workers := fl.Int("workers", runtime.GOMAXPROCS(0), "files read at once")
	fl.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid audit RUN_DIR --raw EXPORT_DIR [--json]

Collects the direct identifiers of the raw resources in EXPORT_DIR (names
and their parts, telecom, identifier values, address lines, cities, postal
codes, birth and death dates, attachment URLs) as keyed hashes, then looks for
them in every string of the de-identified resources in RUN_DIR, base64
attachments decoded. It prints counts and paths, never a value. Exit status
0: no leak, 1: leaks found (or an error), 2: bad command line.`)
		fl.PrintDefaults()
	}
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *raw == "" {
		return usageError{"need RUN_DIR and --raw EXPORT_DIR"}
	}
	rawFiles, err := ndjsonFiles(*raw)
	if err != nil {
		return err
	}
	outFiles, err := ndjsonFiles(pos[0])
	if err != nil {
		return err
	}
	if len(rawFiles) == 0 || len(outFiles) == 0 {
		return fmt.Errorf("no NDJSON files in %s", map[bool]string{true: *raw, false: pos[0]}[len(rawFiles) == 0])
	}
	rep, err := auditFiles(ctx, rawFiles, pos[0], outFiles, *workers)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(&rep); err != nil {
			return err
		}
	} else {
		printAudit(e.stdout, &rep)
	}
	if rep.Leaks > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// auditFiles collects the identifiers of rawFiles, then scans outFiles
// (named relative to outDir in the report), workers files at a time.
func auditFiles(ctx context.Context, rawFiles []string, outDir string, outFiles []string, workers int) (audit.Report, error) {
	c := audit.NewCollector()
	err := eachFile(ctx, rawFiles, workers, func(_ int, path string, r io.Reader) error {
		return c.CollectNDJSON(r, 0)
	})
	if err != nil {
		return audit.Report{}, err
	}
	scanners := make([]*audit.Scanner, workers)
	for i := range scanners {
		scanners[i] = c.Scanner()
	}
	err = eachFile(ctx, outFiles, workers, func(w int, path string, r io.Reader) error {
		name, _ := filepath.Rel(outDir, path)
		return scanners[w].ScanNDJSON(filepath.ToSlash(name), r, 0)
	})
	if err != nil {
		return audit.Report{}, err
	}
	return audit.Summary(c, scanners...), nil
}

// ndjsonFiles lists the .ndjson and .ndjson.gz files under dir, sorted.
func ndjsonFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".ndjson") || strings.HasSuffix(path, ".ndjson.gz")) {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// eachFile calls fn for every file (gunzipped when its name ends in .gz),
// workers at a time; fn's first argument is the worker's number.
func eachFile(ctx context.Context, files []string, workers int, fn func(worker int, path string, r io.Reader) error) error {
	if workers < 1 {
		workers = 1
	}
	next := make(chan string)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range next {
				if errs[w] != nil || ctx.Err() != nil {
					continue
				}
				errs[w] = readFile(path, func(r io.Reader) error { return fn(w, path, r) })
			}
		}()
	}
	for _, f := range files {
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

func readFile(path string, fn func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	if err := fn(r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func printAudit(w io.Writer, r *audit.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "identifiers collected\t%d\t(from %d raw resources)\n", r.IdentifiersCollected, r.ResourcesCollected)
	fmt.Fprintf(tw, "resources scanned\t%d\n", r.ResourcesScanned)
	fmt.Fprintf(tw, "strings scanned\t%d\t(%d attachments decoded)\n", r.StringsScanned, r.AttachmentsDecoded)
	if r.Unreadable > 0 {
		fmt.Fprintf(tw, "unreadable lines\t%d\t(scanned as text)\n", r.Unreadable)
	}
	fmt.Fprintf(tw, "leaks\t%d\t(in %d resources)\n", r.Leaks, r.ResourcesWithLeaks)
	tw.Flush()
	if r.Leaks == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tLEAKS")
	paths := make([]string, 0, len(r.ByPath))
	for p := range r.ByPath {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		if r.ByPath[paths[i]] != r.ByPath[paths[j]] {
			return r.ByPath[paths[i]] > r.ByPath[paths[j]]
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		fmt.Fprintf(tw, "%s\t%d\n", p, r.ByPath[p])
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tLINE\tPATH\tKIND")
	for _, l := range r.Examples {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", l.File, l.Line, l.Path, l.Kind)
	}
	tw.Flush()
}

// printAssurance prints one line per privacy check of a run's report.
func printAssurance(w io.Writer, rep *pipeline.Report) {
	if a := rep.Audit; a != nil {
		fmt.Fprintf(w, "audit: %d leaks in %d resources (%d identifiers collected, %d strings scanned)\n",
			a.Leaks, a.ResourcesWithLeaks, a.IdentifiersCollected, a.StringsScanned)
		if a.Incomplete != "" {
			fmt.Fprintln(w, "audit incomplete:", a.Incomplete)
		}
	}
	if r := rep.Risk; r != nil {
		fmt.Fprintf(w, "risk: %d patients in %d classes, smallest k = %d, %.1f %% below 5, %.1f %% below 11\n",
			r.Records, r.Classes, r.MinK, 100*r.BelowK5, 100*r.BelowK11)
	}
}
