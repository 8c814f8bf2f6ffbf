package anonymize

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// substitute applies a substitute rule to one node (§2.7).
func (r *run) substitute(node *jsontree.Node, rule *engineRule, ops *Operations) error {
	r.restructured, r.reshaped = true, true
	r.elems.Complete = false // the list no longer describes the tree
	rw := rule.replaceWith
	if typed.IsPrimitive(node) {
		text, keep := SubstitutePrimitive(rw)
		switch {
		case typed.HasValue(node) || node.Kind == jsontree.Null:
			r.setString(node, text, keep)
		case keep && node.Flags&jsontree.FlagShadow != 0 && node.Parent != nil && node.Parent.Kind == jsontree.Object:
			// A primitive with only its "_name" object: give it a value.
			if name, ok := strings.CutPrefix(node.Key(), "_"); ok {
				v := jsontree.NewString(text)
				v.SetKey(name)
				node.Parent.InsertAt(node.Index(), v)
				r.changed++
				if err := typed.Annotate(r.root, r.e.model); err != nil {
					return fmt.Errorf("anonymizing: rule %d (%s) at %s: %w", rule.Index, rule.MethodName, typed.Location(node), err)
				}
			}
		}
		*ops = ops.Add(OpSubstitute)
		r.markVisited(node)
		return nil
	}
	frag, err := SubstituteComplex(rw)
	if err != nil {
		return fmt.Errorf("anonymizing: rule %d (%s) at %s: %w", rule.Index, rule.MethodName, typed.Location(node), err)
	}
	if node.Kind != jsontree.Object {
		return fmt.Errorf("anonymizing: rule %d (%s) at %s: node type is invalid", rule.Index, rule.MethodName, typed.Location(node))
	}
	if err := r.substituteObject(node, frag); err != nil {
		return fmt.Errorf("anonymizing: rule %d (%s) at %s: %w", rule.Index, rule.MethodName, typed.Location(node), err)
	}
	// Type the new content; a replacement that does not fit the element's
	// type fails here, as the reference parser fails on it.
	if err := typed.Annotate(r.root, r.e.model); err != nil {
		return fmt.Errorf("anonymizing: rule %d (%s) at %s: replaceWith does not fit the element's type: %w", rule.Index, rule.MethodName, typed.Location(node), err)
	}
	r.changed++
	*ops = ops.Add(OpSubstitute)
	r.markVisited(node)
	return nil
}

// hasVisited reports whether n or a node below it was visited: the keep set
// of §2.7.
func (r *run) hasVisited(n *jsontree.Node) bool {
	found := false
	n.Walk(func(c *jsontree.Node) bool {
		if visited(c) {
			found = true
		}
		return !found
	})
	return found
}

// substituteObject merges the replacement object repl into the object node
// (§2.7): paired members are substituted recursively, visited ones are kept,
// members missing from the replacement are removed unless they hold visited
// nodes, and new members are appended in the type's definition order.
func (r *run) substituteObject(node *jsontree.Node, repl Value) error {
	order := r.elementOrder(node.Type())
	members := append([]Member(nil), repl.Members...)
	sort.SliceStable(members, func(i, j int) bool { return order(members[i].Key) < order(members[j].Key) })
	inRepl := map[string]bool{}
	for _, m := range members {
		inRepl[m.Key] = true
	}
	// Existing members the replacement does not name.
	for _, c := range append([]*jsontree.Node(nil), node.Children()...) {
		if inRepl[c.Key()] || c.Key() == "resourceType" {
			continue
		}
		switch {
		case visited(c):
		case r.hasVisited(c):
			r.keepOnlyVisited(c)
		default:
			node.Remove(c)
		}
	}
	for _, m := range members {
		old := node.Get(m.Key)
		if old == nil {
			nn, err := valueNode(m.Value)
			if err != nil {
				return err
			}
			nn.SetKey(m.Key)
			node.Set(m.Key, nn)
			continue
		}
		if err := r.substituteMember(node, old, m.Value); err != nil {
			return err
		}
	}
	return nil
}

// substituteMember substitutes one existing member by its replacement value.
func (r *run) substituteMember(parent, old *jsontree.Node, repl Value) error {
	if visited(old) {
		return nil
	}
	switch {
	case old.Kind == jsontree.Array && repl.Kind == ArrayValue:
		items := append([]*jsontree.Node(nil), old.Children()...)
		for i, it := range items {
			if i >= len(repl.Items) {
				if r.hasVisited(it) {
					r.keepOnlyVisited(it)
				} else {
					old.Remove(it)
				}
				continue
			}
			if visited(it) {
				continue // consumes the replacement item
			}
			if err := r.substituteValue(it, repl.Items[i]); err != nil {
				return err
			}
		}
		for i := len(items); i < len(repl.Items); i++ {
			nn, err := valueNode(repl.Items[i])
			if err != nil {
				return err
			}
			old.Append(nn)
		}
		return nil
	case old.Kind == jsontree.Array || repl.Kind == ArrayValue:
		// Cardinality differs: take the replacement as a whole, unless the
		// old value holds visited nodes.
		if r.hasVisited(old) {
			return nil
		}
		nn, err := valueNode(repl)
		if err != nil {
			return err
		}
		nn.SetKey(old.Key())
		old.ReplaceWith(nn)
		return nil
	}
	return r.substituteValue(old, repl)
}

// substituteValue substitutes a single (non-array) node.
func (r *run) substituteValue(old *jsontree.Node, repl Value) error {
	if visited(old) {
		return nil
	}
	if old.Kind == jsontree.Object && repl.Kind == ObjectValue {
		return r.substituteObject(old, repl)
	}
	if r.hasVisited(old) {
		return nil
	}
	nn, err := valueNode(repl)
	if err != nil {
		return err
	}
	nn.SetKey(old.Key())
	old.ReplaceWith(nn)
	return nil
}

// keepOnlyVisited substitutes n with an empty value: only its visited parts
// survive.
func (r *run) keepOnlyVisited(n *jsontree.Node) {
	if visited(n) {
		return
	}
	switch n.Kind {
	case jsontree.Object, jsontree.Array:
		for _, c := range append([]*jsontree.Node(nil), n.Children()...) {
			if r.hasVisited(c) {
				r.keepOnlyVisited(c)
			} else {
				n.Remove(c)
			}
		}
	default:
		n.SetNull()
	}
}

// elementOrder returns a function giving the definition position of a JSON
// member of the given type ("_name" members sort with their element).
func (r *run) elementOrder(typeName string) func(key string) int {
	t := r.e.model.Type(typeName)
	pos := map[string]int{}
	if t != nil {
		for i, el := range t.Elements {
			pos[el.Name] = i
		}
	}
	return func(key string) int {
		key = strings.TrimPrefix(key, "_")
		if t != nil {
			if el, _, ok := t.Property(key); ok {
				return pos[el.Name]
			}
		}
		return len(pos) + 1
	}
}

// valueNode builds a detached jsontree node from a configuration value.
func valueNode(v Value) (*jsontree.Node, error) {
	n, err := jsontree.Parse(v.AppendJSON(nil))
	if err != nil {
		return nil, errors.New("replaceWith is not valid JSON")
	}
	return n, nil
}
