package pipeline_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	pq "github.com/parquet-go/parquet-go"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/views"
	"fhirdeid/views/tables"
)

// sinkTables adapts tables.Sink to pipeline.Tables (as config does).
type sinkTables struct{ s *tables.Sink }

func (t sinkTables) File(ctx context.Context, run, typ string, seq, workers int) (pipeline.TableFile, error) {
	f, err := t.s.File(ctx, run, typ, seq, workers)
	if f == nil || err != nil {
		return nil, err
	}
	return f, nil
}
func (t sinkTables) Finish(ctx context.Context, run string) error { return t.s.Finish(ctx, run) }
func (t sinkTables) Names() []string {
	var out []string
	for _, v := range t.s.Views() {
		out = append(out, v.Name)
	}
	return out
}
func (t sinkTables) ViewsOf(typ string) []string { return t.s.ViewsOf(typ) }
func (t sinkTables) Reuse(ctx context.Context, src, dst, typ string, seqs []int) (bool, error) {
	return t.s.Reuse(ctx, src, dst, typ, seqs)
}
func (t sinkTables) Clear(ctx context.Context, run, typ string) error {
	return t.s.Clear(ctx, run, typ)
}

func builtinViews(t *testing.T) []*views.View {
	t.Helper()
	vs, err := views.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// parquetRows reads back the rows of every Parquet part of a view's table
// in dir (a run or snapshot folder), each formatted, sorted.
func parquetRows(t *testing.T, dir, view string) []string {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "views", view, "*.parquet"))
	if len(parts) == 0 {
		t.Fatalf("%s: no parts of table %s", dir, view)
	}
	var out []string
	for _, p := range parts {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := fh.Stat()
		pf, err := pq.OpenFile(fh, st.Size())
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		r := pq.NewReader(pf)
		buf := make([]pq.Row, 64)
		for {
			n, err := r.ReadRows(buf)
			for _, row := range buf[:n] {
				var b strings.Builder
				for _, v := range row {
					fmt.Fprintf(&b, "%d:%d:%s|", v.Column(), v.DefinitionLevel(), v.String())
				}
				out = append(out, b.String())
			}
			if err != nil {
				break
			}
		}
		r.Close()
		fh.Close()
	}
	slices.Sort(out)
	return out
}

// scratchTables computes the tables of the published snapshot the way a
// merge without reuse does (every snapshot file through the views, one
// worker) into a separate folder, and returns it.
func scratchTables(t *testing.T, dest string, vs []*views.View) string {
	t.Helper()
	ctx := context.Background()
	cur, err := os.ReadFile(filepath.Join(dest, "current"))
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dest, "snapshots", strings.TrimSpace(string(cur)))
	ref := t.TempDir()
	st := openStore(t, ref)
	sink := tables.New(st, vs, tables.Options{})
	files, _ := filepath.Glob(filepath.Join(snap, "*.ndjson.gz"))
	for _, f := range files {
		parts := strings.Split(filepath.Base(f), ".")
		seq, _ := strconv.Atoi(parts[1])
		tf, err := sink.File(ctx, "ref", parts[0], seq, 1)
		if err != nil {
			t.Fatal(err)
		}
		if tf == nil {
			continue
		}
		fh, _ := os.Open(f)
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			if err := tf.Resource(0, sc.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		fh.Close()
		if _, err := tf.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Finish(ctx, "ref"); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(ref, "ref")
}

// checkSnapshotTables compares the published snapshot's tables, read back,
// with tables computed from scratch from its files, and its report's row
// counts with them.
func checkSnapshotTables(t *testing.T, dest string, vs []*views.View, srep *pipeline.SnapshotReport) {
	t.Helper()
	ref := scratchTables(t, dest, vs)
	snap := filepath.Join(dest, "snapshots", srep.Snapshot)
	total := 0
	for _, v := range vs {
		got, want := parquetRows(t, snap, v.Name), parquetRows(t, ref, v.Name)
		if !slices.Equal(got, want) {
			t.Errorf("table %s: %d rows, from scratch %d, or other values", v.Name, len(got), len(want))
		}
		if n, ok := srep.Tables[v.Name]; !ok || n != int64(len(want)) {
			t.Errorf("snapshot.json tables[%s] = %d (%v), want %d", v.Name, n, ok, len(want))
		}
		total += len(want)
	}
	if total == 0 {
		t.Fatal("no rows in any table")
	}
}

func tablesPipeline(t *testing.T, e *env, vs []*views.View) *pipeline.Pipeline {
	p := e.pipeline(t, hashDeid{})
	p.Tables = sinkTables{tables.New(e.store, vs, tables.Options{Fingerprint: "test-views"})}
	return p
}

// typesWithViews are the types of the population that some view reads.
func typesWithViews(pop *synth.Population, vs []*views.View) []string {
	var out []string
	for _, typ := range pop.Types() {
		for _, v := range vs {
			if v.Resource == typ && len(pop.Resources[typ]) > 0 {
				out = append(out, typ)
				break
			}
		}
	}
	return out
}

// A full run's snapshot copies the run's tables of every type, and a later
// incremental run touching one type recomputes that type's tables and
// copies the others from the previous snapshot; the tables equal those
// computed from scratch from the snapshot's files.
func TestSnapshotReusesTables(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	ctx := context.Background()
	vs := builtinViews(t)
	p := tablesPipeline(t, e, vs)
	rep1, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	srep := rep1.Snapshot
	if srep == nil {
		t.Fatalf("no snapshot: %s", rep1.SnapshotError)
	}
	types := typesWithViews(e.pop, vs)
	if len(types) < 3 {
		t.Fatalf("types with views: %v", types)
	}
	for _, typ := range types {
		if srep.Merge.TablesReused[typ] != rep1.Run {
			t.Errorf("full run: tables of %s reused from %q, want the run %s", typ, srep.Merge.TablesReused[typ], rep1.Run)
		}
	}
	checkSnapshotTables(t, e.dest, vs, srep)

	// An incremental run that changes, adds and deletes Observations only.
	cs, err := bulktest.RandomChanges(e.pop.Resources["Observation"], 7, 10, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	rep2, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	srep = rep2.Snapshot
	if rep2.Since == "" || srep == nil || srep.Previous != rep1.Run || srep.Deleted != 3 {
		t.Fatalf("incremental run: since %q, snapshot %+v", rep2.Since, srep)
	}
	for _, typ := range types {
		got, want := srep.Merge.TablesReused[typ], "snapshots/"+rep1.Run
		if typ == "Observation" {
			want = ""
		}
		if got != want {
			t.Errorf("incremental run: tables of %s reused from %q, want %q", typ, got, want)
		}
	}
	checkSnapshotTables(t, e.dest, vs, srep)

	// A rebuild with views of another definition (fingerprint) reuses
	// nothing, and computes the same tables.
	p.Tables = sinkTables{tables.New(e.store, vs, tables.Options{Fingerprint: "other-views"})}
	rb, err := pipeline.RebuildSnapshot(ctx, p, pipeline.SnapshotOptions{Rebuild: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Merge.TablesReused) != 0 {
		t.Errorf("rebuild with other views reused %v", rb.Merge.TablesReused)
	}
	checkSnapshotTables(t, e.dest, vs, rb)
}

// Tables are not reused when the snapshot does not hold exactly the run's
// resources of a type: a resource exported twice (its duplicate dropped by
// the merge).
func TestSnapshotTablesNotReusedWithDuplicates(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 20})
	var res [][]byte
	for _, typ := range pop.Types() {
		res = append(res, pop.Resources[typ]...)
	}
	res = append(res, pop.Resources["Patient"][3])
	e := newEnv(t, bulktest.Options{Resources: res})
	e.pop = pop
	ctx := context.Background()
	vs := builtinViews(t)
	p := tablesPipeline(t, e, vs)
	rep, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	srep := rep.Snapshot
	if srep == nil {
		t.Fatalf("no snapshot: %s", rep.SnapshotError)
	}
	if got := len(readRun(t, e.dest, rep.Run, "")); got != pop.Count()+1 {
		t.Fatalf("run holds %d resources, want %d (one twice)", got, pop.Count()+1)
	}
	if srep.Types["Patient"].Resources != int64(len(pop.Resources["Patient"])) {
		t.Fatalf("snapshot Patients: %d", srep.Types["Patient"].Resources)
	}
	if src, ok := srep.Merge.TablesReused["Patient"]; ok {
		t.Errorf("Patient tables reused from %s despite a duplicate", src)
	}
	if srep.Merge.TablesReused["Observation"] != rep.Run {
		t.Errorf("Observation tables not reused: %v", srep.Merge.TablesReused)
	}
	checkSnapshotTables(t, e.dest, vs, srep)
	// The run's table of patients has the duplicate's row; the snapshot's
	// does not.
	run := parquetRows(t, filepath.Join(e.dest, rep.Run), "patient_demographics")
	snap := parquetRows(t, filepath.Join(e.dest, "snapshots", srep.Snapshot), "patient_demographics")
	if len(run) != len(snap)+1 {
		t.Errorf("patient rows: run %d, snapshot %d", len(run), len(snap))
	}
}

// failAfterCopy copies the tables of one type, then fails as a crash
// would before the type is recorded as written.
type failAfterCopy struct {
	sinkTables
	typ string
}

func (f failAfterCopy) Reuse(ctx context.Context, src, dst, typ string, seqs []int) (bool, error) {
	ok, err := f.sinkTables.Reuse(ctx, src, dst, typ, seqs)
	if err == nil && ok && typ == f.typ {
		return false, fmt.Errorf("interrupted after copying the tables of %s", typ)
	}
	return ok, err
}

// A merge interrupted after copying a type's tables, resumed with views of
// another definition (the copy is then refused and the type computed),
// keeps the types written, computes the others, and leaves none of the
// copied parts among the computed ones.
func TestSnapshotTablesResumed(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	ctx := context.Background()
	vs := builtinViews(t)
	p := tablesPipeline(t, e, vs)
	p.NoSnapshot = true
	if _, err := pipeline.Run(ctx, p); err != nil {
		t.Fatal(err)
	}
	sink := p.Tables.(sinkTables)
	p.Tables = failAfterCopy{sink, "Observation"}
	if _, err := pipeline.Snapshot(ctx, p, pipeline.SnapshotOptions{}); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("first attempt: %v", err)
	}
	p.Tables = sinkTables{tables.New(e.store, vs, tables.Options{Fingerprint: "other-views"})}
	srep, err := pipeline.Snapshot(ctx, p, pipeline.SnapshotOptions{})
	if err != nil || srep == nil {
		t.Fatalf("resumed attempt: %v", err)
	}
	if len(srep.Merge.ResumedTypes) == 0 || slices.Contains(srep.Merge.ResumedTypes, "Observation") {
		t.Fatalf("resumed types %v", srep.Merge.ResumedTypes)
	}
	for _, typ := range typesWithViews(e.pop, vs) {
		_, reused := srep.Merge.TablesReused[typ]
		if want := typ < "Observation"; reused != want {
			t.Errorf("%s: reused %v, want %v (written by the first attempt)", typ, reused, want)
		}
	}
	checkSnapshotTables(t, e.dest, vs, srep)
}

// A merge interrupted after copying a type's tables from its run, resumed
// with one more view of that type (which the run has no table for, so
// that there is no source to copy from), clears the copied parts before
// computing the type: the run's parts are named after its files, the
// computed ones after the snapshot's, and a part left behind would repeat
// rows.
func TestSnapshotTablesClearedWithoutSource(t *testing.T) {
	e := newEnv(t, bulktest.Options{PartSize: 50})
	ctx := context.Background()
	vs := builtinViews(t)
	p := tablesPipeline(t, e, vs)
	p.NoSnapshot = true
	if _, err := pipeline.Run(ctx, p); err != nil {
		t.Fatal(err)
	}
	obs := 0
	_ = filepath.WalkDir(e.dest, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "Observation.") && strings.HasSuffix(d.Name(), ".ndjson.gz") {
			obs++
		}
		return nil
	})
	if obs < 2 {
		t.Fatalf("%d Observation files, want several (parts named after them)", obs)
	}
	sink := p.Tables.(sinkTables)
	p.Tables = failAfterCopy{sink, "Observation"}
	if _, err := pipeline.Snapshot(ctx, p, pipeline.SnapshotOptions{}); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("first attempt: %v", err)
	}
	var extra *views.View
	for _, v := range vs {
		if v.Resource == "Observation" {
			c := *v
			c.Name += "_again"
			extra = &c
			break
		}
	}
	if extra == nil {
		t.Fatal("no Observation view")
	}
	vs2 := append(slices.Clip(vs), extra)
	p.Tables = sinkTables{tables.New(e.store, vs2, tables.Options{Fingerprint: "test-views"})}
	srep, err := pipeline.Snapshot(ctx, p, pipeline.SnapshotOptions{})
	if err != nil || srep == nil {
		t.Fatalf("resumed attempt: %v", err)
	}
	if _, ok := srep.Merge.TablesReused["Observation"]; ok {
		t.Error("Observation reused, want computed")
	}
	checkSnapshotTables(t, e.dest, vs2, srep)
}
