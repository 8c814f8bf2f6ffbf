package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/anonymize/keys"
	"fhirdeid/bulk"
	"fhirdeid/config"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/ndjson"
	"fhirdeid/pipeline"
)

func init() {
	register(command{name: "anonymize", summary: "de-identify FHIR JSON/NDJSON files (Microsoft anonymizer compatible flags)", run: runAnonymize})
}

type anonymizeFlags struct {
	input, output, config  string
	profile, keysFile      string
	bulkData, recursive    bool
	skip, verbose, strict  bool
	fhirVersion, today     string
	workers, gzipLevel     int
	onInvalid              string
	maxLine                int
	cpuProfile, memProfile string
}

func runAnonymize(ctx context.Context, e *env, args []string) (err error) {
	var f anonymizeFlags
	fl := flag.NewFlagSet("fhirdeid anonymize", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	for _, n := range []string{"i", "inputFolder"} {
		fl.StringVar(&f.input, n, "", "input folder")
	}
	for _, n := range []string{"o", "outputFolder"} {
		fl.StringVar(&f.output, n, "", "output folder")
	}
	for _, n := range []string{"c", "configFile"} {
		fl.StringVar(&f.config, n, "", "anonymizer configuration (default: the built-in HIPAA Safe Harbor one)")
	}
	fl.StringVar(&f.profile, "profile", "", "built-in configuration instead of -c: "+strings.Join(defaultconfig.Profiles(), " (default) or "))
	fl.StringVar(&f.keysFile, "keys", "", "key file (fhirdeid keys init) whose keys replace the configuration's; default: FHIRDEID_*_KEY variables when set")
	for _, n := range []string{"b", "bulkData"} {
		fl.BoolVar(&f.bulkData, n, false, "the input folder holds NDJSON files (.ndjson, .ndjson.gz)")
	}
	for _, n := range []string{"r", "recursive"} {
		fl.BoolVar(&f.recursive, n, false, "process subfolders too")
	}
	for _, n := range []string{"s", "skip"} {
		fl.BoolVar(&f.skip, n, false, "skip files whose output already exists")
	}
	for _, n := range []string{"v", "verbose"} {
		fl.BoolVar(&f.verbose, n, false, "print each file")
	}
	fl.StringVar(&f.fhirVersion, "fhir-version", "", "R4 or STU3 (default: the configuration's fhirVersion, else R4)")
	fl.StringVar(&f.today, "today", "", "the date to treat as today (YYYY-MM-DD) for age rules; default: the local date")
	fl.BoolVar(&f.strict, "strict", false, "reject rule paths that name unknown elements instead of warning")
	fl.IntVar(&f.workers, "workers", 0, "de-identification goroutines (default: the number of CPUs)")
	// Level 2 of klauspost/compress writes de-identified NDJSON about as
	// small as level 3 with 12 % less CPU; level 1 takes 30 % less than 3
	// and writes 9 % more (synthea-1000-clone, bench/anonymize.sh).
	fl.IntVar(&f.gzipLevel, "gzip-level", 2, "compression level of .gz outputs, 1 (fastest) to 9 (smallest)")
	fl.StringVar(&f.onInvalid, "on-invalid", "fail", "a line that cannot be parsed or typed as a resource: fail (stop) or skip (drop it, report file, line and reason, exit 3)")
	fl.IntVar(&f.maxLine, "max-line-bytes", bulk.DefaultMaxLineBytes, "longest accepted NDJSON line")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	fl.StringVar(&f.memProfile, "memprofile", "", "write an allocation profile of the run to this file (go tool pprof)")
	fl.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage:
  fhirdeid anonymize -i INPUT_FOLDER -o OUTPUT_FOLDER [-c CONFIG | --profile NAME] [--keys FILE] [-b] [-r] [-s] [-v]
  fhirdeid anonymize [-c CONFIG | --profile NAME] [--keys FILE] FILE... -o OUTPUT_FOLDER
  fhirdeid anonymize [-c CONFIG | --profile NAME] [--keys FILE] -  < in.ndjson > out.ndjson

De-identifies FHIR resources: .json files (one resource each), .ndjson and
.ndjson.gz files (one resource per line, processed on all cores with the
output in input order). Each output keeps its input's name and form and is
written under a temporary name, renamed only when complete. Flags follow
Microsoft's FHIR anonymizer command line; configurations are compatible.`)
		fl.PrintDefaults()
	}
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return err
	}
	ctx, err = anonymizeContext(ctx, f.today)
	if err != nil {
		return usageError{err.Error()}
	}
	eng, warnings, err := loadEngineWith(engineSource{config: f.config, profile: f.profile, keysFile: f.keysFile,
		version: f.fhirVersion, strict: f.strict, getenv: e.getenv})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, w := range warnings {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	if f.gzipLevel < 1 || f.gzipLevel > 9 {
		return usageError{"-gzip-level must be between 1 and 9"}
	}
	if f.onInvalid != "fail" && f.onInvalid != "skip" {
		return usageError{"-on-invalid must be fail or skip"}
	}
	if f.maxLine <= 0 {
		return usageError{"-max-line-bytes must be positive"}
	}
	stopProfiles, err := startProfiles(f.cpuProfile, f.memProfile)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stopProfiles(); perr != nil && err == nil {
			err = perr
		}
	}()
	a := &anonymizer{eng: eng, workers: f.workers, gzipLevel: f.gzipLevel, verbose: f.verbose, stderr: e.stderr, start: time.Now(),
		skipInvalid: f.onInvalid == "skip", maxLine: f.maxLine}
	if a.workers <= 0 {
		a.workers = runtime.GOMAXPROCS(0)
	}

	if len(pos) == 1 && pos[0] == "-" {
		if f.input != "" || f.output != "" {
			return usageError{"- reads standard input and writes standard output: no -i or -o"}
		}
		if eng.Config().UsesScrub() {
			fmt.Fprintln(e.stderr, stdinScrubWarning)
		}
		err := a.stream(ctx, "stdin", e.stdin, e.stdout, false, false)
		a.summary(e.stderr)
		if err == nil {
			err = a.invalidErr()
		}
		return err
	}
	jobs, err := f.jobs(pos)
	if err != nil {
		return err
	}
	if len(jobs) == 0 {
		return usageError{"no input files found"}
	}
	if ctx, err = a.collectIdentifiers(ctx, jobs); err != nil {
		return err
	}
	stop := func() {}
	if isTerminal(e.stderr) && !f.verbose {
		stop = a.showProgress(e.stderr, len(jobs))
	}
	err = a.files(ctx, jobs, f.skip)
	stop()
	a.summary(e.stderr)
	if err == nil {
		err = a.invalidErr()
	}
	return err
}

// anonymizeContext pins "today" when given.
func anonymizeContext(ctx context.Context, today string) (context.Context, error) {
	if today == "" {
		return ctx, nil
	}
	t, err := time.Parse("2006-01-02", today)
	if err != nil {
		return nil, fmt.Errorf("-today must be a date such as 2026-11-28")
	}
	return anonymize.WithNow(ctx, t), nil
}

// loadEngine loads an anonymizer configuration (or the built-in one).
func loadEngine(path, version string, strict bool) (*anonymize.Engine, []string, error) {
	return loadEngineWith(engineSource{config: path, version: version, strict: strict})
}

// engineSource says where a command's anonymizer comes from: a
// configuration file or a built-in profile, and the keys that replace the
// configuration's (a key file, else the environment when getenv is set).
type engineSource struct {
	config, profile, keysFile string
	version                   string
	strict                    bool
	getenv                    func(string) string
}

// loadEngineWith loads the anonymizer of src.
func loadEngineWith(src engineSource) (*anonymize.Engine, []string, error) {
	data, name := defaultconfig.SafeHarbor(), "built-in "+defaultconfig.Name
	if src.config != "" && src.profile != "" {
		return nil, nil, errors.New("give -c (a configuration file) or --profile (a built-in one), not both")
	}
	if src.profile != "" {
		var ok bool
		if data, ok = defaultconfig.Profile(src.profile); !ok {
			return nil, nil, fmt.Errorf("--profile: unknown profile %q: the built-in profiles are %s", src.profile, strings.Join(defaultconfig.Profiles(), " and "))
		}
		name = "built-in profile " + src.profile
	}
	if src.config != "" {
		var err error
		if data, err = os.ReadFile(src.config); err != nil {
			return nil, nil, fmt.Errorf("read configuration: %w", err)
		}
		name = src.config
	}
	var k anonymize.Keys
	var warnings []string
	switch {
	case src.keysFile != "":
		var err error
		if k, warnings, err = keys.Load(src.keysFile); err != nil {
			return nil, nil, err
		}
	case src.getenv != nil:
		var err error
		if k, err = keys.FromEnv(src.getenv); err != nil {
			return nil, nil, err
		}
	}
	version := src.version
	if version == "" {
		version = fileVersion(data)
	}
	cfg, err := anonymize.ParseConfig(data, anonymize.Options{FHIRVersion: version, Compiler: config.CheckedCompiler(version, src.strict), Keys: k})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return eng, append(warnings, cfg.Warnings()...), nil
}

// fileVersion guesses the release from a configuration's fhirVersion, so
// that an STU3 configuration works without --fhir-version.
func fileVersion(data []byte) string {
	i := bytes.Index(bytes.ToLower(data), []byte(`"fhirversion"`))
	if i >= 0 {
		rest := bytes.ToLower(data[i+13:])
		if j := bytes.IndexByte(rest, '"'); j >= 0 && bytes.HasPrefix(bytes.TrimLeft(rest[j:], `"`), []byte("stu3")) {
			return "STU3"
		}
	}
	return "R4"
}

// job is one input file and where its output goes.
type job struct {
	in, out string
	ndjson  bool
	gz      bool
	// notRead is set when the scrub method's first pass did not read the
	// file, whose name gives a resource type that is not among
	// anonymize.FirstPassTypes: the main pass then fails on a resource of
	// one of those types (see namedType).
	notRead bool
}

func (f *anonymizeFlags) jobs(args []string) ([]job, error) {
	if f.output == "" {
		return nil, usageError{"give the output folder with -o"}
	}
	var jobs []job
	add := func(in, rel string) {
		base := strings.ToLower(in)
		j := job{in: in, out: filepath.Join(f.output, rel)}
		switch {
		case strings.HasSuffix(base, ".ndjson.gz"):
			j.ndjson, j.gz = true, true
		case strings.HasSuffix(base, ".ndjson"):
			j.ndjson = true
		case strings.HasSuffix(base, ".json"):
		default:
			return
		}
		if f.input != "" && f.bulkData != j.ndjson {
			return // as Microsoft's tool: -b selects NDJSON, else JSON files
		}
		jobs = append(jobs, j)
	}
	if f.input != "" {
		if len(args) > 0 {
			return nil, usageError{"give either -i or files, not both"}
		}
		abs, _ := filepath.Abs(f.input)
		absOut, _ := filepath.Abs(f.output)
		if abs == absOut {
			return nil, usageError{"the output folder must differ from the input folder"}
		}
		err := filepath.WalkDir(f.input, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != f.input && (!f.recursive || filepath.Clean(path) == filepath.Clean(f.output)) {
					return filepath.SkipDir
				}
				return nil
			}
			rel, _ := filepath.Rel(f.input, path)
			add(path, rel)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read input folder: %w", err)
		}
	}
	for _, a := range args {
		n := len(jobs)
		add(a, filepath.Base(a))
		if len(jobs) == n {
			return nil, usageError{fmt.Sprintf("%s: not a .json, .ndjson or .ndjson.gz file", a)}
		}
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].in < jobs[j].in })
	return jobs, nil
}

// anonymizer runs the engine over files and keeps the counts.
type anonymizer struct {
	eng       *anonymize.Engine
	workers   int
	gzipLevel int
	verbose   bool
	stderr    io.Writer
	start     time.Time

	mu      sync.Mutex
	types   map[string]int64
	ops     map[string]int64
	nfiles  int
	skipped int64 // resources replaced by processingErrors: skip
	// skipInvalid drops lines that cannot be parsed or typed (-on-invalid
	// skip); invalid lists them (capped) and nInvalid counts them.
	skipInvalid bool
	maxLine     int
	invalid     []pipeline.InvalidLine
	nInvalid    int64
	resources   atomic.Int64
	bytesIn     atomic.Int64
	filesDone   atomic.Int64
}

// countedOps are the operations the summary counts resources of.
var countedOps = [...]anonymize.Operation{anonymize.OpRedact, anonymize.OpAbstract, anonymize.OpCryptoHash,
	anonymize.OpEncrypt, anonymize.OpPerturb, anonymize.OpSubstitute, anonymize.OpGeneralize}

// tally counts the resources one worker processed. Workers count apart and
// the tallies are merged into the anonymizer's totals when a file ends, so
// that they share no lock and no counter per resource.
type tally struct {
	types   map[string]int64
	ops     [len(countedOps)]int64
	skipped int64
	// pending is the number of resources not yet added to
	// anonymizer.resources (the progress line's count).
	pending int64
}

// tallyFlush is how many resources a tally counts before it adds them to
// the progress count.
const tallyFlush = 256

// count records one processed resource.
func (a *anonymizer) count(t *tally, typ string, st anonymize.Stats) {
	if t.types == nil {
		t.types = map[string]int64{}
	}
	t.types[typ]++
	for i, op := range countedOps {
		if st.Operations.Has(op) {
			t.ops[i]++
		}
	}
	if st.Skipped {
		t.skipped++
	}
	if t.pending++; t.pending >= tallyFlush {
		a.resources.Add(t.pending)
		t.pending = 0
	}
}

// merge adds t to the totals and clears it.
func (a *anonymizer) merge(t *tally) {
	a.resources.Add(t.pending)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.types == nil {
		a.types, a.ops = map[string]int64{}, map[string]int64{}
	}
	for k, v := range t.types {
		a.types[k] += v
	}
	for i, op := range countedOps {
		if t.ops[i] > 0 {
			a.ops[op.String()] += t.ops[i]
		}
	}
	a.skipped += t.skipped
	*t = tally{types: t.types}
	clear(t.types)
}

// resource de-identifies one resource, appending it to dst, and counts it
// in t.
func (a *anonymizer) resource(ctx context.Context, t *tally, fc anonymize.FileContext, data, dst []byte, notRead bool) ([]byte, error) {
	typ, _ := bulk.ResourceType(data)
	if notRead && slices.Contains(anonymize.FirstPassTypes, typ) {
		return dst, &firstPassError{typ: typ, named: namedType(fc.FileName)}
	}
	out, st, err := a.eng.AppendAnonymizedJSON(ctx, dst, data, fc)
	if err != nil {
		if typ != "" && typed.IsTypeName(typ) {
			return dst, fmt.Errorf("%s: %w", typ, err)
		}
		return dst, err
	}
	a.count(t, typ, st)
	return out, nil
}

// stream de-identifies NDJSON from r to w.
func (a *anonymizer) stream(ctx context.Context, name string, r io.Reader, w io.Writer, gz, notRead bool) error {
	fc := anonymize.FileContext{FileName: name}
	opts := ndjson.Options{Workers: a.workers}
	var gzm *ndjson.GzipMembers
	if gz {
		gzm = ndjson.NewGzipMembers(a.workers, a.gzipLevel)
		opts.Encode = gzm.Encode
	}
	opts.MaxLine = a.maxLine
	tallies := make([]tally, a.workers)
	defer func() {
		for i := range tallies {
			a.merge(&tallies[i])
		}
	}()
	st, err := ndjson.Transform(ctx, r, w, func(worker int, lineNo int64, line, dst []byte) ([]byte, error) {
		out, err := a.resource(ctx, &tallies[worker], fc, line, dst, notRead)
		if err != nil && a.dropInvalid(name, lineNo, line, err) {
			return dst, nil
		}
		return out, err
	}, opts)
	a.bytesIn.Add(st.BytesIn)
	if err != nil {
		return fmt.Errorf("%s:%w", name, lineSep(err))
	}
	if gz && st.BytesOut == 0 {
		_, err := w.Write(gzm.Empty())
		return err
	}
	return nil
}

// lineSep renders a *ndjson.LineError as "LINE: cause" after the file
// name.
func lineSep(err error) error {
	var le *ndjson.LineError
	if errors.As(err, &le) {
		return fmt.Errorf("%d: %w", le.Line, le.Err)
	}
	return fmt.Errorf(" %w", err)
}

// files processes jobs: NDJSON files one at a time with every core on
// each; JSON files several at a time.
func (a *anonymizer) files(ctx context.Context, jobs []job, skip bool) error {
	var jsonJobs []job
	for _, j := range jobs {
		if skip {
			if _, err := os.Stat(j.out); err == nil {
				if a.verbose {
					fmt.Fprintf(a.stderr, "skip %s (output exists)\n", j.in)
				}
				a.filesDone.Add(1)
				continue
			}
		}
		if !j.ndjson {
			jsonJobs = append(jsonJobs, j)
			continue
		}
		if err := a.file(ctx, j); err != nil {
			return err
		}
	}
	if len(jsonJobs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan job)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for i := 0; i < a.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				if err := a.file(ctx, j); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
	for _, j := range jsonJobs {
		select {
		case ch <- j:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// file de-identifies one file into a temporary file next to its output and
// renames it into place when complete.
func (a *anonymizer) file(ctx context.Context, j job) (err error) {
	if err := os.MkdirAll(filepath.Dir(j.out), 0o755); err != nil {
		return err
	}
	in, err := os.Open(j.in)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(j.out), "."+filepath.Base(j.out)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	t0 := time.Now()
	name := filepath.Base(j.in)
	if j.ndjson {
		var r io.Reader = in
		if j.gz {
			zr, err := gzip.NewReader(in)
			if err != nil {
				return fmt.Errorf("%s: gunzip: %w", j.in, err)
			}
			defer zr.Close()
			r = zr
		}
		if err := a.stream(ctx, j.in, r, tmp, j.gz, j.notRead); err != nil {
			return err
		}
	} else {
		data, err := io.ReadAll(in)
		if err != nil {
			return err
		}
		a.bytesIn.Add(int64(len(data)))
		var t tally
		out, err := a.resource(ctx, &t, anonymize.FileContext{FileName: name}, data, nil, false)
		a.merge(&t)
		if err != nil && a.dropInvalid(j.in, 1, data, err) {
			tmp.Close()
			os.Remove(tmp.Name())
			a.filesDone.Add(1)
			return nil // nothing written for an invalid resource
		}
		if err != nil {
			return fmt.Errorf("%s: %w", j.in, err)
		}
		if _, err := tmp.Write(out); err != nil {
			return err
		}
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), j.out); err != nil {
		return err
	}
	a.filesDone.Add(1)
	a.mu.Lock()
	a.nfiles++
	a.mu.Unlock()
	if a.verbose {
		fmt.Fprintf(a.stderr, "%s → %s (%s)\n", j.in, j.out, time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// dropInvalid records line lineNo of file as dropped when skipping invalid
// lines and err says the line cannot be parsed or typed; the line itself is
// never printed.
func (a *anonymizer) dropInvalid(file string, lineNo int64, line []byte, err error) bool {
	if !a.skipInvalid {
		return false
	}
	reason, ok := pipeline.InvalidReason(line, "", err)
	if !ok {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nInvalid++
	if len(a.invalid) < 1000 {
		a.invalid = append(a.invalid, pipeline.InvalidLine{File: file, Line: lineNo, Reason: reason})
	}
	return true
}

// invalidErr lists the dropped lines and returns the exit-3 error, or nil
// when none was dropped.
func (a *anonymizer) invalidErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nInvalid == 0 {
		return nil
	}
	sort.Slice(a.invalid, func(i, j int) bool {
		if a.invalid[i].File != a.invalid[j].File {
			return a.invalid[i].File < a.invalid[j].File
		}
		return a.invalid[i].Line < a.invalid[j].Line
	})
	for _, il := range a.invalid {
		fmt.Fprintf(a.stderr, "dropped %s:%d: %s\n", il.File, il.Line, il.Reason)
	}
	if n := a.nInvalid - int64(len(a.invalid)); n > 0 {
		fmt.Fprintf(a.stderr, "dropped %d more invalid lines\n", n)
	}
	return &exitError{code: 3, err: fmt.Errorf("%d invalid lines dropped (-on-invalid skip); the other resources were de-identified", a.nInvalid)}
}

func (a *anonymizer) summary(w io.Writer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	el := time.Since(a.start)
	n := a.resources.Load()
	fmt.Fprintf(w, "%d resources in %d files, %s, %.0f resources/s, %.1f MB/s\n", n, a.nfiles, el.Round(time.Millisecond),
		float64(n)/el.Seconds(), float64(a.bytesIn.Load())/el.Seconds()/1e6)
	for _, k := range config.SortedKeys(a.types) {
		fmt.Fprintf(w, "  %-28s %9d\n", k, a.types[k])
	}
	if len(a.ops) > 0 {
		fmt.Fprintln(w, "resources per operation:")
		for _, k := range config.SortedKeys(a.ops) {
			fmt.Fprintf(w, "  %-28s %9d\n", k, a.ops[k])
		}
	}
	if a.skipped > 0 {
		fmt.Fprintf(w, "%d resources replaced by an empty one after a processing error (processingErrors: skip)\n", a.skipped)
	}
}

func (a *anonymizer) showProgress(w io.Writer, total int) func() {
	return statusLine(w, func() string {
		n := a.resources.Load()
		return fmt.Sprintf("files %d/%d · %d resources · %.0f resources/s", a.filesDone.Load(), total, n,
			float64(n)/time.Since(a.start).Seconds())
	})
}

// startProfiles starts a CPU profile into cpuFile and prepares an
// allocation profile into memFile (either may be ""); the returned function
// stops them and writes the files.
func startProfiles(cpuFile, memFile string) (stop func() error, err error) {
	var cpu *os.File
	if cpuFile != "" {
		if cpu, err = os.Create(cpuFile); err != nil {
			return nil, fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, fmt.Errorf("cpuprofile: %w", err)
		}
	}
	return func() error {
		var first error
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				first = fmt.Errorf("cpuprofile: %w", err)
			}
		}
		if memFile != "" {
			f, err := os.Create(memFile)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil && first == nil {
				first = fmt.Errorf("memprofile: %w", err)
			}
		}
		return first
	}, nil
}
