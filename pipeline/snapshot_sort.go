package pipeline

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// The snapshot merge sorts records by key with an external merge sort:
// records are collected in a buffer of bounded size, sorted in memory and
// spilled to a temporary file ("run") when the buffer is full; the runs are
// then merged k ways. Memory is bounded by the buffer, not by the number of
// records.

// record is one entry of the merge: a key (resource type, NUL, id), a
// sequence number (higher is newer), a kind and a payload (the resource, or
// nothing for a tombstone).
type record struct {
	key  []byte
	seq  uint64
	kind byte
	data []byte
}

const (
	kindResource  byte = 0
	kindTombstone byte = 1
)

// less orders records by key ascending, then newest first.
func (a *record) less(b *record) bool {
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c < 0
	}
	return a.seq > b.seq
}

// recordSource yields records in order; the record is valid until the next
// call. It returns io.EOF at the end.
type recordSource interface {
	next() (*record, error)
}

// sorter is an external merge sorter.
type sorter struct {
	dir    string
	limit  int // bytes of keys and payloads held before a spill
	arena  []byte
	recs   []record
	runs   []string
	spills int
}

// maxFanIn bounds the runs merged at once (open files and read buffers);
// beyond it, runs are first merged into larger ones.
const maxFanIn = 64

func newSorter(dir string, limit int) *sorter {
	return &sorter{dir: dir, limit: limit}
}

// add copies r into the sorter, spilling when the buffer is full.
func (s *sorter) add(r *record) error {
	need := len(r.key) + len(r.data)
	if len(s.arena)+need > s.limit && len(s.recs) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	if s.arena == nil {
		s.arena = make([]byte, 0, max(s.limit, need))
	}
	var key, data []byte
	if len(s.arena)+need > cap(s.arena) {
		// A record larger than the whole buffer: held on its own.
		buf := make([]byte, 0, need)
		buf = append(buf, r.key...)
		buf = append(buf, r.data...)
		key, data = buf[:len(r.key):len(r.key)], buf[len(r.key):]
	} else {
		at := len(s.arena)
		s.arena = append(s.arena, r.key...)
		s.arena = append(s.arena, r.data...)
		key = s.arena[at : at+len(r.key) : at+len(r.key)]
		data = s.arena[at+len(r.key) : at+need : at+need]
	}
	s.recs = append(s.recs, record{key: key, seq: r.seq, kind: r.kind, data: data})
	return nil
}

func (s *sorter) sortBuffer() {
	slices.SortFunc(s.recs, func(a, b record) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		switch {
		case a.seq > b.seq:
			return -1
		case a.seq < b.seq:
			return 1
		}
		return 0
	})
}

// spill sorts the buffer and writes it as a run file.
func (s *sorter) spill() error {
	s.sortBuffer()
	name, err := s.writeRun(&sliceSource{recs: s.recs})
	if err != nil {
		return err
	}
	s.runs = append(s.runs, name)
	s.recs = s.recs[:0]
	s.arena = s.arena[:0]
	return nil
}

// writeRun writes the records of src to a new run file.
func (s *sorter) writeRun(src recordSource) (string, error) {
	f, err := os.CreateTemp(s.dir, "run-*.bin")
	if err != nil {
		return "", fmt.Errorf("snapshot: spill: %w", err)
	}
	s.spills++
	bw := bufio.NewWriterSize(f, 256<<10)
	var hdr [binary.MaxVarintLen64*3 + 9]byte
	for {
		r, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return "", err
		}
		n := binary.PutUvarint(hdr[:], uint64(len(r.key)))
		n += binary.PutUvarint(hdr[n:], uint64(len(r.data)))
		binary.BigEndian.PutUint64(hdr[n:], r.seq)
		n += 8
		hdr[n] = r.kind
		n++
		bw.Write(hdr[:n])
		bw.Write(r.key)
		if _, err := bw.Write(r.data); err != nil {
			f.Close()
			os.Remove(f.Name())
			return "", fmt.Errorf("snapshot: spill: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("snapshot: spill: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("snapshot: spill: %w", err)
	}
	return f.Name(), nil
}

// sorted returns the sorted records added so far, merged with extra sources
// that are already sorted. The caller must close the returned source.
func (s *sorter) sorted(extra ...recordSource) (*mergeSource, error) {
	// Bound the fan-in: merge the oldest runs into larger ones first.
	for len(s.runs)+1+len(extra) > maxFanIn {
		group := s.runs[:maxFanIn/2]
		m, err := openRuns(group)
		if err != nil {
			return nil, err
		}
		name, err := s.writeRun(m)
		m.close()
		if err != nil {
			return nil, err
		}
		for _, g := range group {
			os.Remove(g)
		}
		s.runs = append(slices.Clone(s.runs[maxFanIn/2:]), name)
	}
	s.sortBuffer()
	m, err := openRuns(s.runs)
	if err != nil {
		return nil, err
	}
	m.add(&sliceSource{recs: s.recs})
	for _, e := range extra {
		m.add(e)
	}
	return m, nil
}

// close removes the sorter's run files.
func (s *sorter) close() {
	for _, r := range s.runs {
		os.Remove(r)
	}
	s.runs = nil
	s.recs, s.arena = nil, nil
}

type sliceSource struct {
	recs []record
	i    int
}

func (s *sliceSource) next() (*record, error) {
	if s.i >= len(s.recs) {
		return nil, io.EOF
	}
	s.i++
	return &s.recs[s.i-1], nil
}

// runReader reads a run file.
type runReader struct {
	f   *os.File
	br  *bufio.Reader
	rec record
	buf []byte
}

func (r *runReader) next() (*record, error) {
	kl, err := binary.ReadUvarint(r.br)
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: read spill: %w", err)
	}
	dl, err := binary.ReadUvarint(r.br)
	if err != nil {
		return nil, fmt.Errorf("snapshot: read spill: %w", io.ErrUnexpectedEOF)
	}
	var tail [9]byte
	if _, err := io.ReadFull(r.br, tail[:]); err != nil {
		return nil, fmt.Errorf("snapshot: read spill: %w", err)
	}
	if kl+dl > 1<<31 {
		return nil, errors.New("snapshot: read spill: corrupt record")
	}
	n := int(kl + dl)
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.br, r.buf); err != nil {
		return nil, fmt.Errorf("snapshot: read spill: %w", err)
	}
	r.rec = record{key: r.buf[:kl], data: r.buf[kl:], seq: binary.BigEndian.Uint64(tail[:8]), kind: tail[8]}
	return &r.rec, nil
}

// mergeSource merges sorted sources with a heap.
type mergeSource struct {
	h     mergeHeap
	files []*os.File
	// last is the source whose record was returned last; it advances on
	// the next call, so that the returned record stays valid until then.
	last *mergeItem
}

type mergeItem struct {
	src recordSource
	rec *record
}

type mergeHeap []*mergeItem

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return h[i].rec.less(h[j].rec) }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(*mergeItem)) }
func (h *mergeHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func openRuns(names []string) (*mergeSource, error) {
	m := &mergeSource{}
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("snapshot: open spill: %w", err)
		}
		m.files = append(m.files, f)
		m.add(&runReader{f: f, br: bufio.NewReaderSize(f, 64<<10)})
	}
	return m, nil
}

// add adds a sorted source; its first-record error is kept for next.
func (m *mergeSource) add(src recordSource) {
	m.h = append(m.h, &mergeItem{src: src})
}

func (m *mergeSource) next() (*record, error) {
	if m.last == nil && len(m.h) > 0 && m.h[0].rec == nil {
		// First call: read the first record of every source.
		items := m.h
		m.h = m.h[:0:0]
		for _, it := range items {
			r, err := it.src.next()
			if errors.Is(err, io.EOF) {
				continue
			}
			if err != nil {
				return nil, err
			}
			it.rec = r
			m.h = append(m.h, it)
		}
		heap.Init(&m.h)
	} else if m.last != nil {
		r, err := m.last.src.next()
		switch {
		case errors.Is(err, io.EOF):
			heap.Pop(&m.h)
		case err != nil:
			return nil, err
		default:
			m.last.rec = r
			heap.Fix(&m.h, 0)
		}
		m.last = nil
	}
	if len(m.h) == 0 {
		return nil, io.EOF
	}
	m.last = m.h[0]
	return m.last.rec, nil
}

func (m *mergeSource) close() {
	for _, f := range m.files {
		f.Close()
	}
	m.files = nil
}
