package risk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// lineReader reads NDJSON lines of bounded length.
type lineReader struct {
	br   *bufio.Reader
	max  int
	n    int64
	line []byte
	long []byte
	err  error
	done bool
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next advances to the next non-blank line.
func (l *lineReader) next() bool {
	for !l.done {
		chunk, err := l.br.ReadSlice('\n')
		line := chunk
		if errors.Is(err, bufio.ErrBufferFull) || l.long != nil {
			l.long = append(l.long, chunk...)
			if len(l.long) > l.max+1 {
				l.err, l.done = fmt.Errorf("line %d: %w", l.n+1, ErrLineTooLong), true
				return false
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			line = l.long
			l.long = nil
		}
		if err != nil {
			l.done = true
			if err != io.EOF {
				l.err = err
				return false
			}
		}
		if len(line) == 0 {
			continue
		}
		l.n++
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if len(t) > l.max {
				l.err, l.done = fmt.Errorf("line %d: %w", l.n, ErrLineTooLong), true
				return false
			}
			l.line = t
			return true
		}
	}
	return false
}
