// Package ndjson transforms NDJSON streams line by line on several cores,
// writing the results in input order with bounded memory.
//
// The reader cuts the input into batches of lines, workers transform whole
// batches, and the writer puts the batches back in order. At most a few
// batches per worker are in flight, so memory stays flat whatever the size of
// the input; a single line may be as large as MaxLine.
package ndjson

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// DefaultMaxLine is the default longest line: 256 MiB.
const DefaultMaxLine = 256 << 20

// Func transforms one line (without its newline) and appends the result to
// dst, without a newline. It returns dst unchanged to drop the line. worker
// identifies the calling goroutine (0 ≤ worker < Workers), so that Func can
// keep per-worker scratch state without locking. lineNo counts from 1.
type Func func(worker int, lineNo int64, line, dst []byte) ([]byte, error)

// Options configure Transform.
type Options struct {
	// Workers is the number of goroutines running Func (default GOMAXPROCS).
	Workers int
	// MaxLine is the longest accepted line in bytes (default DefaultMaxLine).
	MaxLine int
	// BatchBytes is the target size of a batch (default 256 KiB).
	BatchBytes int
	// Progress, if set, is called from the writer goroutine after each batch
	// with the totals so far.
	Progress func(Stats)
	// Encode, if set, turns the output of a whole batch (complete lines with
	// their newlines) into the bytes to write, appended to dst. It runs on the
	// workers, so that for instance each batch becomes one gzip member
	// compressed in parallel (a concatenation of gzip members is a valid
	// gzip stream). An empty batch output is not encoded.
	Encode func(worker int, out, dst []byte) []byte
}

// Stats counts what Transform did.
type Stats struct {
	// Lines is the number of non-blank input lines processed.
	Lines int64
	// Written is the number of lines written.
	Written int64
	// BytesIn counts the bytes of the lines read, BytesOut the bytes written
	// to w, and RawOut the bytes of the output lines before Encode.
	BytesIn  int64
	BytesOut int64
	RawOut   int64
}

// LineError is an error of one line: a line that is too long, or what Func
// returned for it.
type LineError struct {
	Line int64
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// ErrLineTooLong is the cause of the LineError of a line over MaxLine.
var ErrLineTooLong = errors.New("line too long")

type batch struct {
	seq int64
	// in holds the lines, each followed by '\n'; ends marks where each
	// line ends in in, and nums gives its line number.
	in   []byte
	ends []int
	nums []int64
	out  []byte
	enc  []byte
	outN int64
	err  error
}

// Transform reads NDJSON from r, applies fn to every non-blank line and writes
// the results to w, one per line, in input order. It stops at the first error
// (a read or write error, or a *LineError) and returns it with the counts so
// far; what it wrote before is complete lines only.
func Transform(ctx context.Context, r io.Reader, w io.Writer, fn Func, opts Options) (Stats, error) {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 256 << 10
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	pool := sync.Pool{New: func() any { return new(batch) }}
	work := make(chan *batch, opts.Workers)
	done := make(chan *batch, opts.Workers)
	// tokens bounds the batches in flight (read, being transformed, or
	// waiting to be written in order).
	tokens := make(chan struct{}, 3*opts.Workers)

	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(work)
		readErr = readBatches(ctx, r, opts, &pool, tokens, work)
	}()

	var wg sync.WaitGroup
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			for b := range work {
				transformBatch(worker, b, fn)
				if opts.Encode != nil && b.err == nil && len(b.out) > 0 {
					b.enc = opts.Encode(worker, b.out, b.enc[:0])
				}
				select {
				case done <- b:
				case <-ctx.Done():
					return
				}
			}
		}(i)
	}
	go func() { wg.Wait(); close(done) }()

	var out Stats
	pending := map[int64]*batch{}
	next := int64(0)
	var err error
	for b := range done {
		if err != nil {
			continue // drain
		}
		pending[b.seq] = b
		for {
			b, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			out.Lines += int64(len(b.ends))
			if b.err != nil {
				err = b.err
				cancel()
				break
			}
			data := b.out
			if opts.Encode != nil {
				data = b.enc
			}
			if len(data) > 0 {
				if _, werr := w.Write(data); werr != nil {
					err = fmt.Errorf("write: %w", werr)
					cancel()
					break
				}
			}
			out.Written += b.outN
			out.BytesOut += int64(len(data))
			out.RawOut += int64(len(b.out))
			out.BytesIn += int64(len(b.in))
			b.in, b.out, b.enc, b.ends, b.nums, b.outN, b.err = b.in[:0], b.out[:0], b.enc[:0], b.ends[:0], b.nums[:0], 0, nil
			pool.Put(b)
			<-tokens
			if opts.Progress != nil {
				opts.Progress(out)
			}
		}
	}
	// Workers stop early when ctx is cancelled, so the reader may still be
	// running: it stops at ctx's cancellation too. Wait for it.
	if err != nil {
		cancel()
	}
	<-readDone
	if err == nil && readErr != nil {
		err = readErr
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return out, err
}

// readBatches cuts r into batches and sends them to work.
func readBatches(ctx context.Context, r io.Reader, opts Options, pool *sync.Pool, tokens chan struct{}, work chan<- *batch) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var seq, lineNo int64
	var b *batch
	send := func() bool {
		if b == nil || len(b.ends) == 0 {
			return true
		}
		select {
		case work <- b:
			b = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		if b == nil {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			b = pool.Get().(*batch)
			b.seq = seq
			seq++
		}
		start := len(b.in)
		var err error
		b.in, err = appendLine(br, b.in, opts.MaxLine)
		if err == nil || (errors.Is(err, io.EOF) && len(b.in) > start) {
			lineNo++
			line := bytes.TrimSpace(b.in[start:])
			if len(line) == 0 {
				b.in = b.in[:start] // a blank line: dropped
			} else {
				n := len(line)
				if &line[0] != &b.in[start] {
					// Leading white space: move the line to start.
					copy(b.in[start:], line)
				}
				b.in = append(b.in[:start+n], '\n')
				b.ends = append(b.ends, len(b.in))
				b.nums = append(b.nums, lineNo)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if !send() {
					return ctx.Err()
				}
				if b != nil {
					<-tokens // the last batch was empty
				}
				return nil
			}
			if errors.Is(err, ErrLineTooLong) {
				err = &LineError{Line: lineNo + 1, Err: err}
			} else {
				err = fmt.Errorf("read: %w", err)
			}
			// Send what was read before the error so it gets written.
			send()
			return err
		}
		if len(b.in) >= opts.BatchBytes {
			if !send() {
				return ctx.Err()
			}
		}
	}
}

// appendLine appends the next line of br, with its newline if it has one, to
// dst. It returns io.EOF at the end of input (possibly with a last line
// appended).
func appendLine(br *bufio.Reader, dst []byte, max int) ([]byte, error) {
	n := 0
	for {
		frag, err := br.ReadSlice('\n')
		n += len(frag)
		if n > max+1 || (n > max && (len(frag) == 0 || frag[len(frag)-1] != '\n')) {
			return dst, ErrLineTooLong
		}
		dst = append(dst, frag...)
		if err == nil {
			return dst, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return dst, err
	}
}

// yieldBytes is the input a worker transforms between two yields of its
// processor (about a millisecond of work).
const yieldBytes = 32 << 10

func transformBatch(worker int, b *batch, fn Func) {
	start, yielded := 0, 0
	for i, end := range b.ends {
		line := b.in[start : end-1]
		if start-yielded >= yieldBytes {
			// Let the process's other goroutines run (network I/O,
			// heartbeats, a Temporal worker's workflow tasks): a batch is
			// several milliseconds of work, and the runtime preempts a busy
			// goroutine only after 10 ms.
			runtime.Gosched()
			yielded = start
		}
		start = end
		n := len(b.out)
		out, err := fn(worker, b.nums[i], line, b.out)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				err = &LineError{Line: b.nums[i], Err: err}
			}
			b.err = err
			b.out = out[:n]
			return
		}
		if len(out) > n {
			out = append(out, '\n')
			b.outN++
		}
		b.out = out
	}
}
