package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/pipeline"
	"fhirdeid/storage"
)

// hashDeid is a deterministic stand-in de-identifier that keeps every
// value, so that new versions of resources show in its output, but hashes
// ids and the ids of literal references, as a keyed configuration does.
type hashDeid struct{}

func (hashDeid) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	var v map[string]any
	if err := json.Unmarshal(res, &v); err != nil {
		return dst, anonymize.Stats{}, err
	}
	v["id"] = hashID(v["id"].(string))
	var walk func(x any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && k == "reference" {
					if t, id, ok := strings.Cut(s, "/"); ok {
						x[k] = t + "/" + hashID(id)
					}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	out, err := json.Marshal(v)
	return append(dst, out...), anonymize.Stats{Resources: 1}, err
}

func (hashDeid) ID(ctx context.Context, typ, id string) (string, error) { return hashID(id), nil }

// currentLines returns the lines of the published snapshot, sorted, with
// its report.
func currentLines(t *testing.T, dest string) ([]string, *pipeline.SnapshotReport) {
	t.Helper()
	cur, err := os.ReadFile(filepath.Join(dest, "current"))
	if err != nil {
		t.Fatalf("no published snapshot: %v", err)
	}
	dir := filepath.Join(dest, "snapshots", strings.TrimSpace(string(cur)))
	var rep pipeline.SnapshotReport
	data, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<24)
		var prev string
		for sc.Scan() {
			var k struct{ ResourceType, ID string }
			json.Unmarshal(sc.Bytes(), &k)
			if key := k.ResourceType + "\x00" + k.ID; key <= prev {
				t.Fatalf("%s: not sorted by id", f)
			} else {
				prev = key
			}
			lines = append(lines, sc.Text())
		}
		fh.Close()
	}
	sort.Strings(lines)
	return lines, &rep
}

func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	gs, ws := map[string]bool{}, map[string]bool{}
	for _, l := range got {
		gs[l] = true
	}
	for _, l := range want {
		ws[l] = true
	}
	extra, missing := 0, 0
	for l := range gs {
		if !ws[l] {
			extra++
		}
	}
	for l := range ws {
		if !gs[l] {
			missing++
		}
	}
	for l := range gs {
		if !ws[l] {
			t.Logf("unexpected: %.300s", l)
			break
		}
	}
	for l := range ws {
		if !gs[l] {
			t.Logf("missing: %.300s", l)
			break
		}
	}
	t.Fatalf("%s: %d lines, want %d (%d unexpected, %d missing)", what, len(got), len(want), extra, missing)
}

func TestSnapshotIncremental(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	ctx := context.Background()
	p := e.pipeline(t, hashDeid{})
	rep1, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep1.Snapshot == nil || rep1.Snapshot.Snapshot != rep1.Run {
		t.Fatalf("run report's snapshot: %+v", rep1.Snapshot)
	}
	got, srep := currentLines(t, e.dest)
	diffLines(t, "snapshot of the full run", got, readRun(t, e.dest, rep1.Run, ""))
	if srep.Resources != int64(e.pop.Count()) || srep.Integrity.References == 0 {
		t.Fatalf("snapshot report: %d resources (want %d), %d references", srep.Resources, e.pop.Count(), srep.Integrity.References)
	}

	var all [][]byte
	for _, typ := range e.pop.Types() {
		all = append(all, e.pop.Resources[typ]...)
	}
	cs, err := bulktest.RandomChanges(all, 42, 60, 25, 25)
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
	if rep2.Since == "" || rep2.Deleted == 0 || rep2.Resources >= rep1.Resources {
		t.Fatalf("second run is not incremental: since %q, %d resources, %d deletion bundles", rep2.Since, rep2.Resources, rep2.Deleted)
	}
	got, srep = currentLines(t, e.dest)
	if srep.Deleted != 25 || srep.Previous != rep1.Run || !slices.Equal(srep.Runs, []string{rep1.Run, rep2.Run}) {
		t.Fatalf("snapshot report: deleted %d, previous %q, runs %v", srep.Deleted, srep.Previous, srep.Runs)
	}

	// The reference: a full export of the changed server.
	refStore := t.TempDir()
	rp := e.pipeline(t, hashDeid{})
	rp.Name, rp.SinceAuto, rp.NoSnapshot = "reference", false, true
	rp.Store = openStore(t, refStore)
	rrep, err := pipeline.Run(ctx, rp)
	if err != nil {
		t.Fatal(err)
	}
	want := readRun(t, refStore, rrep.Run, "")
	if len(want) != e.pop.Count()-25+25 {
		t.Fatalf("reference export: %d resources", len(want))
	}
	diffLines(t, "snapshot after the incremental run", got, want)

	// A rebuild from the runs, with tiny sort buffers (many spills and a
	// multi-level merge), gives the same snapshot.
	p.SnapshotMemory = 8 << 10
	if os.Getenv("BIGMEM") != "" {
		p.SnapshotMemory = 0
	}
	rb, err := pipeline.RebuildSnapshot(ctx, p, pipeline.SnapshotOptions{Rebuild: true})
	if err != nil {
		t.Fatal(err)
	}
	if (rb.Merge.Spills < 64 && os.Getenv("BIGMEM") == "") || rb.Snapshot == rep2.Run {
		t.Fatalf("rebuild: %d spills, id %s", rb.Merge.Spills, rb.Snapshot)
	}
	got2, rrep2 := currentLines(t, e.dest)
	diffLines(t, "rebuilt snapshot", got2, want)
	if !reflect.DeepEqual(rrep2.Integrity, srep.Integrity) {
		t.Errorf("integrity differs after the rebuild")
	}
	// Old snapshots are removed, the previous one is kept.
	ids, _ := filepath.Glob(filepath.Join(e.dest, "snapshots", "*", "snapshot.json"))
	if len(ids) != 2 {
		t.Errorf("%d snapshot folders, want 2", len(ids))
	}
}

func openStore(t *testing.T, dir string) *storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestSnapshotRefusesOtherKeys(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	ctx := context.Background()
	p := e.pipeline(t, hashDeid{})
	p.KeyFingerprints = map[string]string{"cryptoHashKey": "aaaa"}
	if _, err := pipeline.Run(ctx, p); err != nil {
		t.Fatal(err)
	}
	// A new lake (--new-keys): a full export with other keys starts a new
	// snapshot.
	p.KeyFingerprints = map[string]string{"cryptoHashKey": "bbbb"}
	p.NewKeys = true
	rep, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.Snapshot; s == nil || len(s.Runs) != 1 || s.Runs[0] != rep.Run || s.Previous != "" || s.KeyFingerprints["cryptoHashKey"] != "bbbb" {
		t.Fatalf("snapshot after a full export with new keys: %+v", rep.Snapshot)
	}
	first, _ := currentLines(t, e.dest)
	// An incremental run whose report names other keys is not merged.
	p = e.pipeline(t, hashDeid{})
	p.KeyFingerprints = map[string]string{"cryptoHashKey": "bbbb"}
	p.NoSnapshot = true
	rep, err = pipeline.Run(ctx, p)
	if err != nil || rep.Since == "" {
		t.Fatalf("incremental run: %v", err)
	}
	rj := filepath.Join(e.dest, rep.Run, "report.json")
	data, _ := os.ReadFile(rj)
	os.WriteFile(rj, bytes.ReplaceAll(data, []byte(`"bbbb"`), []byte(`"cccc"`)), 0o644)
	p.NoSnapshot = false
	_, err = pipeline.Snapshot(ctx, p, pipeline.SnapshotOptions{})
	if err == nil || !strings.Contains(err.Error(), "key fingerprints differ") {
		t.Fatalf("merge of a run with other keys: %v", err)
	}
	if got, _ := currentLines(t, e.dest); !slices.Equal(got, first) {
		t.Fatal("the snapshot changed")
	}
}

// checkSnapshot reads the published snapshot back through the store: it
// is the run's, and holds its n resources.
func checkSnapshot(t *testing.T, store *storage.Store, rep *pipeline.Report, n int) {
	t.Helper()
	ctx := context.Background()
	cur, err := store.Current(ctx)
	if err != nil || cur != rep.Run || rep.Snapshot == nil || rep.Snapshot.Snapshot != cur {
		t.Fatalf("current = %q, %v (run %s)", cur, err, rep.Run)
	}
	keys, err := store.List(ctx, storage.SnapshotKey(cur, ""))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, k := range keys {
		if !strings.HasSuffix(k, ".ndjson.gz") {
			continue
		}
		r, err := store.Open(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			got++
		}
		r.Close()
	}
	if got != n || rep.Snapshot.Resources != int64(n) {
		t.Errorf("snapshot %s: %d resources read back, report %d, want %d", cur, got, rep.Snapshot.Resources, n)
	}
	for _, name := range []string{"manifest.json", "snapshot.json"} {
		if ok, _ := store.Exists(ctx, storage.SnapshotKey(cur, name)); !ok {
			t.Errorf("snapshot %s: missing %s", cur, name)
		}
	}
}

// TestSnapshotS3Incremental merges an incremental run onto a snapshot read
// back from an S3 destination.
func TestSnapshotS3Incremental(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	ctx := context.Background()
	p := e.pipeline(t, hashDeid{})
	p.Store = openStore(t, fakeS3(t, "lake", nil)+"&prefix=research/")
	rep1, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]byte
	for _, typ := range e.pop.Types() {
		all = append(all, e.pop.Resources[typ]...)
	}
	cs, _ := bulktest.RandomChanges(all, 3, 20, 10, 5)
	if err := e.srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	rep2, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	s := rep2.Snapshot
	if s == nil || s.Previous != rep1.Run || s.Deleted != 10 || len(s.Runs) != 2 {
		t.Fatalf("snapshot after the incremental run: %+v", s)
	}
	checkSnapshot(t, p.Store, rep2, e.pop.Count()-10+5)
}
