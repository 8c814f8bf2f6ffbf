package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pq "github.com/parquet-go/parquet-go"

	"fhirdeid/internal/testshared"
	"fhirdeid/views"
)

func runViewCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code := run(context.Background(), e, append([]string{"view"}, args...))
	return code, out.String(), errb.String()
}

// sourceCounts counts, with encoding/json and independently of the views
// package, the source elements each built-in view has a row for.
func sourceCounts(t *testing.T, dir string) map[string]int {
	byType := map[string]int{}
	components := 0
	withoutComponents := 0
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
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
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var r struct {
				ResourceType string            `json:"resourceType"`
				Component    []json.RawMessage `json:"component"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			byType[r.ResourceType]++
			if r.ResourceType == "Observation" {
				if len(r.Component) > 0 {
					components += len(r.Component)
				} else {
					withoutComponents++
				}
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	return map[string]int{
		"patient_demographics": byType["Patient"],
		"encounters":           byType["Encounter"],
		"conditions":           byType["Condition"],
		"observations":         withoutComponents + components,
		"medication_requests":  byType["MedicationRequest"],
		"procedures":           byType["Procedure"],
		"immunizations":        byType["Immunization"],
	}
}

func TestViewSynthea100Builtins(t *testing.T) {
	dir := testshared.Dir(t, "data", "synthea-100")
	want := sourceCounts(t, dir)
	out := t.TempDir()
	for _, name := range views.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			if want[name] == 0 {
				t.Fatalf("no independent count for %s", name)
			}
			// NDJSON on stdout, over the whole folder.
			code, stdout, stderr := runViewCmd(t, "", "--view", "builtin:"+name, dir)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != want[name] {
				t.Fatalf("%d NDJSON rows, want %d (independent count)", len(lines), want[name])
			}
			v, _ := views.Builtin(name)
			for _, l := range []string{lines[0], lines[len(lines)-1]} {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil || len(m) != len(v.Columns) || m["id"] == nil {
					t.Fatalf("row %s: %v", l, err)
				}
			}
			// CSV and Parquet files.
			csvPath := filepath.Join(out, name+".csv")
			if code, _, stderr := runViewCmd(t, "", "--view", "builtin:"+name, "-o", csvPath, dir); code != 0 {
				t.Fatalf("csv: exit %d: %s", code, stderr)
			}
			fh, _ := os.Open(csvPath)
			recs, err := csv.NewReader(fh).ReadAll()
			fh.Close()
			if err != nil || len(recs) != want[name]+1 || len(recs[0]) != len(v.Columns) {
				t.Fatalf("csv: %d records, want %d + header: %v", len(recs), want[name], err)
			}
			pqPath := filepath.Join(out, name+".parquet")
			if code, _, stderr := runViewCmd(t, "", "--view", "builtin:"+name, "--compression", "zstd", "-o", pqPath, dir); code != 0 {
				t.Fatalf("parquet: exit %d: %s", code, stderr)
			}
			pf, err := os.Open(pqPath)
			if err != nil {
				t.Fatal(err)
			}
			defer pf.Close()
			st, _ := pf.Stat()
			f, err := pq.OpenFile(pf, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if f.NumRows() != int64(want[name]) {
				t.Fatalf("parquet: %d rows, want %d", f.NumRows(), want[name])
			}
			t.Logf("%s: %d rows as NDJSON, CSV and Parquet, equal to the independent count", name, want[name])
			// No temporary files left behind.
			if left, _ := filepath.Glob(filepath.Join(out, ".*.tmp")); len(left) > 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}
}

func TestViewCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"resource":"Patient","select":[{"forEach":"name","forEachOrNull":"address","column":[{"name":"f","path":"family"}]}]}`), 0o644)
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"name":"ids","resource":"Patient","select":[{"column":[{"name":"given","path":"name.given"}]}]}`), 0o644)
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"no view", "", []string{"-"}, 2, "", "--view FILE or --view builtin:NAME is required"},
		{"no input", "", []string{"--view", good}, 2, "", "expected at least one INPUT"},
		{"bad format", "", []string{"--view", good, "--format", "xml", "-"}, 2, "", `unknown format "xml"`},
		{"unknown builtin", "", []string{"--view", "builtin:nope", "-"}, 1, "", `no built-in view "nope"`},
		{"invalid view", "", []string{"--view", bad, "-"}, 1, "", "view " + bad + ": select[0]: forEach, forEachOrNull and repeat cannot be used together"},
		{"stdin", `{"resourceType":"Patient","name":[{"given":["A"]}]}` + "\n\n" + `{"resourceType":"Observation","status":"final","code":{}}` + "\n", []string{"--view", good, "-"}, 0, `{"given":"A"}` + "\n", "view ids: 1 rows from 2 resources"},
		{"runtime error names line, not values", `{"resourceType":"Patient","id":"p1"}` + "\n" + `{"resourceType":"Patient","id":"p2","name":[{"given":["SECRET","X"]}]}` + "\n", []string{"--view", good, "-"}, 1, "", "standard input:2: view ids: select[0].column[0].path (on Patient/p2): column given: the path gave 2 values"},
		{"bad json names line", "{\"resourceType\":\"Patient\"}\n{oops\n", []string{"--view", good, "-"}, 1, "", "standard input:2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runViewCmd(t, tt.stdin, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) || (tt.stdout != "" && stdout != tt.stdout) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			if strings.Contains(stderr, "SECRET") {
				t.Fatalf("stderr %q contains a value", stderr)
			}
		})
	}
}
