package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/internal/testshared"
	"fhirdeid/pipeline"
)

// snapshotLines returns the lines of the lake's published snapshot, sorted,
// and its report.
func snapshotLines(t *testing.T, lake string) ([]string, *pipeline.SnapshotReport) {
	t.Helper()
	cur, err := os.ReadFile(filepath.Join(lake, "current"))
	if err != nil {
		t.Fatalf("no published snapshot: %v", err)
	}
	dir := filepath.Join(lake, "snapshots", strings.TrimSpace(string(cur)))
	data, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep pipeline.SnapshotReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	// The manifest lists every file, and only those.
	var man struct {
		TransactionTime string
		Output          []struct {
			Type, URL string
			Count     int64
		}
	}
	data, err = os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(data, &man) != nil || man.TransactionTime == "" {
		t.Fatalf("snapshot manifest: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if len(files) != len(man.Output) {
		t.Fatalf("%d files, the manifest lists %d", len(files), len(man.Output))
	}
	var lines []string
	for _, f := range files {
		for l := range strings.SplitSeq(strings.TrimSuffix(string(gunzipFile(t, f)), "\n"), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	sort.Strings(lines)
	return lines, &rep
}

// runLines returns the sorted resource lines of a committed run.
func runLines(t *testing.T, lake, run string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(lake, run, "*.ndjson.gz"))
	var lines []string
	for _, f := range files {
		for l := range strings.SplitSeq(strings.TrimSuffix(string(gunzipFile(t, f)), "\n"), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	sort.Strings(lines)
	return lines
}

// unresolved counts, independently of the pipeline, the literal references
// of lines that name no resource of lines.
func unresolved(t *testing.T, lines []string) (refs, dangling int) {
	t.Helper()
	have := map[string]bool{}
	var docs []map[string]any
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		have[fmt.Sprint(v["resourceType"], "/", v["id"])] = true
		delete(v, "contained")
		docs = append(docs, v)
	}
	var walk func(x any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && k == "reference" {
					typ, id, ok := strings.Cut(s, "/")
					if ok && typ != "" && typ[0] >= 'A' && typ[0] <= 'Z' && !strings.ContainsAny(id, "/?:") && !strings.Contains(typ, ":") {
						refs++
						if !have[s] {
							dangling++
						}
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
	for _, d := range docs {
		walk(d)
	}
	return refs, dangling
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	ws := map[string]bool{}
	for _, l := range want {
		ws[l] = true
	}
	extra := 0
	for _, l := range got {
		if !ws[l] {
			extra++
		}
	}
	t.Fatalf("%s: %d lines, want %d (%d not in the reference)", what, len(got), len(want), extra)
}

// TestSnapshotEndToEnd: a full run, a change set on the server, an
// incremental run; the merged snapshot then equals a full export of the
// changed server de-identified with the same keys.
func TestSnapshotEndToEnd(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 40})
	var all [][]byte
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	srv, err := bulktest.New(bulktest.Options{Resources: all, PartSize: 150, RetryAfter: ""})
	if err != nil {
		t.Fatal(err)
	}
	base := srv.Start()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	anon := keyedSafeHarbor(t, dir)
	lake, refLake := filepath.Join(dir, "lake"), filepath.Join(dir, "reference")
	cfg := filepath.Join(dir, "fhirdeid.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`state: state.db
pipelines:
  ehr:
    source: {url: %[1]s, since: auto, maxPollInterval: 50ms}
    anonymizer: {config: %[2]s}
    destination: file://%[3]s
  reference:
    source: {url: %[1]s, maxPollInterval: 50ms}
    anonymizer: {config: %[2]s}
    destination: file://%[4]s
    snapshot: false
`, base, anon, filepath.ToSlash(lake), filepath.ToSlash(refLake))), 0o644)

	code, out, errOut := runExportCmd(t, nil, "run", "-q", "-pipeline", "ehr", cfg)
	if code != 0 || !strings.Contains(out, "snapshot ") {
		t.Fatalf("full run: exit %d\n%s%s", code, out, errOut)
	}
	first, rep1 := snapshotLines(t, lake)
	if len(first) != pop.Count() || rep1.Resources != int64(pop.Count()) {
		t.Fatalf("first snapshot: %d lines, report %d, want %d", len(first), rep1.Resources, pop.Count())
	}

	cs, err := bulktest.RandomChanges(all, 11, 60, 25, 25)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runExportCmd(t, nil, "run", "-q", "-pipeline", "ehr", cfg)
	if code != 0 {
		t.Fatalf("incremental run: exit %d\n%s%s", code, out, errOut)
	}
	got, rep := snapshotLines(t, lake)
	if len(rep.Runs) != 2 || rep.Previous != rep1.Snapshot || rep.Deleted != 25 {
		t.Fatalf("snapshot after the incremental run: runs %v, previous %q (want %q), %d deleted", rep.Runs, rep.Previous, rep1.Snapshot, rep.Deleted)
	}
	incr := runLines(t, lake, rep.Runs[1])
	if len(incr) >= pop.Count()/2 || len(incr) < 85 {
		t.Fatalf("the incremental run exported %d resources", len(incr))
	}

	code, out, errOut = runExportCmd(t, nil, "run", "-q", "-pipeline", "reference", cfg)
	if code != 0 {
		t.Fatalf("reference run: exit %d\n%s%s", code, out, errOut)
	}
	latest, _ := os.ReadFile(filepath.Join(refLake, "latest"))
	want := runLines(t, refLake, strings.TrimSpace(string(latest)))
	if len(want) != pop.Count() {
		t.Fatalf("reference export: %d resources, want %d", len(want), pop.Count())
	}
	if _, err := os.Stat(filepath.Join(refLake, "current")); err == nil {
		t.Errorf("snapshot: false still made a snapshot")
	}
	sameLines(t, "snapshot after the incremental run", got, want)
	changed := 0
	for _, l := range got {
		if _, found := slices.BinarySearch(first, l); !found {
			changed++
		}
	}
	if changed < 60+25 {
		t.Errorf("only %d lines of the snapshot changed", changed)
	}

	refs, dangling := unresolved(t, want)
	if rep.Integrity.References != int64(refs) || rep.Integrity.Unresolved != int64(dangling) {
		t.Errorf("integrity: %d references, %d unresolved; counted independently: %d, %d",
			rep.Integrity.References, rep.Integrity.Unresolved, refs, dangling)
	}
	t.Logf("snapshot: %d resources, %d changed lines, %d references, %d unresolved", len(got), changed, refs, dangling)

	// fhirdeid snapshot rebuilds the same data from the runs.
	code, out, errOut = runExportCmd(t, nil, "snapshot", "-pipeline", "ehr", cfg)
	if code != 0 || !strings.Contains(out, "-rebuilt-") {
		t.Fatalf("snapshot: exit %d\n%s%s", code, out, errOut)
	}
	rebuilt, rrep := snapshotLines(t, lake)
	sameLines(t, "rebuilt snapshot", rebuilt, want)
	if rrep.Integrity.Unresolved != rep.Integrity.Unresolved || len(rrep.Runs) != 2 {
		t.Errorf("rebuilt snapshot report: %+v", rrep)
	}
}

// TestSnapshotKillResume kills "fhirdeid run" with SIGKILL in the middle
// of the snapshot merge (once some of the snapshot's files are written) and
// checks that the next run finishes that snapshot without rewriting the
// types already written, and publishes the same data as an uninterrupted
// run.
func TestSnapshotKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs many exports")
	}
	bin := buildBinary(t)
	pop := synth.Generate(synth.Options{Patients: 150})
	data := t.TempDir()
	for _, typ := range pop.Types() {
		writeNDJSON(t, filepath.Join(data, typ+".000.ndjson"), pop.Resources[typ])
	}
	base := startBulkServer(t, bin, "--data", data, "--part-size", "400", "--retry-after", "", "--polls", "1")
	work := t.TempDir()
	anonCfg := keyedSafeHarbor(t, work)
	writeConfig := func(dir string) string {
		cfg := fmt.Sprintf(`state: state.db
pipelines:
  ehr:
    source: {url: %s, since: auto, maxPollInterval: 100ms}
    anonymizer: {config: %s}
    destination: file://%s
`, base, anonCfg, filepath.ToSlash(filepath.Join(dir, "lake")))
		p := filepath.Join(dir, "fhirdeid.yml")
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(cfg string) {
		t.Helper()
		out, err := exec.Command(bin, "run", "-q", cfg).CombinedOutput()
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
	}
	refDir := t.TempDir()
	run(writeConfig(refDir))
	want, wantRep := snapshotLines(t, filepath.Join(refDir, "lake"))
	types := len(wantRep.Types)
	if types < 4 {
		t.Fatalf("only %d types", types)
	}

	killed := 0
	for i := 0; i < 6; i++ {
		dir := t.TempDir()
		cfg := writeConfig(dir)
		lake := filepath.Join(dir, "lake")
		// Kill once k snapshot files exist: k-1 types are complete.
		k := 2 + i%(types-2)
		cmd := exec.Command(bin, "run", "-q", cfg)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var seen []string
	wait:
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("iteration %d: %v\n%s", i, err, out.String())
				}
				break wait
			case <-time.After(200 * time.Microsecond):
			}
			files, _ := filepath.Glob(filepath.Join(lake, "snapshots", "*", "*.ndjson.gz"))
			if len(files) >= k {
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				seen = files
				break
			}
		}
		if seen == nil {
			t.Logf("iteration %d: the run finished before %d snapshot files were written", i, k)
			continue
		}
		if _, err := os.Stat(filepath.Join(lake, "current")); err == nil {
			t.Logf("iteration %d: killed after the snapshot was published", i)
			continue
		}
		killed++
		// Files of the types before the last one seen are complete and
		// recorded; the resumed merge must not write them again.
		sort.Strings(seen)
		lastType := strings.SplitN(filepath.Base(seen[len(seen)-1]), ".", 2)[0]
		inodes := map[string]uint64{}
		for _, f := range seen {
			if strings.HasPrefix(filepath.Base(f), lastType+".") {
				continue
			}
			var st syscall.Stat_t
			if err := syscall.Stat(f, &st); err != nil {
				t.Fatal(err)
			}
			inodes[f] = st.Ino
		}
		before := serverStats(t, base).Kickoffs
		run(cfg)
		if k := serverStats(t, base).Kickoffs - before; k != 0 {
			t.Errorf("iteration %d: the resumed run kicked off %d exports", i, k)
		}
		got, rep := snapshotLines(t, lake)
		sameLines(t, fmt.Sprintf("iteration %d: snapshot after the resumed run", i), got, want)
		if rep.Integrity.Unresolved != wantRep.Integrity.Unresolved || rep.Integrity.References != wantRep.Integrity.References {
			t.Errorf("iteration %d: integrity %+v, want %+v", i, rep.Integrity, wantRep.Integrity)
		}
		for f, ino := range inodes {
			var st syscall.Stat_t
			if err := syscall.Stat(f, &st); err != nil {
				t.Fatalf("iteration %d: %s gone after the resume: %v", i, filepath.Base(f), err)
			}
			if st.Ino != ino {
				t.Errorf("iteration %d: %s was written again", i, filepath.Base(f))
			}
		}
		// The resumed run only finished the interrupted snapshot.
		if len(rep.Runs) != 1 || rep.Previous != "" || rep.Snapshot != rep.Runs[0] {
			t.Errorf("iteration %d: snapshot %s has runs %v, previous %s", i, rep.Snapshot, rep.Runs, rep.Previous)
		}
		t.Logf("iteration %d: killed after %d files, %d kept", i, len(seen), len(inodes))
	}
	if killed < 3 {
		t.Fatalf("only %d of 6 kills landed inside the merge", killed)
	}
}

// TestSnapshotIntegritySynthea: on synthea-100 de-identified with keyed
// Safe Harbor, every literal reference of the snapshot resolves.
func TestSnapshotIntegritySynthea(t *testing.T) {
	data := testshared.Dir(t, "data", "synthea-100")
	base := newTestServer(t, bulktest.Options{Dir: data, Passthrough: true, RetryAfter: ""})
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake")
	cfg := filepath.Join(dir, "fhirdeid.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`state: state.db
pipelines:
  synthea:
    source: {url: %s, maxPollInterval: 50ms}
    anonymizer: {config: %s}
    destination: file://%s
`, base, keyedSafeHarbor(t, dir), filepath.ToSlash(lake))), 0o644)
	code, out, errOut := runExportCmd(t, nil, "run", "-q", cfg)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	lines, rep := snapshotLines(t, lake)
	refs, dangling := unresolved(t, lines)
	t.Logf("synthea-100: %d resources, %d references, %d unresolved", len(lines), rep.Integrity.References, rep.Integrity.Unresolved)
	if rep.Integrity.References < 10000 || rep.Integrity.References != int64(refs) {
		t.Errorf("%d references counted, %d independently", rep.Integrity.References, refs)
	}
	if rep.Integrity.Unresolved != 0 || dangling != 0 {
		for p, c := range rep.Integrity.Paths {
			if c.Unresolved > 0 {
				t.Logf("%s: %d of %d unresolved", p, c.Unresolved, c.References)
			}
		}
		t.Errorf("%d unresolved references (%d counted independently), want 0", rep.Integrity.Unresolved, dangling)
	}
}

func TestBulkServerChangeFlags(t *testing.T) {
	o := bulktest.Options{Resources: bulktest.Synthetic(10, 1), ChangesAfter: 1}
	if err := changeSetFlags(&o, "", "5,2,3"); err != nil || o.Changes == nil || len(o.Changes.Upsert) != 8 || len(o.Changes.Delete) != 2 {
		t.Fatalf("--random-changes: %v %+v", err, o.Changes)
	}
	f := filepath.Join(t.TempDir(), "changes.ndjson")
	var buf bytes.Buffer
	bulktest.WriteChangeSet(&buf, *o.Changes)
	os.WriteFile(f, buf.Bytes(), 0o644)
	o2 := bulktest.Options{ChangesAfter: 2}
	if err := changeSetFlags(&o2, f, ""); err != nil || len(o2.Changes.Upsert) != 8 || len(o2.Changes.Delete) != 2 {
		t.Fatalf("--changes: %v", err)
	}
	for _, bad := range [][2]string{{f, "1,1,1"}, {"", "1,x"}, {"", "-1,0,0"}, {f + ".missing", ""}} {
		o3 := bulktest.Options{Resources: o.Resources, ChangesAfter: 1}
		if err := changeSetFlags(&o3, bad[0], bad[1]); err == nil {
			t.Errorf("flags %q accepted", bad)
		}
	}
}
