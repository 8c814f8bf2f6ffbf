package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/jsontree"
)

func init() {
	register(command{
		name:    "eval",
		summary: "evaluate a FHIRPath expression on a resource and print the results",
		run:     runEval,
	})
}

const evalUsage = `Usage:
  fhirdeid eval [--fhir-version R4|STU3] [--json-names] EXPR [FILE|-]

Evaluates the FHIRPath expression EXPR on a FHIR resource and prints each
result on a line: its location, its FHIR (or System) type and its value.

FILE is a JSON resource, or an NDJSON file (.ndjson, optionally .gz) of
which the first line is used; - or nothing reads standard input. The
anonymizer's functions nodesByType() and nodesByName() are available.

The values of the resource are printed: do not use this command on real
patient data where the terminal output may be recorded.

Flags:
`

func runEval(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), evalUsage)
		fs.PrintDefaults()
	}
	version := fs.String("fhir-version", "R4", "FHIR version of the resource: R4 or STU3")
	jsonNames := fs.Bool("json-names", false, "also accept choice members by JSON name (Observation.valueQuantity)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usageError{"expected EXPR and an optional FILE"}
	}
	v, ok := model.ParseVersion(*version)
	if !ok {
		return usageError{fmt.Sprintf("unknown FHIR version %q (want R4 or STU3)", *version)}
	}
	m := model.Get(v)
	if m == nil {
		return fmt.Errorf("no model for FHIR %s", v)
	}
	src := fs.Arg(0)
	file := "-"
	if fs.NArg() == 2 {
		file = fs.Arg(1)
	}
	data, err := readEvalInput(e, file)
	if err != nil {
		return err
	}
	root, err := jsontree.Parse(data)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", displayName(file), err)
	}
	if err := typed.Annotate(root, m); err != nil {
		return fmt.Errorf("typing %s: %w", displayName(file), err)
	}
	opts := []fhirpath.Option{
		fhirpath.WithModel(m),
		fhirpath.WithContextType(root.Type()),
		fhirpath.WithFunctions(fhirpath.AnonymizerFunctions()...),
	}
	if *jsonNames {
		opts = append(opts, fhirpath.WithJSONNames())
	}
	expr, err := fhirpath.Compile(src, opts...)
	if err != nil {
		return err
	}
	res, err := expr.Evaluate(root, &fhirpath.Env{
		Trace: func(name string, items []fhirpath.Item) {
			fmt.Fprintf(e.stderr, "trace %s: %d item(s)\n", name, len(items))
		},
	})
	if err != nil {
		return err
	}
	w := bufio.NewWriter(e.stdout)
	for _, it := range res {
		writeEvalItem(w, it)
	}
	return w.Flush()
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}

// readEvalInput returns one JSON resource from file: the whole file, or the
// first line of an NDJSON file (gzip-compressed when it ends in .gz).
func readEvalInput(e *env, file string) ([]byte, error) {
	var r io.Reader = e.stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("opening input: %w", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReader(r)
	if strings.HasSuffix(file, ".gz") || isGzip(br) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", displayName(file), err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	ndjson := strings.HasSuffix(strings.TrimSuffix(file, ".gz"), ".ndjson")
	if ndjson {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading %s: %w", displayName(file), err)
		}
		return line, nil
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", displayName(file), err)
	}
	// Standard input may hold NDJSON: use its first line when the whole
	// text is not one JSON value.
	if file == "-" {
		if _, err := jsontree.Parse(data); err != nil {
			if i := bytes.IndexByte(bytes.TrimLeft(data, " \t\r\n"), '\n'); i > 0 {
				return bytes.TrimLeft(data, " \t\r\n")[:i], nil
			}
		}
	}
	return data, nil
}

func isGzip(br *bufio.Reader) bool {
	b, err := br.Peek(2)
	return err == nil && b[0] == 0x1f && b[1] == 0x8b
}

// writeEvalItem prints one result: location, type and value separated by
// two spaces. System values have no location and print as "-".
func writeEvalItem(w *bufio.Writer, it fhirpath.Item) {
	n := it.Node()
	loc := "-"
	if n != nil {
		loc = typed.Location(n)
	}
	var val string
	switch {
	case n != nil && (n.Kind == jsontree.Object || n.Kind == jsontree.Array):
		val = string(n.AppendJSON(nil))
	case n != nil && n.Kind == jsontree.String:
		val = strconv.Quote(n.Value())
	case n != nil:
		val = n.Value()
	default:
		v, _ := it.Value()
		if s, ok := v.(string); ok {
			val = strconv.Quote(s)
		} else {
			val = fmt.Sprint(v)
		}
	}
	fmt.Fprintf(w, "%s  %s  %s\n", loc, it.TypeName(), val)
}
