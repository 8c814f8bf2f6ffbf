package tables

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	pq "github.com/parquet-go/parquet-go"
	_ "gocloud.dev/blob/fileblob"

	"fhirdeid/storage"
	"fhirdeid/views"
)

func TestFileParts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := storage.Open(ctx, "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ids, err := views.Parse([]byte(`{"name":"ids","resource":"Patient","select":[{"column":[{"name":"id","path":"id","type":"id"},{"name":"given","path":"name.given","type":"string"}]}]}`), "ids")
	if err != nil {
		t.Fatal(err)
	}
	namesView, err := views.Parse([]byte(`{"name":"names","resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]},{"forEach":"name","column":[{"name":"given","path":"given"}]}]}`), "names")
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := views.Builtin("observations")
	s := New(store, []*views.View{ids, obs, namesView}, Options{CSV: true})

	if f, err := s.File(ctx, "r1", "Encounter", 0, 2); f != nil || err != nil {
		t.Fatalf("a file no view reads: %v %v", f, err)
	}
	f, err := s.File(ctx, "r1", "Patient", 3, 2)
	if err != nil || f == nil {
		t.Fatal(f, err)
	}
	for _, res := range []string{
		`{"resourceType":"Patient","id":"a","name":[{"given":["Ann"]}]}`,
		`{"resourceType":"Patient","id":"b","name":[{"given":["SECRET","Two"]}]}`, // two values: no row, a warning
		// The first name gives a row, the second fails: no row at all.
		`{"resourceType":"Patient","id":"e","name":[{"given":["One"]},{"given":["SECRET","Two"]}]}`,
		`{"resourceType":"Patient","id":"c"}`,
	} {
		if err := f.Resource(0, []byte(res)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Resource(1, []byte(`{"resourceType":"Patient","id":"d"}`)); err != nil {
		t.Fatal(err)
	}
	if err := f.Resource(1, []byte(`{not json`)); err == nil {
		t.Fatal("invalid JSON accepted")
	}
	warn, err := f.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warn, "view ids: 2 resources gave no rows; first: view ids: select[0].column[1].path (on Patient/b)") || strings.Contains(warn, "SECRET") {
		t.Fatalf("warning %q", warn)
	}
	if rows := f.Rows(); rows["ids"] != 3 || rows["names"] != 1 {
		t.Fatalf("rows %v", rows)
	}
	// e's first name gave a row before its second failed: not written.
	ncsv, _ := os.ReadFile(filepath.Join(dir, "r1/views/names/part-003-00.csv"))
	if string(ncsv) != "id,given\r\na,Ann\r\n" {
		t.Fatalf("names csv %q", ncsv)
	}
	var names []string
	filepath.Walk(filepath.Join(dir, "r1"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(names)
	want := []string{"r1/views/ids/part-003-00.csv", "r1/views/ids/part-003-00.parquet", "r1/views/ids/part-003-01.csv", "r1/views/ids/part-003-01.parquet",
		"r1/views/names/part-003-00.csv", "r1/views/names/part-003-00.parquet", "r1/views/names/part-003-01.csv", "r1/views/names/part-003-01.parquet"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("parts %v, want %v", names, want)
	}
	// Finish gives the observations table (no file in r1) an empty part
	// and leaves ids alone.
	if err := s.Finish(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	empty, _ := filepath.Glob(filepath.Join(dir, "r1/views/*/part-empty.*"))
	if len(empty) != 2 || !strings.Contains(empty[0], "observations") {
		t.Fatalf("empty parts %v", empty)
	}
	ecsv, _ := os.ReadFile(filepath.Join(dir, "r1/views/observations/part-empty.csv"))
	if !strings.HasPrefix(string(ecsv), "id,patient_id,") || strings.Count(string(ecsv), "\r\n") != 1 {
		t.Fatalf("empty csv %q", ecsv)
	}
	csv0, _ := os.ReadFile(filepath.Join(dir, "r1/views/ids/part-003-00.csv"))
	if string(csv0) != "id,given\r\na,Ann\r\nc,\r\n" {
		t.Fatalf("csv %q", csv0)
	}

	// An aborted attempt stores nothing.
	g, _ := s.File(ctx, "r2", "Observation", 0, 1)
	if err := g.Resource(0, []byte(`{"resourceType":"Observation","id":"o","status":"final","code":{}}`)); err != nil {
		t.Fatal(err)
	}
	g.Abort()
	if _, err := os.Stat(filepath.Join(dir, "r2")); !os.IsNotExist(err) {
		entries, _ := filepath.Glob(filepath.Join(dir, "r2", "*", "*", "*"))
		if len(entries) > 0 {
			t.Fatalf("aborted attempt left %v", entries)
		}
	}
}

// Workers call Resource concurrently, each with its own index.
func TestFileConcurrentWorkers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := storage.Open(ctx, "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	vs, _ := views.Builtins()
	s := New(store, vs, Options{})
	f, err := s.File(ctx, "r", "Patient", 0, 4)
	if err != nil || f == nil {
		t.Fatal(f, err)
	}
	done := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func(w int) {
			for i := 0; i < 200; i++ {
				res := `{"resourceType":"Patient","id":"p` + strings.Repeat("x", w) + `","gender":"female","name":[{"given":["A","B"]}]}`
				if i%50 == 0 {
					res = `{"resourceType":"Patient","id":"q","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"F"},{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"M"}]}`
				}
				if err := f.Resource(w, []byte(res)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}(w)
	}
	for w := 0; w < 4; w++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	warn, err := f.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rows := f.Rows()["patient_demographics"]; rows != 4*200 {
		t.Fatalf("%d rows, want 800", rows)
	}
	if warn != "" {
		t.Fatalf("warning %q", warn)
	}
}

// The resource's bytes are valid only during Resource (the pipeline reuses
// its buffer): the tables hold nothing of them afterwards, although the
// trees borrow their strings. One buffer serves every resource, and is
// overwritten before Close; the Parquet and CSV parts have the right rows.
func TestResourceBytesReused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := storage.Open(ctx, "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	v, err := views.Parse([]byte(`{"name":"pt","resource":"Patient","select":[{"column":[{"name":"id","path":"id","type":"id"},{"name":"family","path":"name.family.first()","type":"string"},{"name":"b","path":"birthDate","type":"date"}]}]}`), "pt")
	if err != nil {
		t.Fatal(err)
	}
	s := New(store, []*views.View{v}, Options{CSV: true})
	f, err := s.File(ctx, "r", "Patient", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	var want strings.Builder
	want.WriteString("id,family,b\r\n")
	for i := range 300 { // more than a Parquet batch of rows
		buf = fmt.Appendf(buf[:0], `{"resourceType":"Patient","id":"p%d","name":[{"family":"Fam\u00e9%03d"}],"birthDate":"19%02d"}`, i, i, i%100)
		if err := f.Resource(0, buf); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&want, "p%d,Famé%03d,19%02d\r\n", i, i, i%100)
		for j := range buf {
			buf[j] = 'X'
		}
	}
	if _, err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "r/views/pt/part-000-00.csv"))
	if string(got) != want.String() {
		t.Fatalf("csv differs from the resources:\n%.300s", got)
	}
	fh, err := os.Open(filepath.Join(dir, "r/views/pt/part-000-00.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	pf, err := pq.OpenFile(fh, fileSize(t, fh))
	if err != nil {
		t.Fatal(err)
	}
	r := pq.NewReader(pf)
	rows := make([]pq.Row, 400)
	n, err := r.ReadRows(rows)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	cell := func(i, c int) string { return string(rows[i][c].ByteArray()) }
	if n != 300 || cell(299, 0) != "p299" || cell(123, 1) != "Famé123" || cell(7, 2) != "1907" {
		t.Fatalf("parquet rows: %d, row 299 %v", n, rows[299])
	}
}

func fileSize(t *testing.T, f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
