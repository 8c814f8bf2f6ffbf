package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxLine bounds one NDJSON line (resource) read by the helpers.
const DefaultMaxLine = 64 << 20

// ErrLineTooLong is returned for a line longer than the limit.
var ErrLineTooLong = errors.New("line longer than the limit")

// eachLine calls fn with every non-blank line of r (without its newline)
// and its 1-based number. Lines longer than maxLine fail.
func eachLine(r io.Reader, maxLine int, fn func(n int64, line []byte)) error {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	br := bufio.NewReaderSize(r, 256<<10)
	var long []byte
	var n int64
	for {
		chunk, err := br.ReadSlice('\n')
		line := chunk
		if errors.Is(err, bufio.ErrBufferFull) || long != nil {
			long = append(long, chunk...)
			if len(long) > maxLine+1 {
				return fmt.Errorf("line %d: %w", n+1, ErrLineTooLong)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			line = long
		}
		if len(line) > 0 {
			n++
			if t := bytes.TrimSpace(line); len(t) > 0 {
				if len(t) > maxLine {
					return fmt.Errorf("line %d: %w", n, ErrLineTooLong)
				}
				fn(n, t)
			}
		}
		long = nil
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// CollectNDJSON collects the identifiers of every resource of an NDJSON
// stream. Lines that are not JSON are counted (Resources) and skipped.
func (c *Collector) CollectNDJSON(r io.Reader, maxLine int) error {
	return eachLine(r, maxLine, func(_ int64, line []byte) { _ = c.Collect(line) })
}

// ScanNDJSON scans every resource of an NDJSON stream, naming it file in
// the leaks it reports.
func (s *Scanner) ScanNDJSON(file string, r io.Reader, maxLine int) error {
	return eachLine(r, maxLine, func(n int64, line []byte) { s.Scan(file, n, line) })
}

// Summary combines the collection counts of c with the reports of the
// scanners that scanned the output.
func Summary(c *Collector, scanners ...*Scanner) Report {
	reps := make([]Report, len(scanners))
	for i, s := range scanners {
		reps[i] = s.Report()
	}
	return SummaryOf(c, reps...)
}

// SummaryOf combines the collection counts of c with scan reports (of
// scanners or FileScans).
func SummaryOf(c *Collector, reps ...Report) Report {
	var r Report
	r.IdentifiersCollected = c.Identifiers()
	r.ResourcesCollected, _ = c.Resources()
	for i := range reps {
		r.Add(&reps[i])
	}
	r.Sort()
	if c.Full() && r.Incomplete == "" {
		r.Incomplete = fmt.Sprintf("the identifier limit (%d) was reached: identifiers beyond it were not collected", c.max())
	}
	return r
}
