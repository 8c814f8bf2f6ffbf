package bulk_test

import (
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/testshared"
)

// lineHashes counts the FNV-64 hash of every line of the .ndjson.gz files
// in dir (data files only).
func lineHashes(t *testing.T, dir string) (map[uint64]int, int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	out := map[uint64]int{}
	n := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		lr := bulk.NewLineReader(zr, 0)
		for lr.Next() {
			h := fnv.New64a()
			_, _ = h.Write(lr.Line())
			out[h.Sum64()]++
			n++
		}
		if lr.Err() != nil {
			t.Fatal(lr.Err())
		}
		_, _ = io.Copy(io.Discard, zr)
		fh.Close()
	}
	return out, n
}

// TestExportSynthea100 exports the Synthea sample through the local server
// with cut connections and a transient status failure, and checks that
// every source line arrives exactly once, byte for byte.
func TestExportSynthea100(t *testing.T) {
	src := testshared.Dir(t, "data", "synthea-100")
	e := newEnv(t, bulktest.Options{Dir: src, PartSize: 2500, Faults: bulktest.Faults{CutDownloads: 2, StatusTransient: 1}})
	res, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	want, wn := lineHashes(t, src)
	got, gn := lineHashes(t, e.dir)
	if gn != wn || gn != 38472 {
		t.Fatalf("%d lines exported, source has %d (expected 38472)", gn, wn)
	}
	for h, n := range want {
		if got[h] != n {
			t.Fatalf("a source line appears %d times in the export, %d times in the source", got[h], n)
		}
	}
	if res.Resources != int64(wn) {
		t.Errorf("result counts %d resources", res.Resources)
	}
}
