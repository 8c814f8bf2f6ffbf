package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

func init() {
	register(command{name: "explain", summary: "show which rule touches each element of a resource, and how", run: runExplain})
}

func runExplain(ctx context.Context, e *env, args []string) error {
	fl := flag.NewFlagSet("fhirdeid explain", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	var config, version, today string
	var showValues, all, showPHI bool
	for _, n := range []string{"c", "configFile"} {
		fl.StringVar(&config, n, "", "anonymizer configuration (default: the built-in HIPAA Safe Harbor one)")
	}
	fl.StringVar(&version, "fhir-version", "", "R4 or STU3 (default: the configuration's fhirVersion, else R4)")
	fl.StringVar(&today, "today", "", "the date to treat as today (YYYY-MM-DD) for age rules")
	fl.BoolVar(&showValues, "show-values", false, "print each value before and after (the values are the resource's: mind who sees them)")
	fl.BoolVar(&all, "all", false, "list complex elements too, not only values")
	fl.BoolVar(&showPHI, "show-phi", false, "with the scrub method, print the text of each replaced span (only on a terminal: it is PHI)")
	fl.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid explain [-c CONFIG] [--show-values] FILE|-

For one resource (a JSON file, or the first line of an NDJSON(.gz) file),
lists every element that a rule touches: its location, the number and method
of the rule that applies to it (the first rule to reach an element wins), and
what happened to its value. Values are printed only with --show-values.
For texts the scrub method scrubbed, lists the replaced spans (byte
positions, kind, detection layer); their text only with --show-phi, and only
when the output is a terminal.`)
		fl.PrintDefaults()
	}
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fl.Usage()
		return usageError{"need exactly one resource file (or -)"}
	}
	ctx, err = anonymizeContext(ctx, today)
	if err != nil {
		return usageError{err.Error()}
	}
	eng, warnings, err := loadEngine(config, version, false)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, w := range warnings {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	data, err := firstResource(pos[0], e.stdin)
	if err != nil {
		return err
	}
	var events []anonymize.TraceEvent
	tctx := anonymize.WithTrace(ctx, func(ev anonymize.TraceEvent) { events = append(events, ev) })
	var scrubbed []anonymize.ScrubEvent
	tctx = anonymize.WithScrubTrace(tctx, func(ev anonymize.ScrubEvent) { scrubbed = append(scrubbed, ev) })
	if showPHI && !isTerminal(e.stdout) {
		fmt.Fprintln(e.stderr, "warning: --show-phi ignored: the output is not a terminal")
		showPHI = false
	}
	_, st, err := eng.AnonymizeJSON(tctx, data, anonymize.FileContext{FileName: pos[0]})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if showValues {
		fmt.Fprintln(tw, "LOCATION\tTYPE\tRULE\tMETHOD\tBEFORE\tAFTER")
	} else {
		fmt.Fprintln(tw, "LOCATION\tTYPE\tRULE\tMETHOD\tEFFECT")
	}
	shown := 0
	for _, ev := range events {
		if !ev.HasValue && !all {
			continue
		}
		shown++
		effect := "kept"
		switch {
		case !ev.HasValue:
			effect = "-"
		case ev.Removed:
			effect = "removed"
		case ev.After != ev.Before:
			effect = "changed"
		}
		if showValues {
			after := quote(ev.After)
			if ev.Removed {
				after = "(removed)"
			} else if !ev.HasValue {
				after = ""
			}
			before := ""
			if ev.HasValue {
				before = quote(ev.Before)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", ev.Location, ev.Type, ev.Rule, ev.Method, before, after)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", ev.Location, ev.Type, ev.Rule, ev.Method, effect)
		}
	}
	// The values no rule reaches stay as they are: list them, since they are
	// what a reviewer of a de-identification configuration must look at.
	touched := map[string]bool{}
	for _, ev := range events {
		touched[ev.Location] = true
	}
	untouched := 0
	if v, ok := model.ParseVersion(eng.Config().FHIRVersion()); ok {
		if root, err := jsontree.Parse(data); err == nil && typed.Annotate(root, model.Get(v)) == nil {
			typed.Walk(root, func(n *jsontree.Node) bool {
				if typed.HasValue(n) && !touched[typed.Location(n)] {
					untouched++
					if showValues {
						fmt.Fprintf(tw, "%s\t%s\t-\tno rule\t%s\t%s\n", typed.Location(n), n.Type(), quote(n.Value()), quote(n.Value()))
					} else {
						fmt.Fprintf(tw, "%s\t%s\t-\tno rule\tkept\n", typed.Location(n), n.Type())
					}
				}
				return true
			})
		}
	}
	tw.Flush()
	printScrubSpans(e.stdout, scrubbed, showPHI)
	fmt.Fprintf(e.stdout, "%d elements touched by rules, %d values changed or removed; %d values no rule touches", shown, st.Changed, untouched)
	if st.Skipped {
		fmt.Fprint(e.stdout, "; a processing error replaced the resource (processingErrors: skip)")
	}
	fmt.Fprintln(e.stdout)
	return nil
}

// quote prints a value on one line, shortened when long.
func quote(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// firstResource reads a JSON file, or the first line of an NDJSON(.gz)
// file, or standard input for "-".
func firstResource(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
		if strings.HasSuffix(path, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			defer zr.Close()
			r = zr
		}
	}
	br := bufio.NewReaderSize(r, 1<<20)
	if strings.HasSuffix(strings.TrimSuffix(path, ".gz"), ".ndjson") {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			return nil, fmt.Errorf("%s: empty file", path)
		}
		return line, nil
	}
	return io.ReadAll(br)
}

// printScrubSpans lists, for each text the scrub method scrubbed, the spans
// it replaced: positions, kind and layer, and the span's text only when
// showPHI (the caller checked the output is a terminal).
func printScrubSpans(w io.Writer, evs []anonymize.ScrubEvent, showPHI bool) {
	for _, ev := range evs {
		fmt.Fprintf(w, "\nscrubbed %s (rule %d): %d bytes, %d spans replaced\n", ev.Location, ev.Rule, len(ev.Text), len(ev.Spans))
		if len(ev.Spans) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if showPHI {
			fmt.Fprintln(tw, "  START\tEND\tKIND\tLAYER\tTEXT")
		} else {
			fmt.Fprintln(tw, "  START\tEND\tKIND\tLAYER")
		}
		for _, sp := range ev.Spans {
			kind := sp.Kind.String()
			if sp.Shifted {
				kind += " (shifted)"
			}
			if showPHI {
				fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\n", sp.Start, sp.End, kind, sp.Layer, quote(ev.Text[sp.Start:sp.End]))
			} else {
				fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\n", sp.Start, sp.End, kind, sp.Layer)
			}
		}
		tw.Flush()
	}
}
