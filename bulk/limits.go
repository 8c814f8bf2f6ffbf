package bulk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Limits bound what one server, manifest or file may cost. Every violation
// is a terminal *LimitError naming the file (or manifest), the line when
// there is one, and the limit: it is not retried.
type Limits struct {
	// MaxManifestBytes caps the body of one manifest page (default 64 MiB).
	MaxManifestBytes int64
	// MaxManifestFiles caps the files listed by a manifest, all pages and
	// kinds together (default 50,000).
	MaxManifestFiles int
	// MaxRatio caps the decompressed-to-compressed ratio of a gzip file
	// once more than RatioFloor bytes were decompressed (default 200; a
	// FHIR NDJSON file compresses about 10 to 30 times).
	MaxRatio float64
	// RatioFloor is the decompressed size below which the ratio is not
	// checked (default 8 MiB).
	RatioFloor int64
	// MaxFileBytes caps the decompressed bytes of one file (default 64 GiB).
	MaxFileBytes int64
	// MinBytes and RateInterval are the stalled-transfer rule: a download
	// that receives some bytes, but fewer than MinBytes, in RateInterval
	// fails (default 1 KiB per minute). A download that receives nothing is
	// the client's IdleTimeout (retried).
	MinBytes     int64
	RateInterval time.Duration
}

// DefaultMaxLineBytes is the default longest NDJSON line: 64 MiB.
const DefaultMaxLineBytes = 64 << 20

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{MaxManifestBytes: 64 << 20, MaxManifestFiles: 50000, MaxRatio: 200, RatioFloor: 8 << 20,
		MaxFileBytes: 64 << 30, MinBytes: 1 << 10, RateInterval: time.Minute}
}

// withDefaults fills unset limits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxManifestBytes <= 0 {
		l.MaxManifestBytes = d.MaxManifestBytes
	}
	if l.MaxManifestFiles <= 0 {
		l.MaxManifestFiles = d.MaxManifestFiles
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = d.MaxRatio
	}
	if l.RatioFloor <= 0 {
		l.RatioFloor = d.RatioFloor
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MinBytes < 0 {
		l.MinBytes = 0
	}
	if l.RateInterval <= 0 {
		l.RateInterval = d.RateInterval
	}
	return l
}

// LimitError is a resource limit that a file, a manifest or a server
// exceeded. It is terminal.
type LimitError struct {
	// File names the file (local name or redacted URL) or the manifest.
	File string
	// Line is the line being read, 0 when not known.
	Line int64
	// Limit is the configuration key of the limit, such as "maxLineBytes".
	Limit string
	// Msg describes the violation, with the limit's value.
	Msg string
}

func (e *LimitError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = strings.TrimSpace(loc + fmt.Sprintf(" line %d", e.Line))
	}
	return fmt.Sprintf("limit: %s: %s (limit %s; raise it in source.limits or with the matching flag if the data is genuine)", loc, e.Msg, e.Limit)
}

// IsLimit reports whether err is a *LimitError.
func IsLimit(err error) bool {
	var le *LimitError
	return errors.As(err, &le)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// guardReader enforces the total and ratio limits on a decompressed stream.
type guardReader struct {
	r          io.Reader
	wire       *countingReader // nil: not compressed
	lim        Limits
	file       string
	n          int64
	lineNumber func() int64
}

func (g *guardReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.n += int64(n)
	if g.n > g.lim.MaxFileBytes {
		return n, g.fail("maxFileBytes", fmt.Sprintf("more than %d decompressed bytes", g.lim.MaxFileBytes))
	}
	if g.wire != nil && g.n > g.lim.RatioFloor {
		if c := g.wire.n.Load(); c > 0 && float64(g.n) > g.lim.MaxRatio*float64(c) {
			return n, g.fail("maxRatio", fmt.Sprintf("%d bytes decompressed from %d: ratio above %.0f (a compression bomb?)", g.n, c, g.lim.MaxRatio))
		}
	}
	return n, err
}

func (g *guardReader) fail(limit, msg string) error {
	le := &LimitError{File: g.file, Limit: limit, Msg: msg}
	if g.lineNumber != nil {
		le.Line = g.lineNumber() + 1
	}
	return le
}

// Decode turns the wire stream of a file (its Content-Encoding, or gzip
// recognised by its magic number) into its NDJSON, enforcing the file
// limits: total decompressed bytes and, for compressed files, the
// decompression ratio. file names the file in errors. The returned close
// releases the decompressor.
func (c *Client) Decode(raw io.Reader, encoding, file string) (io.Reader, func() error, error) {
	lim := c.Limits.withDefaults()
	wire := &countingReader{r: raw}
	br := bufio.NewReaderSize(wire, 64<<10)
	enc := strings.ToLower(strings.TrimSpace(encoding))
	gz := enc == "gzip" || enc == "x-gzip"
	if !gz && enc != "" && enc != "identity" {
		return nil, nil, fmt.Errorf("download %s: unsupported Content-Encoding %q", file, oneLine(encoding))
	}
	if !gz {
		if b, _ := br.Peek(2); len(b) == 2 && b[0] == 0x1f && b[1] == 0x8b {
			gz = true
		}
	}
	if !gz {
		return &guardReader{r: br, lim: lim, file: file}, func() error { return nil }, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, &bodyError{url: file, err: errors.New("gzip header: unexpected end of stream")}
		}
		return nil, nil, &ValidationError{File: file, Msg: "not a gzip stream: " + cleanGzipErr(err)}
	}
	return &guardReader{r: zr, wire: wire, lim: lim, file: file}, zr.Close, nil
}

func cleanGzipErr(err error) string {
	if errors.Is(err, gzip.ErrHeader) {
		return "invalid header"
	}
	if errors.Is(err, gzip.ErrChecksum) {
		return "invalid checksum"
	}
	return "unreadable"
}

// rateGuard is the stalled-transfer rule of one download body.
type rateGuard struct {
	min     int64
	every   time.Duration
	n       atomic.Int64
	tripped atomic.Bool
	stop    chan struct{}
}

// newRateGuard calls cancel when, in some interval, more than zero but
// fewer than min bytes arrive.
func newRateGuard(min int64, every time.Duration, cancel func()) *rateGuard {
	g := &rateGuard{min: min, every: every, stop: make(chan struct{})}
	if min <= 0 || every <= 0 {
		return g
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
				if n := g.n.Swap(0); n > 0 && n < g.min {
					g.tripped.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	return g
}

func (g *rateGuard) add(n int) { g.n.Add(int64(n)) }

func (g *rateGuard) close() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
}
