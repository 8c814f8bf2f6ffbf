package fhirpath

import "fhirdeid/jsontree"

// Navigation over typed nodes (see package typed for the element view: array
// nodes are containers, a primitive's "_name" shadow holds its id and
// extensions, a primitive without a value is its typed shadow object).

// isElement reports whether a non-array node stands for an element by itself.
func isElement(c *jsontree.Node) bool {
	if c.Type == "" {
		return false
	}
	if c.Flags&jsontree.FlagShadow != 0 {
		// A value-less primitive: only when it has no value partner (a null
		// partner yields it instead).
		return c.Shadow == nil
	}
	return c.Kind != jsontree.Null
}

// element returns the element a child node stands for, or nil.
func element(c *jsontree.Node) *jsontree.Node {
	if c.Kind == jsontree.Null {
		if s := c.Shadow; s != nil && s.Type != "" {
			return s
		}
		return nil
	}
	if isElement(c) {
		return c
	}
	return nil
}

// appendMember appends the elements held by member c of an object.
func appendMember(c *jsontree.Node, dst []Item) []Item {
	if c.Kind == jsontree.Array {
		if c.Flags&jsontree.FlagShadow != 0 && c.Shadow != nil {
			return dst // items come through the value array
		}
		for _, it := range c.Children {
			if e := element(it); e != nil {
				dst = append(dst, Item{node: e})
			}
		}
		return dst
	}
	if e := element(c); e != nil {
		dst = append(dst, Item{node: e})
	}
	return dst
}

// container returns the object holding n's children: n itself, or the
// shadow of a primitive value.
func container(n *jsontree.Node) *jsontree.Node {
	if n.Kind == jsontree.Object {
		return n
	}
	if n.Shadow != nil && n.Shadow.Kind == jsontree.Object {
		return n.Shadow
	}
	return nil
}

// childrenNamed appends n's child elements called name.
func childrenNamed(n *jsontree.Node, name string, dst []Item) []Item {
	o := container(n)
	if o == nil {
		return dst
	}
	for _, c := range o.Children {
		if c.Name == name {
			dst = appendMember(c, dst)
		}
	}
	return dst
}

// allChildren appends all child elements of n in document order.
func allChildren(n *jsontree.Node, dst []Item) []Item {
	o := container(n)
	if o == nil {
		return dst
	}
	for _, c := range o.Children {
		if c.Name != "" {
			dst = appendMember(c, dst)
		}
	}
	return dst
}

// walkWithoutSubResources calls fn on n and its descendant elements in
// pre-order, not entering nested resources (nor yielding them).
func walkWithoutSubResources(n *jsontree.Node, fn func(*jsontree.Node)) {
	fn(n)
	var buf [16]Item
	kids := allChildren(n, buf[:0])
	for _, k := range kids {
		if k.node.Flags&jsontree.FlagResource != 0 {
			continue
		}
		walkWithoutSubResources(k.node, fn)
	}
}

// isPrimitiveType reports whether a FHIR type name is a primitive type.
func isPrimitiveType(typ string) bool { return typ != "" && typ[0] >= 'a' && typ[0] <= 'z' }

// hasValue reports whether a node is a primitive with a value.
func hasValue(n *jsontree.Node) bool {
	return isPrimitiveType(n.Type) && n.Kind != jsontree.Object && n.Kind != jsontree.Null && n.Kind != jsontree.Array
}
