// Package parquet writes the rows of a view (package views) as an Apache
// Parquet file with github.com/parquet-go/parquet-go. It is a separate
// package so that only programs that write Parquet link that library.
//
// Columns keep the view's order and are typed from the column's kind:
//
//	string, code, id, uri..., date, dateTime, instant, time,
//	complex types (JSON), untyped                  → BYTE_ARRAY (STRING)
//	integer, positiveInt, unsignedInt, integer64  → INT64
//	decimal                                       → DOUBLE
//	boolean                                       → BOOLEAN
//
// Dates, dateTimes and instants are text (their FHIR form) by default, as
// the SQL on FHIR default type mapping has it for date and dateTime: FHIR
// allows partial precision ("2020", "2020-02"), and de-identification
// generalizes dates, dateTimes and even instants to a year (the Safe
// Harbor profile writes "issued": "2011"), which a Parquet DATE or
// TIMESTAMP cannot hold without inventing a day. The text sorts correctly
// and every engine casts it (DuckDB: CAST(effective AS TIMESTAMPTZ) where
// the precision is full, or CAST(left(effective, 4) AS INTEGER) for the
// year). A column whose values have full precision (the longitudinal
// profile shifts dates and keeps it) gets a native type with the SQL on
// FHIR "ansi/type" tag (see views.Column.SQLType):
//
//	DATE                      → INT32 (DATE)
//	TIMESTAMP                 → INT64 (TIMESTAMP(MICROS, isAdjustedToUTC=false))
//	TIMESTAMP WITH TIME ZONE  → INT64 (TIMESTAMP(MICROS, isAdjustedToUTC=true))
//
// which DuckDB reads as DATE, TIMESTAMP and TIMESTAMP WITH TIME ZONE and
// pandas as datetime64; a value without that precision is then an error
// of the view (the resource gives no rows), never a made-up date.
//
// Every column is optional (null when the path gives
// nothing); a column with collection: true is a repeated field (an empty
// collection is an empty list). Data pages are compressed (snappy by
// default, or zstd) and a row group is flushed every RowGroupRows rows or
// RowGroupBytes bytes of buffered values, which bounds memory.
package parquet

import (
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"

	"github.com/klauspost/compress/s2"
	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding"

	"fhirdeid/views"
)

// Options configure a Writer.
type Options struct {
	// Compression is "snappy" (default), "zstd" or "none".
	Compression string
	// RowGroupRows and RowGroupBytes bound a row group; defaults 128k rows
	// and 32 MiB of buffered values.
	RowGroupRows  int
	RowGroupBytes int
}

// Writer writes rows of one view as a Parquet file.
type Writer struct {
	v                  *views.View
	w                  *pq.GenericWriter[any]
	leaf               []leafKind
	batch              []pq.Row // rows not yet handed to w
	n                  int
	arena              []byte
	used, spare        [][]byte // full arena chunks of the batch; chunks to reuse
	buffered, maxBytes int
	inGroup, maxRows   int
	total              int64
}

type leafKind uint8

const (
	leafString leafKind = iota
	leafInt
	leafDouble
	leafBool
	leafDate      // INT32 days
	leafTimestamp // INT64 microseconds
)

// Schema returns the Parquet schema of a view.
func Schema(v *views.View) *pq.Schema {
	s, _ := schema(v)
	return s
}

func schema(v *views.View) (*pq.Schema, []leafKind) {
	g := &orderedGroup{}
	var kinds []leafKind
	for _, c := range v.Columns {
		var n pq.Node
		var k leafKind
		switch {
		case c.SQLType == views.SQLDate:
			n, k = pq.Date(), leafDate
		case c.SQLType == views.SQLTimestamp:
			n, k = pq.TimestampAdjusted(pq.Microsecond, false), leafTimestamp
		case c.SQLType == views.SQLTimestampTZ:
			n, k = pq.TimestampAdjusted(pq.Microsecond, true), leafTimestamp
		}
		switch {
		case k != leafString:
		case c.Kind == views.KindInteger:
			n, k = pq.Int(64), leafInt
		case c.Kind == views.KindDecimal:
			n, k = pq.Leaf(pq.DoubleType), leafDouble
		case c.Kind == views.KindBoolean:
			n, k = pq.Leaf(pq.BooleanType), leafBool
		default:
			n, k = pq.String(), leafString
		}
		if c.Collection {
			n = pq.Repeated(n)
		} else {
			n = pq.Optional(n)
		}
		g.fields = append(g.fields, &field{Node: n, name: c.Name})
		kinds = append(kinds, k)
	}
	return pq.NewSchema(v.Name, g), kinds
}

// NewWriter starts a Parquet file of the view's rows on w. Close writes the
// footer; w is not closed.
func NewWriter(w io.Writer, v *views.View, opt Options) (*Writer, error) {
	var codec compress.Codec
	switch opt.Compression {
	case "", "snappy":
		codec = &fastSnappy{}
	case "zstd":
		codec = &zstd.Codec{Level: zstd.SpeedDefault}
	case "none":
		codec = nil
	default:
		return nil, fmt.Errorf("parquet: unknown compression %q (snappy, zstd or none)", opt.Compression)
	}
	if opt.RowGroupRows <= 0 {
		opt.RowGroupRows = 128 << 10
	}
	if opt.RowGroupBytes <= 0 {
		opt.RowGroupBytes = 32 << 20
	}
	s, kinds := schema(v)
	// Pages of 64 KiB: each column of an open writer buffers a page, so
	// that an observations writer holds 0.25 MB instead of 2 MB at 256 KiB
	// (its files are about 4% larger).
	opts := []pq.WriterOption{s, pq.CreatedBy("fhirdeid", "", ""), pq.PageBufferSize(64 << 10)}
	if codec != nil {
		opts = append(opts, pq.Compression(codec))
	}
	return &Writer{v: v, w: pq.NewGenericWriter[any](w, opts...), leaf: kinds, batch: make([]pq.Row, batchRows),
		maxRows: opt.RowGroupRows, maxBytes: opt.RowGroupBytes}, nil
}

// Rows returns the number of rows written.
func (w *Writer) Rows() int64 { return w.total }

// Write appends one row (as given by views.Runner.Eval).
func (w *Writer) Write(row []views.Value) error {
	r := w.batch[w.n][:0]
	for i := range row {
		v := &row[i]
		col := &w.v.Columns[i]
		if col.Collection {
			if len(v.List) == 0 {
				r = append(r, pq.NullValue().Level(0, 0, i))
				continue
			}
			for j := range v.List {
				pv, err := w.value(i, &v.List[j])
				if err != nil {
					return err
				}
				rep := 0
				if j > 0 {
					rep = 1
				}
				r = append(r, pv.Level(rep, 1, i))
			}
			continue
		}
		if v.Null {
			r = append(r, pq.NullValue().Level(0, 0, i))
			continue
		}
		pv, err := w.value(i, v)
		if err != nil {
			return err
		}
		r = append(r, pv.Level(0, 1, i))
	}
	w.batch[w.n] = r
	w.n++
	w.total++
	w.inGroup++
	if w.n == len(w.batch) {
		if err := w.flushBatch(); err != nil {
			return err
		}
	}
	if w.inGroup >= w.maxRows || w.buffered >= w.maxBytes {
		if err := w.flushBatch(); err != nil {
			return err
		}
		if err := w.w.Flush(); err != nil {
			return err
		}
		w.inGroup, w.buffered = 0, 0
	}
	return nil
}

// batchRows is the number of rows handed to parquet-go at once; their
// strings are copied into the writer's arena, since the rows' own are valid
// only during Write.
const batchRows = 256

func (w *Writer) flushBatch() error {
	if w.n == 0 {
		return nil
	}
	_, err := w.w.WriteRows(w.batch[:w.n])
	for i := range w.batch[:w.n] {
		w.batch[i] = w.batch[i][:0]
	}
	w.n = 0
	w.arena = w.arena[:0]
	for _, c := range w.used {
		if cap(c) == arenaChunk {
			w.spare = append(w.spare, c[:0])
		}
	}
	clear(w.used)
	w.used = w.used[:0]
	return err
}

// arenaChunk is the size of the arena's chunks.
const arenaChunk = 64 << 10

// bytesOf copies s into the arena. A full arena chunk is replaced, not
// grown, so that the slices already handed out stay valid until the batch
// is written (parquet-go copies them); the chunks are then reused.
func (w *Writer) bytesOf(s string) []byte {
	if len(w.arena)+len(s) > cap(w.arena) {
		if w.arena != nil {
			w.used = append(w.used, w.arena)
		}
		if n := len(w.spare); n > 0 && len(s) <= arenaChunk {
			w.arena, w.spare = w.spare[n-1], w.spare[:n-1]
		} else {
			w.arena = make([]byte, 0, max(arenaChunk, len(s)))
		}
	}
	start := len(w.arena)
	w.arena = append(w.arena, s...)
	return w.arena[start:len(w.arena):len(w.arena)]
}

func (w *Writer) value(i int, v *views.Value) (pq.Value, error) {
	switch w.leaf[i] {
	case leafInt:
		w.buffered += 8
		return pq.Int64Value(v.Int), nil
	case leafBool:
		w.buffered++
		return pq.BooleanValue(v.Int != 0), nil
	case leafDate:
		w.buffered += 4
		return pq.Int32Value(int32(v.Int)), nil
	case leafTimestamp:
		w.buffered += 8
		return pq.Int64Value(v.Int), nil
	case leafDouble:
		f, err := strconv.ParseFloat(v.Text, 64)
		if err != nil || math.IsInf(f, 0) {
			return pq.Value{}, fmt.Errorf("view %s: column %s: a decimal out of the range of a double", w.v.Name, w.v.Columns[i].Name)
		}
		w.buffered += 8
		return pq.DoubleValue(f), nil
	}
	s := v.String()
	w.buffered += len(s) + 4
	return pq.ByteArrayValue(w.bytesOf(s)), nil
}

// Close flushes the last row group and writes the footer.
func (w *Writer) Close() error {
	if err := w.flushBatch(); err != nil {
		return err
	}
	return w.w.Close()
}

// fastSnappy is the SNAPPY codec with the faster of the Snappy-compatible
// block encoders of klauspost/compress (parquet-go's own codec uses the
// "better" one, which costs about twice the CPU for a few percent smaller
// pages). Decoding is the standard Snappy block decoder.
type fastSnappy struct{ snappy.Codec }

func (*fastSnappy) Encode(dst, src []byte) ([]byte, error) { return s2.EncodeSnappy(dst, src), nil }

// orderedGroup is a group whose fields keep the view's column order
// (parquet.Group sorts them by name).
type orderedGroup struct {
	fields []pq.Field
}

func (g *orderedGroup) ID() int                     { return 0 }
func (g *orderedGroup) String() string              { return "group" }
func (g *orderedGroup) Type() pq.Type               { return pq.Group{}.Type() }
func (g *orderedGroup) Optional() bool              { return false }
func (g *orderedGroup) Repeated() bool              { return false }
func (g *orderedGroup) Required() bool              { return true }
func (g *orderedGroup) Leaf() bool                  { return false }
func (g *orderedGroup) Fields() []pq.Field          { return g.fields }
func (g *orderedGroup) Encoding() encoding.Encoding { return nil }
func (g *orderedGroup) Compression() compress.Codec { return nil }
func (g *orderedGroup) GoType() reflect.Type        { return reflect.TypeFor[map[string]any]() }

type field struct {
	pq.Node
	name string
}

func (f *field) Name() string { return f.name }

func (f *field) Value(base reflect.Value) reflect.Value {
	if base.Kind() == reflect.Map {
		return base.MapIndex(reflect.ValueOf(f.name))
	}
	return reflect.Value{}
}
