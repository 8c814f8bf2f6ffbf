package bulk

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// ErrOtherExport reports that the checkpoint holds an unfinished export of
// a different request.
var ErrOtherExport = errors.New("the destination holds an unfinished export of a different request")

// Exporter runs a whole export — kick-off, poll, download, finalise — into
// a Sink, keeping a checkpoint so that a re-run after a crash continues the
// same export.
type Exporter struct {
	// Client talks to the server.
	Client *Client
	// Store keeps the checkpoint.
	Store CheckpointStore
	// Sink receives the files, gzip-compressed NDJSON in bulk layout, and
	// manifest.json.
	Sink Sink
	// Lines, if set, receives the validated lines of each file instead of
	// the Sink (which may then be nil): the pipeline mode, where a file is
	// de-identified as it streams in. Checkpoints, retries and resume work
	// as with a Sink.
	Lines LineHandler
	// Concurrency is the number of parallel downloads per host (default 4).
	Concurrency int
	// AllowCountMismatch turns a line count that differs from the manifest
	// count into a warning event instead of a failure.
	AllowCountMismatch bool
	// KeepJob skips the DELETE of the status URL after success.
	KeepJob bool
	// Events receives export-level events (normally the same sink as the
	// client's).
	Events EventSink
	// FileDone, if set, is called after each file is stored and the
	// checkpoint saved.
	FileDone func(FileState)

	// CheckDuplicates hashes the Type/id of every output line and counts
	// resources that appear more than once in the files downloaded by this
	// run (a "duplicates" event and Result.Duplicates; ids are never
	// logged). It costs about 24 bytes of memory per resource.
	CheckDuplicates bool

	mu        sync.Mutex // guards the checkpoint during downloads
	refreshMu sync.Mutex // serialises manifest refreshes
	seen      map[uint64]struct{}
	dups      int64
}

// LineHandler consumes the files of an export line by line.
type LineHandler interface {
	// Begin starts a file. After a failed attempt (a cut connection), the
	// earlier LineWriter is aborted and Begin is called again for the same
	// file, which is then streamed from its first line.
	Begin(fs FileState) (LineWriter, error)
}

// LineWriter receives the lines of one file.
type LineWriter interface {
	// WriteLine receives one validated NDJSON line; the slice is only
	// valid during the call.
	WriteLine(line []byte) error
	// Commit is called when the whole file was read and validated; the
	// file is then recorded as done in the checkpoint.
	Commit() error
	// Abort discards what the writer received.
	Abort() error
}

// Result summarises a finished export.
type Result struct {
	// Checkpoint is the final checkpoint.
	Checkpoint *Checkpoint
	// Resumed is true when the run continued an export from the checkpoint.
	Resumed bool
	// Kickoffs is the number of kick-off requests this run sent (0 or 1).
	Kickoffs int
	// FilesDownloaded, Resources and Bytes count what this run downloaded
	// (Bytes: decompressed NDJSON).
	FilesDownloaded int
	Resources       int64
	Bytes           int64
	// Severity counts the issues of the error files by severity.
	Severity map[string]int64
	// Partial is true when the server reported issues of severity error or
	// fatal; the export is complete but the next --since stays unchanged.
	Partial bool
	// Duplicates counts output resources whose Type/id appeared in an
	// earlier file of this run (with CheckDuplicates).
	Duplicates int64
	// Duration is the wall time of this run; DownloadDuration that of the
	// download phase.
	Duration, DownloadDuration time.Duration
}

func (e *Exporter) emit(id string, detail map[string]any) {
	if e.Events != nil {
		e.Events.Event(id, detail)
	}
}

// NewExportID returns a random export id.
func NewExportID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Prepare loads the checkpoint and returns the one Run will use: the
// unfinished export of the same request, or a fresh one (carrying the last
// successful transactionTime). It fails with ErrOtherExport when an
// unfinished export of another request is present.
func (e *Exporter) Prepare(req Request) (cp *Checkpoint, resumed bool, err error) {
	prev, err := e.Store.Load()
	if err != nil {
		return nil, false, err
	}
	if prev != nil && !prev.Complete && (prev.StatusURL != "" || !prev.KickoffStarted.IsZero()) {
		if !prev.Request.Equal(&req) {
			return nil, false, ErrOtherExport
		}
		if prev.StatusURL != "" {
			return prev, true, nil
		}
		// The kick-off was sent but its answer never recorded: start anew.
	}
	cp = &Checkpoint{Version: 1, ExportID: NewExportID(), Request: req}
	if prev != nil {
		cp.LastSuccessfulTransactionTime = prev.LastSuccessfulTransactionTime
		if prev.Complete {
			for _, f := range prev.Files {
				cp.PreviousFiles = append(cp.PreviousFiles, f.Name)
			}
		} else {
			cp.PreviousFiles = prev.PreviousFiles
		}
	}
	return cp, false, nil
}

// Run performs or resumes the export of req (see Prepare).
func (e *Exporter) Run(ctx context.Context, req Request) (*Result, error) {
	cp, resumed, err := e.Prepare(req)
	if err != nil {
		return nil, err
	}
	return e.RunCheckpoint(ctx, cp, resumed)
}

// RunCheckpoint continues the export in cp from wherever it stopped.
func (e *Exporter) RunCheckpoint(ctx context.Context, cp *Checkpoint, resumed bool) (*Result, error) {
	c := e.Client
	clk := c.clock()
	start := clk.Now()
	res := &Result{Checkpoint: cp, Resumed: resumed, Severity: map[string]int64{}}
	if cp.StatusURL == "" {
		if _, err := c.Metadata(ctx); err != nil {
			e.emit("client_error", map[string]any{"message": "read CapabilityStatement (continuing): " + err.Error()})
		}
		cp.KickoffURL = redactURL(c.KickoffURL(&cp.Request))
		cp.KickoffStarted = clk.Now()
		if err := e.Store.Save(cp); err != nil {
			return res, err
		}
		res.Kickoffs++
		status, err := c.Kickoff(ctx, &cp.Request)
		if err != nil {
			return res, err
		}
		cp.StatusURL = status
		cp.KickedOffAt = clk.Now()
		if err := e.Store.Save(cp); err != nil {
			return res, err
		}
	}
	if cp.Manifest == nil {
		m, err := c.Poll(ctx, cp.StatusURL, cp.KickedOffAt)
		if err != nil {
			if resumed && errors.Is(err, ErrJobGone) {
				return res, fmt.Errorf("resume: %w; the export must be started again (--restart)", err)
			}
			return res, err
		}
		cp.Manifest = m
		cp.TransactionTime = m.TransactionTime
		cp.Files = planFiles(m)
		if err := e.Store.Save(cp); err != nil {
			return res, err
		}
	}
	dlStart := clk.Now()
	if err := e.downloadAll(ctx, cp, res); err != nil {
		return res, err
	}
	res.DownloadDuration = clk.Now().Sub(dlStart)
	for _, f := range cp.Files {
		for sev, n := range f.Severity {
			res.Severity[sev] += n
		}
	}
	res.Partial = res.Severity["error"] > 0 || res.Severity["fatal"] > 0
	res.Duplicates = e.dups
	if err := e.finish(ctx, cp, res); err != nil {
		return res, err
	}
	res.Duration = clk.Now().Sub(start)
	var total int64
	for _, f := range cp.Files {
		total += f.Resources
	}
	e.emit("export_complete", map[string]any{"files": len(cp.Files), "resources": total,
		"bytes": res.Bytes, "attachments": 0, "duration": res.Duration.Milliseconds()})
	return res, nil
}

// planFiles assigns stable local names: {Type}.{nnn}.ndjson.gz, with
// deleted/ and error/ subfolders, numbered per type in manifest order.
func planFiles(m *Manifest) []FileState {
	var out []FileState
	seq := map[string]int{}
	add := func(kind string, files []File, dir, defType string) {
		for _, f := range files {
			t := f.Type
			if t == "" {
				t = defType
			}
			base := safeName(t)
			if base == "(invalid)" {
				base = "output"
			}
			key := dir + base
			n := seq[key]
			seq[key]++
			out = append(out, FileState{Kind: kind, Type: f.Type, URL: f.URL, Count: f.Count,
				Name: fmt.Sprintf("%s%s.%03d.ndjson.gz", dir, base, n)})
		}
	}
	add(KindOutput, m.Output, "", "output")
	add(KindDeleted, m.Deleted, "deleted/", "Bundle")
	add(KindError, m.Error, "error/", "OperationOutcome")
	return out
}

// downloadAll downloads every file not yet done, Concurrency at a time per
// host, saving the checkpoint after each.
func (e *Exporter) downloadAll(ctx context.Context, cp *Checkpoint, res *Result) error {
	conc := e.Concurrency
	if conc <= 0 {
		conc = 4
	}
	mu := &e.mu
	mu.Lock()
	e.seen, e.dups = nil, 0
	mu.Unlock()
	var wg sync.WaitGroup
	var errs []error
	// Per-host queues, each served by conc workers.
	queues := map[string][]int{}
	var hosts []string
	snapshot := append([]FileState(nil), cp.Files...)
	for i, f := range snapshot {
		if f.Done {
			continue
		}
		host := ""
		if u, err := url.Parse(f.URL); err == nil {
			host = strings.ToLower(u.Host)
		}
		if _, ok := queues[host]; !ok {
			hosts = append(hosts, host)
		}
		queues[host] = append(queues[host], i)
	}
	// With many files, the checkpoint is saved at most once a second: a
	// file stored but not yet recorded is downloaded again after a crash,
	// which is safe; saving the whole list after each of thousands of
	// files would not be cheap.
	frequent := len(cp.Files) <= 1000
	lastSave := time.Now()
	dirty := false
	save := func() {
		if err := e.Store.Save(cp); err != nil {
			errs = append(errs, err)
		}
		lastSave, dirty = time.Now(), false
	}
	one := func(i int, fs FileState) {
		mu.Lock()
		m := cp.Manifest
		mu.Unlock()
		done, err := e.downloadFile(ctx, m, fs)
		var he *HTTPError
		if errors.As(err, &he) && (he.StatusCode == http.StatusForbidden || he.StatusCode == http.StatusNotFound || he.StatusCode == http.StatusGone) {
			// The link may have expired: fetch the manifest again for
			// fresh links (STU3 allows it) and retry once.
			if fresh, m2, rerr := e.refreshURL(ctx, cp, i, fs.URL); rerr == nil {
				fs.URL = fresh
				done, err = e.downloadFile(ctx, m2, fs)
			} else {
				err = fmt.Errorf("%w (manifest refresh: %v)", err, rerr)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			cp.Files[i].Error = err.Error()
			errs = append(errs, err)
			save()
			return
		}
		cp.Files[i] = done
		res.FilesDownloaded++
		res.Resources += done.Resources
		res.Bytes += done.Bytes
		dirty = true
		if frequent || time.Since(lastSave) >= time.Second {
			save()
		}
		if e.FileDone != nil {
			e.FileDone(done)
		}
	}
	for _, host := range hosts {
		q := make(chan int, len(queues[host]))
		for _, i := range queues[host] {
			q <- i
		}
		close(q)
		for w := 0; w < min(conc, len(queues[host])); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range q {
					if ctx.Err() != nil {
						mu.Lock()
						errs = append(errs, ctx.Err())
						mu.Unlock()
						return
					}
					one(i, snapshot[i])
				}
			}()
		}
	}
	wg.Wait()
	if dirty {
		save()
	}
	if len(errs) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	failed := 0
	for _, f := range cp.Files {
		if !f.Done {
			failed++
		}
	}
	if len(errs) == 1 {
		return fmt.Errorf("download: %w", errs[0])
	}
	return fmt.Errorf("download: %d of %d files failed; first: %w", failed, len(cp.Files), errs[0])
}

// refreshURL re-reads the manifest from the status URL and returns the
// current URL of file i. Concurrent callers that saw the same stale URL
// share one refresh.
func (e *Exporter) refreshURL(ctx context.Context, cp *Checkpoint, i int, stale string) (string, *Manifest, error) {
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	e.mu.Lock()
	cur, m := cp.Files[i].URL, cp.Manifest
	e.mu.Unlock()
	if cur != stale {
		return cur, m, nil
	}
	e.emit("status_refresh", map[string]any{"fileUrl": redactURL(stale)})
	fresh, err := e.Client.Poll(ctx, cp.StatusURL, e.Client.clock().Now())
	if err != nil {
		return "", nil, err
	}
	plan := planFiles(fresh)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(plan) != len(cp.Files) {
		return "", nil, errors.New("the refreshed manifest lists other files")
	}
	for j := range plan {
		if plan[j].Kind != cp.Files[j].Kind || plan[j].Type != cp.Files[j].Type {
			return "", nil, errors.New("the refreshed manifest lists other files")
		}
	}
	for j := range plan {
		cp.Files[j].URL = plan[j].URL
	}
	cp.Manifest = fresh
	if err := e.Store.Save(cp); err != nil {
		return "", nil, err
	}
	return cp.Files[i].URL, fresh, nil
}

// downloadFile fetches, validates and stores one file.
func (e *Exporter) downloadFile(ctx context.Context, m *Manifest, fs FileState) (FileState, error) {
	c := e.Client
	expect := fs.Type
	switch fs.Kind {
	case KindDeleted:
		expect = "Bundle"
	case KindError:
		expect = "OperationOutcome"
	}
	e.emit("download_request", map[string]any{"fileUrl": redactURL(fs.URL), "itemType": fs.Kind, "resourceType": fs.Type})
	f := File{Type: fs.Type, URL: fs.URL, Count: fs.Count}
	var out FileState
	var hashes []uint64
	err := c.Fetch(ctx, m, f, func(raw io.Reader, encoding string) error {
		out = fs
		out.Error = ""
		out.Severity = nil
		var sf SinkFile
		var lw LineWriter
		var err error
		if e.Lines != nil {
			lw, err = e.Lines.Begin(fs)
		} else {
			sf, err = e.Sink.Create(fs.Name)
		}
		if err != nil {
			return err
		}
		committed := false
		defer func() {
			if committed {
				return
			}
			if lw != nil {
				_ = lw.Abort()
			} else {
				_ = sf.Abort()
			}
		}()
		br := bufio.NewReaderSize(raw, 256<<10)
		wireGzip := strings.EqualFold(strings.TrimSpace(encoding), "gzip") || strings.EqualFold(strings.TrimSpace(encoding), "x-gzip")
		if !wireGzip && encoding != "" && !strings.EqualFold(encoding, "identity") {
			return fmt.Errorf("download %s: unsupported Content-Encoding", fs.Name)
		}
		if !wireGzip {
			if b, _ := br.Peek(2); len(b) == 2 && b[0] == 0x1f && b[1] == 0x8b {
				wireGzip = true
			}
		}
		var dec io.Reader
		var gzw *gzip.Writer
		var guard *guardReader
		lim := c.Limits.withDefaults()
		if lw != nil {
			r, closeDec, err := c.Decode(br, encoding, fs.Name)
			if err != nil {
				return err
			}
			defer closeDec()
			dec = r
			guard, _ = r.(*guardReader)
		} else if wireGzip {
			// Keep the server's compressed bytes as they are; decompress
			// only to validate.
			wire := &countingReader{r: io.TeeReader(br, sf)}
			zr, err := gzip.NewReader(wire)
			if err != nil {
				var se *sinkError
				if errors.As(err, &se) {
					return err
				}
				return &bodyError{url: redactURL(fs.URL), err: fmt.Errorf("gzip header: %w", err)}
			}
			defer zr.Close()
			guard = &guardReader{r: zr, wire: wire, lim: lim, file: fs.Name}
			dec = guard
		} else {
			gzw, _ = gzip.NewWriterLevel(sf, gzip.BestSpeed)
			guard = &guardReader{r: io.TeeReader(br, gzw), lim: lim, file: fs.Name}
			dec = guard
		}
		lr := NewLineReader(&bodyReader{r: dec, url: redactURL(fs.URL)}, c.MaxLineBytes)
		if guard != nil {
			guard.lineNumber = lr.LineNumber
		}
		v := Validator{File: fs.Name, Type: expect, Count: fs.Count, AllowMore: e.AllowCountMismatch}
		if fs.Kind == KindError {
			// An error file's count is the number of failed resources, not
			// of lines: it is recorded, never checked.
			v.Count = nil
		}
		hashes = hashes[:0]
		for lr.Next() {
			if err := v.Check(lr.Line(), lr.LineNumber()); err != nil {
				return err
			}
			if lw != nil {
				if err := lw.WriteLine(lr.Line()); err != nil {
					return &sinkError{fmt.Errorf("handle %s line %d: %w", fs.Name, lr.LineNumber(), err)}
				}
			}
			if e.CheckDuplicates && fs.Kind == KindOutput {
				if id, err := topLevelString(lr.Line(), "id"); err == nil {
					h := fnv.New64a()
					_, _ = h.Write([]byte(expect))
					_, _ = h.Write([]byte{'/'})
					_, _ = h.Write(id)
					hashes = append(hashes, h.Sum64())
				}
			}
			if fs.Kind == KindError {
				var oo OperationOutcome
				if json.Unmarshal(lr.Line(), &oo) == nil {
					if out.Severity == nil {
						out.Severity = map[string]int64{}
					}
					for _, is := range oo.Issue {
						out.Severity[safeName(is.Severity)]++
					}
				}
			}
		}
		if err := lr.Err(); err != nil {
			var be *bodyError
			var se *sinkError
			var le *LimitError
			if errors.As(err, &le) {
				if le.File == "" {
					le.File = fs.Name
				}
				return le
			}
			if errors.As(err, &be) || errors.As(err, &se) {
				return err
			}
			return &ValidationError{File: fs.Name, Line: lr.LineNumber(), Msg: err.Error()}
		}
		if err := v.Finish(); err != nil {
			if !e.AllowCountMismatch {
				return err
			}
			e.emit("download_error", map[string]any{"fileUrl": redactURL(fs.URL), "message": err.Error(), "warning": true})
		}
		switch {
		case lw != nil:
		case gzw != nil:
			if err := gzw.Close(); err != nil {
				return err
			}
		default:
			// Read the rest of the wire stream (gzip trailer) into the file.
			if _, err := io.Copy(io.Discard, br); err != nil {
				return &bodyError{url: redactURL(fs.URL), err: err}
			}
		}
		if lw != nil {
			err = lw.Commit()
		} else {
			err = sf.Commit()
		}
		if err != nil {
			return err
		}
		committed = true
		out.Done = true
		out.Resources = v.Lines()
		out.Bytes = lr.BytesRead()
		return nil
	})
	if err != nil {
		e.emit("download_error", map[string]any{"fileUrl": redactURL(fs.URL), "message": err.Error()})
		return fs, err
	}
	e.emit("download_complete", map[string]any{"fileUrl": redactURL(fs.URL), "resourceCount": out.Resources, "fileSize": out.Bytes})
	if len(hashes) > 0 {
		e.mu.Lock()
		if e.seen == nil {
			e.seen = map[uint64]struct{}{}
		}
		var d int64
		for _, h := range hashes {
			if _, ok := e.seen[h]; ok {
				d++
			} else {
				e.seen[h] = struct{}{}
			}
		}
		e.dups += d
		e.mu.Unlock()
		if d > 0 {
			e.emit("duplicates", map[string]any{"fileUrl": redactURL(fs.URL), "file": fs.Name, "duplicateResources": d})
		}
	}
	return out, nil
}

// finish writes manifest.json, removes stale files of the previous export,
// DELETEs the job and marks the checkpoint complete.
func (e *Exporter) finish(ctx context.Context, cp *Checkpoint, res *Result) error {
	if e.Sink != nil {
		if err := e.writeManifest(cp); err != nil {
			return err
		}
	}
	cp.PreviousFiles = nil
	if !e.KeepJob && !cp.Deleted {
		if err := e.Client.Delete(ctx, cp.StatusURL); err != nil {
			e.emit("client_error", map[string]any{"message": "delete status URL: " + err.Error()})
		}
		cp.Deleted = true
	}
	cp.Complete = true
	cp.CompletedAt = e.Client.clock().Now().UTC()
	if !res.Partial {
		cp.LastSuccessfulTransactionTime = cp.TransactionTime
	}
	return e.Store.Save(cp)
}

// writeManifest writes manifest.json and removes stale files of the
// previous export.
func (e *Exporter) writeManifest(cp *Checkpoint) error {
	local := localManifest(cp)
	b, err := json.MarshalIndent(local, "", " ")
	if err != nil {
		return fmt.Errorf("finalise: encode manifest.json: %w", err)
	}
	sf, err := e.Sink.Create("manifest.json")
	if err != nil {
		return err
	}
	if _, err := sf.Write(append(b, '\n')); err != nil {
		_ = sf.Abort()
		return err
	}
	if err := sf.Commit(); err != nil {
		return err
	}
	current := map[string]bool{}
	for _, f := range cp.Files {
		current[f.Name] = true
	}
	for _, name := range cp.PreviousFiles {
		if !current[name] {
			if err := e.Sink.Remove(name); err != nil {
				return fmt.Errorf("finalise: %w", err)
			}
		}
	}
	return nil
}

// localManifest is the manifest of the stored export: the server's fields
// with local file names as URLs.
func localManifest(cp *Checkpoint) map[string]any {
	files := map[string][]map[string]any{KindOutput: {}, KindDeleted: {}, KindError: {}}
	for _, f := range cp.Files {
		item := map[string]any{"type": f.Type, "url": f.Name, "count": f.Resources}
		if f.Kind != KindOutput && f.Type == "" {
			item["type"] = map[string]string{KindDeleted: "Bundle", KindError: "OperationOutcome"}[f.Kind]
		}
		files[f.Kind] = append(files[f.Kind], item)
	}
	m := map[string]any{
		"transactionTime":     cp.TransactionTime,
		"request":             cp.KickoffURL,
		"requiresAccessToken": false,
		"output":              files[KindOutput],
		"deleted":             files[KindDeleted],
		"error":               files[KindError],
	}
	if cp.Manifest != nil && len(cp.Manifest.Extension) > 0 {
		m["extension"] = cp.Manifest.Extension
	}
	return m
}
