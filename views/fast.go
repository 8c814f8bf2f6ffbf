package views

import (
	"slices"
	"strings"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// A fastPath is a column expression simple enough to be evaluated by a
// direct walk of the typed tree instead of by the FHIRPath engine: a chain
// of element names, first(), ofType(T), ending optionally in
// getReferenceKey([T]) (then first() only), or getResourceKey(), or a
// string literal, or {}. Most columns of real views are such paths
// (subject.getReferenceKey(Patient), code.coding.first().code,
// value.ofType(Quantity).value); the walk gives the same items as the
// engine, without its per-evaluation context and item boxing. The
// conformance suite and a differential test over synthea-100
// (fast_test.go) hold the two to the same results.
type fastPath struct {
	steps []fastStep
	// literal is set for a string literal or {} (empty): the expression
	// does not depend on its input.
	literal bool
	text    string
	empty   bool
}

type fastOp uint8

const (
	fastChild  fastOp = iota // an element name
	fastFirst                // first()
	fastOfType               // ofType(T)
	fastResKey               // getResourceKey()
	fastRefKey               // getReferenceKey([T])
)

type fastStep struct {
	op   fastOp
	name string // element name, type name, or reference type ("" for any)
	// subs are, for ofType of a complex or resource type, the model's
	// types derived from it (few: Quantity has Age, Count...), so that the
	// walk compares names instead of climbing the model's type tree; nil
	// when there are many.
	subs []string
}

// fhirpathKeywords cannot be element names without backticks.
var fhirpathKeywords = map[string]bool{"and": true, "or": true, "xor": true, "implies": true, "is": true, "as": true,
	"in": true, "contains": true, "div": true, "mod": true, "true": true, "false": true}

// compileFast returns the fast path of a prepared expression (getReferenceKey's
// argument already quoted), or nil when the expression is not that simple.
func compileFast(text string, m *model.Model) *fastPath {
	if text == "{}" {
		return &fastPath{literal: true, empty: true}
	}
	if len(text) >= 2 && text[0] == '\'' && text[len(text)-1] == '\'' {
		s := text[1 : len(text)-1]
		if strings.ContainsAny(s, "'\\") {
			return nil
		}
		return &fastPath{literal: true, text: s}
	}
	fp := &fastPath{}
	refKey := false
	for i, part := range splitPath(text) {
		switch {
		case part == "":
			return nil
		case part == "first()":
			fp.steps = append(fp.steps, fastStep{op: fastFirst})
			continue
		case refKey:
			// Only first() may follow getReferenceKey (its items are values).
			return nil
		case part == "getResourceKey()":
			if i != 0 {
				return nil
			}
			fp.steps = append(fp.steps, fastStep{op: fastResKey})
			refKey = true // values of a sort too: only first() may follow
		case part == "getReferenceKey()":
			fp.steps = append(fp.steps, fastStep{op: fastRefKey})
			refKey = true
		case strings.HasPrefix(part, "getReferenceKey('") && strings.HasSuffix(part, "')"):
			t := part[len("getReferenceKey('") : len(part)-2]
			if !isName(t) {
				return nil
			}
			fp.steps = append(fp.steps, fastStep{op: fastRefKey, name: t})
			refKey = true
		case strings.HasPrefix(part, "ofType(") && strings.HasSuffix(part, ")"):
			t := part[len("ofType(") : len(part)-1]
			if !isName(t) {
				return nil
			}
			fp.steps = append(fp.steps, fastStep{op: fastOfType, name: t, subs: subtypes(m, t)})
		default:
			// An element name: lower case first (an upper-case first name
			// may be a type filter), not a keyword.
			if !isName(part) || part[0] < 'a' || part[0] > 'z' || fhirpathKeywords[part] {
				return nil
			}
			fp.steps = append(fp.steps, fastStep{op: fastChild, name: part})
		}
	}
	if len(fp.steps) == 0 {
		return nil
	}
	return fp
}

// splitPath splits a path at its dots; a dot inside parentheses (or any
// other character than names, dots, parentheses and quotes) makes the
// result contain "" so that compileFast rejects it.
func splitPath(text string) []string {
	var parts []string
	start, depth := 0, 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '.' && depth == 0:
			parts = append(parts, text[start:i])
			start = i + 1
		case c == '.' || c == '\'' || isIdent(c, true):
		default:
			return []string{""}
		}
		if depth < 0 || depth > 1 {
			return []string{""}
		}
	}
	if depth != 0 {
		return []string{""}
	}
	return append(parts, text[start:])
}

func isName(s string) bool {
	if s == "" || !isIdent(s[0], false) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdent(s[i], true) {
			return false
		}
	}
	return true
}

// eval evaluates the path on n: it returns the nodes (in dst's memory, or
// tmp's) or, for a path ending in getReferenceKey, the ids (in ids's
// memory), and the scratch slice to reuse.
func (fp *fastPath) eval(m *model.Model, n *jsontree.Node, dst, tmp []*jsontree.Node, ids []string) ([]*jsontree.Node, []*jsontree.Node, []string) {
	cur := append(dst[:0], n)
	ids = ids[:0]
	values := false
	for _, s := range fp.steps {
		switch s.op {
		case fastChild:
			next := tmp[:0]
			for _, x := range cur {
				next = typed.Children(x, s.name, next)
			}
			cur, tmp = next, cur[:0]
		case fastFirst:
			if values {
				ids = ids[:min(len(ids), 1)]
			} else {
				cur = cur[:min(len(cur), 1)]
			}
		case fastOfType:
			k := 0
			for _, x := range cur {
				if s.ofType(m, x) {
					cur[k] = x
					k++
				}
			}
			clear(cur[k:])
			cur = cur[:k]
		case fastResKey:
			k := 0
			for _, x := range cur {
				if !typed.IsResource(x) {
					x = typed.Resource(x)
					if x == nil {
						continue
					}
				}
				if id := x.Get("id"); id != nil && id.Kind == jsontree.String {
					cur[k] = id
					k++
				}
			}
			clear(cur[k:])
			cur = cur[:k]
		case fastRefKey:
			for _, x := range cur {
				if x.Kind != jsontree.Object {
					continue
				}
				ref := x.Get("reference")
				if ref == nil || ref.Kind != jsontree.String {
					continue
				}
				typ, id, ok := splitReference(ref.Value())
				if !ok || (s.name != "" && typ != s.name) {
					continue
				}
				ids = append(ids, id)
			}
			clear(cur)
			cur = cur[:0]
			values = true
		}
	}
	return cur, tmp, ids
}

// ofType is FHIRPath's ofType(T) on a node, T unqualified (s.name): a
// primitive matches only its own type, a complex or resource type its
// subtypes too.
func (s *fastStep) ofType(m *model.Model, n *jsontree.Node) bool {
	if n.Type() == s.name {
		return true
	}
	if isPrimitiveName(n.Type()) || m == nil {
		return false
	}
	if s.subs != nil {
		return slices.Contains(s.subs, n.Type())
	}
	return m.IsSubtype(n.Type(), s.name)
}

// maxSubtypes bounds the subtypes listed in a fastStep.
const maxSubtypes = 16

// subtypes lists the model's types derived from t (t excluded), or nil
// when t is primitive, unknown or has more than maxSubtypes.
func subtypes(m *model.Model, t string) []string {
	if m == nil || isPrimitiveName(t) || m.Type(t) == nil {
		return nil
	}
	subs := []string{}
	for _, name := range m.TypeNames() {
		if name != t && m.IsSubtype(name, t) {
			if len(subs) == maxSubtypes {
				return nil
			}
			subs = append(subs, name)
		}
	}
	return subs
}

func isPrimitiveName(t string) bool { return t != "" && t[0] >= 'a' && t[0] <= 'z' }
