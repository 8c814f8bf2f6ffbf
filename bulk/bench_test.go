package bulk_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/testshared"
)

func syntheticNDJSON(patients int) []byte {
	var buf bytes.Buffer
	for _, r := range bulktest.Synthetic(patients, 9) {
		buf.Write(r)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// BenchmarkResourceType measures the top-level resourceType scan per line.
func BenchmarkResourceType(b *testing.B) {
	lines := bytes.Split(bytes.TrimSpace(syntheticNDJSON(50)), []byte("\n"))
	var size int64
	for _, l := range lines {
		size += int64(len(l))
	}
	b.SetBytes(size / int64(len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := bulk.ResourceType(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLineValidate measures splitting and validating NDJSON.
func BenchmarkLineValidate(b *testing.B) {
	data := syntheticNDJSON(200)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		lr := bulk.NewLineReader(bytes.NewReader(data), 0)
		v := bulk.Validator{File: "x"}
		for lr.Next() {
			if err := v.Check(lr.Line(), lr.LineNumber()); err != nil {
				b.Fatal(err)
			}
		}
		if lr.Err() != nil {
			b.Fatal(lr.Err())
		}
	}
}

// BenchmarkExportLoopback runs a whole export from an in-process bulktest
// server over loopback into a temporary directory; MB/s is uncompressed
// NDJSON.
func BenchmarkExportLoopback(b *testing.B) {
	pop := bulktest.Synthetic(500, 4)
	var size int64
	for _, r := range pop {
		size += int64(len(r)) + 1
	}
	srv, err := bulktest.New(bulktest.Options{Resources: pop, PartSize: 2000})
	if err != nil {
		b.Fatal(err)
	}
	u := srv.Start()
	defer srv.Close()
	b.SetBytes(size)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c, err := bulk.NewClient(u, nil)
		if err != nil {
			b.Fatal(err)
		}
		c.Clock = newFakeClock()
		exp := &bulk.Exporter{Client: c, Store: bulk.FileCheckpointStore{Path: filepath.Join(dir, "cp.json")}, Sink: bulk.DirSink{Dir: dir}}
		if _, err := exp.Run(context.Background(), bulk.Request{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateSynthea validates the Synthea Observation file (the
// resourceType comes first in each line, as in real exports).
func BenchmarkValidateSynthea(b *testing.B) {
	dir := testshared.Dir(b, "data", "synthea-100")
	f, err := os.Open(filepath.Join(dir, "Observation.000.ndjson.gz"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lr := bulk.NewLineReader(bytes.NewReader(data), 0)
		v := bulk.Validator{File: "x", Type: "Observation"}
		for lr.Next() {
			if err := v.Check(lr.Line(), lr.LineNumber()); err != nil {
				b.Fatal(err)
			}
		}
		if lr.Err() != nil {
			b.Fatal(lr.Err())
		}
	}
}

// BenchmarkExportSynthea100Passthrough exports synthea-100 from a local
// server that sends the stored gzip files as they are, so the figures are
// the client's: download, gunzip, line split, resourceType and count checks,
// writing to disk, checkpoints. MB/s is uncompressed NDJSON.
func BenchmarkExportSynthea100Passthrough(b *testing.B) {
	src := testshared.Dir(b, "data", "synthea-100")
	srv, err := bulktest.New(bulktest.Options{Dir: src, Passthrough: true})
	if err != nil {
		b.Fatal(err)
	}
	u := srv.Start()
	defer srv.Close()
	var size int64
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c, err := bulk.NewClient(u, nil)
		if err != nil {
			b.Fatal(err)
		}
		c.Clock = newFakeClock()
		exp := &bulk.Exporter{Client: c, Store: bulk.FileCheckpointStore{Path: filepath.Join(dir, "cp.json")}, Sink: bulk.DirSink{Dir: dir}}
		res, err := exp.Run(context.Background(), bulk.Request{})
		if err != nil {
			b.Fatal(err)
		}
		size = res.Bytes
		if i == 0 {
			b.SetBytes(size)
			b.ReportAllocs()
		}
	}
}
