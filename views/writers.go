package views

import (
	"bufio"
	"fhirdeid/jsontree"
	"io"
	"strings"
)

// RowWriter writes the rows of a view in some format.
type RowWriter interface {
	// Write writes one row; it does not keep row after it returns.
	Write(row []Value) error
	// Close flushes what is buffered (it does not close the underlying
	// writer).
	Close() error
}

// NDJSONWriter writes rows as newline-delimited JSON objects whose keys are
// the column names, in the view's order; null columns are written as null.
type NDJSONWriter struct {
	v   *View
	w   *bufio.Writer
	buf []byte
	key [][]byte
}

// NewNDJSONWriter returns a writer of the view's rows on w.
func NewNDJSONWriter(w io.Writer, v *View) *NDJSONWriter {
	nw := &NDJSONWriter{v: v, w: bufio.NewWriterSize(w, 64<<10)}
	for i, c := range v.Columns {
		var k []byte
		if i == 0 {
			k = append(k, '{')
		} else {
			k = append(k, ',')
		}
		k = jsontree.AppendString(k, c.Name)
		nw.key = append(nw.key, append(k, ':'))
	}
	return nw
}

// Write writes one row.
func (w *NDJSONWriter) Write(row []Value) error {
	b := w.buf[:0]
	if len(row) == 0 {
		b = append(b, '{')
	}
	for i, v := range row {
		b = append(b, w.key[i]...)
		b = v.AppendJSON(b)
	}
	b = append(b, '}', '\n')
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

// Close flushes the buffer.
func (w *NDJSONWriter) Close() error { return w.w.Flush() }

// CSVWriter writes rows as CSV (RFC 4180: CRLF line ends, fields quoted
// when they hold a comma, a quote, CR or LF, quotes doubled) with a header
// row of column names. Null is an empty field; a collection is written as
// its JSON array; booleans as true/false.
type CSVWriter struct {
	w   *bufio.Writer
	buf []byte
}

// NewCSVWriter returns a writer of the view's rows on w, and writes the
// header.
func NewCSVWriter(w io.Writer, v *View) (*CSVWriter, error) {
	cw := &CSVWriter{w: bufio.NewWriterSize(w, 64<<10)}
	b := cw.buf[:0]
	for i, c := range v.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSVField(b, c.Name)
	}
	b = append(b, '\r', '\n')
	cw.buf = b
	_, err := cw.w.Write(b)
	return cw, err
}

// Write writes one row.
func (w *CSVWriter) Write(row []Value) error {
	b := w.buf[:0]
	for i, v := range row {
		if i > 0 {
			b = append(b, ',')
		}
		switch {
		case v.List != nil:
			b = appendCSVField(b, string(v.AppendJSON(nil)))
		case v.Null:
		default:
			b = appendCSVField(b, v.String())
		}
	}
	b = append(b, '\r', '\n')
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

// Close flushes the buffer.
func (w *CSVWriter) Close() error { return w.w.Flush() }

func appendCSVField(b []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(b, s...)
	}
	b = append(b, '"')
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		b = append(b, s[:i+1]...)
		b = append(b, '"')
		s = s[i+1:]
	}
	b = append(b, s...)
	return append(b, '"')
}
