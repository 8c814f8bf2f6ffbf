package typed

import (
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/jsontree"
)

// TestTablesMatchModel checks that the typing tables find every member the
// model's Property finds, with the same element and type, and no other.
func TestTablesMatchModel(t *testing.T) {
	for _, v := range []model.Version{model.R4, model.STU3} {
		m := model.Get(v)
		if m == nil {
			t.Fatalf("no model %v", v)
		}
		info := infoOf(m)
		if infoOf(m) != info {
			t.Error("the tables of a model are built more than once")
		}
		for _, name := range m.TypeNames() {
			ty := m.Type(name)
			ti := info.types[ty]
			if ti == nil {
				t.Fatalf("%v: no table for %s", v, name)
			}
			if ti.unnamed.Name != "" || ti.unnamed.Type != name {
				t.Errorf("%v %s: unnamed elem %+v", v, name, *ti.unnamed)
			}
			for _, bad := range []string{"", "x", "nmae", "valueFoo", "_id", "resourceType"} {
				if _, _, ok := ty.Property(bad); !ok && ti.lookup(bad) != nil {
					t.Errorf("%v %s: the table finds %q", v, name, bad)
				}
			}
			for key, pr := range ti.props {
				if ti.lookup(key) != pr {
					t.Errorf("%v %s: the table does not find %q", v, name, key)
				}
				if ti.lookup(key+"x") != nil || len(key) > 1 && ti.lookup(key[:len(key)-1]) != nil && ti.props[key[:len(key)-1]] == nil {
					t.Errorf("%v %s: the table finds a key near %q", v, name, key)
				}
				el, typ, ok := ty.Property(key)
				if !ok || el != pr.el || typ != pr.typ {
					t.Errorf("%v %s.%s: table has %s %s, model %v %s", v, name, key, pr.el.Name, pr.typ, ok, typ)
				}
				if pr.elem.Name != el.Name || pr.elem.Type != typ || pr.name.Name != el.Name || pr.name.Type != "" {
					t.Errorf("%v %s.%s: elems %+v %+v", v, name, key, *pr.elem, *pr.name)
				}
				if pr.t != m.Type(typ) || pr.t != nil && pr.ti != info.types[pr.t] {
					t.Errorf("%v %s.%s: type table of %s", v, name, key, typ)
				}
			}
			n := 0
			for _, el := range ty.Elements {
				if el.Choice {
					n += len(el.Types)
				} else {
					n++
				}
			}
			if n != len(ti.props) {
				t.Errorf("%v %s: %d members in the table, %d in the model", v, name, len(ti.props), n)
			}
			if ty.Kind == model.Resource {
				for _, rn := range []string{"", "contained", "resource"} {
					if e := ti.named[rn]; e == nil || e.Name != rn || e.Type != name {
						t.Errorf("%v %s: no elem for a resource named %q", v, name, rn)
					}
				}
			}
		}
	}
}

// TestElemsShared checks that nodes of the same element and type share one
// Elem, so that typing costs one pointer per node.
func TestElemsShared(t *testing.T) {
	root, err := jsontree.Parse([]byte(`{"resourceType":"Patient","name":[{"given":["A","B"]},{"given":["C"]}],` +
		`"contained":[{"resourceType":"Patient","name":[{"given":["D"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := Annotate(root, model.Get(model.R4)); err != nil {
		t.Fatal(err)
	}
	var given []*jsontree.Node
	root.Walk(func(n *jsontree.Node) bool {
		if n.Name() == "given" && n.Type() == "string" {
			given = append(given, n)
		}
		return true
	})
	if len(given) != 4 {
		t.Fatalf("%d given names typed, want 4", len(given))
	}
	for _, g := range given[1:] {
		if g.Elem != given[0].Elem {
			t.Error("two given names with separate Elems")
		}
	}
	c := root.Get("contained").Children()[0]
	if c.Name() != "contained" || c.Type() != "Patient" || root.Name() != "" || root.Type() != "Patient" {
		t.Errorf("resources typed %q %q and %q %q", c.Name(), c.Type(), root.Name(), root.Type())
	}
}
