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
// in ParseString) the tree's strings are slices of the input rather than of
// a copy of it, so that a large document is not held twice.
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
// None of them changes typing fields (Elem, Shadow and the typing flags):
// a program that edits a typed tree types what it inserts. The
// editing methods panic on programming errors only: a node of the wrong
// kind, a nil node, an index out of range, or an edit that would make a
// node its own descendant.
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
// order; a member carries its member name in Key. Scalars keep their text
// in Value: the exact literal of a Number ("1.50" stays "1.50"), the
// decoded text of a String, "true" or "false" for a Bool, "" for a Null.
//
// Nodes made by a Parser live in its arena and are valid only until its
// next Parse (see Parser); Clone copies a tree out of it. Programs edit a
// tree through the methods (Set, Append, Remove, ReplaceWith, SetString...),
// which keep Parent, Key and the children consistent; assigning Value of a
// String directly is safe too if FlagRaw is cleared with it, as writing
// escapes strings as needed, but a Number's Value must remain a valid
// literal (see SetNumber).
//
// A node is kept small, since a parsed document has one per few bytes of
// input: its children are a pointer and a 32-bit count rather than a slice
// header (see Children and SetChildren).
type Node struct {
	// Kind is the node's JSON kind.
	Kind Kind
	// kcap is the capacity class of the children's array: the array has
	// room for at least 1<<(kcap-1) pointers when kcap > 0 (see capacity).
	kcap uint8
	// Flags holds typing and bookkeeping bits; see the Flag constants.
	Flags Flags
	// nkids is the number of children.
	nkids uint32
	// Key is the member name of this node in its parent object; "" for array
	// items and for the root of a parsed document. A member removed from its
	// object keeps its Key (see Remove), and so does a Clone.
	Key string
	// Value is the text of a scalar (see Node).
	Value string
	// kids points at the first of the nkids children, the members of an
	// Object or the items of an Array.
	kids **Node
	// Parent is the enclosing object or array; nil for the root.
	Parent *Node

	// The fields below are set by a typing pass (package typed) and are empty
	// before it. An Array node is only a container: its items carry the
	// element's Name and Type.

	// Elem is the node's FHIR typing, its element name and type (see Name
	// and Type); nil for an untyped node. Typing shares one Elem between all
	// the nodes of the same element and type, so that a node spends one
	// pointer on it rather than two strings; an Elem is never changed once
	// set on a node.
	Elem *Elem
	// Shadow is, for a primitive value, its "_name" object (or the matching
	// item of the "_name" array) holding the element's id and extensions.
	Shadow *Node
}

// Children returns the members of an Object or the items of an Array, in
// document order; nil for a scalar or an empty container. The slice shares
// the node's memory: it must not be kept across an edit of n's children,
// and changing its items changes n's children without updating their
// Parent or Key (the editing methods do both). Its capacity is its length,
// so appending to it copies. To give n another list, use SetChildren.
func (n *Node) Children() []*Node {
	return unsafe.Slice(n.kids, n.nkids)
}

// SetChildren makes s the children of n, as it is: it does not set the
// Parent or Key of its items, nor detach the previous children. It is for
// programs that build a tree by hand (all the items' Parent must be n, and
// in an object all Keys distinct); the editing methods keep a tree
// consistent by themselves. The spare capacity of s may be used by later
// appends (Append, Set), which write into s's array past its length.
func (n *Node) SetChildren(s []*Node) {
	if len(s) > math.MaxUint32 {
		panic("jsontree: too many children")
	}
	n.nkids = uint32(len(s))
	if cap(s) == 0 {
		n.kids, n.kcap = nil, 0
		return
	}
	n.kids = unsafe.SliceData(s)
	n.kcap = uint8(bits.Len(uint(cap(s))))
}

// capacity returns the number of children n's array has room for: at
// least its length, and never more than the array holds.
func (n *Node) capacity() int {
	c := int(n.nkids)
	if n.kcap > 0 {
		c = max(c, 1<<(n.kcap-1))
	}
	return c
}

// appendChild adds v after n's last child (without setting its Parent or
// Key), growing the array as append would.
func (n *Node) appendChild(v *Node) {
	k := int(n.nkids)
	if k < n.capacity() {
		unsafe.Slice(n.kids, k+1)[k] = v
		n.nkids++
		return
	}
	s := append(n.Children(), v)
	n.SetChildren(s)
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
	// it and the Set methods clear it; a program that assigns Value of such
	// a node directly must clear it too.
	FlagRaw
	// FlagRawKey marks a member whose Key is the text of the input between
	// its quotes, copied without scanning like FlagRaw. The parser sets it;
	// the methods that give a node another Key clear it, and a program that
	// assigns Key of such a node directly must clear it too.
	FlagRawKey
)
