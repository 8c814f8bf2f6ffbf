package fhirpath

import (
	"math/bits"
	"strings"
	"sync/atomic"

	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// Criteria memo. The criteria of where(), exists() and all() is evaluated
// once per item, but in practice it often looks at a single member of the
// item whose values repeat: nodesByType('Coding').where(system = '...' or
// system.startsWith('...')) sees a million Codings and a few dozen
// systems. When the criteria provably depends on nothing but the member's
// elements (see memoMember), its result for an item is a function of them:
// of their absence, or of the FHIR type, JSON kind and value of a single
// primitive without id or extensions. The evaluation context then keeps
// the boolean result per call site and such key (see evalCtx.criteria), in
// a bounded 2-way set-associative table that lives in the pooled context
// and so lasts across evaluations. Other items (several elements of the
// member, a primitive with an id or extensions or without a value, a long
// value) and results that are errors or not a single boolean are evaluated
// as before, every time; so are, for a while, the items of a site whose
// lookups rarely hit (see memoStat).

// memoSite is a criteria argument whose result depends only on the
// elements named name of $this.
type memoSite struct {
	name      string
	jsonNames bool
	// mix is a per-site constant mixed into the hash of a key, so that
	// the sites sharing a table spread over it.
	mix uint64
}

var memoSiteCount atomic.Uint64

func newMemoSite(name string, jsonNames bool) *memoSite {
	return &memoSite{name: name, jsonNames: jsonNames, mix: memoSiteCount.Add(1) * 0x9E3779B97F4A7C15}
}

// memoPure lists the functions a memoized criteria may call, with their
// largest number of arguments: they read only their focus's values (the
// FHIR type and JSON kind of a node for hasValue) and their arguments,
// depend on nothing of the evaluation (no clock, no variables, no trace),
// and take no criteria or type argument.
var memoPure = map[string]int{
	"not": 0, "exists": 0, "empty": 0, "hasValue": 0, "count": 0,
	"first": 0, "last": 0, "single": 0,
	"startsWith": 1, "endsWith": 1, "contains": 1, "matches": 1, "matchesFull": 1,
	"indexOf": 1, "substring": 2, "replace": 2, "replaceMatches": 2,
	"lower": 0, "upper": 0, "trim": 0, "length": 0,
	"toString": 0, "toInteger": 0, "toDecimal": 0, "toBoolean": 0,
	"convertsToString": 0, "convertsToInteger": 0, "convertsToDecimal": 0, "convertsToBoolean": 0,
}

// memoOps are the binary operators a memoized criteria may use.
var memoOps = map[string]bool{
	"=": true, "!=": true, "~": true, "!~": true,
	"<": true, ">": true, "<=": true, ">=": true,
	"and": true, "or": true, "xor": true, "implies": true,
	"+": true, "-": true, "*": true, "/": true, "div": true, "mod": true, "&": true,
	"|": true, "in": true, "contains": true,
}

// memoMember returns the member name that the criteria e depends on, when
// e is built only of literals, the constants %ucum, %sct and %loinc,
// unary and binary operators of memoOps, calls of memoPure functions on an
// explicit focus, and that member name as a term (evaluated on $this), at
// least once. Anything else ($this, $index, %variables, navigation beyond
// the member, a second member, type operators, a call without focus, which
// would apply to $this, other functions) gives ok=false.
func memoMember(e expr) (name string, ok bool) {
	if !memoWalk(e, &name) || name == "" {
		return "", false
	}
	return name, true
}

func memoWalk(e expr, name *string) bool {
	switch x := e.(type) {
	case *literalExpr:
		return true
	case *identExpr:
		// A capitalised term may be a type test on $this (see compile).
		if x.name == "" || x.name[0] >= 'A' && x.name[0] <= 'Z' {
			return false
		}
		if *name == "" {
			*name = x.name
		}
		return *name == x.name
	case *extExpr:
		_, ok := constants[x.name]
		return ok
	case *unaryExpr:
		return memoWalk(x.x, name)
	case *binaryExpr:
		return memoOps[x.op] && memoWalk(x.l, name) && memoWalk(x.r, name)
	case *callExpr:
		max, ok := memoPure[x.name]
		if !ok || x.x == nil || len(x.args) > max || !memoWalk(x.x, name) {
			return false
		}
		for _, a := range x.args {
			if !memoWalk(a, name) {
				return false
			}
		}
		return true
	}
	return false
}

// memoSize is the number of entries of a context's memo table (a power of
// two). A key hashes to a pair of entries (2-way set associative): a new
// entry takes the first, whose entry moves to the second, whose entry is
// dropped.
const memoSize = 1024

// maxMemoValue bounds the values kept in the memo: a long text rarely
// repeats and would cost a copy for nothing.
const maxMemoValue = 256

// Flags of a memo key.
const (
	memoAbsent  uint8 = 1 << iota // the member has no element
	memoRanges                    // Env.PartialDatesAsRanges
	memoUnknown                   // not memoizable
)

// memoEntry is one slot of the memo table; site is nil in a free slot.
// key is the FHIR type followed by the value (typLen bytes of type), one
// copy of both: node values may be slices of an input buffer that is
// reused. The hash of a key mixes in its flags and kind, so keys
// that differ in them never share a pair; they are compared all the same.
type memoEntry struct {
	site   *memoSite
	key    string
	typLen uint8
	kind   jsontree.Kind
	flags  uint8
	match  bool
}

// is reports whether e holds the key site, typ, val, kind, flags.
func (e *memoEntry) is(site *memoSite, typ, val string, kind jsontree.Kind, flags uint8) bool {
	return e.site == site && e.flags == flags && e.kind == kind && len(e.key) == len(typ)+len(val) &&
		int(e.typLen) == len(typ) && e.key[len(typ):] == val && e.key[:len(typ)] == typ
}

// memoHash hashes a value, eight bytes at a time. It is deterministic:
// values made to collide only cost the memo its use, never a wrong result.
func memoHash(s string) uint64 {
	const m1, m2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
	h := uint64(len(s)) * m1
	for len(s) >= 8 {
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		h = bits.RotateLeft64((h^w)*m2, 31)
		s = s[8:]
	}
	var w uint64
	for i := 0; i < len(s); i++ {
		w |= uint64(s[i]) << (8 * i)
	}
	h = (h ^ w) * m1
	h = (h ^ h>>32) * m2
	return h ^ h>>29
}

// memoKey returns the key of item n at site m: flags, and for a single
// primitive element its type, kind and value. memoUnknown says that the
// item cannot be memoized.
func (c *evalCtx) memoKey(m *memoSite, n *jsontree.Node) (typ, val string, kind jsontree.Kind, flags uint8) {
	if c.env != nil && c.env.PartialDatesAsRanges {
		flags = memoRanges
	}
	// Find the elements as navigate does, without keeping them.
	var child *jsontree.Node
	nodes := typed.Children(n, m.name, c.nodes[:0])
	count := len(nodes)
	if count == 1 {
		child = nodes[0]
	}
	clear(nodes)
	c.nodes = nodes[:0]
	if count == 0 && m.jsonNames {
		buf := jsonMember(n, m.name, c.scratch[:0])
		count = len(buf)
		if count == 1 {
			child = buf[0].node
		}
		clear(buf)
		c.scratch = buf[:0]
	}
	switch {
	case count == 0:
		return "", "", 0, flags | memoAbsent
	case count > 1:
		return "", "", 0, memoUnknown
	}
	switch child.Kind {
	case jsontree.String, jsontree.Number, jsontree.Bool:
	default:
		return "", "", 0, memoUnknown
	}
	if child.Shadow() != nil || len(child.Value()) > maxMemoValue || len(child.Type()) > 255 {
		return "", "", 0, memoUnknown
	}
	return child.Type(), child.Value(), child.Kind, flags
}

// memoTable is the memo of a context: its entries, and per site how well
// they serve it.
type memoTable struct {
	entries [memoSize]memoEntry
	stats   [memoStatSlots]memoStat
}

// memoStat counts the lookups of a site and their hits. A site whose
// lookups hit less than a quarter of the time over memoProbe lookups (its
// values rarely repeat, or are rarely memoizable) is evaluated without the
// memo for its next memoSkip items, which bounds what the memo costs it:
// finding the member, hashing its value, copying it into the table.
type memoStat struct {
	site          *memoSite
	lookups, hits uint32
	skip          uint32
}

const (
	memoStatSlots = 16 // a power of two
	memoProbe     = 256
	memoSkip      = 4096
)

// count counts a lookup.
func (st *memoStat) count(hit bool) {
	st.lookups++
	if hit {
		st.hits++
	}
	if st.lookups == memoProbe {
		if st.hits < memoProbe/4 {
			st.skip = memoSkip
		}
		st.lookups, st.hits = 0, 0
	}
}

// criteria evaluates the criteria argument a of where(), exists() or all()
// on item it (at index i): match is true when the result is true by the
// singleton evaluation of collections (see boolOf), ok is false when the
// result has several items. When a is a memo site, match is looked up in
// and added to the memo.
func (c *evalCtx) criteria(a *argument, it Item, i int) (match, ok bool, err error) {
	m := a.memo
	if m == nil || it.node == nil {
		return c.evalCriteria(a, it, i)
	}
	if c.memo == nil {
		c.memo = new(memoTable)
	}
	st := &c.memo.stats[m.mix>>60&(memoStatSlots-1)]
	if st.site != m {
		*st = memoStat{site: m}
	}
	if st.skip > 0 {
		st.skip--
		return c.evalCriteria(a, it, i)
	}
	typ, val, kind, flags := c.memoKey(m, it.node)
	if flags&memoUnknown != 0 {
		st.count(false)
		return c.evalCriteria(a, it, i)
	}
	h := memoHash(val) ^ m.mix ^ uint64(flags)<<4 ^ uint64(kind)<<1
	j := h & (memoSize - 1) &^ 1
	pair := (*[2]memoEntry)(c.memo.entries[j : j+2])
	for k := range pair {
		if pair[k].is(m, typ, val, kind, flags) {
			st.count(true)
			return pair[k].match, true, nil
		}
	}
	st.count(false)
	match, ok, err = c.evalCriteria(a, it, i)
	if err == nil && ok {
		// The pair's first entry is the newer: it moves to the second.
		pair[1] = pair[0]
		var key strings.Builder // a copy even when typ is empty
		key.Grow(len(typ) + len(val))
		key.WriteString(typ)
		key.WriteString(val)
		pair[0] = memoEntry{site: m, key: key.String(), typLen: uint8(len(typ)), kind: kind, flags: flags, match: match}
	}
	return match, ok, err
}

// evalCriteria evaluates a criteria without the memo (see criteria).
func (c *evalCtx) evalCriteria(a *argument, it Item, i int) (match, ok bool, err error) {
	r, err := c.lambda(a, it, i)
	if err != nil {
		return false, false, err
	}
	b, known, ok := boolOf(r)
	return known && b, ok, nil
}

// memoize makes the criteria of the call e of where(), exists() or all(),
// compiled as site k, a memo site when memoMember recognises it.
func (cp *compiler) memoize(e *callExpr, k *callSite) {
	switch e.name {
	case "where", "exists", "all":
	default:
		return
	}
	if cp.cfg.noMemo || len(k.args) != 1 {
		return
	}
	name, ok := memoMember(e.args[0])
	if !ok {
		return
	}
	k.args[0].memo = newMemoSite(name, cp.cfg.jsonNames)
	cp.memoized = append(cp.memoized, name)
	if e.name == "where" && cp.head != nil && e.x == expr(cp.head) {
		cp.headWhere, cp.headWhereCall = k.args[0], e
	}
}
