// Package typed gives a parsed FHIR resource its types: a typing pass
// (Annotate) stores on every element node of a jsontree document its FHIR
// element name and type, and the navigation functions walk the result the way
// FHIRPath sees it.
//
// # The element view
//
// FHIR JSON splits a primitive element in two members: "birthDate" holds the
// value and "_birthDate" its id and extensions. FHIRPath sees one element with
// a value and children. After Annotate:
//
//   - every element is a node whose Type is set; array nodes are containers
//     (Name set, Type empty) and their items are the elements;
//   - a primitive with a value is its scalar node, and its Shadow is its
//     "_name" object (or the matching item of the "_name" array), if any;
//   - a primitive without a value (absent or null) but with a "_name" object
//     is that object itself: Type and Name set, FlagShadow set;
//   - shadow nodes that belong to a value carry FlagShadow, an empty Type,
//     and a Shadow pointing back at their value node (for a "_name" array
//     member, at the value array member).
//
// Children, AllChildren and Walk hide these details: they yield elements in
// document order, merging values and shadows.
package typed

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"fhirdeid/fhir/model"
	"fhirdeid/jsontree"
)

// Error is a typing error. It names where the problem is (the resource and
// the element path) but never contains a value from the resource.
type Error struct {
	// ResourceType and ID identify the root resource, when known.
	ResourceType string
	ID           string
	// Path is the element's location, "Patient.name[0].nmae".
	Path string
	// Msg says what is wrong.
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("typing ")
	if e.ResourceType != "" {
		b.WriteString(e.ResourceType)
		if e.ID != "" {
			b.WriteByte('/')
			b.WriteString(e.ID)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxIDLen bounds the resource id quoted in errors; a FHIR id has at most 64
// characters, so anything longer is not an id and is left out.
const maxIDLen = 64

// Annotate types the resource rooted at root with the model m. The root must
// be an object whose "resourceType" names a concrete resource type of m.
// Every element below it, nested resources included, gets its Name and Type.
// An element that the type does not define, a JSON kind that does not fit
// the element's type, or an array for a non-repeating element is an *Error.
//
// Annotate may be called again on the same tree (after edits): it resets what
// it sets.
func Annotate(root *jsontree.Node, m *model.Model) error {
	return AnnotateWith(root, m, Options{})
}

// Options are the options of AnnotateWith.
type Options struct {
	// WrapRepeating makes a repeating element given as a single value
	// (and its "_name" object) an array of one item, as readers that bind
	// FHIR JSON to the model do (the Firely SDK among them), instead of
	// leaving it as it is. It does not apply inside the "_name" objects of
	// primitives. The wrapping arrays are new nodes; they are typed like
	// the arrays of the document.
	WrapRepeating bool
	// TrimSpace trims the leading and trailing white space
	// (unicode.IsSpace) of every string value, as the Firely SDK's parser
	// does (.NET's String.Trim).
	TrimSpace bool
	// Elements, when non-nil, receives the resource's elements as typing
	// reaches them, so that a caller that needs them all does not walk the
	// tree again.
	Elements *Elements
}

// Elements lists the elements of a resource, filled by AnnotateWith.
type Elements struct {
	// Nodes are the elements below the root in pre-order, arrays
	// flattened, when Complete: the order in which Walk visits them, with
	// each nested resource (which Walk does not enter) followed by its own
	// elements. AnnotateWith reuses its storage.
	Nodes []*jsontree.Node
	// Nested are the nested resources among Nodes, in order.
	Nested []NestedSpan
	// Complete reports that Nodes lists every element: it is false when
	// the resource holds a "_name" member (whose elements Walk reaches in
	// an order typing does not follow), or when typing failed.
	Complete bool
	// Empty reports, when Complete, that the resource holds an empty
	// object or array (it holds no null: a null is typed only with a
	// "_name" member).
	Empty bool
}

// NestedSpan locates a nested resource in Elements.Nodes: it is
// Nodes[Index], and its elements are Nodes[Index+1 : End].
type NestedSpan struct {
	Index, End int
}

// AnnotateWith is Annotate with options.
func AnnotateWith(root *jsontree.Node, m *model.Model, opts Options) error {
	a := annotator{m: m, info: infoOf(m), wrap: opts.WrapRepeating, trim: opts.TrimSpace, els: opts.Elements}
	if a.els != nil {
		clear(a.els.Nodes)
		a.els.Nodes, a.els.Nested, a.els.Complete, a.els.Empty = a.els.Nodes[:0], a.els.Nested[:0], false, false
	}
	if root == nil || root.Kind != jsontree.Object {
		return &Error{Msg: "a resource must be a JSON object"}
	}
	rt := root.Get("resourceType")
	if rt != nil && rt.Kind == jsontree.String {
		a.rootType = rt.Value()
	}
	if id := root.Get("id"); id != nil && id.Kind == jsontree.String {
		// Checked only when an error quotes it (see errorf).
		a.rootID = id.Value()
	}
	if a.els == nil {
		return a.resource(root, "")
	}
	a.els.Complete = true
	err := a.resource(root, "")
	if err != nil {
		a.els.Complete = false
	}
	if !a.els.Complete {
		clear(a.els.Nodes)
		a.els.Nodes, a.els.Nested = a.els.Nodes[:0], a.els.Nested[:0]
	}
	return err
}

// validID reports whether s has the syntax of a FHIR id, so that only real ids
// are quoted in errors.
func validID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

type annotator struct {
	m        *model.Model
	info     *modelInfo
	wrap     bool
	trim     bool
	rootType string
	rootID   string
	// els, if not nil, lists the elements while els.Complete.
	els *Elements
	// nullItems counts the null values item met: an object whose members
	// met none has no null for nulls to check.
	nullItems int
}

// element adds n to the element list.
func (a *annotator) element(n *jsontree.Node) {
	if a.els != nil && a.els.Complete {
		a.els.Nodes = append(a.els.Nodes, n)
	}
}

// incomplete ends the element list: the resource's elements are not listed
// in Walk's order.
func (a *annotator) incomplete() {
	if a.els != nil {
		a.els.Complete = false
	}
}

func (a *annotator) errorf(n *jsontree.Node, format string, args ...any) error {
	path := ""
	if n.Parent != nil {
		path = pathOf(n)
	}
	// The type and id are copied: the tree's strings may be reused once the
	// error is returned (jsontree.Parser.ReuseText).
	id := ""
	if len(a.rootID) <= maxIDLen && validID(a.rootID) {
		id = strings.Clone(a.rootID)
	}
	return &Error{ResourceType: strings.Clone(a.rootType), ID: id, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// resource types an object that holds a resource; name is its element name
// ("" for the root, "contained", "resource").
func (a *annotator) resource(n *jsontree.Node, name string) error {
	if n.Kind != jsontree.Object {
		return a.errorf(n, "a resource must be a JSON object, not %s", n.Kind)
	}
	rt := n.Get("resourceType")
	if rt == nil {
		return a.errorf(n, "resource has no resourceType")
	}
	if rt.Kind != jsontree.String {
		return a.errorf(n, "resourceType must be a string")
	}
	t := a.m.Type(rt.Value())
	if t == nil || t.Kind != model.Resource || t.Abstract {
		// The resource type is schema, not data, but an unknown one could be
		// anything: quote it only when it looks like a type name.
		if IsTypeName(rt.Value()) {
			return a.errorf(n, "unknown resource type %q in FHIR %s", rt.Value(), a.m.Version)
		}
		return a.errorf(n, "invalid resourceType")
	}
	n.Flags |= jsontree.FlagResource
	ti := a.info.types[t]
	e := ti.named[name]
	if e == nil {
		// Not an element name that holds resources in the model (the
		// table has them all): a record of its own.
		e = &jsontree.Elem{Name: name, Type: t.Name}
	}
	return a.object(n, t, ti, e)
}

// IsTypeName reports whether s has the shape of a FHIR type name (a capital
// letter, then letters and digits, at most 64 bytes), so that a resourceType
// read from data can be quoted in an error without quoting data.
func IsTypeName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// object types the members of an object of type t (whose table is ti) and
// the object itself, as element e.
func (a *annotator) object(n *jsontree.Node, t *model.Type, ti *typeInfo, e *jsontree.Elem) error {
	n.Elem = e
	if a.els != nil && n.Len() == 0 {
		a.els.Empty = true
	}
	n.SetShadow(nil)
	// FlagChoice of n was set by the caller (the member loop of n's
	// parent), which also cleared n's other flags.
	n.Flags &^= jsontree.FlagShadow
	shadows, nulls := false, a.nullItems
	for _, c := range n.Children() {
		c.Elem = nil
		c.SetShadow(nil)
		c.Flags &^= jsontree.FlagShadow | jsontree.FlagChoice | jsontree.FlagResource
		key := c.Key()
		if key == "resourceType" && t.Kind == model.Resource {
			continue
		}
		if strings.HasPrefix(key, "_") {
			shadows = true
			continue
		}
		pr := ti.lookup(key)
		if pr == nil {
			return a.unknown(c, t, key)
		}
		el := pr.el
		if a.wrap && el.Repeats && c.Kind != jsontree.Array && t.Kind != model.Primitive {
			c = wrapInArray(c)
		}
		c.Elem = pr.name
		if el.Choice {
			c.Flags |= jsontree.FlagChoice
		}
		if err := a.member(c, pr); err != nil {
			return err
		}
	}
	if shadows {
		a.incomplete()
		if err := a.shadows(n, t, ti); err != nil {
			return err
		}
	}
	if !shadows && a.nullItems == nulls {
		return nil // no null among the members (nor below them)
	}
	return a.nulls(n)
}

// nulls checks that every null value of n's members stands for a primitive
// whose "_name" shadow holds its extensions.
func (a *annotator) nulls(n *jsontree.Node) error {
	for _, c := range n.Children() {
		if c.Kind == jsontree.Null && c.Name() != "" && c.Shadow() == nil {
			return a.errorf(c, "element %s is null", c.Name())
		}
		if c.Kind == jsontree.Array && c.Name() != "" && c.Flags&jsontree.FlagShadow == 0 {
			for i, it := range c.Children() {
				if it.Kind != jsontree.Null {
					continue
				}
				if c.Shadow() == nil || i >= len(c.Shadow().Children()) || c.Shadow().Children()[i].Kind != jsontree.Object {
					return a.errorf(it, "element %s is null", c.Name())
				}
			}
		}
	}
	return nil
}

func (a *annotator) unknown(c *jsontree.Node, t *model.Type, key string) error {
	if !validKey(key) {
		return a.errorf(c, "invalid member name")
	}
	return a.errorf(c, "unknown element %q on %s", key, t.Name)
}

// validKey reports whether key looks like a FHIR element name, so that only
// such names are quoted in errors.
func validKey(key string) bool {
	if key == "" || len(key) > 64 {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// member types the value of one member: an array of items or a single item.
func (a *annotator) member(c *jsontree.Node, pr *prop) error {
	if c.Kind != jsontree.Array {
		return a.item(c, pr)
	}
	if !pr.el.Repeats {
		return a.errorf(c, "element %s does not repeat but has an array", pr.el.Name)
	}
	if a.els != nil && c.Len() == 0 {
		a.els.Empty = true
	}
	for _, it := range c.Children() {
		it.Elem = nil
		it.SetShadow(nil)
		it.Flags &^= jsontree.FlagShadow | jsontree.FlagChoice | jsontree.FlagResource
		if err := a.item(it, pr); err != nil {
			return err
		}
	}
	return nil
}

// item types one value of element pr.el with type pr.typ.
func (a *annotator) item(n *jsontree.Node, pr *prop) error {
	el, typ := pr.el, pr.typ
	if n.Kind == jsontree.Null {
		// A null is allowed where a "_name" shadow holds the element; the
		// shadow pass checks that (nulls). A null elsewhere is kept
		// untyped: it is not an element.
		a.nullItems++
		return nil
	}
	if isPrimitive(typ) {
		if !fits(n.Kind, typ) {
			return a.errorf(n, "element %s of type %s cannot be a JSON %s", el.Name, typ, n.Kind)
		}
		n.Elem = pr.elem
		if a.trim && n.Kind == jsontree.String {
			trimSpace(n)
		}
		a.element(n)
		return nil
	}
	t := pr.t
	if typ == "Resource" || t != nil && t.Kind == model.Resource {
		if a.els == nil || !a.els.Complete {
			return a.resource(n, el.Name)
		}
		k := len(a.els.Nested)
		a.els.Nested = append(a.els.Nested, NestedSpan{Index: len(a.els.Nodes)})
		a.element(n)
		err := a.resource(n, el.Name)
		a.els.Nested[k].End = len(a.els.Nodes)
		return err
	}
	if t == nil {
		return a.errorf(n, "element %s has type %s, which the model lacks", el.Name, typ)
	}
	if n.Kind != jsontree.Object {
		return a.errorf(n, "element %s of type %s must be a JSON object, not %s", el.Name, typ, n.Kind)
	}
	a.element(n)
	return a.object(n, t, pr.ti, pr.elem)
}

// shadows pairs each "_name" member of n (of type t, whose table is ti)
// with its value member and types it.
func (a *annotator) shadows(n *jsontree.Node, t *model.Type, ti *typeInfo) error {
	for _, s := range n.Children() {
		if !strings.HasPrefix(s.Key(), "_") {
			continue
		}
		key := s.Key()[1:]
		pr := ti.lookup(key)
		if pr == nil {
			return a.unknown(s, t, s.Key())
		}
		el, typ := pr.el, pr.typ
		if !isPrimitive(typ) {
			return a.errorf(s, "%s is not a primitive element and cannot have %s", key, s.Key())
		}
		pt := pr.t
		if pt == nil {
			return a.errorf(s, "primitive type %s is missing from the model", typ)
		}
		if a.wrap && el.Repeats && s.Kind != jsontree.Array && t.Kind != model.Primitive {
			s = wrapInArray(s)
		}
		s.Flags |= jsontree.FlagShadow
		s.Elem = pr.name
		if el.Choice {
			s.Flags |= jsontree.FlagChoice
		}
		v := n.Get(key)
		if v != nil {
			v.SetShadow(s)
			s.SetShadow(v)
		}
		if s.Kind != jsontree.Array {
			if v != nil && v.Kind == jsontree.Array {
				return a.errorf(s, "%s must be an array like %s", s.Key(), key)
			}
			if err := a.shadowItem(s, v, pr, pt); err != nil {
				return err
			}
			continue
		}
		if !el.Repeats {
			return a.errorf(s, "element %s does not repeat but %s has an array", el.Name, s.Key())
		}
		var vs []*jsontree.Node
		if v != nil {
			if v.Kind != jsontree.Array {
				return a.errorf(s, "%s must be a single object like %s", s.Key(), key)
			}
			// FHIR wants both arrays to have the same length, but data in
			// the wild (the FHIRPath suite's own inputs among them) pads
			// neither: a missing item on either side counts as null.
			vs = v.Children()
		}
		for i, si := range s.Children() {
			si.Elem = nil
			si.SetShadow(nil)
			si.Flags &^= jsontree.FlagShadow | jsontree.FlagChoice | jsontree.FlagResource
			var vi *jsontree.Node
			if i < len(vs) {
				vi = vs[i]
			}
			if err := a.shadowItem(si, vi, pr, pt); err != nil {
				return err
			}
		}
	}
	return nil
}

// shadowItem types one shadow object s of a primitive element pr.el, whose
// type is pt, and whose value node is v (nil when absent).
func (a *annotator) shadowItem(s, v *jsontree.Node, pr *prop, pt *model.Type) error {
	el := pr.el
	if s.Kind == jsontree.Null {
		if v == nil || v.Kind == jsontree.Null {
			return a.errorf(s, "element %s has neither a value nor extensions", el.Name)
		}
		return nil
	}
	if s.Kind != jsontree.Object {
		return a.errorf(s, "%s must hold JSON objects, not %s", "_"+el.Name, s.Kind)
	}
	if err := a.object(s, pt, pr.ti, pr.ti.unnamed); err != nil {
		return err
	}
	s.Flags |= jsontree.FlagShadow
	if v == nil || v.Kind == jsontree.Null {
		// No value: the shadow is the element.
		s.Elem = pr.elem
		if v != nil {
			v.SetShadow(s)
			s.SetShadow(v)
		}
		return nil
	}
	s.Elem = nil
	v.SetShadow(s)
	s.SetShadow(v)
	return nil
}

// trimSpace trims the white space around the value of String n.
func trimSpace(n *jsontree.Node) {
	v := n.Value()
	if v == "" || !maybeSpace(v[0]) && !maybeSpace(v[len(v)-1]) {
		return
	}
	if t := strings.TrimFunc(v, unicode.IsSpace); len(t) != len(v) {
		n.SetString(t)
	}
}

// maybeSpace reports whether a string that starts or ends with the byte b
// may start or end with white space: b is ASCII white space or not ASCII.
func maybeSpace(b byte) bool {
	return b >= 0x80 || b == ' ' || b >= '\t' && b <= '\r'
}

// wrapInArray puts a new array in c's place in its object and c in the
// array, and returns the array.
func wrapInArray(c *jsontree.Node) *jsontree.Node {
	arr := jsontree.NewArray()
	c.ReplaceWith(arr)
	arr.Append(c)
	return arr
}

// isPrimitive reports whether a FHIR type name is a primitive type: they are
// the only ones that start with a lower-case letter.
func isPrimitive(typ string) bool { return typ != "" && typ[0] >= 'a' && typ[0] <= 'z' }

// fits reports whether a JSON kind can hold a value of primitive type typ.
func fits(k jsontree.Kind, typ string) bool {
	switch typ {
	case "boolean":
		return k == jsontree.Bool
	case "integer", "decimal", "positiveInt", "unsignedInt":
		return k == jsontree.Number
	}
	return k == jsontree.String
}

// IsPrimitive reports whether n is a primitive element (with or without a
// value).
func IsPrimitive(n *jsontree.Node) bool { return isPrimitive(n.Type()) }

// HasValue reports whether n is a primitive element with a value.
func HasValue(n *jsontree.Node) bool {
	return isPrimitive(n.Type()) && (n.Kind == jsontree.String || n.Kind == jsontree.Number || n.Kind == jsontree.Bool)
}

// IsResource reports whether n is a resource (the root, a contained
// resource, a Bundle entry's resource, ...).
func IsResource(n *jsontree.Node) bool { return n.Flags&jsontree.FlagResource != 0 }

// Resource returns the nearest resource that holds n (n itself if it is one),
// or nil.
func Resource(n *jsontree.Node) *jsontree.Node {
	for ; n != nil; n = n.Parent {
		if n.Flags&jsontree.FlagResource != 0 {
			return n
		}
	}
	return nil
}

// Parent returns the element that holds n, skipping array containers and
// shadow objects: the parent of an extension of a primitive is the primitive.
func Parent(n *jsontree.Node) *jsontree.Node {
	p := n.Parent
	for p != nil {
		switch {
		case p.Kind == jsontree.Array:
			p = p.Parent
		case p.Type() == "" && p.Flags&jsontree.FlagShadow != 0 && p.Shadow() != nil:
			// A shadow object that belongs to a value: the value is the
			// element. For an item of a "_name" array, Shadow of the item
			// points at the value item.
			return p.Shadow()
		case p.Type() == "":
			p = p.Parent
		default:
			return p
		}
	}
	return nil
}

// shadowOf returns the object holding the id and extensions of primitive
// element n, or nil.
func shadowOf(n *jsontree.Node) *jsontree.Node {
	if n.Kind == jsontree.Object {
		if n.Flags&jsontree.FlagShadow != 0 {
			return n
		}
		return nil
	}
	if s := n.Shadow(); s != nil && s.Kind == jsontree.Object {
		return s
	}
	return nil
}

// container returns the object whose members are n's children.
func container(n *jsontree.Node) *jsontree.Node {
	if isPrimitive(n.Type()) {
		return shadowOf(n)
	}
	if n.Kind == jsontree.Object {
		return n
	}
	return nil
}

// Children appends to dst the child elements of n called name (a FHIR
// element name: "value" finds "valueQuantity"), arrays flattened, values and
// shadows merged, and returns the extended slice.
func Children(n *jsontree.Node, name string, dst []*jsontree.Node) []*jsontree.Node {
	o := container(n)
	if o == nil {
		return dst
	}
	for _, c := range o.Children() {
		if c.Name() == name {
			dst = appendMember(c, dst)
		}
	}
	return dst
}

// ChildrenNamed is Children for several names at once: it appends to
// dsts[i] the child elements of n called names[i], in one pass over n's
// members.
func ChildrenNamed(n *jsontree.Node, names []string, dsts [][]*jsontree.Node) {
	o := container(n)
	if o == nil {
		return
	}
	for _, c := range o.Children() {
		name := c.Name()
		for i, want := range names {
			if name == want {
				dsts[i] = appendMember(c, dsts[i])
			}
		}
	}
}

// AllChildren appends to dst every child element of n in document order.
func AllChildren(n *jsontree.Node, dst []*jsontree.Node) []*jsontree.Node {
	o := container(n)
	if o == nil {
		return dst
	}
	kids := o.Children()
	for i, c := range kids {
		if c.Name() == "" {
			continue
		}
		if c.Kind == jsontree.Array && cap(dst)-len(dst) < itemCount(c) {
			// Room for this member and all the next ones at once: growing
			// for each long array in turn would leave the shorter copies
			// as garbage.
			dst = slices.Grow(dst, elementBound(kids[i:]))
		}
		dst = appendMember(c, dst)
	}
	return dst
}

// elementBound is an upper bound on the number of elements that members
// hold.
func elementBound(members []*jsontree.Node) int {
	n := 0
	for _, c := range members {
		if c.Kind == jsontree.Array {
			n += itemCount(c)
		} else {
			n++
		}
	}
	return n
}

// appendMember appends the elements held by the member c.
func appendMember(c *jsontree.Node, dst []*jsontree.Node) []*jsontree.Node {
	if c.Flags&jsontree.FlagShadow != 0 && c.Shadow() != nil {
		// A "_name" member paired with a value member: reached through the
		// value member.
		return dst
	}
	if c.Kind != jsontree.Array {
		if c.Type() != "" {
			return append(dst, c)
		}
		if s := c.Shadow(); s != nil && s.Type() != "" {
			return append(dst, s)
		}
		return dst
	}
	cs, ss := c.Children(), items(c.Shadow())
	n := max(len(cs), len(ss))
	// One growth for the whole array: appending item by item would grow
	// the slice of a long array by a quarter at a time.
	dst = slices.Grow(dst, n)
	for i := 0; i < n; i++ {
		if e := elementAt(cs, ss, i); e != nil {
			dst = append(dst, e)
		}
	}
	return dst
}

// items returns the children of n, or nil if n is nil.
func items(n *jsontree.Node) []*jsontree.Node {
	if n == nil {
		return nil
	}
	return n.Children()
}

// elementAt returns the element at index i of an array member whose items
// are cs and whose "_name" array's items are ss, or nil when there is none.
func elementAt(cs, ss []*jsontree.Node, i int) *jsontree.Node {
	if i < len(cs) && cs[i].Type() != "" {
		return cs[i]
	}
	if i < len(ss) && ss[i].Type() != "" {
		return ss[i]
	}
	return nil
}

// itemCount is the number of items of array member c, counting those that
// only its "_name" array holds.
func itemCount(c *jsontree.Node) int {
	n := c.Len()
	if sh := c.Shadow(); sh != nil && sh.Len() > n {
		n = sh.Len()
	}
	return n
}

// Walk calls fn for n and its descendant elements in pre-order. It does not
// descend into nested resources (contained resources, Bundle entries) other
// than n itself: fn is not called for them. If fn returns false, Walk skips
// the children of that node.
//
// This is the traversal of the anonymizer's nodesByType and nodesByName.
func Walk(n *jsontree.Node, fn func(*jsontree.Node) bool) {
	if !fn(n) {
		return
	}
	walkChildren(n, fn)
}

func walkChildren(n *jsontree.Node, fn func(*jsontree.Node) bool) {
	o := container(n)
	if o == nil {
		return
	}
	for _, c := range o.Children() {
		if c.Name() == "" || c.Flags&jsontree.FlagShadow != 0 && c.Shadow() != nil {
			continue
		}
		if c.Kind != jsontree.Array {
			e := c
			if e.Type() == "" {
				e = c.Shadow()
				if e == nil || e.Type() == "" {
					continue
				}
			}
			walkElement(e, fn)
			continue
		}
		sh := c.Shadow()
		for i := 0; i < itemCount(c); i++ {
			if e := elementAt(c.Children(), items(sh), i); e != nil {
				walkElement(e, fn)
			}
		}
	}
}

func walkElement(e *jsontree.Node, fn func(*jsontree.Node) bool) {
	if e.Flags&jsontree.FlagResource != 0 {
		return
	}
	if fn(e) {
		walkChildren(e, fn)
	}
}

// Location returns the FHIRPath-style location of element n:
// "Patient.name[0].given[1]", "Bundle.entry[2].resource.id". Indexes are
// written for members that are JSON arrays. It contains element names and
// indexes only, never values.
func Location(n *jsontree.Node) string {
	return string(appendLocation(nil, n))
}

func appendLocation(b []byte, n *jsontree.Node) []byte {
	if n == nil {
		return b
	}
	p := Parent(n)
	if p == nil {
		if n.Type() != "" {
			return append(b, n.Type()...)
		}
		return append(b, '$')
	}
	b = appendLocation(b, p)
	b = append(b, '.')
	key := n.Key()
	idx := -1
	if n.Parent != nil && n.Parent.Kind == jsontree.Array {
		key = n.Parent.Key()
		idx = n.Index()
	}
	key = strings.TrimPrefix(key, "_")
	b = append(b, key...)
	if idx >= 0 {
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(idx), 10)
		b = append(b, ']')
	}
	return b
}

// pathOf is the location used in typing errors; it works on nodes that are
// not typed yet, using JSON member names.
func pathOf(n *jsontree.Node) string {
	var parts []string
	for c := n; c != nil && c.Parent != nil; c = c.Parent {
		switch {
		case c.Parent.Kind == jsontree.Array:
			parts = append(parts, "["+strconv.Itoa(c.Index())+"]")
		default:
			parts = append(parts, "."+c.Key())
		}
	}
	root := n
	for root.Parent != nil {
		root = root.Parent
	}
	var b strings.Builder
	if rt := root.Get("resourceType"); rt != nil && rt.Kind == jsontree.String && IsTypeName(rt.Value()) {
		b.WriteString(rt.Value())
	} else {
		b.WriteString("$")
	}
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString(parts[i])
	}
	return b.String()
}
