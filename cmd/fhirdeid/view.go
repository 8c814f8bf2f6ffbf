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
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"fhirdeid/views"
	vparquet "fhirdeid/views/parquet"
)

func init() {
	register(command{
		name:    "view",
		summary: "run a SQL on FHIR ViewDefinition over NDJSON files: rows as NDJSON, CSV or Parquet",
		run:     runView,
	})
}

const viewUsage = `Usage:
  fhirdeid view --view FILE|builtin:NAME [--format ndjson|csv|parquet] [-o OUT] INPUT...
  fhirdeid view --list

Runs a SQL on FHIR v2 ViewDefinition over FHIR resources and writes its
rows: NDJSON (one JSON object per row, column names as keys; the default,
on standard output), CSV (RFC 4180 with a header) or Parquet (typed columns).
Try a view here before adding it to a pipeline's views.

INPUT is an .ndjson or .ndjson.gz file (one resource per line), a .json
file (one resource), a folder (its NDJSON and JSON files, recursively) or -
for standard input. Resources of other types than the view's are skipped.

Built-in views (--view builtin:NAME; --list prints them):
  patient_demographics, encounters, conditions, observations,
  medication_requests, procedures, immunizations

The rows hold values of the resources: run views on de-identified data.

Flags:
`

func runView(ctx context.Context, e *env, args []string) error {
	fl := flag.NewFlagSet("view", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	fl.Usage = func() {
		fmt.Fprint(fl.Output(), viewUsage)
		fl.PrintDefaults()
	}
	viewArg := fl.String("view", "", "the ViewDefinition: a JSON file, or builtin:NAME")
	format := fl.String("format", "", "output format: ndjson, csv or parquet (default: from -o's extension, else ndjson)")
	out := fl.String("o", "", "output file (default: standard output)")
	comp := fl.String("compression", "snappy", "Parquet compression: snappy, zstd or none")
	list := fl.Bool("list", false, "list the built-in views")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, n := range views.BuiltinNames() {
			v, err := views.Builtin(n)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "builtin:%-22s %-18s %d columns\n", n, v.Resource, len(v.Columns))
		}
		return nil
	}
	if *viewArg == "" {
		return usageError{"--view FILE or --view builtin:NAME is required"}
	}
	if fl.NArg() == 0 {
		return usageError{"expected at least one INPUT (file, folder or -)"}
	}
	v, err := loadView(*viewArg)
	if err != nil {
		return err
	}
	f := *format
	if f == "" {
		switch {
		case strings.HasSuffix(*out, ".csv"):
			f = "csv"
		case strings.HasSuffix(*out, ".parquet"):
			f = "parquet"
		default:
			f = "ndjson"
		}
	}
	if f != "ndjson" && f != "csv" && f != "parquet" {
		return usageError{fmt.Sprintf("unknown format %q (ndjson, csv or parquet)", f)}
	}
	inputs, err := viewInputs(fl.Args())
	if err != nil {
		return err
	}

	// The output goes to a temporary name and is renamed when complete.
	var w io.Writer = e.stdout
	var tmp *os.File
	if *out != "" && *out != "-" {
		tmp, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*.tmp")
		if err != nil {
			return fmt.Errorf("creating output: %w", err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	var rw views.RowWriter
	switch f {
	case "ndjson":
		rw = views.NewNDJSONWriter(bw, v)
	case "csv":
		rw, err = views.NewCSVWriter(bw, v)
	case "parquet":
		rw, err = vparquet.NewWriter(bw, v, vparquet.Options{Compression: *comp})
	}
	if err != nil {
		return err
	}
	r := v.NewRunner()
	var resources int64
	for _, in := range inputs {
		n, err := viewFile(ctx, e, in, r, rw.Write)
		resources += n
		if err != nil {
			return err
		}
	}
	if err := rw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		if err := os.Rename(tmp.Name(), *out); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		tmp = nil
	}
	fmt.Fprintf(e.stderr, "view %s: %d rows from %d resources in %d inputs\n", v.Name, r.Rows(), resources, len(inputs))
	return nil
}

// loadView reads a ViewDefinition file or a built-in view.
func loadView(arg string) (*views.View, error) {
	if name, ok := strings.CutPrefix(arg, "builtin:"); ok {
		return views.Builtin(name)
	}
	f, err := os.Open(arg)
	if err != nil {
		return nil, fmt.Errorf("opening view: %w", err)
	}
	defer f.Close()
	return views.Load(f, arg)
}

// viewInputs expands folders into their .ndjson, .ndjson.gz and .json
// files, sorted.
func viewInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" {
			out = append(out, a)
			continue
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			n := d.Name()
			if !d.IsDir() && (strings.HasSuffix(n, ".ndjson") || strings.HasSuffix(n, ".ndjson.gz") || strings.HasSuffix(n, ".json")) {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// maxResourceLine bounds one NDJSON line (one resource).
const maxResourceLine = 256 << 20

// viewFile runs the view over one input; it returns the number of
// resources read. Errors name the file and line, never a value.
func viewFile(ctx context.Context, e *env, name string, r *views.Runner, emit func([]views.Value) error) (int64, error) {
	var src io.Reader = e.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return 0, fmt.Errorf("input: %w", err)
		}
		defer f.Close()
		src = f
	}
	br := bufio.NewReaderSize(src, 256<<10)
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", displayName(name), err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	if strings.HasSuffix(name, ".json") {
		data, err := io.ReadAll(io.LimitReader(br, maxResourceLine+1))
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if len(data) > maxResourceLine {
			return 0, fmt.Errorf("%s: larger than %d bytes", name, maxResourceLine)
		}
		if err := r.ProcessJSON(data, emit); err != nil {
			return 1, fmt.Errorf("%s: %w", name, err)
		}
		return 1, nil
	}
	var n int64
	var line []byte
	for lineNo := 1; ; lineNo++ {
		if lineNo%1024 == 0 && ctx.Err() != nil {
			return n, ctx.Err()
		}
		var err error
		line, err = readLine(br, line[:0])
		if len(bytes.TrimSpace(line)) > 0 {
			n++
			if perr := r.ProcessJSON(line, emit); perr != nil {
				return n, fmt.Errorf("%s:%d: %w", displayName(name), lineNo, perr)
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%s:%d: %w", displayName(name), lineNo, err)
		}
	}
}

var errLineTooLong = errors.New("line longer than 256 MiB")

// readLine appends the next line (without its newline) to buf.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxResourceLine {
			return buf[:0], errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if n := len(buf); n > 0 && buf[n-1] == '\n' {
			buf = buf[:n-1]
		}
		return buf, err
	}
}
