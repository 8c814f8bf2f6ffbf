package typed

import (
	"sync"

	"fhirdeid/fhir/model"
	"fhirdeid/jsontree"
)

// The typing of a node is one pointer to a jsontree.Elem (element name and
// type) shared by every node of the same element and type, rather than two
// strings per node. The Elems of a model are made once, with the tables
// that the typing pass reads instead of the model's own.

// modelInfo is the typing tables of one model. It is built once per model
// and never changed after, so it is read without locks.
type modelInfo struct {
	types map[*model.Type]*typeInfo
}

// typeInfo is the typing table of one type.
type typeInfo struct {
	// props are the type's members by JSON key, as model.Type.Property
	// finds them ("valueQuantity" for value[x]).
	props map[string]*prop
	// table finds the props by key faster than the map (see lookup).
	table []slot
	mask  uint32
	// unnamed is the Elem of an object of this type without element name
	// (the object of a "_name" shadow that belongs to a value).
	unnamed *jsontree.Elem
	// named are, for a resource type, its Elems under each element name
	// that may hold a resource ("" for a root, "contained", "resource"...).
	named map[string]*jsontree.Elem
}

// slot is an entry of a typeInfo's table: a key and its prop (nil for an
// empty slot).
type slot struct {
	key string
	p   *prop
}

// prop is one member of a type.
type prop struct {
	el  *model.Element
	typ string
	// t is the model's type named typ (nil if the model lacks it) and ti
	// its table, so that typing a value looks neither up.
	t  *model.Type
	ti *typeInfo
	// elem is the Elem of a value of the member ({el.Name, typ}); name that
	// of its array or of a member without a type ({el.Name, ""}).
	elem, name *jsontree.Elem
}

var infos sync.Map // *model.Model -> *modelInfo

// infoOf returns the typing tables of m, building them on first use.
func infoOf(m *model.Model) *modelInfo {
	if v, ok := infos.Load(m); ok {
		return v.(*modelInfo)
	}
	v, _ := infos.LoadOrStore(m, buildInfo(m))
	return v.(*modelInfo)
}

func buildInfo(m *model.Model) *modelInfo {
	type pair struct{ name, typ string }
	interned := map[pair]*jsontree.Elem{}
	elem := func(name, typ string) *jsontree.Elem {
		k := pair{name, typ}
		e := interned[k]
		if e == nil {
			e = &jsontree.Elem{Name: name, Type: typ}
			interned[k] = e
		}
		return e
	}
	info := &modelInfo{types: map[*model.Type]*typeInfo{}}
	// The element names under which a resource may sit.
	resNames := map[string]bool{"": true}
	var all []*model.Type
	for _, name := range m.TypeNames() {
		if t := m.Type(name); t != nil {
			all = append(all, t)
		}
	}
	for _, t := range all {
		ti := &typeInfo{props: make(map[string]*prop, len(t.Elements)), unnamed: elem("", t.Name)}
		for _, el := range t.Elements {
			for i, typ := range el.Types {
				if !el.Choice && i > 0 {
					break
				}
				key := el.Name
				if el.Choice {
					key += upperFirst(typ)
				}
				rt := m.Type(typ)
				ti.props[key] = &prop{el: el, typ: typ, t: rt, elem: elem(el.Name, typ), name: elem(el.Name, "")}
				if typ == "Resource" || rt != nil && rt.Kind == model.Resource {
					resNames[el.Name] = true
				}
			}
		}
		info.types[t] = ti
	}
	for _, ti := range info.types {
		for _, pr := range ti.props {
			if pr.t != nil {
				pr.ti = info.types[pr.t]
			}
		}
		ti.buildTable()
	}
	for _, t := range all {
		if t.Kind != model.Resource {
			continue
		}
		ti := info.types[t]
		ti.named = make(map[string]*jsontree.Elem, len(resNames))
		for name := range resNames {
			ti.named[name] = elem(name, t.Name)
		}
	}
	return info
}

// upperFirst capitalises the first letter of a type name, as a choice
// element's JSON key does ("value" + "Quantity").
func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// buildTable fills the open-addressing table of ti's props: a power of two
// at least twice their number, linear probing from keyHash.
func (ti *typeInfo) buildTable() {
	size := 4
	for size < 2*len(ti.props) {
		size *= 2
	}
	ti.table = make([]slot, size)
	ti.mask = uint32(size - 1)
	for key, pr := range ti.props {
		i := keyHash(key) & ti.mask
		for ti.table[i].p != nil {
			i = (i + 1) & ti.mask
		}
		// The parsers' copy of a common name, so that lookup's comparison
		// with a member's Key stops at the pointers.
		ti.table[i] = slot{jsontree.SharedName(key), pr}
	}
}

// keyHash hashes a member key from its length and three of its bytes,
// which tell apart most keys of one type at the cost of a few operations
// (a map hashes every byte); the table's probing sorts out the rest.
func keyHash(key string) uint32 {
	n := uint32(len(key))
	if n == 0 {
		return 0
	}
	h := n*0x9E3779B1 ^ uint32(key[0])*0x85EBCA6B ^ uint32(key[n-1])*0xC2B2AE35 ^ uint32(key[n/2])*0x27D4EB2F
	return h ^ h>>15
}

// lookup returns the member of ti whose JSON key is key, or nil.
func (ti *typeInfo) lookup(key string) *prop {
	i := keyHash(key) & ti.mask
	for {
		s := &ti.table[i]
		if s.p == nil || s.key == key {
			return s.p
		}
		i = (i + 1) & ti.mask
	}
}
