package fhirpath

import (
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// Navigation over typed nodes is package typed's element view (array nodes
// are containers, a primitive's "_name" shadow holds its id and extensions,
// a primitive without a value is its typed shadow object). These helpers
// adapt it to collections of Items.

// childrenNamed appends n's child elements called name.
func (c *evalCtx) childrenNamed(n *jsontree.Node, name string, dst []Item) []Item {
	nodes := typed.Children(n, name, c.nodes[:0])
	for _, e := range nodes {
		dst = append(dst, Item{node: e})
	}
	c.nodes = nodes[:0]
	return dst
}

// allChildren appends all child elements of n in document order.
func (c *evalCtx) allChildren(n *jsontree.Node, dst []Item) []Item {
	nodes := typed.AllChildren(n, c.nodes[:0])
	for _, e := range nodes {
		dst = append(dst, Item{node: e})
	}
	c.nodes = nodes[:0]
	return dst
}

// jsonMember appends the elements held by the member of n whose JSON key is
// key and that is a choice member (valueQuantity: its key differs from its
// element name).
func jsonMember(n *jsontree.Node, key string, dst []Item) []Item {
	if n.Kind != jsontree.Object {
		return dst
	}
	for _, ch := range n.Children() {
		if ch.Key() != key || ch.Name() == "" || ch.Name() == key {
			continue
		}
		if ch.Kind == jsontree.Array {
			for _, it := range ch.Children() {
				if it.Type() != "" {
					dst = append(dst, Item{node: it})
				}
			}
		} else if ch.Type() != "" {
			dst = append(dst, Item{node: ch})
		}
	}
	return dst
}

// isPrimitiveType reports whether a FHIR type name is a primitive type.
func isPrimitiveType(typ string) bool { return typ != "" && typ[0] >= 'a' && typ[0] <= 'z' }
