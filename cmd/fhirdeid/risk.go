package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"fhirdeid/risk"
)

func init() {
	register(command{name: "risk", summary: "re-identification risk of the patients in an export folder (k-anonymity, prosecutor/journalist/marketer)", run: runRisk})
}

func runRisk(ctx context.Context, e *env, args []string) error {
	fl := flag.NewFlagSet("risk", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	qi := fl.String("qi", strings.Join(risk.DefaultQI, ","), "quasi-identifiers: built-in names (birthDate, birthYear, gender, zip3, state, deceased, race, ethnicity) or dotted member paths of Patient, comma-separated")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	threshold := fl.Float64("threshold", 0.2, "acceptable risk of one record, for \"records at risk\" (0.2: classes below 5)")
	popDir := fl.String("population", "", "a folder holding the population this one is a sample of, for the journalist and marketer risks")
	fl.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid risk DIR [--qi name,...] [--json]

Groups the Patient resources of the NDJSON files in DIR (.ndjson, .ndjson.gz;
the Patient files, or every file when none is named Patient) into
equivalence classes over the quasi-identifiers and prints k-anonymity (the
smallest class, a histogram of class sizes, the shares of patients in
classes below 5 and 11) and the prosecutor, journalist and marketer risks as
ARX defines them. It prints counts and shares, never a value.`)
		fl.PrintDefaults()
	}
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"need one folder"}
	}
	if *threshold <= 0 || *threshold > 1 {
		return usageError{"--threshold must be in (0, 1]"}
	}
	var qis []string
	for _, q := range strings.Split(*qi, ",") {
		if q = strings.TrimSpace(q); q != "" {
			qis = append(qis, q)
		}
	}
	a, err := analyzeDir(ctx, pos[0], qis)
	if err != nil {
		return err
	}
	var pop *risk.Analyzer
	if *popDir != "" {
		if pop, err = analyzeDir(ctx, *popDir, qis); err != nil {
			return err
		}
	}
	rep := a.Report(*threshold, pop)
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(&rep)
	}
	printRisk(e.stdout, &rep)
	return nil
}

// analyzeDir counts the patients of the Patient files in dir (every NDJSON
// file when none is named Patient*).
func analyzeDir(ctx context.Context, dir string, qis []string) (*risk.Analyzer, error) {
	a, err := risk.New(qis)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	files, err := ndjsonFiles(dir)
	if err != nil {
		return nil, err
	}
	var patients []string
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "Patient") {
			patients = append(patients, f)
		}
	}
	if len(patients) == 0 {
		patients = files
	}
	if len(patients) == 0 {
		return nil, fmt.Errorf("no NDJSON files in %s", dir)
	}
	err = eachFile(ctx, patients, 1, func(_ int, _ string, r io.Reader) error { return a.AddNDJSON(r, 0) })
	return a, err
}

func printRisk(w io.Writer, r *risk.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "quasi-identifiers\t%s\n", strings.Join(r.QuasiIdentifiers, ", "))
	fmt.Fprintf(tw, "patients\t%d\n", r.Records)
	if r.Invalid > 0 {
		fmt.Fprintf(tw, "unreadable lines\t%d\n", r.Invalid)
	}
	fmt.Fprintf(tw, "classes\t%d\n", r.Classes)
	fmt.Fprintf(tw, "smallest class (k)\t%d\n", r.MinK)
	fmt.Fprintf(tw, "patients in classes below 5\t%.1f %%\n", 100*r.BelowK5)
	fmt.Fprintf(tw, "patients in classes below 11\t%.1f %%\n", 100*r.BelowK11)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "class size\tclasses\tpatients\t")
	for _, b := range r.Histogram {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", b.Size, b.Classes, b.Records)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "risk (threshold %.3g)\trecords at risk\thighest\tsuccess rate\n", r.Threshold)
	fmt.Fprintf(tw, "prosecutor\t%.1f %%\t%.1f %%\t%.1f %%\n", 100*r.Prosecutor.RecordsAtRisk, 100*r.Prosecutor.HighestRisk, 100*r.Prosecutor.SuccessRate)
	fmt.Fprintf(tw, "journalist\t%.1f %%\t%.1f %%\t%.1f %%\n", 100*r.Journalist.RecordsAtRisk, 100*r.Journalist.HighestRisk, 100*r.Journalist.SuccessRate)
	fmt.Fprintf(tw, "marketer\t\t\t%.1f %%\n", 100*r.Marketer.SuccessRate)
	tw.Flush()
}
