package jsontree

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth is the deepest nesting of objects and arrays that Parse accepts.
// Deeper documents are rejected with a *SyntaxError rather than exhausting
// memory or the stack.
const MaxDepth = 10000

// SyntaxError describes malformed JSON.
//
// It never contains a value from the document: Msg names the kind of
// problem, and Path locates it by member names and array indexes only
// (member names are schema, not data).
type SyntaxError struct {
	// Offset is the 0-based byte offset of the offending byte in the input
	// (a leading byte order mark included). At the end of input it is the
	// length of the input.
	Offset int64
	// Line is the 1-based line number of Offset; lines end with '\n'.
	Line int
	// Column is the 1-based byte column of Offset within its line.
	Column int
	// Path is a JSON pointer (RFC 6901) to the value being read when the
	// error was found, such as "/name/0/given"; "" is the top-level value.
	Path string
	// Msg is a short lower-case description, such as "duplicate key".
	Msg string
}

// Error implements the error interface.
func (e *SyntaxError) Error() string {
	var b strings.Builder
	b.WriteString("jsontree: ")
	b.WriteString(e.Msg)
	if e.Path != "" {
		b.WriteString(" at ")
		b.WriteString(e.Path)
	}
	b.WriteString(" (line ")
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(", column ")
	b.WriteString(strconv.Itoa(e.Column))
	b.WriteString(", offset ")
	b.WriteString(strconv.FormatInt(e.Offset, 10))
	b.WriteString(")")
	return b.String()
}

// Sizes of the parser's arenas.
const (
	minNodeChunk = 32
	maxNodeChunk = 4096
	minPtrChunk  = 64
	maxPtrChunk  = 16384
	// textSlab is the size of the blocks the text of documents is copied
	// into. Blocks are never reused: strings handed out stay valid.
	textSlab = 256 << 10
	// bigDoc is the input size above which a reusable Parser drops its
	// arenas before the next document, so that one large document does not
	// stay pinned by stale nodes.
	bigDoc = 4 << 20
	// bytesPerNode is the typical number of input bytes per node in FHIR
	// JSON (24 in Synthea's), used to size a fresh parser's first chunks.
	bytesPerNode = 20
	// dupScan is the number of members up to which duplicate keys are found
	// by a linear scan; larger objects use a map. readKey's fast path,
	// which compares name pointers only, scans up to dupScanFast members
	// before leaving the name to readKeySlow and its map.
	dupScan     = 16
	dupScanFast = 32
)

// A Parser parses JSON documents into trees, reusing its memory from one
// document to the next so that, in steady state, parsing allocates close to
// nothing. The zero value is ready to use. A Parser must not be used by more
// than one goroutine at a time; give each worker its own.
//
// IMPORTANT: the nodes returned by (*Parser).Parse live in the Parser's
// arena. They are valid only until the next call to Parse on the same
// Parser, which overwrites them. To keep a tree (or any node of it) longer,
// Clone it first.
//
// Strings read from the nodes (Key, Value) are ordinary immutable Go
// strings and stay valid forever, but each Value keeps alive the block of
// text memory it lies in (256 KiB, shared by consecutive documents). A
// program that keeps strings for long, such as keys of a cache that grows
// over a whole export, should keep strings.Clone copies of them. With
// ReuseText set, they are valid only until the next Parse, like the nodes.
//
// Member names (Key) are interned: the parser keeps a table of the names
// it has read, copied out of the documents, and gives every member of the
// same name a pointer to the same copy, so that a member costs no
// allocation and 8 bytes of its node. The table lives as long as the
// parser and is bounded (8192 names, 256 KiB); past its bounds, or for a
// name longer than 128 bytes, a member gets a pointer of its own to its
// text in the document, which is then a string like a Value (subject to
// ReuseText and Borrow).
type Parser struct {
	// ReuseText makes the parser reuse the text memory of a document for
	// the next one, as it reuses its nodes, so that a stream of small
	// documents allocates nothing at all. The strings of a tree (Key,
	// Value, and any substring of them) then change when the next document
	// is parsed: set it only when no string of a tree is kept beyond the
	// next Parse, not even in an error, a log line or a map. Documents
	// larger than 64 KiB get text memory of their own either way.
	ReuseText bool

	// Borrow makes the strings of a tree (Values, and the member names not
	// in the parser's table) slices of the input itself, instead of slices
	// of a copy of it: the parser then holds no
	// copy of the document, only the text of strings with escape sequences,
	// which are decoded into text memory of its own (see ReuseText). The
	// input must not change while any string of the tree is used, and the
	// parser keeps a reference to it until its next Parse. Set it only
	// when the input outlives every use of the tree, as when one call
	// parses, edits and writes a document it was lent.
	Borrow bool

	nodes  [][]Node
	ni, nj int    // next node: nodes[ni][nj]
	cur    []Node // nodes[ni], nil before the first chunk

	ptrs   [][]*Node
	pi, pj int     // next pointer: ptrs[pi][pj]
	pcur   []*Node // ptrs[pi], nil before the first chunk

	text  []byte // free tail of the current text block
	block []byte // the current text block, for ReuseText

	// For a large document (over bigDoc): an upper bound on its values,
	// its length, and the offset of the value being read, to size the
	// arena chunks (see estimate).
	bound, docLen, pos int

	fresh    bool // allocate exactly; arenas are not reused
	borrow   bool // the document being parsed is borrowed (Borrow)
	sizeHint int  // input size, to size a fresh parser's first chunks

	frames  []frame
	pending []*Node
	dup     map[dupKey]struct{}
	keys    *keyTable // member names, kept from one document to the next
	serial  uint32
	lastLen int
}

// frame is one open object or array. It is kept small and written field
// by field: a frame is pushed for every container.
type frame struct {
	node   *Node
	kp     *string // current member name (objects), interned (see keyTable); nil for ""
	start  int     // index in pending of the container's first child
	serial uint32
	kind   Kind  // node.Kind, Object or Array
	kf     Flags // FlagRawKey when the current member name had no escapes
	keyed  bool  // kp holds the member being read
	hashed bool  // member names are in Parser.dup
}

// key returns the current member name of an object's frame.
func (f *frame) key() string {
	if f.kp == nil {
		return ""
	}
	return *f.kp
}

type dupKey struct {
	serial uint32
	key    string
}

// Parse parses data, which must hold exactly one JSON value (RFC 8259),
// optionally preceded by a UTF-8 byte order mark and surrounded by
// whitespace. The tree is freshly allocated and independent of data and of
// any Parser. Errors are of type *SyntaxError.
//
// See (*Parser).Parse for the accepted syntax.
func Parse(data []byte) (*Node, error) {
	p := Parser{fresh: true, sizeHint: len(data)}
	sc := scratchPool.Get().(*scratch)
	p.frames, p.pending, p.dup, p.keys = sc.frames, sc.pending, sc.dup, sc.keys
	n, err := p.Parse(data)
	// Keep the work buffers, but no pointer into the new tree.
	clear(p.frames[:cap(p.frames)])
	clear(p.pending[:cap(p.pending)])
	if p.dup != nil {
		clear(p.dup)
	}
	sc.frames, sc.pending, sc.dup, sc.keys = p.frames[:0], p.pending[:0], p.dup, p.keys
	scratchPool.Put(sc)
	return n, err
}

// scratch holds the work buffers of the allocating Parse between calls.
type scratch struct {
	frames  []frame
	pending []*Node
	dup     map[dupKey]struct{}
	keys    *keyTable
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// ParseString is like Parse but takes a string. The tree's strings are
// substrings of s (strings are immutable), so it makes no copy of the
// document; they keep s alive.
func ParseString(s string) (*Node, error) {
	p := Parser{fresh: true, sizeHint: len(s), Borrow: true}
	sc := scratchPool.Get().(*scratch)
	p.frames, p.pending, p.dup, p.keys = sc.frames, sc.pending, sc.dup, sc.keys
	// The parser only reads its input, and with Borrow it writes decoded
	// strings elsewhere, so the string's bytes can be lent to it.
	n, err := p.Parse(unsafe.Slice(unsafe.StringData(s), len(s)))
	clear(p.frames[:cap(p.frames)])
	clear(p.pending[:cap(p.pending)])
	if p.dup != nil {
		clear(p.dup)
	}
	sc.frames, sc.pending, sc.dup, sc.keys = p.frames[:0], p.pending[:0], p.dup, p.keys
	scratchPool.Put(sc)
	return n, err
}

// Parse parses data, which must hold exactly one JSON value, into a tree
// whose nodes are valid only until the next call to Parse on p (see
// Parser): do not keep them, nor insert them into a tree that outlives that
// call, without cloning them. data is not retained (unless p.Borrow is
// set); it may be reused as soon as Parse returns.
//
// Parsing is strict RFC 8259: trailing commas, comments, single quotes,
// NaN and Infinity, leading zeros and leading '+' in numbers, control
// characters in strings, invalid escapes, invalid UTF-8 (anywhere) and any
// non-whitespace after the value are errors. So is a member name that
// occurs twice in one object (FHIR forbids it), and nesting deeper than
// MaxDepth. A UTF-8 byte order mark at the start is skipped. An escaped
// UTF-16 surrogate that is not part of a valid pair decodes to U+FFFD, as
// in encoding/json.
//
// Numbers keep their literal text in Value; strings are decoded. Errors are
// of type *SyntaxError and never quote the document's values.
func (p *Parser) Parse(data []byte) (*Node, error) {
	base := 0
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		base = 3
	}
	p.reset(len(data))
	if p.keys == nil {
		p.keys = newKeyTable()
	}
	p.bound, p.pos, p.docLen = 0, 0, len(data)-base
	if len(data) > bigDoc {
		p.bound = nodeBound(data[base:])
	}
	var b []byte
	if p.borrow = p.Borrow; p.borrow {
		// Strings without escapes are slices of data; those with escapes
		// are copied and decoded into text memory (see scanString).
		b = data[base:]
	} else {
		// One owned copy of the document: strings without escapes are
		// slices of it and strings with escapes are decoded in place
		// (decoding never lengthens a string). No byte of the copy is
		// written after a string has been made over it, which keeps the
		// strings immutable.
		b = p.textAlloc(len(data) - base)
		copy(b, data[base:])
	}
	root, off, msg, path := p.parse(b)
	if msg != "" {
		return nil, newSyntaxError(data, int64(off+base), path, msg)
	}
	return root, nil
}

func newSyntaxError(data []byte, off int64, path, msg string) *SyntaxError {
	line, col := 1, 1
	lineStart := 0
	lim := int(off)
	if lim > len(data) {
		lim = len(data)
	}
	for i := 0; i < lim; i++ {
		if data[i] == '\n' {
			line++
			lineStart = i + 1
		}
	}
	col = lim - lineStart + 1
	return &SyntaxError{Offset: off, Line: line, Column: col, Path: path, Msg: msg}
}

// reset prepares the arenas for a document of n bytes.
func (p *Parser) reset(n int) {
	if p.lastLen > bigDoc {
		// Drop everything a big document used, so stale nodes do not pin it.
		p.nodes, p.ptrs, p.frames, p.pending, p.dup = nil, nil, nil, nil, nil
		p.text, p.block = nil, nil
	}
	if p.ReuseText && p.block != nil {
		p.text = p.block
	}
	p.lastLen = n
	p.ni, p.nj, p.pi, p.pj = 0, 0, 0, 0
	p.cur, p.pcur = nil, nil
	if len(p.nodes) > 0 {
		p.cur = p.nodes[0]
	}
	if len(p.ptrs) > 0 {
		p.pcur = p.ptrs[0]
	}
	p.frames = p.frames[:0]
	p.pending = p.pending[:0]
	if p.dup != nil {
		clear(p.dup)
	}
}

// nodeBound returns an upper bound on the number of values in data: every
// value but the top-level one follows a ',' or opens a non-empty
// container's first item, so a document has at most 1 + #',' + #'{' + #'['
// values (exactly that many unless those bytes occur in strings). A
// document has one child pointer fewer than values.
func nodeBound(data []byte) int {
	return 1 + bytes.Count(data, []byte{','}) + bytes.Count(data, []byte{'{'}) + bytes.Count(data, []byte{'['})
}

// estimate returns the size of the next arena chunk of a large document
// (see Parser.bound), given the number of slots (nodes or pointers) of the
// chunks used so far, or 0 if it has no estimate. It extrapolates the
// density of values read so far to the rest of the document, with a
// margin, and never exceeds what the document's bound allows: a large
// document gets its tree in a few large allocations rather than thousands
// of small ones, so that the heap grows in few steps and the collector does
// not rescan the growing tree at each doubling of the heap; yet a document
// whose bound is high only because its strings hold ',' '{' '[' (or whose
// first part is denser than the rest) does not get more than a document of
// that density would use.
func (p *Parser) estimate(used int) int {
	if p.bound == 0 || p.pos <= 0 || p.pos >= p.docLen {
		return 0
	}
	rest := int(int64(used) * int64(p.docLen-p.pos) / int64(p.pos))
	return min(rest+rest/4, p.bound-used)
}

// textAlloc returns n bytes of memory that is not handed out again before
// the next Parse, and never without ReuseText.
func (p *Parser) textAlloc(n int) []byte {
	if p.fresh || n > textSlab/4 {
		return make([]byte, n)
	}
	if n > len(p.text) {
		p.text = make([]byte, textSlab)
		p.block = p.text
	}
	b := p.text[:n:n]
	p.text = p.text[n:]
	return b
}

// newChunk is the slow path of taking the next node of the arena (which
// parse does itself, where it is p.cur[p.nj]; the node may hold a stale
// node of an earlier document, see Node.init): it moves to the arena's next chunk of nodes, allocated if there
// is none, and returns its first node.
func (p *Parser) newChunk() *Node {
	if p.cur != nil && p.ni+1 < len(p.nodes) {
		p.ni++
		p.cur, p.nj = p.nodes[p.ni], 1
		return &p.cur[0]
	}
	size := minNodeChunk
	if k := len(p.nodes); k > 0 {
		size = min(2*len(p.nodes[k-1]), maxNodeChunk)
	} else if p.fresh {
		// FHIR JSON has about one node per 24 bytes.
		size = min(max(p.sizeHint/bytesPerNode, minNodeChunk), maxNodeChunk)
	}
	if size == maxNodeChunk && p.bound > 0 {
		used := 0
		for _, c := range p.nodes {
			used += len(c)
		}
		size = max(size, p.estimate(used))
	}
	p.nodes = append(p.nodes, make([]Node, size))
	p.ni = len(p.nodes) - 1
	p.cur, p.nj = p.nodes[p.ni], 1
	return &p.cur[0]
}

// ptrChunk is the slow path of allocating n pointers of the arena (which
// close does itself, where they are the next n of p.pcur), taken when the
// current chunk has not room for them: it returns the first n of the next
// chunk that has, or of a new one. The slice's capacity is n, so that
// appending to it reallocates instead of overwriting a neighbour.
func (p *Parser) ptrChunk(n int) []*Node {
	for p.pcur != nil && p.pi+1 < len(p.ptrs) {
		p.pi++
		p.pcur, p.pj = p.ptrs[p.pi], 0
		if n <= len(p.pcur) {
			p.pj = n
			return p.pcur[:n:n]
		}
	}
	size := minPtrChunk
	if k := len(p.ptrs); k > 0 {
		size = min(2*len(p.ptrs[k-1]), maxPtrChunk)
	} else if p.fresh {
		size = min(max(p.sizeHint/bytesPerNode, minPtrChunk), maxPtrChunk)
	}
	if size == maxPtrChunk && p.bound > 0 {
		used := 0
		for _, c := range p.ptrs {
			used += len(c)
		}
		size = max(size, p.estimate(used))
	}
	size = max(size, n)
	p.ptrs = append(p.ptrs, make([]*Node, size))
	p.pi = len(p.ptrs) - 1
	p.pcur, p.pj = p.ptrs[p.pi], n
	return p.pcur[:n:n]
}

// Character classes.
var (
	// isSpace reports JSON whitespace.
	isSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}
)

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialMask returns a mask with the top bit set in each byte of x that is
// '"', '\\' or a control character. Only the lowest set bit is exact.
func specialMask(x uint64) uint64 {
	q := x ^ (lsb * '"')
	s := x ^ (lsb * '\\')
	return (((q - lsb) &^ q) | ((s - lsb) &^ s) | ((x - lsb*0x20) &^ x)) & msb
}

// stopMask is specialMask(x) | x&msb: a mask with the top bit set in each
// byte of x that is '"', '\\', a control character or not ASCII; only the
// lowest set bit is exact. A byte below the lowest flagged one is neither
// below 0x20 nor above 0x7f, so it takes no borrow from x-0x20 and the
// lowest byte whose top bit is set in x or in x-0x20 is the lowest control
// or non-ASCII byte: two operations fewer than testing the classes apart.
func stopMask(x uint64) uint64 {
	q := x ^ (lsb * '"')
	s := x ^ (lsb * '\\')
	return (((q - lsb) &^ q) | ((s - lsb) &^ s) | (x - lsb*0x20) | x) & msb
}

// plainEnd returns the position of the first byte from b[j] on that is a
// quote, a backslash, a control or a non-ASCII byte, reading 8 bytes at a
// time; or, when the last fewer than 8 bytes are reached first, the
// position where they begin (the caller reads those one by one).
func plainEnd(b []byte, j int) int {
	for j+8 <= len(b) {
		if m := stopMask(binary.LittleEndian.Uint64(b[j:])); m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
		j += 8
	}
	return j
}

// parse parses b (the owned copy). On error msg is non-empty and off is the
// offset in b.
func (p *Parser) parse(b []byte) (root *Node, off int, msg, path string) {
	i := skipSpace(b, 0)
	if i >= len(b) {
		if len(b) == 0 {
			return nil, i, "empty input", ""
		}
		return nil, i, "unexpected end of input", ""
	}
	var n *Node
	var errMsg string
	for {
		// A value starts at b[i] (whitespace skipped).
		p.pos = i
		if p.nj < len(p.cur) {
			n = &p.cur[p.nj]
			p.nj++
		} else {
			n = p.newChunk()
		}
		var parent *Node
		var key *string
		var kf Flags // FlagRawKey for a member whose name had no escapes
		if k := len(p.frames); k > 0 {
			f := &p.frames[k-1]
			parent, key, kf = f.node, f.kp, f.kf // an array's kp and kf stay nil and 0
			if len(p.pending) == cap(p.pending) {
				p.growPending()
			}
			p.pending = append(p.pending, n)
		}
		if i >= len(b) {
			return nil, i, "unexpected end of input", p.errPath(true)
		}
		c := b[i]
		switch {
		case c == '"':
			// Most strings are plain ASCII: find the closing quote here,
			// 8 bytes at a time, and leave the others (non-ASCII, escapes,
			// errors) to scanString, which reads them again from the start.
			j := plainEnd(b, i+1)
			if j < len(b) && b[j] == '"' && uint64(j-i-1) <= math.MaxUint32 {
				var ptr unsafe.Pointer // nil for "", as setValue leaves it
				if j > i+1 {
					ptr = unsafe.Pointer(&b[i+1])
				}
				n.init(String, kf|FlagRaw, key, ptr, uint32(j-i-1), parent)
				i = j + 1
				break
			}
			s, end, esc, m := p.scanString(b, i)
			if m != "" {
				return nil, end, m, p.errPath(true)
			}
			fl := kf | FlagRaw
			if esc {
				fl = kf | FlagEscaped
			}
			if uint64(len(s)) > math.MaxUint32 {
				n.init(String, fl, key, nil, 0, parent)
				return nil, i, "string longer than 4 GiB", p.errPath(true)
			}
			n.init(String, fl, key, unsafe.Pointer(unsafe.StringData(s)), uint32(len(s)), parent)
			i = end
		case c == '{' || c == '[':
			k := Object
			if c == '[' {
				k = Array
			}
			n.init(k, kf, key, nil, 0, parent)
			if len(p.frames) >= MaxDepth {
				return nil, i, "nesting depth exceeds " + strconv.Itoa(MaxDepth), p.errPath(true)
			}
			p.serial++
			if len(p.frames) == cap(p.frames) {
				p.frames = append(p.frames, frame{})[:len(p.frames)]
			}
			p.frames = p.frames[:len(p.frames)+1]
			f := &p.frames[len(p.frames)-1]
			f.node, f.kp, f.start, f.serial = n, nil, len(p.pending), p.serial
			f.kind, f.kf, f.keyed, f.hashed = k, 0, false, false
			i = skipSpace(b, i+1)
			if i >= len(b) {
				return nil, i, "unexpected end of input", p.errPath(false)
			}
			if c == '{' {
				if b[i] == '}' {
					i++
					p.close()
					break // value complete
				}
				if i, errMsg = p.readKey(b, i); errMsg != "" {
					return nil, i, errMsg, p.errPath(errMsg == "duplicate key")
				}
				continue
			}
			if b[i] == ']' {
				i++
				p.close()
				break
			}
			continue
		case c == '-' || c-'0' <= 9:
			end, m := scanNumber(b, i)
			if m != "" {
				return nil, end, m, p.errPath(true)
			}
			if uint64(end-i) > math.MaxUint32 {
				return nil, i, "number longer than 4 GiB", p.errPath(true)
			}
			n.init(Number, kf, key, unsafe.Pointer(&b[i]), uint32(end-i), parent)
			i = end
		case c == 't':
			if len(b)-i < 4 || string(b[i:i+4]) != "true" {
				off, m := literalError(b, i, "true")
				return nil, off, m, p.errPath(true)
			}
			n.init(Bool, kf, key, unsafe.Pointer(unsafe.StringData("true")), 4, parent)
			i += 4
		case c == 'f':
			if len(b)-i < 5 || string(b[i:i+5]) != "false" {
				off, m := literalError(b, i, "false")
				return nil, off, m, p.errPath(true)
			}
			n.init(Bool, kf, key, unsafe.Pointer(unsafe.StringData("false")), 5, parent)
			i += 5
		case c == 'n':
			if len(b)-i < 4 || string(b[i:i+4]) != "null" {
				off, m := literalError(b, i, "null")
				return nil, off, m, p.errPath(true)
			}
			n.init(Null, kf, key, nil, 0, parent)
			i += 4
		default:
			return nil, i, valueMsg(c), p.errPath(true)
		}

		// n is a complete value. Close containers as far as possible.
		for {
			if len(p.frames) == 0 {
				i = skipSpace(b, i)
				if i < len(b) {
					return nil, i, "data after top-level value", ""
				}
				return n, 0, "", ""
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return nil, i, "unexpected end of input", p.errPath(false)
			}
			f := &p.frames[len(p.frames)-1]
			c := b[i]
			if c == ',' {
				i = skipSpace(b, i+1)
				if i < len(b) && (b[i] == '}' || b[i] == ']') {
					return nil, i, "trailing comma", p.errPath(false)
				}
				if f.kind == Object {
					f.keyed = false
					if i, errMsg = p.readKey(b, i); errMsg != "" {
						return nil, i, errMsg, p.errPath(errMsg == "duplicate key")
					}
				}
				break // next value
			}
			if f.kind == Object {
				if c != '}' {
					return nil, i, afterMsg(c, "expected ',' or '}' after object member"), p.errPath(false)
				}
			} else if c != ']' {
				return nil, i, afterMsg(c, "expected ',' or ']' after array item"), p.errPath(false)
			}
			i++
			n = f.node
			p.close()
		}
	}
}

// growPending doubles the capacity of pending. append grows a large slice
// by a quarter at a time, which for an array of a million items leaves
// about four times its size of discarded arrays, all of it heap that the
// collector has usually not reclaimed when the tree is done; doubling
// leaves its size once.
//
//go:noinline
func (p *Parser) growPending() {
	s := make([]*Node, len(p.pending), max(64, 2*cap(p.pending)))
	copy(s, p.pending)
	p.pending = s
}

// close finishes the innermost open container.
func (p *Parser) close() {
	f := &p.frames[len(p.frames)-1]
	if k := len(p.pending) - f.start; k > 0 {
		var ch []*Node
		if j := p.pj + k; j <= len(p.pcur) {
			ch = p.pcur[p.pj:j:j]
			p.pj = j
		} else {
			ch = p.ptrChunk(k)
		}
		if kids := p.pending[f.start:]; k <= 8 {
			// Most containers have a few children: a loop of stores
			// costs less than copy's call (2.5% of BenchmarkParseBorrow).
			//lint:ignore S1001 the loop is faster for a few pointers
			for j, c := range kids {
				ch[j] = c
			}
		} else {
			copy(ch, kids)
		}
		// setKids without a shadow and with an exact capacity.
		if k > math.MaxUint32 {
			panic("jsontree: too many children")
		}
		n := f.node
		n.ptr, n.n, n.kcap = unsafe.Pointer(&ch[0]), uint32(k), capClass(k)
		p.pending = p.pending[:f.start]
	}
	p.frames = p.frames[:len(p.frames)-1]
}

// readKey reads `"name" :` at b[i] into the innermost frame and returns the
// offset of the member's value, whitespace skipped.
//
// It is the fast path of readKeySlow, kept small: a name of up to 23
// bytes of ASCII found in the table's caches, not yet in an object of
// fewer than dupScanFast members whose names are not in the map yet,
// followed by ':' and no whitespace, as FHIR servers and Synthea write
// nearly every member. Anything else, errors included, is left to
// readKeySlow, which reads the name again.
func (p *Parser) readKey(b []byte, i int) (int, string) {
	f := &p.frames[len(p.frames)-1]
	start := i + 1
	if start+16 > len(b) || b[i] != '"' {
		return p.readKeySlow(b, i)
	}
	var kp *string
	var end int
	x := binary.LittleEndian.Uint64(b[start:])
	if m := stopMask(x); m != 0 {
		k := bits.TrailingZeros64(m) >> 3
		if b[start+k] != '"' {
			return p.readKeySlow(b, i)
		}
		if k == 0 {
			return p.readKeySlow(b, i) // ""
		}
		if kp = p.keys.findShort(x&(1<<(8*k)-1), k); kp == nil {
			return p.readKeySlow(b, i)
		}
		end = start + k + 1
	} else {
		y := binary.LittleEndian.Uint64(b[start+8:])
		if m := stopMask(y); m != 0 {
			k := bits.TrailingZeros64(m) >> 3
			if b[start+8+k] != '"' {
				return p.readKeySlow(b, i)
			}
			if kp = p.keys.lookupMid(x, midTag(y&(1<<(8*k)-1), 8+k)); kp == nil {
				return p.readKeySlow(b, i)
			}
			end = start + k + 9
		} else {
			// 16 to 23 bytes, from three words.
			if start+24 > len(b) {
				return p.readKeySlow(b, i)
			}
			z := binary.LittleEndian.Uint64(b[start+16:])
			m := stopMask(z)
			k := bits.TrailingZeros64(m) >> 3 // 8 if m is 0
			if m == 0 || b[start+16+k] != '"' {
				return p.readKeySlow(b, i)
			}
			tag := midTag(z&(1<<(8*k)-1), 16+k)
			if kp = p.keys.lookupLong(longHash(x, y, tag), x, y, tag); kp == nil {
				return p.readKeySlow(b, i)
			}
			end = start + k + 17
		}
	}
	if f.hashed || end+1 >= len(b) || b[end] != ':' || b[end+1] <= ' ' {
		return p.readKeySlow(b, i)
	}
	members := p.pending[f.start:]
	if len(members) >= dupScanFast {
		return p.readKeySlow(b, i)
	}
	for _, m := range members {
		if m.key == kp {
			return p.readKeySlow(b, i) // a duplicate
		}
	}
	f.kp, f.kf, f.keyed = kp, FlagRawKey, true
	return end + 1, ""
}

// readKeySlow is readKey for any name.
func (p *Parser) readKeySlow(b []byte, i int) (int, string) {
	f := &p.frames[len(p.frames)-1]
	if i >= len(b) {
		return i, "unexpected end of input"
	}
	if b[i] != '"' {
		return i, afterMsg(b[i], "expected string for object key")
	}
	var key string
	var kp *string
	var end int
	var esc, shared bool
	if start := i + 1; start+8 <= len(b) {
		// Most member names are short ASCII words: when the closing
		// quote is within the next 8 bytes, the name is found in the
		// table's cache from that one word.
		x := binary.LittleEndian.Uint64(b[start:])
		if m := stopMask(x); m != 0 {
			k := bits.TrailingZeros64(m) >> 3
			if b[start+k] == '"' {
				lo := x & (1<<(8*k) - 1)
				key, end = unsafeString(b[start:start+k]), start+k+1
				if kp, shared = p.keys.lookupShort(lo, k); !shared {
					kp, shared = p.keys.intern(key)
				}
			}
		} else if start+16 <= len(b) {
			// The next most common: 8 to 15 bytes of ASCII, found in the
			// table's cache of such names from two words.
			y := binary.LittleEndian.Uint64(b[start+8:])
			if m := stopMask(y); m != 0 {
				k := bits.TrailingZeros64(m) >> 3
				if b[start+8+k] == '"' {
					hi := y & (1<<(8*k) - 1)
					key, end = unsafeString(b[start:start+8+k]), start+k+9
					if kp = p.keys.lookupMid(x, midTag(hi, 8+k)); kp != nil {
						shared = true
					} else if kp, shared = p.keys.intern(key); shared {
						p.keys.addMid(kp)
					}
				}
			}
		}
	}
	if end == 0 {
		var m string
		if key, end, esc, m = p.scanString(b, i); m != "" {
			return end, m
		}
		kp, shared = p.keys.intern(key)
		if shared && len(key) >= 16 && len(key) < 24 {
			p.keys.addLong(kp)
		}
	}
	f.kf = FlagRawKey
	if esc {
		f.kf = 0
	}
	// Duplicate check against the members read so far.
	members := p.pending[f.start:]
	if f.hashed {
		dk := dupKey{f.serial, key}
		if _, ok := p.dup[dk]; ok {
			f.kp, f.keyed = kp, true
			return i, "duplicate key"
		}
		p.dup[dk] = struct{}{}
	} else {
		// A name in the table has one pointer, which the members of the
		// same name have too; other names are compared by their text.
		for _, m := range members {
			if m.key == kp || !shared && m.Key() == key {
				f.kp, f.keyed = kp, true
				return i, "duplicate key"
			}
		}
		if len(members) >= dupScan {
			if p.dup == nil {
				p.dup = make(map[dupKey]struct{})
			}
			for _, m := range members {
				p.dup[dupKey{f.serial, m.Key()}] = struct{}{}
			}
			p.dup[dupKey{f.serial, key}] = struct{}{}
			f.hashed = true
		}
	}
	f.kp, f.keyed = kp, true
	i = skipSpace(b, end)
	if i >= len(b) {
		return i, "unexpected end of input"
	}
	if b[i] != ':' {
		return i, afterMsg(b[i], "expected ':' after object key")
	}
	return skipSpace(b, i+1), ""
}

// errPath returns the JSON pointer of the value being read. With member
// false, the path stops at the innermost container.
func (p *Parser) errPath(member bool) string {
	var sb strings.Builder
	for k := range p.frames {
		f := &p.frames[k]
		last := k == len(p.frames)-1
		if last && !member {
			break
		}
		if f.kind == Object {
			if !f.keyed {
				break
			}
			sb.WriteByte('/')
			writeErrorToken(&sb, f.key())
		} else {
			// The item being read is the last one added to pending: the
			// innermost value, or the container of the next frame.
			idx := len(p.pending) - f.start - 1
			if k+1 < len(p.frames) {
				idx = p.frames[k+1].start - f.start - 1
			}
			sb.WriteByte('/')
			sb.WriteString(strconv.Itoa(idx))
		}
	}
	return sb.String()
}

// maxErrorToken is the longest member name written in full into a
// SyntaxError's path.
const maxErrorToken = 64

// writeErrorToken writes member name s into an error's path: escaped as a
// JSON pointer token, cut after maxErrorToken bytes (marked by "..."), and
// with control characters replaced by U+FFFD so that a crafted name cannot
// forge lines in a log.
func writeErrorToken(sb *strings.Builder, s string) {
	cut := false
	if len(s) > maxErrorToken {
		i := maxErrorToken
		for i > 0 && !utf8.RuneStart(s[i]) {
			i-- // do not split a character
		}
		s = s[:i]
		cut = true
	}
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }) >= 0 {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return utf8.RuneError
			}
			return r
		}, s)
	}
	writePointerToken(sb, s)
	if cut {
		sb.WriteString("...")
	}
}

// writePointerToken writes s escaped as a JSON pointer reference token.
func writePointerToken(sb *strings.Builder, s string) {
	if !strings.ContainsAny(s, "~/") {
		sb.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '~':
			sb.WriteString("~0")
		case '/':
			sb.WriteString("~1")
		default:
			sb.WriteByte(s[i])
		}
	}
}

// skipSpace returns the offset of the first non-whitespace byte at or
// after b[i]. Compact JSON has none, so that case is kept inlinable.
func skipSpace(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	return skipSpaceSlow(b, i)
}

// spaces8 is eight spaces read as a little-endian word.
const spaces8 = lsb * ' '

func skipSpaceSlow(b []byte, i int) int {
	for i < len(b) && isSpace[b[i]] {
		i++
		// Indentation comes in runs of spaces.
		for i+8 <= len(b) && binary.LittleEndian.Uint64(b[i:]) == spaces8 {
			i += 8
		}
	}
	return i
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func valueMsg(c byte) string {
	switch c {
	case '/', '#':
		return "comments are not allowed"
	case ',', '}', ']':
		return "expected value"
	case '\'':
		return "single-quoted strings are not allowed"
	case '+':
		return "invalid number: leading '+'"
	case '.':
		return "invalid number: missing digits before '.'"
	}
	return "invalid character at start of value"
}

func afterMsg(c byte, msg string) string {
	if c == '/' || c == '#' {
		return "comments are not allowed"
	}
	return msg
}

// literalError locates the error in the malformed literal at b[i].
func literalError(b []byte, i int, lit string) (int, string) {
	rest := b[i:]
	if len(rest) < len(lit) && string(rest) == lit[:len(rest)] {
		return len(b), "unexpected end of input"
	}
	return i, "invalid literal"
}

// scanNumber checks the number at b[i] and returns its end offset.
func scanNumber(b []byte, i int) (int, string) {
	if b[i] == '-' {
		i++
		if i >= len(b) {
			return i, "unexpected end of input"
		}
		if b[i]-'0' > 9 {
			return i, "invalid number: missing digits after '-'"
		}
	} else if b[i]-'0' > 9 {
		return i, "invalid number"
	}
	if b[i] == '0' {
		i++
		if i < len(b) && b[i]-'0' <= 9 {
			return i - 1, "invalid number: leading zero"
		}
	} else {
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) {
			return i, "unexpected end of input"
		}
		if b[i]-'0' > 9 {
			return i, "invalid number: missing digits after '.'"
		}
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) {
			return i, "unexpected end of input"
		}
		if b[i]-'0' > 9 {
			return i, "invalid number: missing digits in exponent"
		}
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
	}
	return i, ""
}

// scanString reads the string whose opening quote is at b[i]. It returns
// the decoded text, the offset just past the closing quote, and whether the
// text had escapes. On error msg is set and end is the offending offset.
func (p *Parser) scanString(b []byte, i int) (s string, end int, esc bool, msg string) {
	start := i + 1
	j := start
	var hi uint64
	for {
		for j+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[j:])
			m := specialMask(x)
			if m != 0 {
				k := bits.TrailingZeros64(m) >> 3
				hi |= x & (1<<(8*k) - 1)
				j += k
				break
			}
			hi |= x
			j += 8
		}
		if j >= len(b) {
			return "", j, false, "unexpected end of input"
		}
		c := b[j]
		switch {
		case c == '"':
			if hi&msb != 0 {
				if off := invalidUTF8(b[start:j]); off >= 0 {
					return "", start + off, false, "invalid UTF-8 in string"
				}
			}
			return unsafeString(b[start:j]), j + 1, false, ""
		case c == '\\':
			if hi&msb != 0 {
				if off := invalidUTF8(b[start:j]); off >= 0 {
					return "", start + off, false, "invalid UTF-8 in string"
				}
			}
			if p.borrow {
				return p.unescapeCopy(b, start, j)
			}
			return unescape(b, start, j)
		case c < 0x20:
			return "", j, false, "control character in string"
		}
		hi |= uint64(c)
		j++
	}
}

// invalidUTF8 returns the offset of the first invalid UTF-8 sequence in b,
// or -1.
func invalidUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// unescape decodes, in place, the string that starts at b[start] and has
// its first backslash at b[j]. Everything before j has been checked.
func unescape(b []byte, start, j int) (string, int, bool, string) {
	w := j
	r := j
	for {
		// Move runs of plain ASCII 8 bytes at a time.
		k := plainEnd(b, r)
		if k > r {
			copy(b[w:], b[r:k])
			w += k - r
			r = k
		}
		if r >= len(b) {
			return "", r, true, "unexpected end of input"
		}
		c := b[r]
		switch {
		case c == '"':
			return unsafeString(b[start:w]), r + 1, true, ""
		case c < 0x20:
			return "", r, true, "control character in string"
		case c == '\\':
			if r+1 >= len(b) {
				return "", r + 1, true, "unexpected end of input"
			}
			switch b[r+1] {
			case '"', '\\', '/':
				b[w] = b[r+1]
			case 'b':
				b[w] = '\b'
			case 'f':
				b[w] = '\f'
			case 'n':
				b[w] = '\n'
			case 'r':
				b[w] = '\r'
			case 't':
				b[w] = '\t'
			case 'u':
				u, ok := hex4(b, r+2)
				if !ok {
					return "", r, true, "invalid \\u escape"
				}
				r += 6
				if u >= 0xD800 && u < 0xDC00 {
					// High surrogate: combine with a following low one.
					if r+6 <= len(b) && b[r] == '\\' && b[r+1] == 'u' {
						if u2, ok := hex4(b, r+2); ok && u2 >= 0xDC00 && u2 < 0xE000 {
							u = 0x10000 + (u-0xD800)<<10 + (u2 - 0xDC00)
							r += 6
						} else {
							u = utf8.RuneError
						}
					} else {
						u = utf8.RuneError
					}
				} else if u >= 0xDC00 && u < 0xE000 {
					u = utf8.RuneError
				}
				w += utf8.EncodeRune(b[w:], u)
				continue
			default:
				return "", r, true, "invalid escape sequence"
			}
			w++
			r += 2
		case c < utf8.RuneSelf:
			b[w] = c
			w++
			r++
		default:
			ru, size := utf8.DecodeRune(b[r:])
			if ru == utf8.RuneError && size == 1 {
				return "", r, true, "invalid UTF-8 in string"
			}
			copy(b[w:], b[r:r+size])
			w += size
			r += size
		}
	}
}

// unescapeCopy is unescape for a borrowed document, which must not be
// written: the string that starts at b[start] (first backslash at b[j]) is
// copied, up to its closing quote, into text memory and decoded there.
// Offsets returned are offsets in b.
func (p *Parser) unescapeCopy(b []byte, start, j int) (string, int, bool, string) {
	// The closing quote is the first '"' after j not escaped by an odd run
	// of backslashes; without one, the rest of the input is copied and
	// unescape reports where it goes wrong.
	end := len(b)
	for k := j; k < len(b); {
		q := bytes.IndexByte(b[k:], '"')
		if q < 0 {
			break
		}
		k += q
		n := 0
		for i := k - 1; i >= start && b[i] == '\\'; i-- {
			n++
		}
		k++
		if n%2 == 0 {
			end = k
			break
		}
	}
	t := p.textAlloc(end - start)
	copy(t, b[start:end])
	s, off, esc, msg := unescape(t, 0, j-start)
	return s, off + start, esc, msg
}

// hex4 decodes the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
