package jsontree

import (
	"strconv"
	"testing"
	"unsafe"
)

// TestNodeSize guards the size of a node, which is most of the memory of a
// parsed document: 40 bytes with the value/children union and the member
// name as one pointer.
func TestNodeSize(t *testing.T) {
	if s := unsafe.Sizeof(Node{}); s > 40 {
		t.Errorf("Node is %d bytes, want at most 40", s)
	}
}

func TestCapClass(t *testing.T) {
	for c := 0; c < 1<<20; c += 1 + c/7 {
		got := classCap(capClass(c))
		if got > c {
			t.Fatalf("capacity %d: class stands for %d, more than the array holds", c, got)
		}
		if c < 32 && got != c || c >= 32 && got*2 <= c {
			t.Fatalf("capacity %d: class stands for only %d", c, got)
		}
	}
}

// TestChildrenStorage checks appends into spare capacity, growth and
// removal, on containers with and without a shadow.
func TestChildrenStorage(t *testing.T) {
	for _, shadowed := range []bool{false, true} {
		a := NewArray()
		backing := make([]*Node, 0, 3)
		a.SetChildren(backing)
		var sh *Node
		if shadowed {
			sh = NewObject()
			a.SetShadow(sh)
		}
		for i := range 1000 {
			a.Append(NewString(strconv.Itoa(i)))
			if a.Shadow() != sh {
				t.Fatalf("shadowed %v: shadow lost after %d appends", shadowed, i+1)
			}
		}
		if !shadowed && unsafe.SliceData(a.Children()) == unsafe.SliceData(backing) {
			t.Error("1000 items in an array of 3")
		}
		if !shadowed && backing[:3][2] == nil {
			t.Error("the spare capacity given to SetChildren was not used")
		}
		for i, c := range a.Children() {
			if c.Value() != strconv.Itoa(i) || c.Parent != a {
				t.Fatalf("shadowed %v: item %d is %q", shadowed, i, c.Value())
			}
		}
		a.RemoveFunc(func(c *Node) bool { return len(c.Value()) > 1 })
		a.InsertAt(0, NewString("x"))
		a.Remove(a.Children()[1])
		if got := compact(a); got != `["x","1","2","3","4","5","6","7","8","9"]` {
			t.Errorf("shadowed %v: %s", shadowed, got)
		}
		if a.Shadow() != sh {
			t.Errorf("shadowed %v: shadow lost by the edits", shadowed)
		}
		checkTree(t, a, nil)
		// Becoming a scalar keeps the shadow; so does getting children
		// again.
		a.SetString("s")
		if a.Shadow() != sh || a.Len() != 0 || len(a.Children()) != 0 {
			t.Errorf("shadowed %v: scalar: shadow %v, %d children", shadowed, a.Shadow() != nil, a.Len())
		}
		a.SetChildren([]*Node{NewNull()})
		if a.Shadow() != sh || a.Len() != 1 {
			t.Errorf("shadowed %v: SetChildren on a scalar: shadow %v, %d children", shadowed, a.Shadow() != nil, a.Len())
		}
		a.SetShadow(nil)
		if a.Shadow() != nil || a.Len() != 1 {
			t.Errorf("shadowed %v: shadow not cleared", shadowed)
		}
	}
}

// TestShadowStorage checks that a shadow set on any kind of node reads
// back, and that clearing or moving it leaves the children alone.
func TestShadowStorage(t *testing.T) {
	root := mustParse(t, `{"a":"x","b":null,"c":[1,2],"d":{"e":true},"f":[],"g":{},"h":1.5}`)
	want := compact(root)
	nodes := root.Children()
	for i, n := range nodes {
		n.SetShadow(nodes[(i+1)%len(nodes)])
	}
	root.SetShadow(nodes[0])
	for i, n := range nodes {
		if n.Shadow() != nodes[(i+1)%len(nodes)] {
			t.Errorf("member %s: wrong shadow", n.Key())
		}
	}
	if root.Shadow() != nodes[0] || compact(root) != want {
		t.Errorf("root: shadow %v, %s", root.Shadow() == nodes[0], compact(root))
	}
	checkTree(t, root, nil)
	c := root.Clone()
	for i, n := range c.Children() {
		if n.Shadow() != c.Children()[(i+1)%len(nodes)] {
			t.Errorf("clone of member %s: wrong shadow", n.Key())
		}
	}
	for _, n := range nodes {
		n.SetShadow(nil)
		if n.Shadow() != nil {
			t.Errorf("member %s: shadow not cleared", n.Key())
		}
	}
	if compact(root) != want {
		t.Errorf("after clearing: %s", compact(root))
	}
}

// TestValueStorage checks that a scalar's Value, which shares its words
// with an object's or array's children, reads back through every change:
// with and without a shadow, after SetValue and the Set methods, and that
// a scalar never shows children nor a container a Value.
func TestValueStorage(t *testing.T) {
	root := mustParse(t, `{"s":"text","e":"a\"b","n":-1.50e3,"t":true,"f":false,"z":null,"x":"","o":{"k":1},"a":[1,"2"]}`)
	want := map[string]string{"s": "text", "e": `a"b`, "n": "-1.50e3", "t": "true", "f": "false", "z": "", "x": "", "o": "", "a": ""}
	sh := NewObject()
	for _, shadowed := range []bool{false, true} {
		for _, n := range root.Children() {
			if shadowed {
				n.SetShadow(sh)
			}
			if got := n.Value(); got != want[n.Key()] {
				t.Errorf("shadowed %v: %s: Value %q, want %q", shadowed, n.Key(), got, want[n.Key()])
			}
			scalar := n.Kind != Object && n.Kind != Array
			if scalar && (n.Len() != 0 || n.Children() != nil) {
				t.Errorf("shadowed %v: scalar %s has %d children", shadowed, n.Key(), n.Len())
			}
			if !scalar && n.Len() == 0 {
				t.Errorf("shadowed %v: %s lost its children", shadowed, n.Key())
			}
		}
	}
	if got := compact(root); got != `{"s":"text","e":"a\"b","n":-1.50e3,"t":true,"f":false,"z":null,"x":"","o":{"k":1},"a":[1,"2"]}` {
		t.Errorf("shadowed tree writes %s", got)
	}
	// SetValue keeps the kind and the shadow, and clears FlagRaw.
	s := root.Get("s")
	if s.Flags&FlagRaw == 0 {
		t.Fatal("parsed string without FlagRaw")
	}
	s.SetValue(`new "value"`)
	if s.Value() != `new "value"` || s.Kind != String || s.Shadow() != sh || s.Flags&(FlagRaw|FlagSet) != 0 {
		t.Errorf("SetValue: %q %v shadow %v flags %b", s.Value(), s.Kind, s.Shadow() != nil, s.Flags)
	}
	if got := string(s.AppendJSON(nil)); got != `"new \"value\""` {
		t.Errorf("SetValue: writes %s", got)
	}
	// A copy of a shadowed node does not share later changes of its value.
	cp := *s
	cp.SetValue("copy")
	if s.Value() != `new "value"` || cp.Value() != "copy" || cp.Shadow() != sh {
		t.Errorf("copy: %q and %q", s.Value(), cp.Value())
	}
	other := NewObject()
	cp.SetShadow(other)
	if s.Shadow() != sh || cp.Shadow() != other || cp.Value() != "copy" {
		t.Error("SetShadow on a copy changed the original")
	}
	if a := testing.AllocsPerRun(10, func() { s.SetShadow(sh) }); a != 0 {
		t.Errorf("setting the same shadow again: %v allocations", a)
	}
	s.SetShadow(nil)
	if s.Value() != `new "value"` || s.Shadow() != nil {
		t.Errorf("shadow cleared: %q", s.Value())
	}
	// A container becoming a scalar, and back.
	o := root.Get("o")
	kid := o.Children()[0]
	o.SetNumber("42")
	if o.Kind != Number || o.Value() != "42" || o.Len() != 0 || o.Shadow() != sh || kid.Parent != nil {
		t.Errorf("object to number: %v %q %d children", o.Kind, o.Value(), o.Len())
	}
	o.SetNull()
	if o.Value() != "" || compact(o) != "null" {
		t.Errorf("number to null: %q", o.Value())
	}
	// SetValue("") on a container changes nothing; any other text panics.
	a := root.Get("a")
	a.SetValue("")
	if a.Len() != 2 || compact(a) != `[1,"2"]` {
		t.Errorf("SetValue(\"\") on an array: %s", compact(a))
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("SetValue on an array did not panic")
			}
		}()
		a.SetValue("x")
	}()
	if a.Len() != 2 {
		t.Errorf("failed SetValue changed the array")
	}
	checkTree(t, root, nil)
}
