package audit

import (
	"cmp"
	"slices"
	"unsafe"

	"fhirdeid/jsontree"
)

// treeWalker reports the string values of a parsed resource (a jsontree)
// with their member paths, as walker does for JSON text: the same events,
// without reading the text again.
type treeWalker struct {
	path [][]byte
}

// view returns the bytes of s without copying them. The visitors only read
// what they are given (and copy what they keep).
func view(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (w *treeWalker) node(n *jsontree.Node, v visitor) {
	switch n.Kind {
	case jsontree.String:
		v.str(w.path, view(n.Value()))
	case jsontree.Object:
		v.objectStart(w.path)
		for _, c := range n.Children() {
			w.path = append(w.path, view(c.Key()))
			w.node(c, v)
			w.path = w.path[:len(w.path)-1]
		}
		v.objectEnd(w.path)
	case jsontree.Array:
		for _, c := range n.Children() {
			w.node(c, v)
		}
	}
}

// CollectTree is Collect for a resource already parsed (before it is
// de-identified: the tree is only read).
func (c *Collector) CollectTree(root *jsontree.Node) { c.CollectParsed(nil, root) }

// CollectParsed is CollectTree for a resource whose JSON text is at hand
// too (raw, nil if not). The text is not read: walking the tree down to
// the members that hold identifiers costs less than a prefilter over the
// text did (mayIdentify, which Collect still uses).
func (c *Collector) CollectParsed(raw []byte, root *jsontree.Node) {
	c.resources.Add(1)
	st := c.pool.Get().(*collectState)
	defer c.pool.Put(st)
	st.parsed(raw, root)
}

func (st *collectState) parsed(raw []byte, root *jsontree.Node) {
	if root == nil || root.Kind != jsontree.Object {
		return
	}
	// No prefilter (mayIdentify): seek reads the tree once, as a
	// prefilter would read the text, and shows the visitor only what it
	// needs.
	st.entity = 0
	st.inName = false
	st.tw.path = st.tw.path[:0]
	st.tw.seek(root, st)
}

// Gatherer collects into its Collector for one goroutine, with memory of
// its own and its count of resources kept until Flush: what the pipeline
// gives each of its workers.
type Gatherer struct {
	st collectState
	n  int64
}

// Gatherer returns a gatherer into c.
func (c *Collector) Gatherer() *Gatherer { return &Gatherer{st: collectState{c: c}} }

// Parsed is CollectParsed.
func (g *Gatherer) Parsed(raw []byte, root *jsontree.Node) {
	g.n++
	g.st.parsed(raw, root)
}

// Text is Collect.
func (g *Gatherer) Text(resource []byte) error {
	g.n++
	if !mayIdentify(resource) {
		return nil
	}
	return g.st.text(resource)
}

// Flush adds the resources read since the last Flush to the collector's
// count (Resources).
func (g *Gatherer) Flush() {
	g.st.c.resources.Add(g.n)
	g.n = 0
}

// seek walks the tree down to the members named like collectKeys and
// shows the visitor those members only, with their paths: the cases of
// collectState.str all lie within such a member.
func (w *treeWalker) seek(n *jsontree.Node, v visitor) {
	for _, c := range n.Children() {
		if c.Kind != jsontree.Object && c.Kind != jsontree.Array && c.Kind != jsontree.String {
			continue
		}
		if n.Kind == jsontree.Object {
			collect := isCollectKey(c.Key())
			if !collect && c.Kind == jsontree.String {
				continue
			}
			w.path = append(w.path, view(c.Key()))
			if collect {
				w.node(c, v)
			} else {
				w.seek(c, v)
			}
			w.path = w.path[:len(w.path)-1]
		} else if c.Kind != jsontree.String {
			w.seek(c, v)
		}
	}
}

func isCollectKey(k string) bool {
	if k == "" {
		return false
	}
	for _, name := range collectKeys[k[0]] {
		if k == name {
			return true
		}
	}
	return false
}

// ScanTree is Scan for a de-identified resource held as a tree (the tree
// that is written as the output line).
func (s *Scanner) ScanTree(file string, line int64, root *jsontree.Node) {
	s.rep.ResourcesScanned++
	s.rtype = ""
	s.hits = s.hits[:0]
	s.tw.path = s.tw.path[:0]
	s.tree(root)
	s.decide(file, line)
}

// tree is treeWalker.node for the scanner, with direct calls: it runs for
// every node of the output.
func (s *Scanner) tree(n *jsontree.Node) {
	switch n.Kind {
	case jsontree.String:
		s.strNode(n)
	case jsontree.Object:
		for _, c := range n.Children() {
			s.tw.path = append(s.tw.path, view(c.Key()))
			if c.Kind == jsontree.String {
				s.strNode(c)
			} else {
				s.tree(c)
			}
			s.tw.path = s.tw.path[:len(s.tw.path)-1]
		}
	case jsontree.Array:
		for _, c := range n.Children() {
			if c.Kind == jsontree.String {
				s.strNode(c)
			} else {
				s.tree(c)
			}
		}
	}
}

// strNode scans a string node of the output; see Scanner.rewritten.
func (s *Scanner) strNode(n *jsontree.Node) {
	v := view(n.Value())
	if !dateValue(v) {
		s.str(s.tw.path, v)
		return
	}
	set := n.Flags&jsontree.FlagSet != 0
	if s.dates != nil {
		bit := dateKept
		if set {
			bit = dateRewritten
		}
		s.dates[s.c.day(v[:10])] |= bit
	}
	s.rewritten = set
	s.str(s.tw.path, v)
	s.rewritten = false
}

// The uses of a day seen in a file's date values (Scanner.dates).
const (
	dateRewritten uint8 = 1 << iota // in a value de-identification wrote
	dateKept                        // in a value as the input had it
)

// dateValue reports whether v is a FHIR date or dateTime of a whole day
// ("2010-05-03", "2010-05-03T10:00:00Z") and nothing else.
func dateValue(v []byte) bool {
	if len(v) < 10 || (len(v) > 10 && v[10] != 'T') || v[4] != '-' || v[7] != '-' {
		return false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9} {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// FileScan scans the de-identified resources of one output file while it
// is written, one Scanner per worker, against the identifiers collected so
// far — collection of the same export may go on meanwhile. The scan is
// exact when no identifier changed after it began (Complete); otherwise the
// caller scans the stored file again once collection is over.
type FileScan struct {
	c        *Collector
	file     string
	gen0     int64
	scanners []*Scanner
	// anchors is the sorted set of the scanners' anchors, once sealed.
	anchors []uint64
	// rdates is the sorted set of the days seen only in rewritten date
	// values, once sealed (RewrittenDates).
	rdates []uint64
	sealed bool
}

// ScanFile starts the scan of the output file named file (the name leaks
// are located in) by workers goroutines.
func (c *Collector) ScanFile(file string, workers int) *FileScan {
	f := &FileScan{c: c, file: file, gen0: c.Gen(), scanners: make([]*Scanner, max(workers, 1))}
	for i := range f.scanners {
		f.scanners[i] = c.Scanner()
		f.scanners[i].anchors = map[uint64]struct{}{}
		f.scanners[i].dates = map[uint64]uint8{}
	}
	return f
}

// Scan scans one de-identified resource (JSON text) found at line of the
// file, on the worker's scanner.
func (f *FileScan) Scan(worker int, line int64, resource []byte) {
	f.scanners[worker].Scan(f.file, line, resource)
}

// ScanTree scans one de-identified resource held as a tree.
func (f *FileScan) ScanTree(worker int, line int64, root *jsontree.Node) {
	f.scanners[worker].ScanTree(f.file, line, root)
}

// Seal ends the scan: the scanners' memory of tokens is kept as a sorted
// set of hashes, 8 bytes per distinct token or pair.
func (f *FileScan) Seal() {
	if f.sealed {
		return
	}
	f.sealed = true
	n := 0
	for _, s := range f.scanners {
		n += len(s.anchors)
	}
	a := make([]uint64, 0, n)
	dates := map[uint64]uint8{}
	for _, s := range f.scanners {
		for h := range s.anchors {
			a = append(a, h)
		}
		for h, b := range s.dates {
			dates[h] |= b
		}
		s.anchors, s.clean, s.dates = nil, cleanSet{}, nil
	}
	slices.Sort(a)
	f.anchors = slices.Compact(a)
	f.rdates = f.rdates[:0]
	for h, b := range dates {
		if b == dateRewritten {
			f.rdates = append(f.rdates, h)
		}
	}
	slices.Sort(f.rdates)
}

// RewrittenDates prepares s to read the stored file of the sealed scan f
// again: a birth date found there in a date value whose day the first scan
// saw only in values that de-identification wrote (a shifted date) is
// judged as it was then, a leak only when corroborated. A day the file also
// holds as the input had it counts as kept. Nil f: none (s scans as it
// does by default).
func (s *Scanner) RewrittenDates(f *FileScan) {
	s.rdates = nil
	if f != nil {
		f.Seal()
		s.rdates = f.rdates
	}
}

// RewrittenDayHashes returns the days that the sealed scan f saw only in
// rewritten date values, as sorted hashes under the collector's day key
// (SetDayKey), for Scanner.RewrittenDayHashes in another process.
func (f *FileScan) RewrittenDayHashes() []uint64 {
	f.Seal()
	return slices.Clone(f.rdates)
}

// RewrittenDayHashes is RewrittenDates for a file whose first scan was made
// by another process, whose collector had the same day key: h is what its
// FileScan.RewrittenDayHashes returned. Nil h: none.
func (s *Scanner) RewrittenDayHashes(h []uint64) {
	s.rdates = nil
	if h != nil {
		s.rdates = slices.Clone(h)
		slices.Sort(s.rdates)
	}
}

// Anchors returns the number of distinct tokens and pairs the sealed scan
// remembers.
func (f *FileScan) Anchors() int { return len(f.anchors) }

// Complete reports whether the scan found all there is to find against
// the identifiers collected so far: no identifier changed after it began,
// or none of those that did could have matched in the file — their first
// token (or first two) is nowhere in it. A scan that is not complete must
// be done again. It seals the scan. Complete of many scans is cheaper with
// CompleteScans.
func (f *FileScan) Complete() bool { return CompleteScans(f.c, f)[0] }

// changed is what Complete needs of an identifier changed after a scan
// began.
type changed struct {
	gen    int64
	anchor uint64
	hex    bool
}

// CompleteScans is Complete for each of scans (of c's identifiers): the
// identifiers changed since the oldest of them began are listed once,
// newest first, and each scan looks at those changed since it began.
func CompleteScans(c *Collector, scans ...*FileScan) []bool {
	gen := c.Gen()
	oldest := gen
	for _, f := range scans {
		f.Seal()
		oldest = min(oldest, f.gen0)
	}
	var late []changed
	if oldest < gen {
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.Lock()
			for j := range sh.infos {
				if in := &sh.infos[j]; in.gen > oldest {
					late = append(late, changed{in.gen, in.anchor, in.hexAnchor})
				}
			}
			sh.mu.Unlock()
		}
		slices.SortFunc(late, func(a, b changed) int { return cmp.Compare(b.gen, a.gen) })
	}
	ok := make([]bool, len(scans))
	for i, f := range scans {
		ok[i] = true
		for _, x := range late {
			if x.gen <= f.gen0 {
				break
			}
			if _, found := slices.BinarySearch(f.anchors, x.anchor); found || x.hex {
				ok[i] = false
				break
			}
		}
	}
	return ok
}

// Report returns what the file's scanners found.
func (f *FileScan) Report() Report {
	var r Report
	for _, s := range f.scanners {
		rep := s.Report()
		r.Add(&rep)
	}
	return r
}
