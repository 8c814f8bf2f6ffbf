package audit

import (
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

func (w *treeWalker) walk(root *jsontree.Node, v visitor) {
	w.path = w.path[:0]
	w.node(root, v)
}

func (w *treeWalker) node(n *jsontree.Node, v visitor) {
	switch n.Kind {
	case jsontree.String:
		v.str(w.path, view(n.Value))
	case jsontree.Object:
		v.objectStart(w.path)
		for _, c := range n.Children {
			w.path = append(w.path, view(c.Key))
			w.node(c, v)
			w.path = w.path[:len(w.path)-1]
		}
		v.objectEnd(w.path)
	case jsontree.Array:
		for _, c := range n.Children {
			w.node(c, v)
		}
	}
}

// CollectTree is Collect for a resource already parsed (before it is
// de-identified: the tree is only read).
func (c *Collector) CollectTree(root *jsontree.Node) {
	c.resources.Add(1)
	if root == nil || root.Kind != jsontree.Object || !treeMayIdentify(root) {
		return
	}
	st := c.pool.Get().(*collectState)
	defer c.pool.Put(st)
	st.entity = 0
	st.inName = false
	st.tw.walk(root, st)
}

// treeMayIdentify is mayIdentify for a tree: whether a member of the
// resource, at any depth, has one of collectKeys' names.
func treeMayIdentify(n *jsontree.Node) bool {
	for _, c := range n.Children {
		if n.Kind == jsontree.Object && c.Key != "" {
			for _, k := range collectKeys[c.Key[0]] {
				if c.Key == k {
					return true
				}
			}
		}
		if (c.Kind == jsontree.Object || c.Kind == jsontree.Array) && treeMayIdentify(c) {
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
	s.tw.walk(root, s)
	s.decide(file, line)
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
}

// ScanFile starts the scan of the output file named file (the name leaks
// are located in) by workers goroutines.
func (c *Collector) ScanFile(file string, workers int) *FileScan {
	f := &FileScan{c: c, file: file, gen0: c.Gen(), scanners: make([]*Scanner, max(workers, 1))}
	for i := range f.scanners {
		f.scanners[i] = c.Scanner()
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

// Complete reports whether every identifier collected so far was known as
// it is now when the scan began, so that the scan is that of a finished
// collection.
func (f *FileScan) Complete() bool { return f.c.Gen() == f.gen0 }

// Report returns what the file's scanners found.
func (f *FileScan) Report() Report {
	var r Report
	for _, s := range f.scanners {
		rep := s.Report()
		r.Add(&rep)
	}
	return r
}
