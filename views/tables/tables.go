// Package tables writes a pipeline run's research tables: the rows of SQL
// on FHIR views (package views) computed from the de-identified resources
// as each output file is stored, into the run's folder of the destination:
//
//	<run>/views/<view>/part-<seq>-<worker>.parquet   (and .csv with CSV)
//
// One part is written per output file of the view's resource type and per
// de-identification worker, so workers never wait for each other; a retried
// file rewrites the same parts. Every worker's part is written, even
// without rows (a Parquet file with the view's schema), so that a retry
// never leaves a stale part behind. Loaders read a table as the folder
// (DuckDB: read_parquet('<run>/views/observations/*.parquet')).
// A merged snapshot gets its tables the same way, from its own files as
// they are written: snapshots/<id>/views/<view>/.
//
// Finish gives a view whose resource type had no file in the run one empty
// part (part-empty.parquet), so that every table exists with its schema.
//
// A resource that a view cannot evaluate (several values in a column that
// is not a collection...) gives no rows for that view (its rows are held
// back until the view has evaluated it); the file's warning
// counts them and quotes the first error (which names the view, column and
// expression, never a value), and the run is partial.
package tables

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
	"fhirdeid/storage"
	"fhirdeid/views"
	vparquet "fhirdeid/views/parquet"
)

// Options configure the tables of a pipeline.
type Options struct {
	// CSV also writes each part as CSV.
	CSV bool
	// Compression of the Parquet files: snappy (default), zstd or none.
	Compression string
	// RowGroupBytes bounds a Parquet row group in memory (default 2 MiB of
	// values, about 20,000 observation rows): a run writes a part per
	// worker and view of each of the files it processes at once, and each
	// buffers its row group. Over synthea-1000-clone without a snapshot,
	// all built-in views added 26 MB of peak RSS at 2 MiB, 35-43 MB at
	// 4 MiB (23 MB at 2 MiB with pages of 64 KiB).
	RowGroupBytes int
	// Fingerprint identifies the views' definitions (a digest of their
	// sources, from the caller). With one, Finish records it (with the
	// build of fhirdeid) in <run>/views/tables.json, and Reuse copies the
	// tables of a run or snapshot that recorded the same; without one,
	// nothing is reused.
	Fingerprint string
}

// Sink writes the tables of the given views into store.
type Sink struct {
	store  *storage.Store
	views  []*views.View
	opt    Options
	byType map[string][]int
	// members are the top-level members the views of each type may read.
	members map[string]views.Members
}

// New returns a Sink of views writing into store.
func New(store *storage.Store, vs []*views.View, opt Options) *Sink {
	if opt.RowGroupBytes <= 0 {
		opt.RowGroupBytes = 2 << 20
	}
	s := &Sink{store: store, views: vs, opt: opt, byType: map[string][]int{}, members: map[string]views.Members{}}
	for i, v := range vs {
		s.byType[v.Resource] = append(s.byType[v.Resource], i)
	}
	for typ, idx := range s.byType {
		var tv []*views.View
		for _, i := range idx {
			tv = append(tv, vs[i])
		}
		s.members[typ] = views.MembersOf(tv...)
	}
	return s
}

// Views returns the sink's views.
func (s *Sink) Views() []*views.View { return s.views }

// PartKey is the blob key of one part of a view's table in a run.
func PartKey(run, view, typ string, seq, worker int, ext string) string {
	name := fmt.Sprintf("part-%03d-%02d.%s", seq, worker, ext)
	if typ != "" {
		name = fmt.Sprintf("part-%s-%03d-%02d.%s", typ, seq, worker, ext)
	}
	return storage.RunKey(run, "views/"+view+"/"+name)
}

// File starts the tables of one output file; it returns nil (and no
// error) when no view reads resources of type typ. The result satisfies
// pipeline.TableFile.
func (s *Sink) File(ctx context.Context, run, typ string, seq, workers int) (*File, error) {
	idx := s.byType[typ]
	if typ == "Resource" { // a file of mixed types: every view
		idx = nil
		for i := range s.views {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil, nil
	}
	f := &File{s: s, ctx: ctx, run: run, seq: seq, workers: make([]*worker, workers)}
	if typ == "Resource" {
		f.typ = typ
	}
	for w := range f.workers {
		wk := &worker{parts: map[string][]*part{}, members: s.members}
		for _, i := range idx {
			v := s.views[i]
			wk.parts[v.Resource] = append(wk.parts[v.Resource], &part{f: f, v: v, w: w, r: v.NewRunner()})
		}
		f.workers[w] = wk
	}
	f.errs = make([]viewErrors, len(s.views))
	return f, nil
}

// File is the tables of one file attempt.
type File struct {
	s       *Sink
	ctx     context.Context
	run     string
	typ     string // "" or "Resource": part names then carry it
	seq     int
	workers []*worker

	mu   sync.Mutex
	errs []viewErrors
}

type viewErrors struct {
	n     int64
	first string
}

type worker struct {
	parser jsontree.Parser
	parts  map[string][]*part // by resource type
	// members are, by resource type, the top-level members its views may
	// read; the others are pruned before typing.
	members map[string]views.Members
}

// part is one worker's output of one view: created on the first row.
type part struct {
	f    *File
	v    *views.View
	w    int
	r    *views.Runner
	pw   *storage.Writer
	pq   *vparquet.Writer
	cw   *storage.Writer
	csv  *views.CSVWriter
	rows int64

	// The rows of the current resource, kept until the view has evaluated
	// it without error (shallow copies: their strings are the resource's,
	// valid until Resource returns, which writes them first).
	held  [][]views.Value
	lists [][]views.Value
	n     int
}

// maxHeld bounds the rows held back per resource; a resource that fans out
// further has its rows written as they come.
const maxHeld = 4096

// hold keeps a shallow copy of row.
func (p *part) hold(row []views.Value) error {
	if p.n == maxHeld {
		if err := p.release(); err != nil {
			return err
		}
	}
	i := p.n
	if i == len(p.held) {
		p.held = append(p.held, nil)
		p.lists = append(p.lists, nil)
	}
	r := append(p.held[i][:0], row...)
	n := 0
	for _, v := range row {
		n += len(v.List)
	}
	l := p.lists[i][:0]
	if l == nil || cap(l) < n {
		l = make([]views.Value, 0, max(n, 4))
	}
	for j := range r {
		if r[j].List != nil {
			start := len(l)
			l = append(l, r[j].List...)
			r[j].List = l[start:len(l):len(l)]
		}
	}
	p.held[i], p.lists[i] = r, l
	p.n++
	return nil
}

// release writes the held rows.
func (p *part) release() error {
	for i := 0; i < p.n; i++ {
		if err := p.write(p.held[i]); err != nil {
			p.n = 0
			return err
		}
	}
	p.n = 0
	return nil
}

func (p *part) open() error {
	f := p.f
	return p.openKeys(PartKey(f.run, p.v.Name, f.typ, f.seq, p.w, "parquet"), PartKey(f.run, p.v.Name, f.typ, f.seq, p.w, "csv"))
}

func (p *part) openKeys(pqKey, csvKey string) error {
	f := p.f
	var err error
	p.pw, err = f.s.store.Create(f.ctx, pqKey, "application/vnd.apache.parquet")
	if err != nil {
		return err
	}
	p.pq, err = vparquet.NewWriter(p.pw, p.v, vparquet.Options{Compression: f.s.opt.Compression, RowGroupBytes: f.s.opt.RowGroupBytes})
	if err != nil {
		return err
	}
	if f.s.opt.CSV {
		p.cw, err = f.s.store.Create(f.ctx, csvKey, "text/csv")
		if err != nil {
			return err
		}
		p.csv, err = views.NewCSVWriter(p.cw, p.v)
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *part) write(row []views.Value) error {
	if p.pq == nil {
		if err := p.open(); err != nil {
			return err
		}
	}
	p.rows++
	if err := p.pq.Write(row); err != nil {
		return err
	}
	if p.csv != nil {
		return p.csv.Write(row)
	}
	return nil
}

func (p *part) close() error {
	if p.pq == nil {
		if err := p.open(); err != nil {
			return err
		}
	}
	if err := p.pq.Close(); err != nil {
		return err
	}
	if err := p.pw.Close(); err != nil {
		return err
	}
	p.pq, p.pw = nil, nil
	if p.csv != nil {
		if err := p.csv.Close(); err != nil {
			return err
		}
		if err := p.cw.Close(); err != nil {
			return err
		}
		p.csv, p.cw = nil, nil
	}
	return nil
}

func (p *part) abort() {
	if p.pw != nil {
		p.pw.Abort()
	}
	if p.cw != nil {
		p.cw.Abort()
	}
	p.pq, p.pw, p.csv, p.cw = nil, nil, nil, nil
}

// Resource evaluates the views on one de-identified resource.
func (f *File) Resource(w int, data []byte) error {
	wk := f.workers[w]
	// The rows' strings are written (copied) before the call returns, and
	// errors hold copies: the tree's strings are borrowed from data, and
	// the parser reuses its text memory for the escaped ones.
	wk.parser.ReuseText, wk.parser.Borrow = true, true
	root, err := wk.parser.Parse(data)
	if err != nil {
		return fmt.Errorf("views: de-identified resource: %w", err)
	}
	rt := root.Get("resourceType")
	if rt == nil || rt.Kind != jsontree.String {
		return nil
	}
	parts := wk.parts[rt.Value()]
	if len(parts) == 0 {
		return nil
	}
	wk.members[rt.Value()].Prune(root)
	if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
		return fmt.Errorf("views: de-identified resource: %w", err)
	}
	for _, p := range parts {
		var werr error
		p.n = 0
		err := p.r.Eval(root, func(row []views.Value) error {
			if werr = p.hold(row); werr != nil {
				return werr
			}
			return nil
		})
		if werr != nil {
			return werr
		}
		if err != nil {
			// The resource gives no rows in this view (unless it fanned
			// out beyond maxHeld rows before the error).
			p.n = 0
			f.viewError(p.v, err)
			continue
		}
		if err := p.release(); err != nil {
			return err
		}
	}
	return nil
}

func (f *File) viewError(v *views.View, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.s.views {
		if x == v {
			e := &f.errs[i]
			e.n++
			if e.first == "" {
				e.first = err.Error()
			}
		}
	}
}

// Close writes every part and reports the resources views skipped.
func (f *File) Close(ctx context.Context) (string, error) {
	for _, wk := range f.workers {
		for _, ps := range wk.parts {
			for _, p := range ps {
				if err := p.close(); err != nil {
					f.Abort()
					return "", err
				}
			}
		}
	}
	var warns []string
	for i, e := range f.errs {
		if e.n > 0 {
			warns = append(warns, fmt.Sprintf("view %s: %d resources gave no rows; first: %s", f.s.views[i].Name, e.n, e.first))
		}
	}
	return strings.Join(warns, "; "), nil
}

// Abort discards the parts not yet stored.
func (f *File) Abort() {
	for _, wk := range f.workers {
		for _, ps := range wk.parts {
			for _, p := range ps {
				p.abort()
			}
		}
	}
}

// Rows returns the number of rows written so far, by view name.
func (f *File) Rows() map[string]int64 {
	out := map[string]int64{}
	for _, wk := range f.workers {
		for _, ps := range wk.parts {
			for _, p := range ps {
				out[p.v.Name] += p.rows
			}
		}
	}
	return out
}

// Finish writes an empty part for each view that has none in run, and
// records the views (tables.json) when the sink has a fingerprint.
func (s *Sink) Finish(ctx context.Context, run string) error {
	if err := s.finishParts(ctx, run); err != nil {
		return err
	}
	return s.writeManifest(ctx, run)
}

func (s *Sink) finishParts(ctx context.Context, run string) error {
	for _, v := range s.views {
		prefix := storage.RunKey(run, "views/"+v.Name+"/")
		keys, err := s.store.List(ctx, prefix)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			continue
		}
		f := &File{s: s, ctx: ctx, run: run}
		p := &part{f: f, v: v}
		if err := p.openKeys(prefix+"part-empty.parquet", prefix+"part-empty.csv"); err != nil {
			p.abort()
			return err
		}
		if err := p.close(); err != nil {
			p.abort()
			return err
		}
	}
	return nil
}
