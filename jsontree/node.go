// Package jsontree is a mutable JSON tree that keeps the order of object
// members and the exact text of numbers, so that a FHIR resource can be read,
// changed in place and written back without reformatting what was not
// touched.
//
// It imports only the standard library. FHIR typing (element names and
// types) is stored on the nodes by package typed, which knows the FHIR model.
//
// # Reading
//
// A Parser reads one document at a time into an arena that it reuses for
// the next document, so that a worker parsing resource after resource
// allocates almost nothing. The trees it returns are valid only until its
// next Parse; Clone copies a tree out of the arena. The function Parse
// allocates a fresh, independent tree instead. With Parser.Borrow set (and
// in ParseString) the tree's values are slices of the input rather than of
// a copy of it, so that a large document is not held twice; member names
// are the parser's own copies (see Parser).
//
// Parsing is strict RFC 8259, with these choices:
//   - Invalid UTF-8 is an error, not replaced (RFC 8259 requires UTF-8 and
//     a de-identification tool should not silently alter text).
//   - An escaped UTF-16 surrogate that is not half of a valid pair decodes
//     to U+FFFD, as in encoding/json.
//   - An object with two members of the same name is an error, since FHIR
//     forbids it.
//   - A UTF-8 byte order mark at the start is skipped.
//   - Nesting is limited to MaxDepth; the parser is iterative, so depth never
//     costs stack.
//
// Errors are *SyntaxError values giving the byte offset, line, column and
// JSON pointer of the problem. They never contain a string or number from
// the document, which may be protected health information; member names,
// which are schema, may appear in the pointer.
//
// # Writing
//
// AppendJSON writes compact JSON and AppendIndent indented JSON. Numbers
// keep their literal text, members their order, and strings are escaped
// minimally: only '"', '\' and control characters; "<", ">", "&", "/",
// U+2028 and U+2029 are written as they are. A compact document that uses
// this escaping, as FHIR servers' and Synthea's output does, is reproduced
// byte for byte.
//
// # Editing
//
// Set, Append, InsertAt, Remove, Detach and ReplaceWith change the shape of
// a tree and keep it consistent: every child's Parent is its container,
// every member's Key is its name, and no object has two members with the
// same name. A node inserted while it has a parent is moved out of it
// first. SetString, SetNumber, SetBool and SetNull change a node's value in
// place. Get, Index, Path and Walk navigate; Clone copies; Equal compares.
// None of them changes typing fields (Elem, the shadow and the typing
// flags): a program that edits a typed tree types what it inserts. The
// editing methods panic on programming errors only: a node of the wrong
// kind, a nil node, an index out of range, or an edit that would make a
// node its own descendant.
//
// # Memory
//
// A parsed document costs one Node per value, which for FHIR made of many
// small elements is one per 14 to 24 bytes of input, so the size of a node
// is most of a tree's memory. A Node is 40 bytes, plus the 8-byte pointer
// to it in its container's list of children. A scalar has no children and
// a container no Value, so one pointer and one 32-bit count hold either
// the children (read through Children, replaced through SetChildren) or
// the Value's text. A member name is one pointer to a string: a Parser
// keeps a bounded table of the names it has read, so that the members of
// every document share one copy of each FHIR name (resourceType, id,
// system, value...). The rarely set shadow of package typed (Shadow,
// SetShadow) takes no field of its own: an object or array keeps it in a
// slot in front of its children's array, a scalar in a small record that
// holds its Value too. A 64 MB Patient made of tens of thousands of small
// telecom, identifier and address entries (4.5 million values) makes a tree
// of about 3.3 times its size; go run ./bench/memresource measures it.
package jsontree

import (
	"math"
	"math/bits"
	"unsafe"
)

// Kind is the JSON kind of a node.
type Kind uint8

// The kinds of node. Invalid is the zero Kind; the parser never produces it.
const (
	Invalid Kind = iota
	Null
	Bool
	Number
	String
	Object
	Array
)

var kindNames = [...]string{"invalid", "null", "boolean", "number", "string", "object", "array"}

// String returns the kind's JSON name: "null", "boolean", "number",
// "string", "object", "array" or "invalid".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// Node is one JSON value.
//
// Object members and array items are its children (Children), in document
// order; a member carries its member name (Key). Scalars keep their text
// (Value): the exact literal of a Number ("1.50" stays "1.50"), the decoded
// text of a String, "true" or "false" for a Bool, "" for a Null.
//
// Nodes made by a Parser live in its arena and are valid only until its
// next Parse (see Parser); Clone copies a tree out of it. Programs edit a
// tree through the methods (Set, Append, Remove, ReplaceWith, SetString...),
// which keep Parent, Key and the children consistent; SetValue changes a
// scalar's text in place (writing escapes strings as needed), but a
// Number's Value must remain a valid literal (see SetNumber).
//
// A node is kept small, since a parsed document has one per few bytes of
// input: a scalar has no children and a container no Value, so one pointer
// and a 32-bit count hold either the children (see Children and
// SetChildren) or the Value's text, and the rarely set Shadow lives, for a
// container, in a slot in front of its children's array and, for a scalar,
// in a small record that holds its Value too.
type Node struct {
	// Kind is the node's JSON kind. A program should not change it
	// directly but through the Set methods, except on a zero Node it is
	// building (see SetChildren).
	Kind Kind
	// kcap is the capacity class of the children's array (see capClass),
	// which is 0 exactly when ptr and n do not hold children, and where
	// the node's shadow is: in a side record that also holds the Value
	// (kShadowPtr, scalars) or in the slot in front of the children's
	// array (kShadowSlot).
	kcap uint8
	// Flags holds typing and bookkeeping bits; see the Flag constants.
	Flags Flags
	// n is the number of children of an object or array, or the length in
	// bytes of a scalar's Value.
	n uint32
	// key points at the member name of this node in its parent object
	// (see Key), nil for "". The string is never changed: nodes share the
	// names of a Parser's table and of staticKeys (see keys.go).
	key *string
	// ptr points at the first of the n children (the members of an Object
	// or the items of an Array), or at the first byte of a scalar's Value,
	// or, with kShadowPtr, at the scalar's shadowed record.
	ptr unsafe.Pointer
	// Parent is the enclosing object or array; nil for the root.
	Parent *Node

	// The fields below are set by a typing pass (package typed) and are empty
	// before it. An Array node is only a container: its items carry the
	// element's Name and Type.

	// Elem is the node's FHIR typing, its element name and type (see Name
	// and Type); nil for an untyped node. Typing shares one Elem between all
	// the nodes of the same element and type, so that a node spends one
	// pointer on it rather than two strings; an Elem is never changed once
	// set on a node. The node's other typing field is its shadow (Shadow
	// and SetShadow).
	Elem *Elem
}

// init gives n, a node of a parser's arena that may hold a stale node,
// the content of a value just parsed: a scalar's Value text (ptr and
// length), its member name and parent, and no typing. Its fields are
// written one by one, which the compiler does without building the node
// in a temporary first.
func (n *Node) init(k Kind, f Flags, key *string, ptr unsafe.Pointer, length uint32, parent *Node) {
	n.Kind, n.kcap, n.Flags, n.n = k, 0, f, length
	n.key, n.ptr, n.Parent, n.Elem = key, ptr, parent, nil
}

// shadowed is the record a scalar with a shadow points at: its Value and
// its shadow, which cannot both have the node's one pointer.
type shadowed struct {
	value  string
	shadow *Node
}

// Bits of Node.kcap.
const (
	kcapClass   = 0x3f // capacity class of the children's array
	kShadowPtr  = 0x40 // ptr points at a shadowed record (a scalar)
	kShadowSlot = 0x80 // the shadow is in the slot in front of ptr
)

const ptrSize = unsafe.Sizeof(unsafe.Pointer(nil))

// Key returns the member name of n in its parent object; "" for array
// items and for the root of a parsed document. A member removed from its
// object keeps its Key (see Remove), and so does a Clone.
func (n *Node) Key() string {
	if n.key == nil {
		return ""
	}
	return *n.key
}

// SetKey sets the name Key returns, without checking n's parent: it is
// for nodes being built or inserted by hand, as with SetChildren (Set,
// InsertAt and ReplaceWith name the members they insert). It clears
// FlagRawKey unless the name stays the same.
func (n *Node) SetKey(key string) {
	if n.Key() != key {
		n.key = keyPtr(key)
		n.Flags &^= FlagRawKey
	}
}

// SetPlainKey is SetKey for a key that the caller knows to be plain
// (IsPlain): AppendJSON then copies it without scanning it (FlagRawKey).
func (n *Node) SetPlainKey(key string) {
	n.SetKey(key)
	n.Flags |= FlagRawKey
}

// Value returns the text of a scalar: the exact literal of a Number ("1.50"
// stays "1.50"), the decoded text of a String, "true" or "false" for a
// Bool, "" for a Null, an Object or an Array.
func (n *Node) Value() string {
	if n.kcap == 0 {
		// A scalar without shadow, or a container without children.
		return unsafe.String((*byte)(n.ptr), n.n)
	}
	if n.kcap&kShadowPtr != 0 {
		return (*shadowed)(n.ptr).value
	}
	return ""
}

// SetValue sets the text Value returns, keeping n's Kind and clearing
// FlagRaw and FlagEscaped (the text is escaped as needed when written).
// The Value of a String may be any text; a Number's must remain a valid
// literal (see SetNumber), a Bool's "true" or "false" and a Null's "". The
// Set methods (SetString, SetNumber...) also set the kind and FlagSet. It
// panics on an Object or Array, which have no Value, unless v is "", and
// for a text of 4 GiB or more.
func (n *Node) SetValue(v string) {
	if n.Kind == Object || n.Kind == Array || n.kcap&kcapClass != 0 {
		if v != "" {
			panic("jsontree: SetValue on a " + n.Kind.String())
		}
		return
	}
	n.setValue(v)
	n.Flags &^= FlagRaw | FlagEscaped
}

// SetPlainValue is SetValue for a value that the caller knows to be plain
// (IsPlain): AppendJSON then copies it without scanning it (FlagRaw).
func (n *Node) SetPlainValue(v string) {
	n.SetValue(v)
	if n.Kind == String {
		n.Flags |= FlagRaw
	}
}

// setValue stores v as the value of scalar n (kcap class 0).
func (n *Node) setValue(v string) {
	if uint64(len(v)) > math.MaxUint32 {
		panic("jsontree: value longer than 4 GiB")
	}
	if n.kcap&kShadowPtr != 0 {
		// The record may be shared with a node n was copied from.
		n.ptr = unsafe.Pointer(&shadowed{v, (*shadowed)(n.ptr).shadow})
		return
	}
	n.n = uint32(len(v))
	if len(v) == 0 {
		n.ptr = nil
		return
	}
	n.ptr = unsafe.Pointer(unsafe.StringData(v))
}

// Shadow returns, for a primitive value, its "_name" object (or the
// matching item of the "_name" array) holding the element's id and
// extensions, and for such a shadow the value it belongs to; nil if there
// is none. Typing (package typed) sets it; see SetShadow.
func (n *Node) Shadow() *Node {
	switch {
	case n.kcap&kShadowPtr != 0:
		return (*shadowed)(n.ptr).shadow
	case n.kcap&kShadowSlot != 0:
		return *(**Node)(unsafe.Add(n.ptr, -int(ptrSize)))
	}
	return nil
}

// SetShadow sets the node that Shadow returns (nil for none). No method of
// this package sets or reads it, but Clone copies it (see Clone). Setting
// it on a scalar costs a small record holding it and the value; on an
// object or array without one yet it copies the children's list once.
func (n *Node) SetShadow(s *Node) {
	if s == nil && n.kcap&(kShadowPtr|kShadowSlot) == 0 {
		return // typing clears the shadow of every node it types
	}
	n.setShadow(s)
}

func (n *Node) setShadow(s *Node) {
	switch {
	case n.kcap&kShadowPtr != 0:
		r := (*shadowed)(n.ptr)
		switch {
		case s == r.shadow:
			// Typing sets the same shadow again when it retypes a tree.
		case s == nil:
			n.kcap = 0
			n.setValue(r.value)
		default:
			// A new record: n may be a copy of a node sharing this one.
			n.ptr = unsafe.Pointer(&shadowed{r.value, s})
		}
	case n.kcap&kShadowSlot != 0:
		*(**Node)(unsafe.Add(n.ptr, -int(ptrSize))) = s
	case s == nil:
	case n.kcap&kcapClass == 0 && n.Kind != Object && n.Kind != Array:
		// A scalar: its value and shadow go into a record.
		n.ptr = unsafe.Pointer(&shadowed{n.Value(), s})
		n.kcap = kShadowPtr
	default:
		n.setKids(n.Children(), int(n.Len()), s)
	}
}

// setKids makes the first k items of a the children of n, in a new array
// with room for the shadow s in front when s is not nil, and otherwise in a
// itself.
func (n *Node) setKids(a []*Node, k int, s *Node) {
	if k > math.MaxUint32 {
		panic("jsontree: too many children")
	}
	if s != nil {
		c := max(cap(a), 1)
		b := make([]*Node, 1+c)
		b[0] = s
		copy(b[1:], a[:k])
		n.ptr, n.n = unsafe.Pointer(&b[1]), uint32(k)
		n.kcap = capClass(c) | kShadowSlot
		return
	}
	n.n = uint32(k)
	if cap(a) == 0 {
		n.ptr, n.kcap = nil, 0
		return
	}
	n.ptr = unsafe.Pointer(unsafe.SliceData(a))
	n.kcap = capClass(cap(a))
}

// capClass returns the capacity class of an array of c pointers: c itself
// below 32, and above it 32+log2(c)-5 rounded down, so that the capacity a
// class stands for (classCap) is never more than the array's.
func capClass(c int) uint8 {
	if c < 32 {
		return uint8(c)
	}
	return uint8(min(32+bits.Len(uint(c))-1-5, kcapClass))
}

// classCap is the capacity class k stands for (see capClass).
func classCap(k uint8) int {
	k &= kcapClass
	if k < 32 {
		return int(k)
	}
	return 1 << (k - 32 + 5)
}

// Children returns the members of an Object or the items of an Array, in
// document order; empty for a scalar or an empty container. The slice shares
// the node's memory: it must not be kept across an edit of n's children,
// and changing its items changes n's children without updating their
// Parent or Key (the editing methods do both). Its capacity is its length,
// so appending to it copies. To give n another list, use SetChildren.
func (n *Node) Children() []*Node {
	if n.kcap&kcapClass == 0 {
		return nil // a scalar, whose ptr and n hold its Value, or no children
	}
	return unsafe.Slice((**Node)(n.ptr), n.n)
}

// child returns child i of a container, i < n.n.
func (n *Node) child(i int) *Node {
	return *(**Node)(unsafe.Add(n.ptr, uintptr(i)*ptrSize))
}

// SetChildren makes s the children of n, as it is: it does not set the
// Parent or Key of its items, nor detach the previous children. It is for
// programs that build a tree by hand (all the items' Parent must be n, and
// in an object all Keys distinct); the editing methods keep a tree
// consistent by themselves. The spare capacity of s may be used by later
// appends (Append, Set), which write into s's array past its length. n
// keeps its shadow (see Shadow); with one, s is copied.
func (n *Node) SetChildren(s []*Node) {
	n.setKids(s, len(s), n.Shadow())
}

// capacity returns the number of children n's array has room for: at
// least its length, and never more than the array holds.
func (n *Node) capacity() int {
	if n.kcap&kcapClass == 0 {
		return 0
	}
	return max(int(n.n), classCap(n.kcap))
}

// appendChild adds v after n's last child (without setting its Parent or
// Key), growing the array as append would.
func (n *Node) appendChild(v *Node) {
	k := n.Len()
	if k < n.capacity() {
		*(**Node)(unsafe.Add(n.ptr, uintptr(k)*ptrSize)) = v
		n.n++
		return
	}
	// Grow as append would, but to a capacity that capClass keeps exactly.
	c := max(4, 2*k)
	if c > 32 {
		c = 1 << bits.Len(uint(c-1))
	}
	a := make([]*Node, k+1, c)
	copy(a, n.Children())
	a[k] = v
	n.SetChildren(a)
}

// Elem is the FHIR typing of a node: its element name and type. Elems are
// shared and must not be changed once a node points at one.
type Elem struct {
	// Name is the FHIR element name: "birthDate"; "value" for the choice
	// member "valueQuantity"; "contained" for a contained resource.
	Name string
	// Type is the FHIR type: a primitive ("date", "string", "id"), a complex
	// type ("HumanName"), a resource type ("Patient") or a backbone element's
	// path ("Patient.contact").
	Type string
}

// Name returns the FHIR element name of n (see Elem), or "" if n is untyped.
func (n *Node) Name() string {
	if e := n.Elem; e != nil {
		return e.Name
	}
	return ""
}

// Type returns the FHIR type of n (see Elem), or "" if n is untyped.
func (n *Node) Type() string {
	if e := n.Elem; e != nil {
		return e.Type
	}
	return ""
}

// Flags are bits stored on a node.
type Flags uint16

const (
	// FlagShadow marks a "_name" member (or an item of a "_name" array) that
	// belongs to a primitive element. If the primitive has a value, the value
	// node points at the shadow through Shadow; if it has none, the shadow
	// object itself is typed as the element (Name and Type set).
	FlagShadow Flags = 1 << iota
	// FlagResource marks a node whose Type is a resource type: the root, a
	// contained resource, a Bundle entry's resource, a Parameters resource.
	FlagResource
	// FlagChoice marks a member whose key is a choice element's name plus a
	// type suffix ("valueQuantity" for "value[x]").
	FlagChoice
	// FlagEscaped marks a String whose JSON text contained escape sequences.
	// It is informational: the parser sets it and the Set methods clear it,
	// but writing never depends on it, since strings are always escaped as
	// needed (see AppendJSON).
	FlagEscaped
	// FlagMark is free for a program's own bookkeeping during one pass over
	// a tree, where a set of nodes would cost a map (package anonymize marks
	// the elements a rule has processed, and clears the marks before it
	// returns). The parser leaves it clear; nothing in this package reads
	// it, and the Set methods and Clone keep it.
	FlagMark
	// FlagSet marks a scalar whose value a Set method (SetString,
	// SetNumber, SetBool, SetNull) gave it after parsing, so that a
	// program's edits can be told from the input's values (the leak audit
	// reads it: a date that de-identification rewrote is not the input's
	// date). The parser leaves it clear; Clone keeps it.
	FlagSet
	// FlagRaw marks a String whose Value is the text of the input between
	// its quotes (no escape sequence): it holds no character that writing
	// escapes, so AppendJSON copies it without scanning it. The parser sets
	// it, as do SetPlainString and SetPlainValue for a value the caller
	// vouches for, and the other Set methods clear it; a program that
	// assigns Value of such a node directly must clear it too.
	FlagRaw
	// FlagRawKey marks a member whose Key is the text of the input between
	// its quotes, copied without scanning like FlagRaw. The parser and
	// SetPlainKey set it; the other methods that give a node another Key
	// clear it, and a program that assigns Key of such a node directly must
	// clear it too.
	FlagRawKey
)
