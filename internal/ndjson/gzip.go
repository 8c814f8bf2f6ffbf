package ndjson

import (
	"bytes"

	"github.com/klauspost/compress/gzip"
)

// GzipMembers is an Encode function that compresses each batch into a gzip
// member on the worker that produced it, so compression runs on every core.
// The concatenation of the members is one valid gzip stream (RFC 1952 §2.2),
// which gzip, zcat and every gzip library read as a whole.
type GzipMembers struct {
	level int
	ws    []*gzip.Writer
	bufs  []*bytes.Buffer
}

// NewGzipMembers returns an encoder for up to workers workers at the given
// compression level (gzip.DefaultCompression, or 1–9).
func NewGzipMembers(workers, level int) *GzipMembers {
	if level == 0 {
		level = gzip.DefaultCompression
	}
	return &GzipMembers{level: level, ws: make([]*gzip.Writer, workers), bufs: make([]*bytes.Buffer, workers)}
}

// Encode compresses out into one gzip member appended to dst. Pass it as
// Options.Encode. Calls with the same worker must not overlap.
func (g *GzipMembers) Encode(worker int, out, dst []byte) []byte {
	if g.ws[worker] == nil {
		g.bufs[worker] = new(bytes.Buffer)
		zw, err := gzip.NewWriterLevel(g.bufs[worker], g.level)
		if err != nil {
			zw = gzip.NewWriter(g.bufs[worker])
		}
		g.ws[worker] = zw
	}
	b := g.bufs[worker]
	b.Reset()
	zw := g.ws[worker]
	zw.Reset(b)
	zw.Write(out) // into memory: cannot fail
	zw.Close()
	return append(dst, b.Bytes()...)
}

// Empty returns an empty gzip stream, the content of a compressed file with
// no lines.
func (g *GzipMembers) Empty() []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Close()
	return b.Bytes()
}
