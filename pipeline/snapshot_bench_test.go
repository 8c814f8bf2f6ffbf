package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
)

// BenchmarkSnapshotMerge measures the nightly merge: a published snapshot
// plus an incremental run with a 10 % change set. Bytes are the
// uncompressed NDJSON read.
func BenchmarkSnapshotMerge(b *testing.B) {
	pop := synth.Generate(synth.Options{Patients: 400})
	var all [][]byte
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	e := newEnv(b, bulktest.Options{Resources: all, PartSize: 5000})
	ctx := context.Background()
	p := e.pipeline(b, hashDeid{})
	p.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	rep1, err := pipeline.Run(ctx, p)
	if err != nil {
		b.Fatal(err)
	}
	n := len(all)
	cs, err := bulktest.RandomChanges(all, 1, n*6/100, n*2/100, n*2/100)
	if err != nil {
		b.Fatal(err)
	}
	e.srv.Apply(cs)
	p.NoSnapshot = true
	if _, err := pipeline.Run(ctx, p); err != nil {
		b.Fatal(err)
	}
	p.NoSnapshot = false
	b.ResetTimer()
	var read int64
	for i := 0; i < b.N; i++ {
		if err := p.Store.PublishSnapshot(ctx, rep1.Run); err != nil {
			b.Fatal(err)
		}
		s, err := pipeline.Snapshot(ctx, p, pipeline.SnapshotOptions{})
		if err != nil || s == nil || s.Previous != rep1.Run {
			b.Fatalf("%v %+v", err, s)
		}
		read = s.Merge.BytesRead
	}
	b.SetBytes(read)
}
