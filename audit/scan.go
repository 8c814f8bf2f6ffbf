package audit

import (
	"encoding/base64"
	"hash/maphash"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// Report is what an audit found. It holds counts and locations (file, line,
// member path), never a value.
type Report struct {
	// IdentifiersCollected is the number of distinct identifiers (after
	// normalisation) collected from the raw resources.
	IdentifiersCollected int64 `json:"identifiersCollected"`
	// ResourcesCollected is the number of raw resources read.
	ResourcesCollected int64 `json:"resourcesCollected"`
	// ResourcesScanned and StringsScanned count the de-identified output
	// read; AttachmentsDecoded the base64 values decoded to text and
	// scanned too.
	ResourcesScanned   int64 `json:"resourcesScanned"`
	StringsScanned     int64 `json:"stringsScanned"`
	AttachmentsDecoded int64 `json:"attachmentsDecoded"`
	// Unreadable counts output lines that were not valid JSON; they are
	// scanned as plain text.
	Unreadable int64 `json:"unreadable,omitempty"`
	// Leaks is the number of identifier occurrences found in the output
	// (one per identifier, resource and path).
	Leaks              int64 `json:"leaks"`
	ResourcesWithLeaks int64 `json:"resourcesWithLeaks"`
	// ByPath counts leaks by output resource type and member path
	// ("Patient.name.family"); ByKind by kind of identifier.
	ByPath map[string]int64 `json:"byPath,omitempty"`
	ByKind map[string]int64 `json:"byKind,omitempty"`
	// Examples locates the first leaks in file, line and path order (at
	// most MaxExamples): the same whatever the order in which files and
	// lines were scanned.
	Examples []Leak `json:"examples,omitempty"`
	// FilesScannedInStream counts the output files scanned while they
	// were written, and FilesScannedAgain those read again from storage
	// because identifiers were collected after their scan began (a
	// pipeline run's audit; zero otherwise).
	FilesScannedInStream int `json:"filesScannedInStream,omitempty"`
	FilesScannedAgain    int `json:"filesScannedAgain,omitempty"`
	// Incomplete says why the audit did not see the whole run, if it did
	// not.
	Incomplete string `json:"incomplete,omitempty"`
}

// MaxExamples is how many leaks a Report locates.
const MaxExamples = 20

// Leak locates one identifier found in the output: where, and what kind of
// identifier — never which.
type Leak struct {
	File string `json:"file"`
	Line int64  `json:"line"`
	Path string `json:"path"`
	Kind string `json:"kind"`
}

// Add adds the counts of o to r.
func (r *Report) Add(o *Report) {
	r.ResourcesScanned += o.ResourcesScanned
	r.StringsScanned += o.StringsScanned
	r.AttachmentsDecoded += o.AttachmentsDecoded
	r.Unreadable += o.Unreadable
	r.Leaks += o.Leaks
	r.ResourcesWithLeaks += o.ResourcesWithLeaks
	for k, v := range o.ByPath {
		if r.ByPath == nil {
			r.ByPath = map[string]int64{}
		}
		r.ByPath[k] += v
	}
	for k, v := range o.ByKind {
		if r.ByKind == nil {
			r.ByKind = map[string]int64{}
		}
		r.ByKind[k] += v
	}
	for _, l := range o.Examples {
		r.Examples = keepExample(r.Examples, l)
	}
	if r.Incomplete == "" {
		r.Incomplete = o.Incomplete
	}
}

// Sort orders the examples by file and line, for stable output.
func (r *Report) Sort() {
	sort.Slice(r.Examples, func(i, j int) bool { return leakLess(r.Examples[i], r.Examples[j]) })
}

// leakLess orders leaks by file, line, path and kind.
func leakLess(a, b Leak) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	if a.Path != b.Path {
		return a.Path < b.Path
	}
	return a.Kind < b.Kind
}

// keepExample adds l to ex, kept sorted (leakLess) and at most
// MaxExamples long: the first leaks in that order are kept, whatever the
// order they come in (several workers, files read in any order).
func keepExample(ex []Leak, l Leak) []Leak {
	i := sort.Search(len(ex), func(i int) bool { return leakLess(l, ex[i]) })
	if i >= MaxExamples {
		return ex
	}
	if len(ex) < MaxExamples {
		ex = append(ex, Leak{})
	}
	copy(ex[i+1:], ex[i:])
	ex[i] = l
	return ex
}

// Scanner looks for the collected identifiers in de-identified resources.
// Get one per goroutine from Collector.Scanner once collection is over.
type Scanner struct {
	c   *Collector
	w   walker
	tw  treeWalker
	t   tokens
	dec []byte
	// mask is maskHex's memory.
	mask []byte
	rep  Report
	// Keep, if positive, is how many leaks Leaks returns (default 0:
	// only the report's examples).
	Keep  int
	leaks []Leak
	// the resource being scanned
	rtype   string
	types   map[string]string // the resource type names seen, not to allocate them again
	hits    []hit
	matched bool
	// rewritten is set while the string being scanned is a date or
	// dateTime value that de-identification gave its node (ScanTree, a
	// jsontree.FlagSet node): a birth date matched there is a shifted date
	// that happens to equal one, not the input's value.
	rewritten bool
	// dates, in a FileScan's scanners, records each whole date (its day,
	// "YYYY-MM-DD", by hash) of the output as dateRewritten and/or
	// dateKept, for a second reading of the file (RewrittenDates).
	dates map[uint64]uint8
	// rdates, while a stored file is read again, are the days that its
	// first scan saw only in rewritten date values (sorted hashes).
	rdates []uint64
	// anchors, when not nil, records the prefilter hash of every token and
	// adjacent pair of tokens scanned (but hashed ids), for FileScan.
	anchors map[uint64]struct{}
	// clean remembers short strings that matched nothing — codes, systems,
	// units and display texts repeat throughout an export — so that they
	// are tokenized once per scanner (as long as they repeat).
	clean cleanSet
}

// cleanSet remembers strings as their 64-bit hashes (maphash under a seed
// of the scanner's collector) in a direct-mapped table of cleanSlots
// slots (128 KiB, small beside the de-identifier's memory in a core's L2):
// no copy of the strings, no comparison of their bytes, one cache line per
// lookup, and a string seen later replaces the one in its slot, so that
// the table follows what repeats. Two strings with the same hash are taken
// as one; the identifiers themselves are matched by their 64-bit keyed
// hashes too, and the chance that one of the 10 million strings of a large
// export meets another's hash among 16,384 is below 1e-8.
type cleanSet struct {
	slots []uint64 // 0: empty
}

func cleanHash(c *Collector, b []byte) uint64 {
	h := maphash.Bytes(c.cleanSeed, b)
	if h == 0 {
		h = 1
	}
	return h
}

func (cs *cleanSet) has(h uint64) bool {
	return cs.slots != nil && cs.slots[h&(cleanSlots-1)] == h
}

func (cs *cleanSet) add(h uint64) {
	if cs.slots == nil {
		cs.slots = make([]uint64, cleanSlots)
	}
	cs.slots[h&(cleanSlots-1)] = h
}

const (
	cleanSlots  = 1 << 14
	maxCleanLen = 128
)

// maskHex returns v with every run of letters and digits that is a longHex
// token replaced by a zero byte (then in s's scratch memory; v itself when
// it has none). Runs holding other bytes (non-ASCII letters) are left
// alone: they are not such tokens.
func (s *Scanner) maskHex(v []byte) []byte {
	// The shapes of hashed ids and references first: a hash alone, or a
	// hash after the last "/" ("Patient/<hash>"), where dropping the hash
	// leaves the same tokens and pairs to scan.
	if len(v) >= 32 {
		i := len(v) - 1
		for i >= 0 && hexDigit[v[i]] {
			i--
		}
		if len(v)-1-i >= 32 && (i < 0 || v[i] == '/') {
			return v[:i+1]
		}
	}
	if !hexRun32(v) {
		return v
	}
	var m []byte
	copied := 0 // v[:copied] is in m, when m is not nil
	for i := 0; i < len(v); {
		c := v[i]
		if c < 0x80 && asciiClass[c] == classOther {
			i++
			continue
		}
		j := i
		for j < len(v) && (v[j] >= 0x80 || asciiClass[v[j]] != classOther) {
			j++
		}
		if j-i >= 32 && allHex(v[i:j]) {
			if m == nil {
				m = s.mask[:0]
			}
			m = append(append(m, v[copied:i]...), 0)
			copied = j
		}
		i = j
	}
	if m == nil {
		return v
	}
	m = append(m, v[copied:]...)
	s.mask = m
	return m
}

// hexDigit marks the bytes of hex digits.
var hexDigit = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdefABCDEF") {
		t[c] = true
	}
	return
}()

// hexRun32 reports whether v may hold 32 hex digits in a row: such a run
// covers one of the positions 31, 63, 95, ..., so only the runs around those
// are measured.
func hexRun32(v []byte) bool {
	for k := 31; k < len(v); k += 32 {
		if !isHex(v[k]) {
			continue
		}
		l, r := k, k+1
		for l > 0 && isHex(v[l-1]) {
			l--
		}
		for r < len(v) && isHex(v[r]) {
			r++
		}
		if r-l >= 32 {
			return true
		}
		// A shorter run covers no other position.
	}
	return false
}

func isHex(c byte) bool { return hexDigit[c] }

func allHex(b []byte) bool {
	for _, c := range b {
		if !isHex(c) {
			return false
		}
	}
	return true
}

// hexLike reports whether v holds a run of 16 hex digits or more, as
// hashes, ids and references to them do: unique values not worth
// remembering.
func hexLike(v []byte) bool {
	run := 0
	for _, c := range v {
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' {
			if run++; run >= 16 {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

type hit struct {
	h    uint64
	info itemInfo
	path string
	// rewritten: a date matched in a date value that de-identification
	// wrote (Scanner.rewritten); a leak only when corroborated, like a
	// weak kind.
	rewritten bool
}

// maxHits bounds the matches remembered for one resource.
const maxHits = 4096

// Scanner returns a scanner of the identifiers collected so far.
func (c *Collector) Scanner() *Scanner { return &Scanner{c: c} }

// Report returns what s found so far.
func (s *Scanner) Report() Report { return s.rep }

// Leaks returns the first s.Keep leaks found.
func (s *Scanner) Leaks() []Leak { return s.leaks }

// Scan scans one de-identified resource, found at line of file: every
// string value, and the text of every base64 "data" value (attachments),
// token by token and phrase by phrase. A line that is not JSON is scanned
// as text.
func (s *Scanner) Scan(file string, line int64, resource []byte) {
	s.rep.ResourcesScanned++
	s.rtype = ""
	s.hits = s.hits[:0]
	if err := s.w.walk(resource, s); err != nil {
		s.rep.Unreadable++
		s.hits = s.hits[:0]
		s.rtype = "(unreadable)"
		s.scanText(nil, resource)
	}
	s.decide(file, line)
}

func (s *Scanner) objectStart([][]byte) {}
func (s *Scanner) objectEnd([][]byte)   {}

func (s *Scanner) str(path [][]byte, v []byte) {
	s.rep.StringsScanned++
	if s.rdates != nil && !s.rewritten && dateValue(v) {
		if _, ok := slices.BinarySearch(s.rdates, s.c.day(v[:10])); ok {
			s.rewritten = true
			defer func() { s.rewritten = false }()
		}
	}
	if len(path) == 1 && string(path[0]) == "resourceType" && s.rtype == "" {
		if t, ok := s.types[string(v)]; ok {
			s.rtype = t
			return
		}
		s.rtype = safeTypeName(v)
		if s.rtype != "(invalid)" && len(s.types) < 1024 {
			if s.types == nil {
				s.types = map[string]string{}
			}
			s.types[s.rtype] = s.rtype
		}
		return
	}
	if len(v) > maxCleanLen {
		s.scanText(path, v)
	} else {
		// Until an identifier holds a hashed id, a string's hashed ids are
		// skipped (scanText): strings that differ only by them ("Patient/"
		// and a hash) are remembered as one.
		key, hex := v, false
		if !s.c.hexAnchors.Load() {
			key = s.maskHex(v)
		} else {
			hex = hexLike(v)
		}
		// An empty key is an empty string or a hashed id alone: nothing
		// to scan.
		if len(key) > 0 {
			if h := cleanHash(s.c, key); !s.clean.has(h) {
				s.matched = false
				s.scanText(path, v)
				if !s.matched && !hex && !hexLike(key) {
					s.clean.add(h)
				}
			}
		}
	}
	if len(path) > 0 && string(path[len(path)-1]) == "data" && len(v) >= 8 {
		n := base64.StdEncoding.DecodedLen(len(v))
		if cap(s.dec) < n {
			s.dec = make([]byte, n)
		}
		m, err := base64.StdEncoding.Decode(s.dec[:n], v)
		if err == nil && isText(s.dec[:m]) {
			s.rep.AttachmentsDecoded++
			s.scanText(path, s.dec[:m])
		}
	}
}

// scanText matches the tokens of v: at each token, the longest identifier
// starting there, else the token itself. A match that lies inside an
// earlier, longer one (the family name inside a full name) is a part of it
// and not counted again.
func (s *Scanner) scanText(path [][]byte, v []byte) {
	t := &s.t
	t.split(v)
	n := t.n()
	c := s.c
	covered := 0
	// A hashed id (longHex) cannot start an identifier, nor be the second
	// token of one, until one is collected (hexAnchors): a scan that
	// skips them and began before is incomplete (FileScan.Complete).
	skipHex := !c.hexAnchors.Load()
	bloom, bits := c.prefilter()
	nextHex := n > 0 && longHex(t.span(0, 1))
	for i := 0; i < n; i++ {
		hex := nextHex
		nextHex = i+1 < n && longHex(t.span(i+1, i+2))
		if hex && skipHex {
			continue
		}
		h1 := c.quick(t.span(i, i+1))
		single := bloomHas(bloom, bits, h1)
		if s.anchors != nil && !hex {
			s.anchors[h1] = struct{}{}
		}
		phrase := false
		if i+1 < n && !(nextHex && skipHex) {
			h2 := c.quick(t.span(i, i+2))
			phrase = bloomHas(bloom, bits, h2)
			if s.anchors != nil && !hex && !nextHex {
				s.anchors[h2] = struct{}{}
			}
		}
		if !single && !phrase {
			continue
		}
		h := c.key.sum64(t.span(i, i+1))
		e, in, ok := c.lookup(h)
		if !ok {
			continue
		}
		matched := false
		if phrase && e.lens != 0 {
			for l := maxTokens; l >= 2; l-- {
				if e.lens&(1<<l) == 0 || i+l > n {
					continue
				}
				h2 := c.key.sum64(t.span(i, i+l))
				if e2, in2, ok := c.lookup(h2); ok && e2.info >= 0 {
					matched = true
					if i+l <= covered {
						break // inside a longer match: a part of it
					}
					s.hit(path, h2, &in2)
					covered = i + l
					break
				}
			}
		}
		if !matched && e.info >= 0 && i >= covered {
			s.hit(path, h, &in)
		}
	}
}

func (s *Scanner) hit(path [][]byte, h uint64, in *itemInfo) {
	s.matched = true
	if len(s.hits) >= maxHits {
		return
	}
	p := joinPath(path)
	rewritten := s.rewritten && in.kind == KindDate
	for i := range s.hits {
		if x := &s.hits[i]; x.h == h && x.path == p {
			x.rewritten = x.rewritten && rewritten
			return
		}
	}
	s.hits = append(s.hits, hit{h: h, info: *in, path: p, rewritten: rewritten})
}

// decide turns the resource's matches into leaks: every strong match, and
// a weak match (a name part, a city, a postal code) when another identifier
// of the same person matched in the same resource.
func (s *Scanner) decide(file string, line int64) {
	if len(s.hits) == 0 {
		return
	}
	typ := s.rtype
	if typ == "" {
		typ = "Resource"
	}
	leaked := false
	for i, x := range s.hits {
		if (x.info.kind.Weak() || x.rewritten) && !s.c.naive && !s.corroborated(i) {
			continue
		}
		leaked = true
		p := typ
		if x.path != "" {
			p += "." + x.path
		}
		s.rep.Leaks++
		if s.rep.ByPath == nil {
			s.rep.ByPath, s.rep.ByKind = map[string]int64{}, map[string]int64{}
		}
		s.rep.ByPath[p]++
		s.rep.ByKind[x.info.kind.String()]++
		l := Leak{File: file, Line: line, Path: p, Kind: x.info.kind.String()}
		s.rep.Examples = keepExample(s.rep.Examples, l)
		if len(s.leaks) < s.Keep {
			s.leaks = append(s.leaks, l)
		}
	}
	if leaked {
		s.rep.ResourcesWithLeaks++
	}
}

// corroborated reports whether another identifier than hits[i]'s, of a
// person hits[i]'s belongs to, matched in the resource.
func (s *Scanner) corroborated(i int) bool {
	a := s.hits[i]
	for j, b := range s.hits {
		if j != i && b.h != a.h && a.info.shares(&b.info) {
			return true
		}
	}
	return false
}

// joinPath joins member names with dots; a name that is not a plain
// identifier (it could only come from a malformed resource) is replaced, so
// that a report path cannot carry data.
func joinPath(path [][]byte) string {
	var b strings.Builder
	for i, k := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		if plainName(k) {
			b.Write(k)
		} else {
			b.WriteString("(invalid)")
		}
	}
	return b.String()
}

func plainName(k []byte) bool {
	if len(k) == 0 || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// safeTypeName returns v if it looks like a resource type name, so that a
// report path cannot carry data.
func safeTypeName(v []byte) string {
	if len(v) == 0 || len(v) > 64 || v[0] < 'A' || v[0] > 'Z' {
		return "(invalid)"
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "(invalid)"
		}
	}
	return string(v)
}

// isText reports whether b is UTF-8 text without control characters other
// than white space: hex hashes are valid base64 too, and their decoded
// bytes are noise.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}
