package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
	"fhirdeid/risk"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// SnapshotReport is the snapshot.json of a merged snapshot: what it holds
// and how it was made. It holds counts, ids of runs, paths and fingerprints,
// never a resource value or a key.
type SnapshotReport struct {
	Snapshot  string    `json:"snapshot"`
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"createdAt"`
	// TransactionTime is that of the newest run: the snapshot holds the
	// server's data as of then.
	TransactionTime string `json:"transactionTime"`
	// Previous is the snapshot this one was merged onto ("" when built from
	// runs only).
	Previous string `json:"previous,omitempty"`
	// Runs are the runs whose data the snapshot holds, oldest first.
	Runs      []string                 `json:"runs"`
	Resources int64                    `json:"resources"`
	Types     map[string]*SnapshotType `json:"types"`
	// Deleted counts resources removed by the runs' deletions; Replaced,
	// resources of older runs absent from a newer full export of their type.
	Deleted  int64 `json:"deleted"`
	Replaced int64 `json:"replaced"`
	// Skipped counts lines without a valid resourceType and id, which
	// cannot be merged.
	Skipped         int64             `json:"skipped,omitempty"`
	KeyFingerprints map[string]string `json:"keyFingerprints,omitempty"`
	Integrity       Integrity         `json:"integrity"`
	// Risk is the re-identification risk of the snapshot's patients, when
	// the pipeline's risk analysis is on (assure.go).
	Risk *RiskReport `json:"risk,omitempty"`
	// Tables counts the rows of each research table (view) of the
	// snapshot, when the pipeline has views.
	Tables map[string]int64 `json:"tables,omitempty"`
	// Merge describes the merge itself.
	Merge MergeStats `json:"merge"`
}

// SnapshotType counts one resource type of a snapshot.
type SnapshotType struct {
	Files     int   `json:"files"`
	Resources int64 `json:"resources"`
	Bytes     int64 `json:"bytes"`
}

// Integrity counts the literal references (Type/id) of a snapshot's
// resources and those that resolve to no resource of the snapshot, per
// source path ("Observation.subject"); references inside contained
// resources, absolute, logical and conditional references are not counted.
type Integrity struct {
	References int64                     `json:"references"`
	Unresolved int64                     `json:"unresolved"`
	Paths      map[string]*PathIntegrity `json:"paths,omitempty"`
}

// PathIntegrity counts the references of one path.
type PathIntegrity struct {
	References int64 `json:"references"`
	Unresolved int64 `json:"unresolved"`
}

// MergeStats describes a merge.
type MergeStats struct {
	BytesRead    int64   `json:"bytesRead"`
	BytesWritten int64   `json:"bytesWritten"`
	Spills       int     `json:"spills"`
	Seconds      float64 `json:"seconds"`
	// ResumedTypes are the types written by an interrupted attempt and not
	// written again.
	ResumedTypes []string `json:"resumedTypes,omitempty"`
	// TablesReused maps each resource type whose research tables were
	// copied instead of computed to where they were copied from: the run
	// that alone wrote that type's resources, or the previous snapshot
	// ("snapshots/<id>") when the merged runs did not touch the type.
	TablesReused map[string]string `json:"tablesReused,omitempty"`
}

// maxIntegrityPaths bounds the paths counted one by one; further paths are
// counted under "(other)".
const maxIntegrityPaths = 4096

// snapshotFileResources is the most resources per snapshot file.
const snapshotFileResources = 100_000

// snapshotPlan is what a snapshot merges; it is saved in the state
// database before the merge starts, so that a resumed merge makes the same
// snapshot.
type snapshotPlan struct {
	ID string `json:"id"`
	// Base is the published snapshot merged onto, and BaseRuns its runs.
	Base     string    `json:"base,omitempty"`
	BaseRuns []string  `json:"baseRuns,omitempty"`
	Runs     []planRun `json:"runs"`
	// KeyFingerprints and TransactionTime come from the newest run.
	KeyFingerprints map[string]string `json:"keyFingerprints,omitempty"`
	TransactionTime string            `json:"transactionTime"`
	Request         string            `json:"request"`
}

// planRun is one run to merge.
type planRun struct {
	ID string `json:"id"`
	// Full is set for a full system-level export without _typeFilter: it
	// replaces the types it exported (Types; all when empty).
	Full  bool     `json:"full,omitempty"`
	Types []string `json:"types,omitempty"`
	// Output and Deleted are the run's file names (in its folder).
	Output  []string `json:"output"`
	Deleted []string `json:"deleted,omitempty"`
}

// snapshotProgress is what an attempt at a plan has written.
type snapshotProgress struct {
	Done map[string]*SnapshotType `json:"done"`
	// Tables are the rows of the research tables of each type written,
	// and Reused where the tables of a type were copied from.
	Tables map[string]map[string]int64 `json:"tables,omitempty"`
	Reused map[string]string           `json:"reused,omitempty"`
}

// SnapshotOptions tunes Snapshot.
type SnapshotOptions struct {
	// Rebuild merges every committed run of the destination anew, instead
	// of merging the runs newer than the published snapshot onto it.
	Rebuild bool
}

// Snapshot brings the destination's merged snapshot up to date: it
// finishes an interrupted merge, then merges the committed runs newer than
// the published snapshot onto it, and publishes the result ("current").
// It reads the runs and the previous snapshot from the destination itself.
// It returns the report of the newest snapshot, or nil when there was
// nothing to merge. The caller must hold the source's lease.
func Snapshot(ctx context.Context, p *Pipeline, opts SnapshotOptions) (*SnapshotReport, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	var rep *SnapshotReport
	if b, err := p.State.BuildingSnapshot(ctx, p.Name); err == nil {
		var plan snapshotPlan
		var prog snapshotProgress
		if err := json.Unmarshal(b.Plan, &plan); err != nil {
			return nil, fmt.Errorf("snapshot %s: stored plan: %w", b.ID, err)
		}
		if len(b.Progress) > 0 {
			if err := json.Unmarshal(b.Progress, &prog); err != nil {
				return nil, fmt.Errorf("snapshot %s: stored progress: %w", b.ID, err)
			}
		}
		p.Logger.Info("resuming snapshot", "snapshot", plan.ID, "typesWritten", len(prog.Done))
		if rep, err = buildSnapshot(ctx, p, &plan, &prog); err != nil {
			if classify(err) == Retryable {
				return nil, err
			}
			// Forget it: the next plan merges its runs anew.
			p.Logger.Warn("could not finish an interrupted snapshot", "snapshot", plan.ID, "err", err)
			if derr := p.State.DropSnapshot(ctx, p.Name, b.ID); derr != nil {
				return nil, derr
			}
		}
	} else if !errors.Is(err, state.ErrNotFound) {
		return nil, err
	}
	plan, err := planSnapshot(ctx, p, opts.Rebuild)
	if err != nil || plan == nil {
		return rep, err
	}
	pj, err := json.Marshal(plan)
	if err != nil {
		return nil, err
	}
	row := &state.Snapshot{Source: p.Name, ID: plan.ID, LastRun: plan.Runs[len(plan.Runs)-1].ID,
		Status: state.SnapshotBuilding, Plan: pj}
	if err := p.State.SaveSnapshot(ctx, row); err != nil {
		return nil, err
	}
	p.Logger.Info("merging snapshot", "snapshot", plan.ID, "base", plan.Base, "runs", len(plan.Runs))

	return buildSnapshot(ctx, p, plan, &snapshotProgress{})
}

// RebuildSnapshot takes the source's lease and runs Snapshot with opts
// (from the command line: a rebuild from every committed run, or the merge
// of the pending runs).
func RebuildSnapshot(ctx context.Context, p *Pipeline, opts SnapshotOptions) (*SnapshotReport, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	owner := p.Owner
	if owner == "" {
		owner = defaultOwner()
	}
	lease, err := p.State.Acquire(ctx, p.Name, owner, p.LeaseTTL)
	var le *state.LockedError
	if errors.As(err, &le) && deadLocalOwner(le.Owner) {
		lease, err = p.State.TakeOver(ctx, p.Name, le.Owner, owner, p.LeaseTTL)
	}
	if err != nil {
		return nil, err
	}
	defer lease.Release(context.WithoutCancel(ctx))
	rep, err := Snapshot(ctx, p, opts)
	if err == nil {
		err = lease.Err()
	}
	return rep, err
}

// runMeta is what planning reads of a committed run.
type runMeta struct {
	report   Report
	manifest struct {
		TransactionTime string `json:"transactionTime"`
		Request         string `json:"request"`
		Output          []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"output"`
		Deleted []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"deleted"`
	}
}

var snapshotFileName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,63}\.[0-9]{3,9}\.ndjson\.gz$`)

// readRun reads a committed run's report and manifest from the destination.
func readRun(ctx context.Context, p *Pipeline, id string) (*planRun, *runMeta, error) {
	var m runMeta
	for name, v := range map[string]any{"report.json": &m.report, "manifest.json": &m.manifest} {
		data, err := p.Store.ReadAll(ctx, storage.RunKey(id, name))
		if err != nil {
			return nil, nil, err
		}
		if err := json.Unmarshal(data, v); err != nil {
			return nil, nil, fmt.Errorf("run %s: %s: %w", id, name, err)
		}
	}
	pr := &planRun{ID: id, Output: []string{}}
	for _, o := range m.manifest.Output {
		name := path.Base(o.URL)
		if !snapshotFileName.MatchString(name) {
			return nil, nil, fmt.Errorf("run %s: manifest.json: output file name not of this pipeline's layout", id)
		}
		pr.Output = append(pr.Output, name)
	}
	for _, o := range m.manifest.Deleted {
		name := path.Base(o.URL)
		if !snapshotFileName.MatchString(name) {
			return nil, nil, fmt.Errorf("run %s: manifest.json: deleted file name not of this pipeline's layout", id)
		}
		pr.Deleted = append(pr.Deleted, "deleted/"+name)
	}
	if m.report.Since == "" && m.report.Status == string(state.RunSucceeded) {
		// A full export replaces what it covers, unless it was filtered,
		// limited to patients, or partial (files or resources missing).
		u, err := url.Parse(m.manifest.Request)
		if err == nil && strings.HasSuffix(u.Path, "/$export") && !strings.HasSuffix(u.Path, "/Patient/$export") &&
			!strings.Contains(u.Path, "/Group/") && !u.Query().Has("_typeFilter") && !u.Query().Has("patient") {
			pr.Full = true
			for _, v := range u.Query()["_type"] {
				for t := range strings.SplitSeq(v, ",") {
					if t = strings.TrimSpace(t); t != "" {
						pr.Types = append(pr.Types, t)
					}
				}
			}
			sort.Strings(pr.Types)
		}
	}
	return pr, &m, nil
}

// planSnapshot decides what the next snapshot merges; nil means the
// published snapshot is up to date.
func planSnapshot(ctx context.Context, p *Pipeline, rebuild bool) (*snapshotPlan, error) {
	runs, err := p.Store.Runs(ctx)
	if err != nil {
		return nil, err
	}
	plan := &snapshotPlan{}
	var baseFP map[string]string
	last := ""
	if !rebuild {
		cur, err := p.Store.Current(ctx)
		switch {
		case err == nil:
			data, err := p.Store.ReadAll(ctx, storage.SnapshotKey(cur, "snapshot.json"))
			if err != nil {
				return nil, fmt.Errorf("published snapshot %s: %w", cur, err)
			}
			var base SnapshotReport
			if err := json.Unmarshal(data, &base); err != nil || len(base.Runs) == 0 {
				return nil, fmt.Errorf("published snapshot %s: snapshot.json is not a snapshot report", cur)
			}
			plan.Base, plan.BaseRuns, baseFP = cur, base.Runs, base.KeyFingerprints
			last = base.Runs[len(base.Runs)-1]
		case !errors.Is(err, storage.ErrNotFound):
			return nil, err
		}
	}
	// Run ids sort by start time, but "T-2" (the second run started in
	// second T) sorts before "T" as a key.
	slices.SortFunc(runs, func(a, b storage.RunInfo) int { return compareRunIDs(a.ID, b.ID) })
	var metas []*runMeta
	for _, r := range runs {
		if !r.Committed || (last != "" && compareRunIDs(r.ID, last) <= 0) {
			continue
		}
		pr, m, err := readRun(ctx, p, r.ID)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		plan.Runs = append(plan.Runs, *pr)
		metas = append(metas, m)
	}
	if len(plan.Runs) == 0 {
		return nil, nil
	}
	// A full export of every type makes what came before irrelevant.
	for i := len(plan.Runs) - 1; i >= 0; i-- {
		if plan.Runs[i].Full && len(plan.Runs[i].Types) == 0 {
			plan.Runs, metas = plan.Runs[i:], metas[i:]
			plan.Base, plan.BaseRuns, baseFP = "", nil, nil
			break
		}
	}
	// Keys: a run de-identified with other keys than what it would be
	// merged with starts a new snapshot if it is a full export (a new lake,
	// fhirdeid run --new-keys), and is refused otherwise.
	fp, from := baseFP, "snapshot "+plan.Base
	for i := 0; i < len(metas); i++ {
		rf := metas[i].report.KeyFingerprints
		if len(rf) == 0 {
			continue
		}
		if len(fp) > 0 && !sameFingerprints(fp, rf) {
			if metas[i].report.Since != "" {
				return nil, fmt.Errorf("snapshot: run %s was de-identified with other keys than %s (the key fingerprints differ), "+
					"so its pseudonyms cannot be merged with it; only a full export starts a new snapshot", plan.Runs[i].ID, from)
			}
			p.Logger.Warn("a full export with other keys starts a new snapshot", "run", plan.Runs[i].ID)
			plan.Runs, metas = plan.Runs[i:], metas[i:]
			plan.Base, plan.BaseRuns = "", nil
			i = 0
		}
		fp, from = rf, "run "+plan.Runs[i].ID
	}
	newest := metas[len(metas)-1]
	plan.KeyFingerprints = fp
	plan.TransactionTime = newest.manifest.TransactionTime
	plan.Request = newest.manifest.Request
	plan.ID = plan.Runs[len(plan.Runs)-1].ID
	if rebuild {
		plan.ID += "-rebuilt-" + p.Now().UTC().Format(runIDLayout)
	}
	return plan, nil
}

func sameFingerprints(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			return false
		}
	}
	return true
}

// buildSnapshot merges plan, skipping the writing of the types prog says
// are written, and publishes the snapshot.
func buildSnapshot(ctx context.Context, p *Pipeline, plan *snapshotPlan, prog *snapshotProgress) (*SnapshotReport, error) {
	started := time.Now()
	if prog.Done == nil {
		prog.Done = map[string]*SnapshotType{}
	}
	if cur, err := p.Store.Current(ctx); err == nil && cur == plan.ID {
		// Published before the interruption: only the state is behind.
		return finishSnapshot(ctx, p, plan, nil)
	}
	tmp, err := os.MkdirTemp(p.SpillDir, "fhirdeid-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	mem := p.SnapshotMemory
	if mem <= 0 {
		mem = 64 << 20
	}
	m := &merger{p: p, plan: plan, prog: prog, tmp: tmp,
		delta: newSorter(tmp, mem/2), refs: newSorter(tmp, mem/4),
		rep: &SnapshotReport{Snapshot: plan.ID, Source: p.Name, TransactionTime: plan.TransactionTime,
			Previous: plan.Base, Types: map[string]*SnapshotType{}, KeyFingerprints: plan.KeyFingerprints,
			Integrity: Integrity{Paths: map[string]*PathIntegrity{}}}}
	if m.risk, err = p.snapshotRisk(); err != nil {
		return nil, err
	}
	defer m.delta.close()
	defer m.refs.close()
	if err := m.run(ctx); err != nil {
		m.abort()
		return nil, fmt.Errorf("snapshot %s: %w", plan.ID, err)
	}
	if m.risk != nil {
		m.rep.Risk = p.riskOf(m.risk)
	}
	m.rep.Merge.Spills = m.delta.spills + m.refs.spills
	m.rep.Merge.Seconds = time.Since(started).Seconds()
	return finishSnapshot(ctx, p, plan, m)
}

// finishSnapshot writes the snapshot's manifest and report, publishes it,
// records it and removes snapshots older than the previous one. m is nil
// when the snapshot was published by an interrupted attempt.
func finishSnapshot(ctx context.Context, p *Pipeline, plan *snapshotPlan, m *merger) (*SnapshotReport, error) {
	var rep *SnapshotReport
	keep := map[string]bool{plan.ID: true, plan.Base: true}
	if m == nil {
		data, err := p.Store.ReadAll(ctx, storage.SnapshotKey(plan.ID, "snapshot.json"))
		if err != nil {
			return nil, err
		}
		rep = &SnapshotReport{}
		if err := json.Unmarshal(data, rep); err != nil {
			return nil, fmt.Errorf("snapshot %s: snapshot.json: %w", plan.ID, err)
		}
	} else {
		rep = m.rep
		rep.CreatedAt = p.Now().UTC()
		rep.Runs = append(slices.Clone(plan.BaseRuns), make([]string, 0, len(plan.Runs))...)
		for _, r := range plan.Runs {
			rep.Runs = append(rep.Runs, r.ID)
		}
		type outFile struct {
			Type  string `json:"type"`
			URL   string `json:"url"`
			Count int64  `json:"count"`
		}
		man := struct {
			TransactionTime     string    `json:"transactionTime"`
			Request             string    `json:"request"`
			RequiresAccessToken bool      `json:"requiresAccessToken"`
			Output              []outFile `json:"output"`
			Deleted             []outFile `json:"deleted"`
			Error               []outFile `json:"error"`
		}{TransactionTime: plan.TransactionTime, Request: plan.Request, Output: []outFile{}, Deleted: []outFile{}, Error: []outFile{}}
		for _, f := range m.files {
			man.Output = append(man.Output, outFile{f.typ, p.Store.URL(storage.SnapshotKey(plan.ID, f.name)), f.count})
		}
		mj, err := json.MarshalIndent(&man, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := p.Store.WriteAll(ctx, storage.SnapshotKey(plan.ID, "manifest.json"), "application/json", mj); err != nil {
			return nil, err
		}
		rj, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := p.Store.WriteAll(ctx, storage.SnapshotKey(plan.ID, "snapshot.json"), "application/json", rj); err != nil {
			return nil, err
		}
		if tf, ok := p.Tables.(TablesFinisher); ok {
			if err := tf.Finish(ctx, snapshotTablesRun(plan.ID)); err != nil {
				return nil, fmt.Errorf("snapshot %s: views: %w", plan.ID, err)
			}
		}
		if prev, err := p.Store.Current(ctx); err == nil {
			keep[prev] = true
		}
		if err := p.Store.PublishSnapshot(ctx, plan.ID); err != nil {
			return nil, err
		}
	}
	rj, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	pj, _ := json.Marshal(plan)
	row := &state.Snapshot{Source: p.Name, ID: plan.ID, LastRun: plan.Runs[len(plan.Runs)-1].ID,
		Status: state.SnapshotPublished, Plan: pj, Report: rj}
	if err := p.State.SaveSnapshot(ctx, row); err != nil {
		return nil, err
	}
	// Keep the new snapshot, the one it replaces (readers may still be
	// reading it) and its base; older ones go.
	ids, err := p.Store.Snapshots(ctx)
	if err != nil {
		p.Logger.Warn("could not list old snapshots", "err", err)
		return rep, nil
	}
	for _, id := range ids {
		if keep[id] {
			continue
		}
		if err := p.Store.DeleteSnapshot(ctx, id); err != nil {
			p.Logger.Warn("could not delete an old snapshot", "snapshot", id, "err", err)
		}
	}
	p.Logger.Info("snapshot published", "snapshot", plan.ID, "resources", rep.Resources,
		"unresolvedReferences", rep.Integrity.Unresolved)
	return rep, nil
}

// merger is one attempt at building a snapshot.
type merger struct {
	p *Pipeline
	// risk counts the snapshot's patients for the risk analysis (nil when
	// it is off).
	risk  *risk.Analyzer
	plan  *snapshotPlan
	prog  *snapshotProgress
	tmp   string
	delta *sorter
	refs  *sorter
	rep   *SnapshotReport
	files []snapFile

	// the type being written
	typ     string
	dry     bool // the type was written by an earlier attempt
	w       *storage.Writer
	zw      *gzip.Writer
	cw      countWriter
	seq     int
	inFile  int64
	typeRep *SnapshotType

	// tables receives the resources of the file being written (views).
	tables TableFile
	// typeRows counts the table rows of the type being written.
	typeRows map[string]int64
	// cand is where the tables of the type being written may be copied
	// from (nil: they are computed).
	cand *reuseCand
	// srcs counts, by type, what the runs hold; floors are the full
	// exports' floors; base is the report of the snapshot merged onto.
	srcs    map[string]*typeSources
	floors  map[string]uint64
	base    *SnapshotReport
	reports map[int]*Report

	keys   *os.File
	keysW  *bufio.Writer
	walker jsonWalker
	refKey []byte
	refErr error
}

type snapFile struct {
	typ, name string
	seq       int
	count     int64
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func (m *merger) abort() {
	if m.w != nil {
		m.w.Abort()
		m.w = nil
	}
	if m.tables != nil {
		m.tables.Abort()
		m.tables = nil
	}
}

// snapshotTablesRun is the "run" under which a snapshot's tables are
// written: snapshots/<id>/views/<name>/.
func snapshotTablesRun(id string) string { return storage.SnapshotsDir + "/" + id }

func (m *merger) maxLine() int {
	if m.p.Client != nil && m.p.Client.MaxLineBytes > 0 {
		return m.p.Client.MaxLineBytes
	}
	return 256 << 20
}

// openGz opens a gzip NDJSON object of the destination.
func (m *merger) openGz(ctx context.Context, key string) (*bulk.LineReader, func(), error) {
	rc, err := m.p.Store.Open(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(rc, 256<<10)
	zr, err := gzip.NewReader(br)
	if err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("%s: gunzip: %w", key, err)
	}
	lr := bulk.NewLineReader(zr, m.maxLine())
	return lr, func() {
		m.rep.Merge.BytesRead += lr.BytesRead()
		zr.Close()
		rc.Close()
	}, nil
}

func (m *merger) run(ctx context.Context) error {
	// Deletion and full-export floors, and the runs' records, sorted.
	floors := map[string]uint64{}
	m.floors = floors
	m.srcs = map[string]*typeSources{}
	var rec record
	for k, r := range m.plan.Runs {
		runBase := uint64(k+1) << 48
		if r.Full {
			for _, t := range r.Types {
				floors[t] = runBase
			}
		}
		var ord uint64
		for _, name := range r.Output {
			parts := strings.Split(name, ".")
			ftyp := parts[0]
			fseq, _ := strconv.Atoi(parts[1])
			fst := m.sources(ftyp)
			fst.seqs[k] = append(fst.seqs[k], fseq)
			lr, done, err := m.openGz(ctx, storage.RunKey(r.ID, name))
			if err != nil {
				return err
			}
			for lr.Next() {
				typ, id, err := m.walker.resourceKey(lr.Line())
				if err != nil || !validID(id) {
					m.rep.Skipped++
					fst.tainted[k] = true
					continue
				}
				st := fst
				if string(typ) != ftyp {
					// A resource in a file of another type: its rows are
					// in that file's tables.
					fst.tainted[k] = true
					st = m.sources(string(typ))
					st.tainted[k] = true
				}
				st.res[k]++
				ord++
				rec = record{key: append(append(append(rec.key[:0], typ...), 0), id...), seq: runBase | 1<<47 | ord,
					kind: kindResource, data: lr.Line()}
				if err := m.delta.add(&rec); err != nil {
					done()
					return err
				}
			}
			err = lr.Err()
			done()
			if err != nil {
				return fmt.Errorf("run %s: %s: %w", r.ID, name, err)
			}
		}
		for _, name := range r.Deleted {
			lr, done, err := m.openGz(ctx, storage.RunKey(r.ID, name))
			if err != nil {
				return err
			}
			for lr.Next() {
				refs, err := bulk.Tombstones(lr.Line())
				if err != nil {
					m.rep.Skipped++
					continue
				}
				for _, ref := range refs {
					typ, id, ok := literalRef(ref)
					if !ok {
						continue
					}
					m.sources(string(typ)).tomb = true
					ord++
					rec = record{key: append(append(append(rec.key[:0], typ...), 0), id...), seq: runBase | ord, kind: kindTombstone}
					if err := m.delta.add(&rec); err != nil {
						done()
						return err
					}
				}
			}
			err = lr.Err()
			done()
			if err != nil {
				return fmt.Errorf("run %s: %s: %w", r.ID, name, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	var extra []recordSource
	if m.plan.Base != "" {
		if _, ok := m.p.Tables.(TablesReuser); ok {
			data, err := m.p.Store.ReadAll(ctx, storage.SnapshotKey(m.plan.Base, "snapshot.json"))
			if err != nil {
				return err
			}
			m.base = &SnapshotReport{}
			if err := json.Unmarshal(data, m.base); err != nil {
				return fmt.Errorf("snapshot %s: snapshot.json: %w", m.plan.Base, err)
			}
		}
		bs, err := m.baseSource(ctx)
		if err != nil {
			return err
		}
		defer bs.close()
		extra = append(extra, bs)
	}
	src, err := m.delta.sorted(extra...)
	if err != nil {
		return err
	}
	defer src.close()

	m.keys, err = os.CreateTemp(m.tmp, "keys-*.txt")
	if err != nil {
		return fmt.Errorf("temporary file: %w", err)
	}
	defer m.keys.Close()
	m.keysW = bufio.NewWriterSize(m.keys, 256<<10)
	m.walker.onRef = m.addRef

	var prev []byte
	var n int
	tomb := false
	for {
		r, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if prev != nil && bytes.Equal(prev, r.key) {
			// An older version.
			if tomb && r.kind == kindResource {
				m.rep.Deleted++
				tomb = false
			}
			continue
		}
		prev = append(prev[:0], r.key...)
		tomb = false
		typ, _, _ := bytes.Cut(r.key, []byte{0})
		if r.seq < floors[string(typ)] {
			if r.kind == kindResource {
				m.rep.Replaced++
			}
			continue
		}
		if r.kind == kindTombstone {
			tomb = true
			continue
		}
		if err := m.emit(ctx, string(typ), r); err != nil {
			return err
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	if err := m.endType(ctx); err != nil {
		return err
	}
	if tn, ok := m.p.Tables.(TableNames); ok {
		for _, name := range tn.Names() {
			if m.rep.Tables == nil {
				m.rep.Tables = map[string]int64{}
			}
			m.rep.Tables[name] += 0
		}
	}
	if err := m.keysW.Flush(); err != nil {
		return fmt.Errorf("temporary file: %w", err)
	}
	return m.integrity()
}

// addRef records a reference of the resource being emitted.
func (m *merger) addRef(path []byte, typ, id string) {
	m.refKey = append(append(append(m.refKey[:0], typ...), 0), id...)
	if m.refErr != nil {
		return
	}
	m.refErr = m.refs.add(&record{key: m.refKey, data: path})
}

// emit writes the newest version of one resource into the snapshot, and
// records its key and references.
func (m *merger) emit(ctx context.Context, typ string, r *record) error {
	if typ != m.typ {
		if err := m.endType(ctx); err != nil {
			return err
		}
		m.typ, m.seq, m.inFile = typ, 0, 0
		m.typeRep = &SnapshotType{}
		m.rep.Types[typ] = m.typeRep
		_, m.dry = m.prog.Done[typ]
		m.typeRows = map[string]int64{}
		if m.dry {
			m.rep.Merge.ResumedTypes = append(m.rep.Merge.ResumedTypes, typ)
		} else if err := m.startTables(ctx, typ); err != nil {
			return err
		}
	}
	if m.cand != nil && r.seq>>48 != m.cand.run {
		m.cand.other++
	}
	if m.keysW != nil {
		m.keysW.Write(r.key)
		m.keysW.WriteByte('\n')
	}
	if m.risk != nil && typ == "Patient" {
		m.risk.Add(r.data)
	}
	// References: walk the resource again, now with paths.
	if _, _, err := m.walker.resourceKey(r.data); err != nil {
		return fmt.Errorf("%s resource: %w", typ, err)
	}
	if m.refErr != nil {
		return m.refErr
	}
	m.typeRep.Resources++
	m.rep.Resources++
	if !m.dry {
		if m.w != nil && m.inFile >= snapshotFileResources {
			if err := m.closeFile(); err != nil {
				return err
			}
		}
		if m.w == nil {
			name := storage.OutputName(typ, m.seq)
			w, err := m.p.Store.Create(ctx, storage.SnapshotKey(m.plan.ID, name), "application/gzip")
			if err != nil {
				return err
			}
			m.w = w
			m.cw = countWriter{w: w}
			if m.p.Tables != nil && m.cand == nil {
				t, err := m.p.Tables.File(ctx, snapshotTablesRun(m.plan.ID), typ, m.seq, 1)
				if err != nil {
					return fmt.Errorf("views: %w", err)
				}
				m.tables = t
			}
			if m.zw == nil {
				m.zw, err = gzip.NewWriterLevel(&m.cw, m.p.GzipLevel)
				if err != nil {
					return err
				}
			} else {
				m.zw.Reset(&m.cw)
			}
		}
		m.zw.Write(r.data)
		if _, err := m.zw.Write([]byte{'\n'}); err != nil {
			return err
		}
		if m.tables != nil {
			if err := m.tables.Resource(0, r.data); err != nil {
				return err
			}
		}
	}
	m.inFile++
	if m.dry && m.inFile >= snapshotFileResources {
		m.closeDry()
	}
	return nil
}

// closeFile completes the snapshot file being written.
func (m *merger) closeFile() error {
	if err := m.zw.Close(); err != nil {
		m.abort()
		return err
	}
	if err := m.w.Close(); err != nil {
		m.w = nil
		m.abort()
		return err
	}
	m.w = nil
	if m.tables != nil {
		warn, err := m.tables.Close(context.Background())
		if tr, ok := m.tables.(TableRows); ok && err == nil {
			for name, n := range tr.Rows() {
				m.typeRows[name] += n
			}
		}
		m.tables = nil
		if err != nil {
			return fmt.Errorf("views: %w", err)
		}
		if warn != "" {
			m.p.Logger.Warn("snapshot views: "+warn, "snapshot", m.plan.ID)
		}
	}
	m.files = append(m.files, snapFile{m.typ, storage.OutputName(m.typ, m.seq), m.seq, m.inFile})
	m.typeRep.Files++
	m.typeRep.Bytes += m.cw.n
	m.rep.Merge.BytesWritten += m.cw.n
	m.seq++
	m.inFile = 0
	return nil
}

// closeDry accounts for a file of a type written by an earlier attempt.
func (m *merger) closeDry() {
	m.files = append(m.files, snapFile{m.typ, storage.OutputName(m.typ, m.seq), m.seq, m.inFile})
	m.typeRep.Files++
	m.seq++
	m.inFile = 0
}

// endType completes the type being written and records it as done.
func (m *merger) endType(ctx context.Context) error {
	if m.typ == "" {
		return nil
	}
	if m.dry {
		if m.inFile > 0 {
			m.closeDry()
		}
		m.typeRep.Bytes = m.prog.Done[m.typ].Bytes
		m.addRows(m.typ, m.prog.Tables[m.typ], m.prog.Reused[m.typ])
		m.typ = ""
		return nil
	}
	if m.w != nil {
		if err := m.closeFile(); err != nil {
			return err
		}
	}
	if err := m.endTables(ctx); err != nil {
		return err
	}
	m.prog.Done[m.typ] = m.typeRep
	m.typ = ""
	pj, err := json.Marshal(m.prog)
	if err != nil {
		return err
	}
	plan, _ := json.Marshal(m.plan)
	return m.p.State.SaveSnapshot(ctx, &state.Snapshot{Source: m.p.Name, ID: m.plan.ID,
		LastRun: m.plan.Runs[len(m.plan.Runs)-1].ID, Status: state.SnapshotBuilding, Plan: plan, Progress: pj})
}

// baseSource streams the published snapshot's resources in key order.
func (m *merger) baseSource(ctx context.Context) (*snapshotSource, error) {
	data, err := m.p.Store.ReadAll(ctx, storage.SnapshotKey(m.plan.Base, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var man struct {
		Output []struct {
			URL string `json:"url"`
		} `json:"output"`
	}
	if err := json.Unmarshal(data, &man); err != nil {
		return nil, fmt.Errorf("snapshot %s: manifest.json: %w", m.plan.Base, err)
	}
	type fileRef struct {
		typ  string
		seq  int
		name string
	}
	var files []fileRef
	for _, o := range man.Output {
		name := path.Base(o.URL)
		if !snapshotFileName.MatchString(name) {
			return nil, fmt.Errorf("snapshot %s: manifest.json: file name not of the snapshot layout", m.plan.Base)
		}
		parts := strings.Split(name, ".")
		seq, _ := strconv.Atoi(parts[1])
		files = append(files, fileRef{parts[0], seq, name})
	}
	sort.Slice(files, func(a, b int) bool {
		if files[a].typ != files[b].typ {
			return files[a].typ < files[b].typ
		}
		return files[a].seq < files[b].seq
	})
	s := &snapshotSource{m: m, ctx: ctx}
	for _, f := range files {
		s.keys = append(s.keys, storage.SnapshotKey(m.plan.Base, f.name))
	}
	return s, nil
}

// snapshotSource reads a snapshot's files one after the other, checking
// that their resources come in key order.
type snapshotSource struct {
	m    *merger
	ctx  context.Context
	keys []string
	i    int
	lr   *bulk.LineReader
	done func()
	rec  record
	last []byte
	w    jsonWalker
}

func (s *snapshotSource) next() (*record, error) {
	for {
		if s.lr == nil {
			if s.i >= len(s.keys) {
				return nil, io.EOF
			}
			lr, done, err := s.m.openGz(s.ctx, s.keys[s.i])
			if err != nil {
				return nil, err
			}
			s.lr, s.done = lr, done
			s.i++
		}
		if s.lr.Next() {
			typ, id, err := s.w.resourceKey(s.lr.Line())
			if err != nil || !validID(id) {
				return nil, fmt.Errorf("%s line %d: not a resource with a valid type and id", s.keys[s.i-1], s.lr.LineNumber())
			}
			s.rec = record{key: append(append(append(s.rec.key[:0], typ...), 0), id...), data: s.lr.Line(), kind: kindResource}
			if s.last != nil && bytes.Compare(s.last, s.rec.key) >= 0 {
				return nil, fmt.Errorf("%s line %d: resources out of order; rebuild the snapshot (fhirdeid snapshot)", s.keys[s.i-1], s.lr.LineNumber())
			}
			s.last = append(s.last[:0], s.rec.key...)
			return &s.rec, nil
		}
		err := s.lr.Err()
		s.done()
		s.lr, s.done = nil, nil
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.keys[s.i-1], err)
		}
	}
}

func (s *snapshotSource) close() {
	if s.done != nil {
		s.done()
		s.done = nil
	}
}

// integrity joins the sorted references with the sorted keys of the
// snapshot and counts those that resolve to nothing.
func (m *merger) integrity() error {
	src, err := m.refs.sorted()
	if err != nil {
		return err
	}
	defer src.close()
	if _, err := m.keys.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("temporary file: %w", err)
	}
	ks := bufio.NewScanner(m.keys)
	ks.Buffer(make([]byte, 0, 1024), 1<<20)
	var key []byte
	more := ks.Scan()
	if more {
		key = ks.Bytes()
	}
	in := &m.rep.Integrity
	for {
		r, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		for more && bytes.Compare(key, r.key) < 0 {
			if more = ks.Scan(); more {
				key = ks.Bytes()
			}
		}
		resolved := more && bytes.Equal(key, r.key)
		pi := in.Paths[string(r.data)]
		if pi == nil {
			name := string(r.data)
			if len(in.Paths) >= maxIntegrityPaths {
				name = "(other)"
			}
			if pi = in.Paths[name]; pi == nil {
				pi = &PathIntegrity{}
				in.Paths[name] = pi
			}
		}
		pi.References++
		in.References++
		if !resolved {
			pi.Unresolved++
			in.Unresolved++
		}
	}
	return ks.Err()
}

// afterCommit merges a committed run into the snapshot. An interruption
// (or another retryable failure) is returned, so that the run stays
// unfinished and its next attempt finishes the merge; any other failure is
// logged and kept in rep.SnapshotError, and the run finishes.
func (p *Pipeline) afterCommit(ctx context.Context, rep *Report) error {
	if p.NoSnapshot {
		return nil
	}
	snap, err := Snapshot(ctx, p, SnapshotOptions{})
	if err != nil {
		if classify(err) == Retryable {
			return fmt.Errorf("snapshot: %w", err)
		}
		p.Logger.Error("the snapshot was not updated", "run", rep.Run, "err", err)
		rep.SnapshotError = err.Error()
		return nil
	}
	rep.Snapshot = snap
	return nil
}

// compareRunIDs orders run ids by start time, then by their "-N" suffix.
func compareRunIDs(a, b string) int {
	split := func(id string) (string, int) {
		base, n, ok := strings.Cut(id, "-")
		if !ok {
			return id, 1
		}
		k, err := strconv.Atoi(n)
		if err != nil {
			return id, 0
		}
		return base, k
	}
	ab, an := split(a)
	bb, bn := split(b)
	if c := strings.Compare(ab, bb); c != 0 {
		return c
	}
	return an - bn
}
