package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"fhirdeid/storage"
)

// The research tables of a snapshot: a type's tables are computed from the
// snapshot's files as they are written, unless they can be copied from the
// one source whose resources of that type the snapshot holds, unchanged:
//   - a run that alone wrote resources of the type (no other run, no
//     deletion of the type, every line of its files of that type a valid
//     resource of that type, and as many resources of the type in the
//     snapshot as in those files, all from that run: none was dropped as a
//     duplicate, and the base snapshot contributed none);
//   - the previous snapshot, when the runs neither wrote nor deleted
//     resources of the type nor fully exported it, and the snapshot holds
//     exactly the previous one's resources of the type.
// The tables are copied only when the source recorded tables of the same
// views and build (see TablesReuser); otherwise, or when the counts of the
// merge disagree, they are computed from the snapshot's files of the type
// once written.

// typeSources counts what the runs of a plan hold of one resource type,
// by run index.
type typeSources struct {
	res  map[int]int64 // resources
	seqs map[int][]int // sequence numbers of the files of the type
	// tainted: a line of a file of the type that is not a valid resource
	// of the type, or a resource of the type in a file of another type.
	tainted map[int]bool
	tomb    bool // a deletion of the type
}

func (m *merger) sources(typ string) *typeSources {
	st := m.srcs[typ]
	if st == nil {
		st = &typeSources{res: map[int]int64{}, seqs: map[int][]int{}, tainted: map[int]bool{}}
		m.srcs[typ] = st
	}
	return st
}

// reuseCand is a source whose tables a type may reuse.
type reuseCand struct {
	src    string // run id, or snapshots/<id>
	run    uint64 // the records' seq>>48: run index+1, 0 for the base
	expect int64  // resources of the type the snapshot must hold
	seqs   []int  // the run's files of the type (nil for the base)
	rows   map[string]int64
	other  int64 // resources emitted from other sources
}

// startTables decides, as type typ starts being written, whether its tables
// may be copied; if not, it deletes what an interrupted attempt may have
// written of them.
func (m *merger) startTables(ctx context.Context, typ string) error {
	m.cand = nil
	r, ok := m.p.Tables.(TablesReuser)
	if !ok {
		return nil
	}
	names := r.ViewsOf(typ)
	if len(names) == 0 {
		return nil
	}
	cand, err := m.candidate(ctx, typ, names)
	if err != nil {
		return err
	}
	if cand == nil {
		return r.Clear(ctx, snapshotTablesRun(m.plan.ID), typ)
	}
	m.cand = cand
	return nil
}

func (m *merger) candidate(ctx context.Context, typ string, names []string) (*reuseCand, error) {
	st := m.srcs[typ]
	if st != nil && st.tomb {
		return nil, nil
	}
	rowsOf := func(tables map[string]int64) map[string]int64 {
		rows := map[string]int64{}
		for _, n := range names {
			v, ok := tables[n]
			if !ok {
				return nil
			}
			rows[n] = v
		}
		return rows
	}
	if st == nil || len(st.res) == 0 {
		if m.base == nil || m.floors[typ] != 0 || m.base.Types[typ] == nil || m.base.Types[typ].Resources == 0 {
			return nil, nil
		}
		rows := rowsOf(m.base.Tables)
		if rows == nil {
			return nil, nil
		}
		return &reuseCand{src: snapshotTablesRun(m.plan.Base), expect: m.base.Types[typ].Resources, rows: rows}, nil
	}
	if len(st.res) != 1 {
		return nil, nil
	}
	k := -1
	for i := range st.res {
		k = i
	}
	if st.tainted[k] {
		return nil, nil
	}
	rep, err := m.runReport(ctx, k)
	if err != nil {
		return nil, err
	}
	rows := rowsOf(rep.Tables)
	if rows == nil {
		return nil, nil
	}
	return &reuseCand{src: m.plan.Runs[k].ID, run: uint64(k + 1), expect: st.res[k], seqs: st.seqs[k], rows: rows}, nil
}

// runReport reads the report.json of the plan's k-th run.
func (m *merger) runReport(ctx context.Context, k int) (*Report, error) {
	if rep := m.reports[k]; rep != nil {
		return rep, nil
	}
	id := m.plan.Runs[k].ID
	data, err := m.p.Store.ReadAll(ctx, storage.RunKey(id, "report.json"))
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	if err := json.Unmarshal(data, rep); err != nil {
		return nil, fmt.Errorf("run %s: report.json: %w", id, err)
	}
	if m.reports == nil {
		m.reports = map[int]*Report{}
	}
	m.reports[k] = rep
	return rep, nil
}

// endTables completes the tables of the type written: it copies them from
// the candidate source when the merge's counts show the snapshot holds
// exactly its resources, and otherwise computes them from the files just
// written.
func (m *merger) endTables(ctx context.Context) error {
	cand := m.cand
	m.cand = nil
	if cand == nil {
		m.addRows(m.typ, m.typeRows, "")
		return nil
	}
	r := m.p.Tables.(TablesReuser)
	dst := snapshotTablesRun(m.plan.ID)
	if cand.other == 0 && m.typeRep.Resources == cand.expect {
		ok, err := r.Reuse(ctx, cand.src, dst, m.typ, cand.seqs)
		if err != nil {
			return fmt.Errorf("views: %w", err)
		}
		if ok {
			m.addRows(m.typ, cand.rows, cand.src)
			return nil
		}
	}
	if err := r.Clear(ctx, dst, m.typ); err != nil {
		return fmt.Errorf("views: %w", err)
	}
	if err := m.tablesFromFiles(ctx, m.typ); err != nil {
		return err
	}
	m.addRows(m.typ, m.typeRows, "")
	return nil
}

// addRows accounts for the tables of type typ (rows by view), copied from
// src ("" when computed).
func (m *merger) addRows(typ string, rows map[string]int64, src string) {
	if m.p.Tables == nil {
		return
	}
	if m.prog.Tables == nil {
		m.prog.Tables = map[string]map[string]int64{}
	}
	m.prog.Tables[typ] = maps.Clone(rows)
	if m.rep.Tables == nil {
		m.rep.Tables = map[string]int64{}
	}
	for name, n := range rows {
		m.rep.Tables[name] += n
	}
	if src != "" {
		if m.prog.Reused == nil {
			m.prog.Reused = map[string]string{}
		}
		m.prog.Reused[typ] = src
		if m.rep.Merge.TablesReused == nil {
			m.rep.Merge.TablesReused = map[string]string{}
		}
		m.rep.Merge.TablesReused[typ] = src
	}
}

// tablesFromFiles computes the tables of type typ from the snapshot's files
// of that type, written by this attempt.
func (m *merger) tablesFromFiles(ctx context.Context, typ string) error {
	for _, f := range m.files {
		if f.typ != typ {
			continue
		}
		t, err := m.p.Tables.File(ctx, snapshotTablesRun(m.plan.ID), typ, f.seq, 1)
		if err != nil {
			return fmt.Errorf("views: %w", err)
		}
		if t == nil {
			return nil
		}
		lr, done, err := m.openGz(ctx, storage.SnapshotKey(m.plan.ID, f.name))
		if err != nil {
			t.Abort()
			return err
		}
		for lr.Next() {
			if err := t.Resource(0, lr.Line()); err != nil {
				done()
				t.Abort()
				return err
			}
		}
		err = lr.Err()
		done()
		if err != nil {
			t.Abort()
			return fmt.Errorf("%s: %w", f.name, err)
		}
		warn, err := t.Close(ctx)
		if err != nil {
			return fmt.Errorf("views: %w", err)
		}
		if warn != "" {
			m.p.Logger.Warn("snapshot views: "+warn, "snapshot", m.plan.ID)
		}
		if tr, ok := t.(TableRows); ok {
			for name, n := range tr.Rows() {
				m.typeRows[name] += n
			}
		}
	}
	return nil
}
