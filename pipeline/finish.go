package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"fhirdeid/audit"
	"fhirdeid/bulk"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// Report is the report.json of a run: what was exported and written, and
// how long it took. It holds counts, names and fingerprints, never a
// resource value or a key.
type Report struct {
	Run             string                 `json:"run"`
	Source          string                 `json:"source"`
	Status          string                 `json:"status"`
	StartedAt       time.Time              `json:"startedAt"`
	FinishedAt      time.Time              `json:"finishedAt"`
	DurationSeconds float64                `json:"durationSeconds"`
	Since           string                 `json:"since,omitempty"`
	TransactionTime string                 `json:"transactionTime"`
	Resources       int64                  `json:"resources"`
	Deleted         int64                  `json:"deletedBundles"`
	BytesIn         int64                  `json:"bytesIn"`
	BytesOut        int64                  `json:"bytesOut"`
	Types           map[string]*TypeReport `json:"types"`
	// Deidentification totals what was done to the resources.
	Deidentification Counts   `json:"deidentification"`
	Warnings         []string `json:"warnings,omitempty"`
	// InvalidLines lists the lines dropped as invalid (onInvalid: skip),
	// by file and line number with a reason; never their content.
	InvalidLines []InvalidLine `json:"invalidLines,omitempty"`
	// Tables counts the rows of each research table (views) of the run.
	Tables          map[string]int64  `json:"tables,omitempty"`
	ConfigHash      string            `json:"configHash,omitempty"`
	KeyFingerprints map[string]string `json:"keyFingerprints,omitempty"`
	// Snapshot is the merged snapshot made after the run, or
	// SnapshotError why it was not (not part of report.json, which is
	// written before).
	Snapshot      *SnapshotReport `json:"-"`
	SnapshotError string          `json:"-"`
	// Audit and Risk are the privacy checks of Pipeline.Assurance.
	Audit *audit.Report `json:"audit,omitempty"`
	Risk  *RiskReport   `json:"risk,omitempty"`
}

// TypeReport counts one resource type.
type TypeReport struct {
	Files            int    `json:"files"`
	Resources        int64  `json:"resources"`
	BytesIn          int64  `json:"bytesIn"`
	BytesOut         int64  `json:"bytesOut"`
	Deidentification Counts `json:"deidentification"`
}

// Finish completes run once every file is done: it writes the run's
// manifest.json, report.json and log.ndjson, commits the run (its _SUCCESS
// marker, then the "latest" pointer), merges it into the snapshot (see
// Snapshot), records the run as finished — moving the source's incremental
// cursor — and finally releases the export on the server. It returns the
// report.
func Finish(ctx context.Context, p *Pipeline, run *state.Run) (*Report, error) {
	files, err := p.State.Files(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	kickoffURL := ""
	info, err := runInfo(run)
	if err == nil {
		kickoffURL = p.Client.KickoffURL(&info.Request)
	} else {
		// The stored request only names the kick-off in manifest.json.
		info = RunInfo{ID: run.ID, Source: run.Source, StartedAt: run.StartedAt, Since: run.Since,
			StatusURL: run.StatusURL, TransactionTime: run.TransactionTime}
	}
	results := make([]FileResult, 0, len(files))
	for _, f := range files {
		if f.Status != state.FileDone {
			return nil, fmt.Errorf("%s file %s.%03d is not done", f.Kind, f.Type, f.Seq)
		}
		results = append(results, FileResult{File: fileSpec(f, false), Resources: f.Resources, BytesIn: f.BytesIn,
			BytesOut: f.BytesOut, OutKey: f.OutKey, Warning: f.Error, Ops: f.Ops})
	}
	assure := func(rep *Report) ([]string, error) { return p.assureRun(ctx, run, files, rep) }
	rep, err := commitRun(ctx, p, info, kickoffURL, results, assure, func(status state.RunStatus) error {
		run.Status = state.RunCommitting
		return p.State.UpdateRun(ctx, run)
	})
	var ae *AssuranceError
	if errors.As(err, &ae) {
		run.Report, _ = json.MarshalIndent(ae.Report, "", "  ")
	}
	if err != nil {
		return nil, err
	}
	if err := p.afterCommit(ctx, rep); err != nil {
		return nil, err
	}
	run.Status = state.RunStatus(rep.Status)
	run.Report, err = json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	run.Error = ""
	if err := p.State.FinishRun(ctx, run, run.TransactionTime); err != nil {
		return nil, err
	}
	ReleaseExport(ctx, p, info)
	return rep, nil
}

// commitRun writes run's manifest.json (naming kickoffURL), report.json and
// export log and commits the run in the destination. assure, if set, runs
// the privacy checks on the totals and returns the reasons that fail the
// run: the run folder then keeps its report, unpublished, and commitRun
// returns an *AssuranceError. before, if set, is called with the run's final
// status once the report is built, before anything is written.
func commitRun(ctx context.Context, p *Pipeline, run RunInfo, kickoffURL string, files []FileResult,
	assure func(*Report) ([]string, error), before func(state.RunStatus) error) (*Report, error) {
	rep := &Report{Run: run.ID, Source: run.Source, StartedAt: run.StartedAt, Since: run.Since,
		TransactionTime: run.TransactionTime, Types: map[string]*TypeReport{},
		ConfigHash: p.ConfigHash, KeyFingerprints: p.KeyFingerprints}
	type outFile struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count *int64 `json:"count,omitempty"`
	}
	out := struct {
		TransactionTime     string    `json:"transactionTime"`
		Request             string    `json:"request"`
		RequiresAccessToken bool      `json:"requiresAccessToken"`
		Output              []outFile `json:"output"`
		Deleted             []outFile `json:"deleted,omitempty"`
		Error               []outFile `json:"error"`
	}{TransactionTime: run.TransactionTime, Request: kickoffURL, Output: []outFile{}, Error: []outFile{}}
	for _, f := range files {
		if f.Warning != "" {
			rep.Warnings = append(rep.Warnings, f.File.Name()+": "+f.Warning)
		}
		n := f.Resources
		switch f.File.Kind {
		case bulk.KindOutput:
			out.Output = append(out.Output, outFile{f.File.Type, p.Store.URL(f.OutKey), &n})
			t := rep.Types[f.File.Type]
			if t == nil {
				t = &TypeReport{}
				rep.Types[f.File.Type] = t
			}
			t.Files++
			t.Resources += f.Resources
			if len(f.Ops) > 0 {
				var c Counts
				if err := json.Unmarshal(f.Ops, &c); err == nil {
					rep.InvalidLines = append(rep.InvalidLines, c.InvalidLines...)
					c.InvalidLines = nil
					for name, n := range c.Tables {
						if rep.Tables == nil {
							rep.Tables = map[string]int64{}
						}
						rep.Tables[name] += n
					}
					c.Tables = nil
					t.Deidentification.Add(c)
					rep.Deidentification.Add(c)
				}
			}
			t.BytesIn += f.BytesIn
			t.BytesOut += f.BytesOut
			rep.Resources += f.Resources
		case bulk.KindDeleted:
			out.Deleted = append(out.Deleted, outFile{f.File.Type, p.Store.URL(f.OutKey), &n})
			rep.Deleted += f.Resources
		}
		rep.BytesIn += f.BytesIn
		rep.BytesOut += f.BytesOut
	}
	if tn, ok := p.Tables.(TableNames); ok {
		for _, name := range tn.Names() {
			if rep.Tables == nil {
				rep.Tables = map[string]int64{}
			}
			rep.Tables[name] += 0
		}
	}
	if w := scrubReportWarning(p, run.ID); w != "" {
		rep.Warnings = append(rep.Warnings, w)
	}
	var gate []string
	if assure != nil {
		var err error
		if gate, err = assure(rep); err != nil {
			return nil, err
		}
	}
	sort.Strings(rep.Warnings)
	status := state.RunSucceeded
	if len(rep.Warnings) > 0 {
		status = state.RunPartial
	}
	if len(gate) > 0 {
		rep.Warnings = append(rep.Warnings, gate...)
		status = state.RunFailed
	}
	rep.Status = string(status)
	rep.FinishedAt = p.Now().UTC()
	rep.DurationSeconds = rep.FinishedAt.Sub(run.StartedAt).Seconds()

	if before != nil {
		if err := before(status); err != nil {
			return nil, err
		}
	}
	if tf, ok := p.Tables.(TablesFinisher); ok {
		if err := tf.Finish(ctx, run.ID); err != nil {
			return nil, fmt.Errorf("views: %w", err)
		}
	}
	mj, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := p.Store.WriteAll(ctx, storage.RunKey(run.ID, "manifest.json"), "application/json", mj); err != nil {
		return nil, err
	}
	rj, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := p.Store.WriteAll(ctx, storage.RunKey(run.ID, "report.json"), "application/json", rj); err != nil {
		return nil, err
	}
	if p.LogDir != "" {
		logData, err := os.ReadFile(logPath(p, run.ID))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read export log: %w", err)
		}
		if err := p.Store.WriteAll(ctx, storage.RunKey(run.ID, "log.ndjson"), "application/x-ndjson", logData); err != nil {
			return nil, err
		}
	}
	if len(gate) > 0 {
		// The run folder keeps its report, unpublished.
		return nil, &AssuranceError{Reasons: gate, Report: rep}
	}
	if err := removeStale(ctx, p, run.ID); err != nil {
		return nil, err
	}
	if err := p.Store.Commit(ctx, run.ID, rj); err != nil {
		return nil, err
	}
	return rep, nil
}

// LogPath is where a pipeline keeps a run's export log until the run is
// committed (then it is the run's log.ndjson in the destination).
func LogPath(logDir, pipeline, run string) string {
	return filepath.Join(logDir, pipeline+"-"+run+".log.ndjson")
}

func logPath(p *Pipeline, run string) string { return LogPath(p.LogDir, p.Name, run) }
