package jsontree

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// errNumber is returned for a malformed number literal. Like every error
// of this package it does not quote the literal.
var errNumber = errors.New("jsontree: invalid number literal")

// ValidNumber reports whether lit is a JSON number literal (RFC 8259):
// an optional minus sign, an integer part without leading zeros, an optional
// fraction and an optional exponent. Its size is not limited.
func ValidNumber(lit string) bool {
	if lit == "" {
		return false
	}
	end, msg := scanNumber(unsafe.Slice(unsafe.StringData(lit), len(lit)), 0)
	return msg == "" && end == len(lit)
}

// NewString returns a detached String node holding s.
func NewString(s string) *Node { return newScalar(String, s) }

// NewNumber returns a detached Number node whose literal is lit, which is
// kept as it is ("1.50" stays "1.50"). It returns an error if lit is not a
// JSON number literal (see ValidNumber).
func NewNumber(lit string) (*Node, error) {
	if !ValidNumber(lit) {
		return nil, errNumber
	}
	return newScalar(Number, lit), nil
}

// NewBool returns a detached Bool node.
func NewBool(b bool) *Node { return newScalar(Bool, boolText(b)) }

func newScalar(k Kind, v string) *Node {
	n := &Node{Kind: k}
	n.setValue(v)
	return n
}

// NewNull returns a detached Null node.
func NewNull() *Node { return &Node{Kind: Null} }

// NewObject returns a detached empty Object node.
func NewObject() *Node { return &Node{Kind: Object} }

// NewArray returns a detached empty Array node.
func NewArray() *Node { return &Node{Kind: Array} }

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// Len returns the number of members of an object or items of an array, and
// 0 for a scalar.
func (n *Node) Len() int {
	if n.kcap&kcapClass == 0 {
		return 0 // n.n is a scalar's length, or 0
	}
	return int(n.n)
}

// Get returns the member of object n named key, or nil if there is none or
// n is not an object.
func (n *Node) Get(key string) *Node {
	if n == nil || n.Kind != Object {
		return nil
	}
	for _, c := range n.Children() {
		if c.Key() == key {
			return c
		}
	}
	return nil
}

// Index returns the position of n among its parent's children, or -1 if n
// has no parent.
func (n *Node) Index() int {
	if n.Parent == nil {
		return -1
	}
	for i, c := range n.Parent.Children() {
		if c == n {
			return i
		}
	}
	return -1
}

// The editing methods keep the tree consistent; see the package
// documentation.

// Set makes v the member of object n named key. If n has such a member, v
// takes its place (same position) and the old member is detached;
// otherwise v is appended.
func (n *Node) Set(key string, v *Node) {
	n.mustBe(Object, "Set")
	n.checkChild(v)
	if v.Parent == n && v.Key() == key {
		return
	}
	if v.Parent != nil {
		v.Detach()
	}
	v.SetKey(key)
	v.Parent = n
	for i, c := range n.Children() {
		if c.Key() == key {
			c.Parent = nil
			n.Children()[i] = v
			return
		}
	}
	n.appendChild(v)
}

// Append adds v as the last item of array n.
func (n *Node) Append(v *Node) {
	n.mustBe(Array, "Append")
	n.checkChild(v)
	if v.Parent != nil {
		v.Detach()
	}
	v.SetKey("")
	v.Parent = n
	n.appendChild(v)
}

// InsertAt inserts v into n so that it becomes n.Children()[i]; it panics if
// i is not in [0, n.Len()] (counted after v was moved out of its old
// parent). In an array, v becomes item i. In an object, v becomes a member
// named v.Key (its name before the call), and a member of n with that name
// is detached first.
func (n *Node) InsertAt(i int, v *Node) {
	if n.Kind != Object && n.Kind != Array {
		panic("jsontree: InsertAt on a " + n.Kind.String())
	}
	n.checkChild(v)
	key := v.Key()
	var old *Node
	if n.Kind == Array {
		key = ""
	} else {
		old = n.Get(key)
	}
	// Check the index before changing anything.
	after := n.Len()
	if v.Parent == n {
		after--
	}
	if old != nil && old != v {
		after--
	}
	if i < 0 || i > after {
		panic("jsontree: InsertAt index " + strconv.Itoa(i) + " out of range")
	}
	if v.Parent != nil {
		v.Detach()
	}
	if old != nil && old != v {
		n.Remove(old)
	}
	v.SetKey(key)
	v.Parent = n
	n.appendChild(v)
	ch := n.Children()
	copy(ch[i+1:], ch[i:])
	ch[i] = v
}

// Remove removes child from n's members or items, keeping the order of the
// others, and reports whether child was one of them. The removed node keeps
// its Key and its own subtree; its Parent becomes nil.
func (n *Node) Remove(child *Node) bool {
	if child == nil || child.Parent != n {
		return false
	}
	ch := n.Children()
	for i, c := range ch {
		if c == child {
			copy(ch[i:], ch[i+1:])
			ch[len(ch)-1] = nil
			n.n--
			child.Parent = nil
			return true
		}
	}
	return false
}

// RemoveFunc removes, in one pass, every child of n (member or item) for
// which del returns true, keeping the order of the others, and returns how
// many it removed. Removed nodes keep their Key and subtree; their Parent
// becomes nil. Its cost is linear in the number of children, where removing
// k children one by one with Remove costs k times that. del must not edit n.
func (n *Node) RemoveFunc(del func(*Node) bool) int {
	ch := n.Children()
	if len(ch) == 0 {
		return 0
	}
	kept := ch[:0]
	for _, c := range ch {
		if del(c) {
			c.Parent = nil
			continue
		}
		kept = append(kept, c)
	}
	removed := len(ch) - len(kept)
	clear(ch[len(kept):])
	n.n = uint32(len(kept))
	return removed
}

// Detach removes n from its parent, if it has one; see Remove.
func (n *Node) Detach() {
	if n.Parent != nil {
		n.Parent.Remove(n)
	}
}

// ReplaceWith puts v in n's place in n's parent (same position, and in an
// object the same member name) and detaches n. It panics if n has no
// parent. v's typing fields are left as they are.
func (n *Node) ReplaceWith(v *Node) {
	if v == n {
		return
	}
	p := n.Parent
	if p == nil {
		panic("jsontree: ReplaceWith on a node without parent")
	}
	p.checkChild(v)
	if v.Parent != nil {
		v.Detach()
	}
	i := n.Index()
	p.Children()[i] = v
	v.Parent, v.key = p, n.key
	v.Flags = v.Flags&^FlagRawKey | n.Flags&FlagRawKey
	n.Parent = nil
}

// SetString makes n a String holding s. An object's or array's children
// are dropped.
func (n *Node) SetString(s string) {
	n.setScalar(String, s)
}

// SetPlainString is SetString for a value that the caller knows to be plain
// (IsPlain: valid UTF-8 with no '"', '\\' or control character, such as a
// hex digest, a date, or a substring of a FlagRaw value joined to such
// text): it also sets FlagRaw, so that AppendJSON copies the value without
// scanning it. A value that is not plain would be written as it is, making
// invalid JSON; the caller must be sure.
func (n *Node) SetPlainString(s string) {
	n.setScalar(String, s)
	n.Flags |= FlagRaw
}

// IsPlain reports whether s is written in JSON as it is: valid UTF-8 with no
// '"', '\\' or character below U+0020. SetPlainString, SetPlainValue and
// SetPlainKey expect such text.
func IsPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < utf8.RuneSelf && needsEscape[c] {
			return false
		}
	}
	return utf8.ValidString(s)
}

// SetNumber makes n a Number whose literal is lit, or returns an error and
// leaves n unchanged if lit is not a JSON number literal (see ValidNumber).
func (n *Node) SetNumber(lit string) error {
	if !ValidNumber(lit) {
		return errNumber
	}
	n.setScalar(Number, lit)
	return nil
}

// SetBool makes n a Bool.
func (n *Node) SetBool(b bool) {
	n.setScalar(Bool, boolText(b))
}

// SetNull makes n a Null.
func (n *Node) SetNull() {
	n.setScalar(Null, "")
}

func (n *Node) setScalar(k Kind, v string) {
	if n.kcap&kcapClass != 0 {
		n.dropChildren()
	}
	n.Kind = k
	n.setValue(v)
	n.Flags = n.Flags&^(FlagEscaped|FlagRaw) | FlagSet
}

// dropChildren detaches n's children and leaves it none and an empty
// Value, keeping its shadow in a shadowed record, as a scalar's.
//
//go:noinline
func (n *Node) dropChildren() {
	for _, c := range n.Children() {
		c.Parent = nil
	}
	sh := n.Shadow()
	n.ptr, n.n, n.kcap = nil, 0, 0
	if sh != nil {
		n.ptr, n.kcap = unsafe.Pointer(&shadowed{shadow: sh}), kShadowPtr
	}
}

func (n *Node) mustBe(k Kind, op string) {
	if n.Kind != k {
		panic("jsontree: " + op + " on a " + n.Kind.String())
	}
}

// checkChild panics unless v may become a child of n.
func (n *Node) checkChild(v *Node) {
	if v == nil {
		panic("jsontree: nil node inserted")
	}
	for a := n; a != nil; a = a.Parent {
		if a == v {
			panic("jsontree: node inserted into itself")
		}
	}
}

// Walk calls fn for n and then, if fn returned true, walks n's children in
// order: a pre-order traversal.
//
// fn may edit the node it is given: change its value, edit its children
// (the walk then visits the children as they are after fn returns), or
// remove it or replace it in its parent with Detach, Remove or ReplaceWith.
// In that last case fn should return false, so that the walk does not go
// into the subtree just taken out; the walk goes on with the next sibling
// and does not visit the replacement. fn must not otherwise add or remove
// siblings of the node or edit its ancestors.
func (n *Node) Walk(fn func(*Node) bool) {
	if !fn(n) || n.kcap&kcapClass == 0 {
		return // or no children (fn may have made n a scalar)
	}
	// n stays a container while its children are walked (fn must not edit
	// an ancestor of the node it is given): n.n is its number of children.
	for i := 0; i < int(n.n); {
		c := n.child(i)
		before := n.n
		c.Walk(fn)
		if n.n < before && (i >= int(n.n) || n.child(i) != c) {
			continue // c was removed: its next sibling is now at i
		}
		i++
	}
}

// Path returns the location of n in its tree as a JSON pointer (RFC 6901)
// made of member names and array indexes, such as
// "/entry/0/resource/name/1/given/0"; the root's path is "". A path holds
// no values, so it may be logged.
func (n *Node) Path() string {
	type seg struct {
		key string
		idx int
	}
	var segs []seg
	for c := n; c.Parent != nil; c = c.Parent {
		if c.Parent.Kind == Array {
			segs = append(segs, seg{idx: c.Index()})
		} else {
			segs = append(segs, seg{key: c.Key(), idx: -1})
		}
	}
	var sb strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		sb.WriteByte('/')
		if segs[i].idx >= 0 {
			sb.WriteString(strconv.Itoa(segs[i].idx))
		} else {
			writePointerToken(&sb, segs[i].key)
		}
	}
	return sb.String()
}

// Clone returns a deep copy of the subtree at n, allocated afresh: it is
// independent of any Parser's arena and of the original, and stays valid
// after the Parser that produced n parses its next document. The copy has
// no parent and keeps n's Key. Typing fields are copied; a shadow (see
// Shadow) in the subtree is redirected to the corresponding copy, one
// outside it is cleared.
func (n *Node) Clone() *Node {
	var c cloner
	c.count(n)
	c.nodes = make([]Node, c.nNodes)
	if c.nPtrs > 0 {
		c.ptrs = make([]*Node, c.nPtrs)
	}
	if c.nKeys > 0 {
		c.keys = make([]string, c.nKeys)
	}
	if c.nText > 0 {
		c.text = make([]byte, 0, c.nText)
	}
	if c.shadows {
		c.remap = make(map[*Node]*Node, c.nNodes)
	}
	root := c.clone(n, nil)
	for o, m := range c.remap {
		if s := o.Shadow(); s != nil {
			if t := c.remap[s]; t != nil {
				m.SetShadow(t)
			}
		}
	}
	return root
}

type cloner struct {
	nNodes, nPtrs, nText, nKeys int
	shadows                     bool
	nodes                       []Node
	ptrs                        []*Node
	keys                        []string
	text                        []byte
	remap                       map[*Node]*Node
}

func (c *cloner) count(n *Node) {
	c.nNodes++
	c.nPtrs += n.Len()
	if n.key != nil {
		c.nKeys++
		c.nText += len(*n.key)
	}
	if n.Kind != Bool {
		c.nText += len(n.Value())
	}
	if n.Shadow() != nil {
		c.shadows = true
	}
	for _, ch := range n.Children() {
		c.count(ch)
	}
}

// str copies s into the text block and returns the copy. The bytes are
// never written again, so the string is immutable.
func (c *cloner) str(s string) string {
	if s == "" {
		return ""
	}
	k := len(c.text)
	c.text = append(c.text, s...)
	return unsafe.String(&c.text[k], len(s))
}

func (c *cloner) clone(n *Node, parent *Node) *Node {
	m := &c.nodes[0]
	c.nodes = c.nodes[1:]
	// Elems are shared and immutable: the copy points at the same one.
	*m = Node{Kind: n.Kind, Flags: n.Flags, Parent: parent, Elem: n.Elem}
	if n.key != nil {
		// The name's text may be a Parser's (see ReuseText and Borrow):
		// the copy gets its own.
		m.key = &c.keys[0]
		c.keys = c.keys[1:]
		*m.key = c.str(*n.key)
	}
	if n.Kind == Bool {
		m.setValue(boolText(n.Value() == "true"))
	} else if n.Kind != Object && n.Kind != Array {
		m.setValue(c.str(n.Value()))
	}
	if c.remap != nil {
		c.remap[n] = m
	}
	if k := n.Len(); k > 0 {
		kids := c.ptrs[:k:k]
		c.ptrs = c.ptrs[k:]
		m.SetChildren(kids)
		for i, ch := range n.Children() {
			kids[i] = c.clone(ch, m)
		}
	}
	return m
}

// FromAny builds a detached tree from a Go value made of nil, bool, string,
// float64, int, int64, json-like []any and map[string]any (members sorted
// by name) and *Node (cloned). It is meant for tests and small constant
// documents.
func FromAny(v any) (*Node, error) {
	switch x := v.(type) {
	case nil:
		return NewNull(), nil
	case bool:
		return NewBool(x), nil
	case string:
		return NewString(x), nil
	case int:
		return newScalar(Number, strconv.Itoa(x)), nil
	case int64:
		return newScalar(Number, strconv.FormatInt(x, 10)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errNumber
		}
		return newScalar(Number, strconv.FormatFloat(x, 'g', -1, 64)), nil
	case *Node:
		return x.Clone(), nil
	case []any:
		a := NewArray()
		for i, e := range x {
			c, err := FromAny(e)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			a.Append(c)
		}
		return a, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		o := NewObject()
		for _, k := range keys {
			c, err := FromAny(x[k])
			if err != nil {
				return nil, fmt.Errorf("member %q: %w", k, err)
			}
			o.Set(k, c)
		}
		return o, nil
	}
	return nil, fmt.Errorf("jsontree: cannot convert %T", v)
}

// Equal reports whether a and b hold the same JSON: the same kinds, the
// same scalar values (numbers compared by their literal text, so 1.0 and 1
// differ), objects with the same members in any order and arrays with
// equal items in the same order. Keys of a and b themselves, parents and
// typing fields are ignored.
func Equal(a, b *Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Kind != b.Kind || a.Len() != b.Len() {
		return false
	}
	switch a.Kind {
	case Array:
		bc := b.Children()
		for i, c := range a.Children() {
			if !Equal(c, bc[i]) {
				return false
			}
		}
		return true
	case Object:
		bc := b.Children()
		for i, c := range a.Children() {
			// Members are usually in the same order.
			d := bc[i]
			if d.Key() != c.Key() {
				d = b.Get(c.Key())
			}
			if d == nil || !Equal(c, d) {
				return false
			}
		}
		return true
	case Null:
		return true
	}
	return a.Value() == b.Value()
}
