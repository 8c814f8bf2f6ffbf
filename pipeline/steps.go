package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync/atomic"

	"fhirdeid/bulk"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/ndjson"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// runIDLayout names runs by their start time in UTC; ids sort by time and
// are safe as blob key segments on every store.
const runIDLayout = "20060102T150405Z"

// Start returns the run of p to work on: the unfinished run of its source,
// resumed, or a new one. A new run's export request gets its _since from the
// source's cursor when p.SinceAuto is set. An unfinished run whose request
// differs from p's (the configuration changed) is cancelled and a new run
// started. The caller must hold the source's lease.
func Start(ctx context.Context, p *Pipeline) (run *state.Run, resumed bool, err error) {
	if err := p.defaults(); err != nil {
		return nil, false, err
	}
	if err := CheckKeys(ctx, p); err != nil {
		return nil, false, err
	}
	old, err := p.State.UnfinishedRun(ctx, p.Name)
	switch {
	case err == nil:
		var req bulk.Request
		if jerr := json.Unmarshal(old.Request, &req); jerr == nil && sameExport(&req, &p.Request) {
			p.Logger.Info("resuming run", "run", old.ID, "status", string(old.Status))
			return old, true, nil
		}
		p.Logger.Warn("the export request changed: cancelling the unfinished run", "run", old.ID)
		old.Status = state.RunCancelled
		old.Error = "superseded: the export request changed"
		if err := p.State.FinishRun(ctx, old, ""); err != nil {
			return nil, false, err
		}
		if old.StatusURL != "" && old.Manifest == nil {
			// Tell the server we will not collect this export.
			if err := p.Client.Delete(ctx, old.StatusURL); err != nil {
				p.Logger.Warn("could not cancel the superseded export", "run", old.ID, "err", err)
			}
		}
	case !errors.Is(err, state.ErrNotFound):
		return nil, false, err
	}

	since := ""
	if p.SinceAuto && !p.newLake {
		tt, _, err := p.State.Cursor(ctx, p.Name)
		switch {
		case err == nil:
			since = tt
		case !errors.Is(err, state.ErrNotFound):
			return nil, false, err
		}
	}
	info, err := PlanRun(p, p.Now(), since, "")
	if err != nil {
		return nil, false, err
	}
	reqJSON, err := json.Marshal(&info.Request)
	if err != nil {
		return nil, false, err
	}
	run = &state.Run{Source: p.Name, Status: state.RunExporting, StartedAt: info.StartedAt, Since: info.Since, Request: reqJSON}
	for i := 1; ; i++ {
		run.ID = info.ID
		if i > 1 {
			run.ID = fmt.Sprintf("%s-%d", info.ID, i)
		}
		_, err := p.State.Run(ctx, run.ID)
		if errors.Is(err, state.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, false, err
		}
	}
	if err := p.State.CreateRun(ctx, run); err != nil {
		return nil, false, err
	}
	p.Logger.Info("new run", "run", run.ID, "since", info.Since)
	return run, false, nil
}

// sameExport reports whether a stored request r asks for the same export as
// the configured one c; the stored request's Since was computed when the run
// started and is not compared.
func sameExport(r, c *bulk.Request) bool {
	a, b := *r, *c
	a.Since, b.Since = "", ""
	return a.Equal(&b)
}

// runRequest decodes the export request stored with run.
func runRequest(run *state.Run) (*bulk.Request, error) {
	var req bulk.Request
	if err := json.Unmarshal(run.Request, &req); err != nil {
		return nil, fmt.Errorf("stored export request: %w", err)
	}
	return &req, nil
}

// KickOff starts the export of run on the server, unless it was started
// before, and records its status URL the moment it is known.
func KickOff(ctx context.Context, p *Pipeline, run *state.Run) error {
	if run.StatusURL != "" || run.Manifest != nil {
		return nil
	}
	info, err := runInfo(run)
	if err != nil {
		return err
	}
	statusURL, err := KickOffExport(ctx, p, info)
	if err != nil {
		return err
	}
	run.StatusURL = statusURL
	return p.State.UpdateRun(ctx, run)
}

// Poll waits for run's export to complete and records its manifest and
// files. A job that the server forgot (404/410) clears the status URL, so
// that the next attempt kicks the export off again, and returns
// bulk.ErrJobGone.
func Poll(ctx context.Context, p *Pipeline, run *state.Run) error {
	if run.Manifest != nil {
		return nil
	}
	m, err := p.Client.Poll(ctx, run.StatusURL, run.StartedAt)
	if errors.Is(err, bulk.ErrJobGone) {
		run.StatusURL = ""
		if uerr := p.State.UpdateRun(ctx, run); uerr != nil {
			return uerr
		}
		return err
	}
	if err != nil {
		return err
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return err
	}
	// The client checked the types against the FHIR model; the keys are
	// built only from names that passed a type-name check here too.
	if err := bulk.CheckManifest(m, ""); err != nil {
		return err
	}
	var files []state.File
	for _, f := range ExportOf(m).Files {
		files = append(files, state.File{URL: f.URL, Kind: f.Kind, Type: f.Type, Seq: f.Seq, Expected: f.Expected})
	}
	if err := p.State.AddFiles(ctx, run.ID, files); err != nil {
		return err
	}
	run.Manifest = mj
	run.TransactionTime = m.TransactionTime
	run.Status = state.RunProcessing
	return p.State.UpdateRun(ctx, run)
}

// manifest decodes the manifest stored with run.
func manifest(run *state.Run) (*bulk.Manifest, error) {
	var m bulk.Manifest
	if err := json.Unmarshal(run.Manifest, &m); err != nil {
		return nil, fmt.Errorf("stored manifest: %w", err)
	}
	return &m, nil
}

// FileKey returns the blob key where the result of f is stored; error
// files are not stored.
func FileKey(run string, f *state.File) string { return fileKey(run, f.Kind, f.Type, f.Seq) }

func fileKey(run, kind, typ string, seq int) string {
	if kind == bulk.KindDeleted {
		return storage.RunKey(run, storage.DeletedName(typ, seq))
	}
	return storage.RunKey(run, storage.OutputName(typ, seq))
}

// ProcessFile downloads one file of run's manifest, de-identifies it and
// stores the result, then records the file as done with its counts. A file
// already done is skipped. Output files are streamed: download, gunzip,
// de-identification on p.Workers cores in input order, gzip and upload
// overlap, and nothing is written to local disk. The stored object becomes
// visible only when complete; a failed attempt leaves nothing.
func ProcessFile(ctx context.Context, p *Pipeline, run *state.Run, f *state.File) error {
	if f.Status == state.FileDone {
		return nil
	}
	m, err := manifest(run)
	if err != nil {
		return err
	}
	f.Attempts++
	res, err := ProcessManifestFile(ctx, p, run.ID, fileSpec(f, m.RequiresAccessToken), nil)
	if err != nil {
		f.Error = errors.Unwrap(err).Error()
		if uerr := p.State.UpdateFile(ctx, f); uerr != nil {
			p.Logger.Error("could not record a file failure", "run", run.ID, "err", uerr)
		}
		return err
	}
	f.Status = state.FileDone
	f.Resources, f.BytesIn, f.BytesOut = res.Resources, res.BytesIn, res.BytesOut
	f.OutKey = res.OutKey
	f.Error = res.Warning
	f.Ops = res.Ops
	return p.State.UpdateFile(ctx, f)
}

type fileResult struct {
	resources int64
	bytesIn   int64
	bytesOut  int64
	key       string
	// warning is a problem that does not fail the file (a count mismatch
	// allowed by configuration, issues in a server error file).
	warning string
	// ops is the JSON of the file's Counts.
	ops []byte
	// tables counts the rows of the research tables, by view.
	tables map[string]int64
}

// storeFile streams an output or deleted file into storage.
func storeFile(ctx context.Context, p *Pipeline, runID string, m *bulk.Manifest, f FileSpec, bf bulk.File, progress func(FileProgress)) (fileResult, error) {
	key := fileKey(runID, f.Kind, f.Type, f.Seq)
	fileName := fmt.Sprintf("%s.%03d", f.Type, f.Seq)
	// counts has one slot per worker, so that workers count without
	// locking; it is reset for every attempt at the file.
	var counts []opCounts
	// tables receives the de-identified resources of the current attempt.
	var tables TableFile
	// aud collects and scans for the leak audit (assure.go).
	var aud *auditFile
	var seen atomic.Int64
	var invalid *invalidTally
	skip := p.OnInvalid == OnInvalidSkip
	// drop records an invalid line when skipping, or returns err.
	drop := func(lineNo int64, line, dst []byte, err error) ([]byte, error) {
		if !skip {
			return dst, err
		}
		reason, ok := InvalidReason(line, f.Type, err)
		if !ok {
			return dst, err
		}
		invalid.add(fileName, lineNo, reason)
		if ev := p.Client.Events; ev != nil {
			ev.Event("invalid_line", map[string]any{"file": fileName, "line": lineNo, "reason": reason})
		}
		return dst, nil
	}
	var fn ndjson.Func
	if f.Kind == bulk.KindDeleted {
		fn = func(worker int, lineNo int64, line, dst []byte) ([]byte, error) {
			return tombstone(ctx, p, line, dst)
		}
	} else {
		fn = func(worker int, lineNo int64, line, dst []byte) ([]byte, error) {
			// The manifest count is checked while streaming: stop as soon
			// as the lines exceed it.
			if f.Expected >= 0 && !p.AllowCountMismatch && seen.Add(1) > f.Expected {
				return dst, fmt.Errorf("more resources than the manifest count %d; "+
					"if the server's counts are known to be wrong, allowCountMismatch: true accepts the file", f.Expected)
			}
			if f.Type != "Resource" {
				rt, err := bulk.ResourceType(line)
				if err != nil {
					return drop(lineNo, line, dst, err)
				}
				if rt != f.Type {
					return drop(lineNo, line, dst, fmt.Errorf("resourceType %s in a file of %s", safeType(rt), f.Type))
				}
			}
			rctx := ctx
			if aud != nil {
				rctx = aud.begin(worker, lineNo, line)
			}
			out, st, err := p.Deidentifier.Resource(rctx, fileName, lineNo, line, dst)
			if err != nil {
				return drop(lineNo, line, dst, err)
			}
			if aud != nil {
				aud.end(worker, lineNo, line, out[len(dst):])
			}
			counts[worker].add(st)
			if tables != nil && len(out) > len(dst) {
				if terr := tables.Resource(worker, out[len(dst):]); terr != nil {
					return dst, terr
				}
			}
			return out, nil
		}
	}
	gz := ndjson.NewGzipMembers(p.Workers, p.GzipLevel)
	var res fileResult
	attempt := 0
	err := p.Client.Fetch(ctx, m, bf, func(raw io.Reader, encoding string) error {
		raw = watch(raw, &attempt, progress)
		r, closeDec, err := p.Client.Decode(raw, encoding, fileName)
		if err != nil {
			return err
		}
		defer closeDec()
		seen.Store(0)
		invalid = &invalidTally{}
		counts = make([]opCounts, p.Workers)
		tables = nil
		if f.Kind == bulk.KindOutput {
			aud = p.auditFile(ctx, runID, fileName, path.Base(key), p.Workers)
		}
		if p.Tables != nil && f.Kind == bulk.KindOutput {
			t, err := p.Tables.File(ctx, runID, f.Type, f.Seq, p.Workers)
			if err != nil {
				return fmt.Errorf("views: %w", err)
			}
			tables = t
		}
		w, err := p.Store.Create(ctx, key, "application/gzip")
		if err != nil {
			if tables != nil {
				tables.Abort()
			}
			return err
		}
		st, err := ndjson.Transform(ctx, r, w, fn, ndjson.Options{
			Workers: p.Workers,
			MaxLine: p.Client.MaxLineBytes,
			Encode:  gz.Encode,
		})
		if err == nil && st.BytesOut == 0 {
			// An empty file is still a valid gzip stream.
			_, err = w.Write(gz.Empty())
		}
		var le *ndjson.LineError
		if errors.As(err, &le) && errors.Is(err, ndjson.ErrLineTooLong) {
			err = &bulk.LimitError{File: fileName, Line: le.Line, Limit: "maxLineBytes",
				Msg: fmt.Sprintf("longer than %d bytes", p.Client.MaxLineBytes)}
		}
		if err != nil {
			w.Abort()
			if tables != nil {
				tables.Abort()
			}
			return err
		}
		if f.Kind == bulk.KindOutput && f.Expected >= 0 && st.Lines != f.Expected {
			msg := fmt.Sprintf("%d resources where the manifest says %d", st.Lines, f.Expected)
			if !p.AllowCountMismatch {
				w.Abort()
				if tables != nil {
					tables.Abort()
				}
				return errors.New(msg + "; if the server's counts are known to be wrong, allowCountMismatch: true accepts the file")
			}
			res.warning = msg
		}
		if err := w.Close(); err != nil {
			if tables != nil {
				tables.Abort()
			}
			return err
		}
		if tables != nil {
			warn, err := tables.Close(ctx)
			if err != nil {
				return fmt.Errorf("views: %w", err)
			}
			if tr, ok := tables.(TableRows); ok {
				res.tables = tr.Rows()
			}
			if warn != "" {
				if res.warning != "" {
					res.warning += "; "
				}
				res.warning += warn
			}
		}
		if aud != nil {
			aud.commit()
		}
		res.resources, res.bytesIn, res.bytesOut, res.key = st.Written, st.BytesIn, st.BytesOut, key
		if f.Kind == bulk.KindOutput {
			var total opCounts
			for i := range counts {
				total.merge(&counts[i])
			}
			c := total.counts()
			c.Invalid, c.InvalidLines = invalid.n, invalid.lines
			c.Tables = res.tables
			res.ops, _ = json.Marshal(c)
			if w := invalid.warning(); w != "" {
				if res.warning != "" {
					res.warning += "; "
				}
				res.warning += w
			}
		}
		p.report(runID, st)
		return nil
	})
	return res, err
}

// safeType returns t if it looks like a resource type name, so that a
// resourceType value quoted in an error cannot carry data.
func safeType(t string) string {
	if !typed.IsTypeName(t) {
		return "(invalid)"
	}
	return t
}

// tombstone turns one line of a deleted file (a Bundle of DELETE entries)
// into the same Bundle with de-identified ids.
func tombstone(ctx context.Context, p *Pipeline, line, dst []byte) ([]byte, error) {
	refs, err := bulk.Tombstones(line)
	if err != nil {
		return dst, err
	}
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		Request request `json:"request"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, ref := range refs {
		typ, id, ok := strings.Cut(ref, "/")
		if !ok {
			continue
		}
		nid, err := p.Deidentifier.ID(ctx, typ, id)
		if err != nil {
			return dst, err
		}
		if nid == "" {
			continue
		}
		b.Entry = append(b.Entry, entry{request{"DELETE", typ + "/" + nid}})
	}
	if len(b.Entry) == 0 {
		return dst, nil
	}
	out, err := json.Marshal(&b)
	if err != nil {
		return dst, err
	}
	return append(dst, out...), nil
}

// readErrorFile reads a server error file (OperationOutcome lines) and
// summarises its issues by severity. The file is not copied to the
// destination: diagnostics may quote patient data.
func readErrorFile(ctx context.Context, p *Pipeline, m *bulk.Manifest, bf bulk.File, progress func(FileProgress)) (fileResult, error) {
	var res fileResult
	attempt := 0
	err := p.Client.Fetch(ctx, m, bf, func(raw io.Reader, encoding string) error {
		raw = watch(raw, &attempt, progress)
		r, closeDec, err := p.Client.Decode(raw, encoding, "error file "+bf.Type)
		if err != nil {
			return err
		}
		defer closeDec()
		counts := map[string]int{}
		lr := bulk.NewLineReader(r, p.Client.MaxLineBytes)
		var n int64
		for lr.Next() {
			n++
			var oo struct {
				Issue []struct {
					Severity string `json:"severity"`
				} `json:"issue"`
			}
			if err := json.Unmarshal(lr.Line(), &oo); err != nil {
				counts["unreadable"]++
				continue
			}
			for _, is := range oo.Issue {
				counts[safeSeverity(is.Severity)]++
			}
		}
		if err := lr.Err(); err != nil {
			return err
		}
		res = fileResult{resources: n, bytesIn: lr.BytesRead(), warning: summarize(counts)}
		return nil
	})
	return res, err
}

func safeSeverity(s string) string {
	switch s {
	case "fatal", "error", "warning", "information":
		return s
	}
	return "unknown"
}

func summarize(counts map[string]int) string {
	var parts []string
	for _, sev := range []string{"fatal", "error", "warning", "information", "unknown", "unreadable"} {
		if n := counts[sev]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, sev))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "server reported " + strings.Join(parts, ", ")
}
