package views

import (
	"fhirdeid/jsontree"
)

// Members is the set of top-level members of a resource that a group of
// views (of one resource type) may read. Prune removes the others from a
// parsed resource before it is typed, so that typing skips what no view
// reads (the meta.security labels de-identification adds are a third of a
// small resource).
//
// The set over-approximates: it holds every identifier of every
// expression of the views (element names, function names, type names),
// and a member is kept when its name, without a leading "_", is one of
// them or one of them followed by a type suffix (value → valueQuantity).
// An expression that can read members it does not name (children(),
// descendants(), resolve()...) or a column of a complex or no type (which
// may hold the resource itself as JSON) makes the set nil: nothing is
// pruned.
type Members map[string]bool

// readsUnnamed lists the FHIRPath functions that may read members of the
// resource without naming them.
var readsUnnamed = map[string]bool{"children": true, "descendants": true, "resolve": true, "conformsTo": true,
	"toJson": true, "trace": true, "repeatAll": true, "defineVariable": true, "aggregate": true}

// noteMembers adds the identifiers of a prepared expression to the
// compiler's member names.
func (c *compiler) noteMembers(text string) {
	if c.members == nil {
		c.members = map[string]bool{}
	}
	i := 0
	for i < len(text) {
		ch := text[i]
		switch {
		case ch == '\'':
			j := skipQuoted(text, i)
			if j < 0 {
				c.allMembers = true
				return
			}
			i = j
		case ch == '`':
			j := skipQuoted(text, i)
			if j < 0 {
				c.allMembers = true
				return
			}
			c.members[text[i+1:j-1]] = true
			i = j
		case ch == '%' || ch == '$':
			// A variable: %resource, %rowIndex, $this, a constant.
			j := i + 1
			if j < len(text) && (text[j] == '`' || text[j] == '\'') {
				if j = skipQuoted(text, j); j < 0 {
					c.allMembers = true
					return
				}
			}
			for j < len(text) && isIdent(text[j], true) {
				j++
			}
			i = j
		case isIdent(ch, false):
			j := i
			for j < len(text) && isIdent(text[j], true) {
				j++
			}
			word := text[i:j]
			if readsUnnamed[word] {
				c.allMembers = true
			}
			c.members[word] = true
			i = j
		case ch >= '0' && ch <= '9':
			// A number, or a date literal (@2020-01-01T10:00): skip its
			// letters too (T, Z, e).
			j := i
			for j < len(text) && (isIdent(text[j], true) || text[j] == '.') {
				j++
			}
			i = j
		case ch == '@':
			j := i + 1
			for j < len(text) && (isIdent(text[j], true) || text[j] == '-' || text[j] == ':' || text[j] == '.' || text[j] == '+') {
				j++
			}
			i = j
		case ch == '/' && i+1 < len(text) && (text[i+1] == '/' || text[i+1] == '*'):
			// A comment: its words are no members, but reading them as
			// such only keeps more.
			c.members["*comment"] = true
			i += 2
		default:
			i++
		}
	}
}

// MembersOf returns the members the views may read, or nil when one of
// them may read any (then nothing is to be pruned).
func MembersOf(vs ...*View) Members {
	m := Members{}
	for _, v := range vs {
		if v.members == nil {
			return nil
		}
		for k := range v.members {
			m[k] = true
		}
	}
	return m
}

// Prune removes from the resource root (parsed, not yet typed) the
// members no view of the set may read; resourceType and id are kept. A nil
// set keeps everything.
func (m Members) Prune(root *jsontree.Node) {
	if m == nil || root == nil || root.Kind != jsontree.Object {
		return
	}
	kids := root.Children()
	k := 0
	for _, ch := range kids {
		if m.keeps(ch.Key()) {
			kids[k] = ch
			k++
		}
	}
	clear(kids[k:])
	root.SetChildren(kids[:k])
}

func (m Members) keeps(key string) bool {
	if len(key) > 1 && key[0] == '_' {
		key = key[1:]
	}
	if key == "resourceType" || key == "id" || m[key] {
		return true
	}
	// A choice member: value + Quantity.
	for i := 1; i < len(key); i++ {
		if key[i] >= 'A' && key[i] <= 'Z' && m[key[:i]] {
			return true
		}
	}
	return false
}
