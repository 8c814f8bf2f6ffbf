package pipeline

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/internal/ndjson"
	"fhirdeid/state"
)

// Free-text scrubbing with the identifiers of the export (the scrub
// method's contextual layer).
//
// When the de-identifier's configuration uses the scrub method, a run first
// reads the files of the identifying resource types (anonymize.
// IdentifierTypes: Patient, RelatedPerson, Practitioner, ...) and of the
// medication and immunization types (anonymize.VocabularyTypes, whose drug
// names become safe words) of its export and hands every resource to an
// anonymize.IdentifierCollector; only then
// are the files de-identified, each resource's texts scrubbed with its
// patient's identifiers and the shared ones. The collector keeps keyed
// hashes in memory only: nothing of it is stored, so a resumed run reads
// the identifier files again (done or not), and a process that runs
// ProcessFile for a run must call CollectIdentifiers for it first.
//
// The identifier files are downloaded twice (for the collection, then for
// de-identification) rather than collected while being de-identified: the
// collector cannot be read while it is being filled, and a Patient's own
// narrative needs the complete sets (its practitioners' and organisations'
// names too). They are a small part of an export.
//
// An incremental run (_since) holds only the Patients that changed, while
// its notes may belong to any patient: CollectIdentifiers then kicks off a
// second export of the identifier types without _since, reads it, and
// deletes it. If that export fails, the run goes on with the identifiers of
// its own files and its report warns that the contextual layer covered only
// the patients in the run.

// scrubCollector is implemented by de-identifiers that scrub with
// collected identifiers (EngineDeidentifier).
type scrubCollector interface {
	// newCollector returns a collector when the configuration scrubs,
	// else nil.
	newCollector() *anonymize.IdentifierCollector
	// useCollected makes the de-identifier scrub run's resources with
	// col's identifiers; warning, when not empty, goes into run's report.
	useCollected(run string, col *anonymize.IdentifierCollector, warning string)
	// scrubWarning returns the warning recorded for run.
	scrubWarning(run string) string
}

// scrubState is what EngineDeidentifier holds for the run being processed.
type scrubState struct {
	run     string
	input   anonymize.ScrubInput
	warning string
}

// scrubHolder is embedded in EngineDeidentifier.
type scrubHolder struct {
	scrub atomic.Pointer[scrubState]
}

func (d *EngineDeidentifier) newCollector() *anonymize.IdentifierCollector {
	if !d.engine.Config().UsesScrub() {
		return nil
	}
	return d.engine.NewIdentifierCollector()
}

func (d *EngineDeidentifier) useCollected(run string, col *anonymize.IdentifierCollector, warning string) {
	d.scrub.Store(&scrubState{run: run, input: col.Input(), warning: warning})
}

func (d *EngineDeidentifier) scrubWarning(run string) string {
	if s := d.scrub.Load(); s != nil && s.run == run {
		return s.warning
	}
	return ""
}

// scrubContext returns ctx carrying the collected identifiers, if any.
func (d *EngineDeidentifier) scrubContext(ctx context.Context) context.Context {
	if s := d.scrub.Load(); s != nil {
		return anonymize.WithScrubInput(ctx, s.input)
	}
	return ctx
}

// isIdentifierType reports a resource type of the first pass over the
// run's own files (identifiers, and the drug names of codes).
func isIdentifierType(t string) bool { return slices.Contains(anonymize.FirstPassTypes, t) }

// isFullExportType reports a resource type read from the full export of an
// incremental run: identifiers only (the run's own files give its codes).
func isFullExportType(t string) bool { return slices.Contains(anonymize.IdentifierTypes, t) }

// CollectIdentifiers is the first pass of a run whose de-identifier scrubs
// free text: it reads every output file of run whose type is one of
// anonymize.FirstPassTypes (those already processed too) and, for an
// incremental run, a full export of those types, and gives the identifiers
// to the de-identifier. It does nothing for a de-identifier that does not
// scrub. Run calls it before processing files; another orchestrator must
// call it in every process that calls ProcessFile, before it does.
func CollectIdentifiers(ctx context.Context, p *Pipeline, run *state.Run) error {
	sc, ok := p.Deidentifier.(scrubCollector)
	if !ok {
		return nil
	}
	col := sc.newCollector()
	if col == nil {
		return nil
	}
	m, err := manifest(run)
	if err != nil {
		return err
	}
	files, err := p.State.Files(ctx, run.ID)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(files, func(f *state.File) bool { return f.Kind == bulk.KindOutput && f.Status != state.FileDone }) {
		return nil // nothing left to de-identify
	}
	var idFiles []identifierFile
	for _, f := range files {
		if f.Kind == bulk.KindOutput && isIdentifierType(f.Type) {
			idFiles = append(idFiles, identifierFile{m: m, f: bulk.File{Type: f.Type, URL: f.URL}, name: fmt.Sprintf("%s.%03d", f.Type, f.Seq)})
		}
	}
	return collectScrubInput(ctx, p, sc, col, run, idFiles)
}

// identifierFile is a file of the first pass: the manifest it is listed
// in, the file, and its name in errors.
type identifierFile struct {
	m    *bulk.Manifest
	f    bulk.File
	name string
}

// collectScrubInput reads files into col and, for an incremental run, a
// full export of the identifier types (a failure there is a warning), and
// gives the identifiers to the de-identifier for run.
func collectScrubInput(ctx context.Context, p *Pipeline, sc scrubCollector, col *anonymize.IdentifierCollector, run *state.Run, files []identifierFile) error {
	n := 0
	for _, f := range files {
		if err := collectFile(ctx, p, col, f.m, f.f, f.name); err != nil {
			return fmt.Errorf("identifiers for scrubbing: file %s: %w", f.name, err)
		}
		n++
	}
	warning := ""
	if run.Since != "" {
		full, err := collectFullExport(ctx, p, run, col)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.Logger.Warn("scrub: the export of the identifier types without _since failed; "+
				"the contextual layer covers only the patients in this run", "run", run.ID, "err", err)
			warning = "scrub: the export of the identifier types without _since failed (" + err.Error() +
				"): free text was scrubbed with the identifiers of the patients in this run only; " +
				"notes of other patients were scrubbed by patterns and vocabulary alone"
		} else {
			n += full
		}
	}
	p.Logger.Info("scrub: identifiers collected", "run", run.ID, "files", n, "patients", col.Patients())
	sc.useCollected(run.ID, col, warning)
	return nil
}

// collectFullExport exports the identifier types without _since (same
// level, group and patients as run's request), collects every file and
// deletes the export. It returns the number of files read.
func collectFullExport(ctx context.Context, p *Pipeline, run *state.Run, col *anonymize.IdentifierCollector) (int, error) {
	req, err := runRequest(run)
	if err != nil {
		return 0, err
	}
	full := bulk.Request{Level: req.Level, GroupID: req.GroupID, Patients: req.Patients, Types: anonymize.IdentifierTypes,
		OutputFormat: req.OutputFormat, Extra: req.Extra}
	// The poll deadline counts on the client's clock.
	var clk bulk.Clock = bulk.SystemClock{}
	if p.Client.Clock != nil {
		clk = p.Client.Clock
	}
	started := clk.Now()
	statusURL, err := p.Client.Kickoff(ctx, &full)
	if err != nil {
		return 0, err
	}
	defer func() {
		if derr := p.Client.Delete(context.WithoutCancel(ctx), statusURL); derr != nil {
			p.Logger.Warn("scrub: could not delete the identifier export", "run", run.ID, "err", derr)
		}
	}()
	m, err := p.Client.Poll(ctx, statusURL, started)
	if err != nil {
		return 0, err
	}
	if err := bulk.CheckManifest(m, ""); err != nil {
		return 0, err
	}
	n := 0
	for i, f := range m.Output {
		if !isFullExportType(f.Type) {
			continue
		}
		if err := collectFile(ctx, p, col, m, bulk.File{Type: f.Type, URL: f.URL}, fmt.Sprintf("identifiers.%s.%03d", safeType(f.Type), i)); err != nil {
			return n, fmt.Errorf("file %s.%03d: %w", safeType(f.Type), i, err)
		}
		n++
	}
	return n, nil
}

// collectFile streams one file into col. Lines that do not parse are left
// to the de-identification pass, which reports them.
func collectFile(ctx context.Context, p *Pipeline, col *anonymize.IdentifierCollector, m *bulk.Manifest, bf bulk.File, name string) error {
	return p.Client.Fetch(ctx, m, bf, func(raw io.Reader, encoding string) error {
		r, closeDec, err := p.Client.Decode(raw, encoding, name)
		if err != nil {
			return err
		}
		defer closeDec()
		_, err = ndjson.Transform(ctx, r, io.Discard, func(_ int, _ int64, line, dst []byte) ([]byte, error) {
			_ = col.Add(line) // Add ignores other types; invalid lines are reported later
			return dst, nil
		}, ndjson.Options{Workers: p.Workers, MaxLine: p.Client.MaxLineBytes})
		return err
	})
}

// scrubReportWarning adds the scrub warning recorded for run, if any.
func scrubReportWarning(p *Pipeline, run string) string {
	if sc, ok := p.Deidentifier.(scrubCollector); ok {
		return sc.scrubWarning(run)
	}
	return ""
}

// Scrubs reports whether p's de-identifier scrubs free text, and so needs
// the identifier-collecting first pass (CollectIdentifiers) before its files
// are processed.
func Scrubs(p *Pipeline) bool {
	sc, ok := p.Deidentifier.(scrubCollector)
	return ok && sc.newCollector() != nil
}
