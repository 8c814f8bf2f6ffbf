package main

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	pq "github.com/parquet-go/parquet-go"

	"fhirdeid/internal/synth"
	"fhirdeid/views"
)

// A run with views writes every built-in table from the de-identified
// resources: the tables equal the views evaluated over the run's stored
// (de-identified) NDJSON, and no planted identifier reaches a table.
func TestRunWithViews(t *testing.T) {
	cfgPath, lake, pop := pipelineFixture(t, "    views: [builtin]\n    viewsCSV: true\n    workers: 2\n")
	if code, out, errOut := runExportCmd(t, nil, "validate", cfgPath); code != 0 || !strings.Contains(out, "ehr: 7 views: conditions, encounters,") {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runExportCmd(t, nil, "run", cfgPath)
	if code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	latest, _ := os.ReadFile(filepath.Join(lake, "latest"))
	run := filepath.Join(lake, strings.TrimSpace(string(latest)))

	vs, err := views.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	lc := synth.NewLeakChecker(pop.Identifiers)
	total, byView := checkTables(t, run, vs, lc)

	// report.json counts each table's rows.
	var rep struct {
		Tables map[string]int `json:"tables"`
	}
	data, err := os.ReadFile(filepath.Join(run, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep.Tables, byView) {
		t.Errorf("report.json tables %v, want %v", rep.Tables, byView)
	}

	// The merged snapshot ("current") has its tables too, computed from
	// the snapshot's own files.
	cur, err := os.ReadFile(filepath.Join(lake, "current"))
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(lake, "snapshots", strings.TrimSpace(string(cur)))
	if n, _ := checkTables(t, snap, vs, lc); n != total {
		t.Errorf("snapshot tables: %d rows, run tables %d (one full run: the same data)", n, total)
	}
	if total == 0 {
		t.Fatal("no rows in any table")
	}
	if lc.Found() != 0 {
		t.Fatalf("%d planted identifiers in the tables", lc.Found())
	}
}

func TestValidateRejectsBadViews(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, view, want string }{
		{"unknown key", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"id","path":"id","colour":"red"}]}]}`, "views[0]: view v: select[0].column[0].colour: unknown key"},
		{"bad fhirpath", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"id","path":"name.where(use = "}]}]}`, "views[0]: view v: select[0].column[0].path: fhirpath: 1:"},
		{"duplicate column", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"id","path":"gender"}]}]}`, `views[0]: view v: select[0].column[1].name: column name "id" is used twice`},
		{"forEach and forEachOrNull", `{"name":"v","resource":"Patient","select":[{"forEach":"name","forEachOrNull":"address","column":[{"name":"f","path":"family"}]}]}`, "views[0]: view v: select[0]: forEach, forEachOrNull and repeat cannot be used together"},
		{"unknown element", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"id","path":"nmae"}]}]}`, "views[0]: view v: select[0].column[0].path: fhirpath: 1:1: unknown element nmae"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vf := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			os.WriteFile(vf, []byte(tc.view), 0o644)
			cfgPath, _, _ := pipelineFixture(t, "    views: ["+vf+"]\n")
			code, out, errOut := runExportCmd(t, nil, "validate", cfgPath)
			if code == 0 || !strings.Contains(errOut, "pipelines.ehr."+tc.want) {
				t.Fatalf("validate: exit %d\n%s%s\nwant %q", code, out, errOut, tc.want)
			}
		})
	}
	cfgPath, _, _ := pipelineFixture(t, "    views: [builtin, \"builtin:encounters\"]\n")
	if code, _, errOut := runExportCmd(t, nil, "validate", cfgPath); code == 0 || !strings.Contains(errOut, "view encounters is also defined by pipelines.ehr.views[0]") {
		t.Fatalf("duplicate view accepted: %s", errOut)
	}
}

func eachGzipLine(t *testing.T, path string, fn func([]byte)) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			fn(l)
		}
	}
}

// csvRecords returns the data records of a CSV text, each re-joined.
func csvRecords(t *testing.T, s string) []string {
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs[1:] {
		out = append(out, strings.Join(r, "\x1f"))
	}
	return out
}

// checkTables compares the tables under dir/views with the views evaluated
// over dir's de-identified NDJSON files, and feeds the tables to the leak
// checker. It returns the number of rows, in all and by view.
func checkTables(t *testing.T, run string, vs []*views.View, lc *synth.LeakChecker) (int, map[string]int) {
	t.Helper()
	stored, _ := filepath.Glob(filepath.Join(run, "*.ndjson.gz"))
	if len(stored) == 0 {
		t.Fatalf("no NDJSON files in %s", run)
	}
	total := 0
	byView := map[string]int{}
	for _, v := range vs {
		var want bytes.Buffer
		cw, _ := views.NewCSVWriter(&want, v)
		r := v.NewRunner()
		for _, f := range stored {
			eachGzipLine(t, f, func(line []byte) {
				if err := r.ProcessJSON(line, cw.Write); err != nil {
					t.Fatal(err)
				}
			})
		}
		cw.Close()
		wantLines := csvRecords(t, want.String())

		var gotLines []string
		csvParts, _ := filepath.Glob(filepath.Join(run, "views", v.Name, "*.csv"))
		for _, p := range csvParts {
			data, _ := os.ReadFile(p)
			gotLines = append(gotLines, csvRecords(t, string(data))...)
			for _, l := range strings.Split(string(data), "\r\n") {
				lc.CheckLine([]byte(l))
			}
		}
		sort.Strings(wantLines)
		sort.Strings(gotLines)
		if strings.Join(gotLines, "\n") != strings.Join(wantLines, "\n") {
			t.Errorf("%s: table differs from the view over the de-identified output: %d rows, want %d", v.Name, len(gotLines), len(wantLines))
		}
		pqParts, _ := filepath.Glob(filepath.Join(run, "views", v.Name, "*.parquet"))
		if len(pqParts) != len(csvParts) || len(pqParts) == 0 {
			t.Errorf("%s: %d parquet and %d csv parts", v.Name, len(pqParts), len(csvParts))
		}
		var rows int64
		for _, p := range pqParts {
			fh, _ := os.Open(p)
			st, _ := fh.Stat()
			pf, err := pq.OpenFile(fh, st.Size())
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			rows += pf.NumRows()
			fh.Close()
		}
		if rows != int64(len(wantLines)) {
			t.Errorf("%s: %d parquet rows, want %d", v.Name, rows, len(wantLines))
		}
		t.Logf("%s: %d rows in %d parts, equal to the view over the stored output", v.Name, len(wantLines), len(pqParts))
		total += len(wantLines)
		byView[v.Name] = len(wantLines)
	}
	return total, byView
}
