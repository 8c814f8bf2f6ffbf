package tables

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"fhirdeid/storage"
	"fhirdeid/views"
)

// Reuse copies a source's parts only when the source recorded the same
// views and holds exactly the parts of the given files; Clear removes what
// a destination has of a type.
func TestReuse(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "file://"+filepath.ToSlash(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ids, err := views.Parse([]byte(`{"name":"ids","resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}`), "ids")
	if err != nil {
		t.Fatal(err)
	}
	vs := []*views.View{ids}
	s := New(store, vs, Options{CSV: true, Fingerprint: "v1"})
	for seq := range 2 {
		f, err := s.File(ctx, "src", "Patient", seq, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Resource(0, []byte(`{"resourceType":"Patient","id":"a"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish(ctx, "src"); err != nil {
		t.Fatal(err)
	}
	list := func(run string) []string {
		keys, err := store.List(ctx, run+"/views/ids/")
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			keys[i] = filepath.Base(k)
		}
		return keys
	}
	want := []string{"part-000-00.csv", "part-000-00.parquet", "part-000-01.csv", "part-000-01.parquet",
		"part-001-00.csv", "part-001-00.parquet", "part-001-01.csv", "part-001-01.parquet"}
	if got := list("src"); !slices.Equal(got, want) {
		t.Fatalf("source parts %v", got)
	}
	// A stale part of an earlier attempt in the destination goes.
	store.WriteAll(ctx, "dst/views/ids/part-007-00.parquet", "", []byte("stale"))

	for _, tc := range []struct {
		name string
		sink *Sink
		typ  string
		seqs []int
		ok   bool
	}{
		{"other views", New(store, vs, Options{CSV: true, Fingerprint: "v2"}), "Patient", []int{0, 1}, false},
		{"no fingerprint", New(store, vs, Options{CSV: true}), "Patient", []int{0, 1}, false},
		{"a part of no file given", s, "Patient", []int{0}, false},
		{"a file without parts", s, "Patient", []int{0, 1, 2}, false},
		{"no view of the type", s, "Observation", []int{0, 1}, false},
		{"the files' parts", s, "Patient", []int{1, 0}, true},
	} {
		ok, err := tc.sink.Reuse(ctx, "src", "dst", tc.typ, tc.seqs)
		if err != nil || ok != tc.ok {
			t.Errorf("%s: Reuse = %v, %v; want %v", tc.name, ok, err, tc.ok)
		}
		if !ok && tc.typ == "Patient" {
			if got := list("dst"); !slices.Equal(got, []string{"part-007-00.parquet"}) {
				t.Errorf("%s: a refused Reuse changed the destination: %v", tc.name, got)
			}
		}
	}
	if got := list("dst"); !slices.Equal(got, want) {
		t.Fatalf("copied parts %v, want %v", got, want)
	}
	// A source with an empty part (a table without rows) is not copied.
	store.WriteAll(ctx, "src/views/ids/part-empty.parquet", "", []byte("x"))
	if ok, _ := s.Reuse(ctx, "src", "dst2", "Patient", nil); ok {
		t.Error("copied a source with an empty part")
	}
	if err := s.Clear(ctx, "dst", "Patient"); err != nil {
		t.Fatal(err)
	}
	if got := list("dst"); len(got) != 0 {
		t.Errorf("after Clear: %v", got)
	}
}
