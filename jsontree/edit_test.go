package jsontree

import (
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) *Node {
	t.Helper()
	n, err := ParseString(s)
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return n
}

func compact(n *Node) string { return string(n.AppendJSON(nil)) }

func TestConstructors(t *testing.T) {
	tests := []struct {
		n    *Node
		kind Kind
		want string
	}{
		{NewString("a\"b"), String, `"a\"b"`},
		{NewBool(true), Bool, "true"},
		{NewBool(false), Bool, "false"},
		{NewNull(), Null, "null"},
		{NewObject(), Object, "{}"},
		{NewArray(), Array, "[]"},
	}
	for _, tc := range tests {
		if tc.n.Kind != tc.kind || compact(tc.n) != tc.want || tc.n.Parent != nil {
			t.Errorf("%v: got kind %v, %s", tc.kind, tc.n.Kind, compact(tc.n))
		}
	}
	for _, lit := range []string{"1.50", "-0", "1e400"} {
		n, err := NewNumber(lit)
		if err != nil || n.Kind != Number || n.Value() != lit {
			t.Errorf("NewNumber(%q) = %v, %v", lit, n, err)
		}
	}
	for _, lit := range []string{"", "01", "1.", "abc", "NaN", " 1"} {
		n, err := NewNumber(lit)
		if err == nil || n != nil {
			t.Errorf("NewNumber(%q) succeeded", lit)
		} else if lit != "" && strings.Contains(err.Error(), lit) {
			t.Errorf("NewNumber error quotes the literal: %v", err)
		}
	}
}

func TestGetSet(t *testing.T) {
	root := mustParse(t, `{"a":1,"b":{"c":[1,2]},"d":"x"}`)
	if root.Get("zz") != nil || root.Get("b").Get("c").Get("x") != nil || (*Node)(nil).Get("a") != nil {
		t.Error("Get of a missing member is not nil")
	}
	old := root.Get("b")
	root.Set("b", NewString("new")) // replace in place
	if got := compact(root); got != `{"a":1,"b":"new","d":"x"}` {
		t.Errorf("replace: %s", got)
	}
	if old.Parent != nil {
		t.Error("replaced member still has a parent")
	}
	root.Set("e", NewBool(true)) // append
	if got := compact(root); got != `{"a":1,"b":"new","d":"x","e":true}` {
		t.Errorf("append: %s", got)
	}
	// Moving a member from one object to another detaches it.
	other := NewObject()
	other.Set("moved", root.Get("a"))
	if got := compact(root); got != `{"b":"new","d":"x","e":true}` {
		t.Errorf("after move, source: %s", got)
	}
	if got := compact(other); got != `{"moved":1}` {
		t.Errorf("after move, target: %s", got)
	}
	// Renaming within the same object.
	root.Set("dd", root.Get("d"))
	if got := compact(root); got != `{"b":"new","e":true,"dd":"x"}` {
		t.Errorf("rename: %s", got)
	}
	// Setting a member to itself is a no-op.
	root.Set("dd", root.Get("dd"))
	if got := compact(root); got != `{"b":"new","e":true,"dd":"x"}` {
		t.Errorf("self set: %s", got)
	}
	checkTree(t, root, nil)
	checkTree(t, other, nil)
}

func TestArrayEdits(t *testing.T) {
	root := mustParse(t, `{"a":[1,2,3]}`)
	a := root.Get("a")
	a.Append(NewString("x"))
	a.InsertAt(0, NewNull())
	a.InsertAt(5, NewBool(false))
	a.InsertAt(2, NewArray())
	if got := compact(root); got != `{"a":[null,1,[],2,3,"x",false]}` {
		t.Fatalf("inserts: %s", got)
	}
	for i, c := range a.Children() {
		if c.Index() != i || c.Parent != a || c.Key() != "" {
			t.Errorf("item %d: Index %d, parent ok %v, key %q", i, c.Index(), c.Parent == a, c.Key())
		}
	}
	three := a.Children()[4]
	if !a.Remove(three) || a.Remove(three) {
		t.Error("Remove reported wrongly")
	}
	if a.Remove(NewNull()) || a.Remove(nil) {
		t.Error("Remove of a non-child reported true")
	}
	a.Children()[0].Detach()
	if got := compact(root); got != `{"a":[1,[],2,"x",false]}` {
		t.Errorf("removes: %s", got)
	}
	// Moving an item within the same array.
	a.InsertAt(0, a.Children()[4])
	if got := compact(root); got != `{"a":[false,1,[],2,"x"]}` {
		t.Errorf("move within array: %s", got)
	}
	// A member appended to an array loses its name.
	obj := mustParse(t, `{"k":"v","l":1}`)
	a.Append(obj.Get("k"))
	if got := compact(root) + compact(obj); got != `{"a":[false,1,[],2,"x","v"]}{"l":1}` {
		t.Errorf("member to item: %s", got)
	}
	checkTree(t, root, nil)
	checkTree(t, obj, nil)
	if root.Index() != -1 {
		t.Error("root Index != -1")
	}
}

func TestObjectInsertAt(t *testing.T) {
	root := mustParse(t, `{"a":1,"b":2,"c":3}`)
	v := NewString("x")
	v.SetKey("n")
	root.InsertAt(1, v)
	if got := compact(root); got != `{"a":1,"n":"x","b":2,"c":3}` {
		t.Errorf("insert: %s", got)
	}
	// Inserting a member whose name exists replaces the old one.
	w := NewString("y")
	w.SetKey("c")
	root.InsertAt(0, w)
	if got := compact(root); got != `{"c":"y","a":1,"n":"x","b":2}` {
		t.Errorf("insert existing name: %s", got)
	}
	// A removed member keeps its name and can be reinserted.
	b := root.Get("b")
	b.Detach()
	root.InsertAt(0, b)
	if got := compact(root); got != `{"b":2,"c":"y","a":1,"n":"x"}` {
		t.Errorf("reinsert: %s", got)
	}
	checkTree(t, root, nil)
}

func TestReplaceWith(t *testing.T) {
	root := mustParse(t, `{"a":{"b":[1,{"c":2},3]},"d":"x"}`)
	c := root.Get("a").Get("b").Children()[1]
	c.ReplaceWith(NewString("r"))
	if got := compact(root); got != `{"a":{"b":[1,"r",3]},"d":"x"}` {
		t.Errorf("replace item: %s", got)
	}
	if c.Parent != nil {
		t.Error("replaced node still has a parent")
	}
	// Replacing a member keeps its name and position.
	root.Get("a").ReplaceWith(NewNull())
	if got := compact(root); got != `{"a":null,"d":"x"}` {
		t.Errorf("replace member: %s", got)
	}
	// Replacing with a sibling moves the sibling.
	root.Get("a").ReplaceWith(root.Get("d"))
	if got := compact(root); got != `{"a":"x"}` {
		t.Errorf("replace with sibling: %s", got)
	}
	// Replacing a node with one of its own descendants.
	r2 := mustParse(t, `[{"wrap":{"inner":1}},2]`)
	w := r2.Children()[0]
	w.ReplaceWith(w.Get("wrap"))
	if got := compact(r2); got != `[{"inner":1},2]` {
		t.Errorf("replace with descendant: %s", got)
	}
	n := r2.Children()[1]
	n.ReplaceWith(n) // no-op
	checkTree(t, root, nil)
	checkTree(t, r2, nil)
}

func TestEditPanics(t *testing.T) {
	tests := []struct {
		name string
		fn   func()
	}{
		{"Set on array", func() { NewArray().Set("a", NewNull()) }},
		{"Append on object", func() { NewObject().Append(NewNull()) }},
		{"InsertAt on string", func() { NewString("x").InsertAt(0, NewNull()) }},
		{"InsertAt out of range", func() { NewArray().InsertAt(1, NewNull()) }},
		{"InsertAt negative", func() { NewArray().InsertAt(-1, NewNull()) }},
		{"nil child", func() { NewArray().Append(nil) }},
		{"into itself", func() { a := NewArray(); a.Append(a) }},
		{"into descendant", func() {
			a := NewArray()
			b := NewArray()
			a.Append(b)
			b.Append(a)
		}},
		{"ReplaceWith ancestor", func() {
			a := NewObject()
			b := NewArray()
			a.Set("b", b)
			c := NewNull()
			b.Append(c)
			c.ReplaceWith(a)
		}},
		{"ReplaceWith on root", func() { NewNull().ReplaceWith(NewNull()) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.fn()
		})
	}
}

func TestSetScalars(t *testing.T) {
	root := mustParse(t, `{"a":"s\n","b":{"x":[1]},"c":1}`)
	a := root.Get("a")
	if a.Flags&FlagEscaped == 0 {
		t.Error("escaped string not flagged")
	}
	if a.Flags&FlagSet != 0 || root.Get("c").Flags&FlagSet != 0 {
		t.Error("parsed values flagged as set")
	}
	a.Flags |= FlagChoice
	a.Elem = &Elem{Name: "a", Type: "string"}
	a.SetString(`q"uote`)
	if a.Flags != FlagChoice|FlagSet|FlagRawKey || a.Name() != "a" || a.Type() != "string" {
		t.Errorf("SetString changed typing: flags %b name %q type %q", a.Flags, a.Name(), a.Type())
	}
	b := root.Get("b")
	inner := b.Get("x")
	if err := b.SetNumber("2.50"); err != nil {
		t.Fatal(err)
	}
	if inner.Parent != nil {
		t.Error("dropped child keeps its parent")
	}
	c := root.Get("c")
	if err := c.SetNumber("1,5"); err == nil {
		t.Error("SetNumber accepted an invalid literal")
	}
	if c.Kind != Number || c.Value() != "1" || c.Flags&FlagSet != 0 {
		t.Error("failed SetNumber changed the node")
	}
	c.SetBool(true)
	if b.Flags&FlagSet == 0 || c.Flags&FlagSet == 0 {
		t.Error("SetNumber or SetBool left FlagSet clear")
	}
	root.Set("d", NewString("x"))
	root.Get("d").SetNull()
	if got := compact(root); got != `{"a":"q\"uote","b":2.50,"c":true,"d":null}` {
		t.Errorf("got %s", got)
	}
	checkTree(t, root, nil)
}

func TestPath(t *testing.T) {
	root := mustParse(t, `{"entry":[{"resource":{"name":[{},{"given":["A","B"]}],"a/b":{"~":1}}}]}`)
	tests := []struct {
		n    *Node
		want string
	}{
		{root, ""},
		{root.Get("entry"), "/entry"},
		{root.Get("entry").Children()[0].Get("resource").Get("name").Children()[1].Get("given").Children()[1], "/entry/0/resource/name/1/given/1"},
		{root.Get("entry").Children()[0].Get("resource").Get("a/b").Get("~"), "/entry/0/resource/a~1b/~0"},
	}
	for _, tc := range tests {
		if got := tc.n.Path(); got != tc.want {
			t.Errorf("Path = %q, want %q", got, tc.want)
		}
	}
}

func TestWalk(t *testing.T) {
	root := mustParse(t, `{"a":[1,{"b":2}],"c":{"d":3},"e":4}`)
	var seen []string
	root.Walk(func(n *Node) bool {
		seen = append(seen, n.Path())
		return n.Key() != "c" // skip c's children
	})
	want := "|/a|/a/0|/a/1|/a/1/b|/c|/e"
	if got := strings.Join(seen, "|"); got != want {
		t.Errorf("walk order %s, want %s", got, want)
	}
	// Replacing nodes during a walk.
	root.Walk(func(n *Node) bool {
		if n.Kind == Number {
			n.SetString("#")
		}
		if n.Key() == "c" {
			n.ReplaceWith(NewNull())
			return false
		}
		return true
	})
	if got := compact(root); got != `{"a":["#",{"b":"#"}],"c":null,"e":"#"}` {
		t.Errorf("after walk: %s", got)
	}
}

func TestClone(t *testing.T) {
	var p Parser
	root, err := p.Parse([]byte(`{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"id":"x"},"valueQuantity":{"value":1.50},"deceasedBoolean":false,"list":[1,2,3]}`))
	if err != nil {
		t.Fatal(err)
	}
	// Simulate typing.
	root.Elem, root.Flags = &Elem{Type: "Patient"}, FlagResource
	bd, shadow := root.Get("birthDate"), root.Get("_birthDate")
	bd.Elem = &Elem{Name: "birthDate", Type: "date"}
	bd.SetShadow(shadow)
	shadow.Flags = FlagShadow
	vq := root.Get("valueQuantity")
	vq.Elem, vq.Flags = &Elem{Name: "value", Type: "Quantity"}, FlagChoice
	root.Get("deceasedBoolean").SetShadow(root) // a link out of a cloned subtree

	c := root.Clone()
	if compact(c) != compact(root) {
		t.Fatalf("clone differs: %s", compact(c))
	}
	checkTree(t, c, nil)
	cbd := c.Get("birthDate")
	if cbd.Name() != "birthDate" || cbd.Type() != "date" || cbd.Shadow() != c.Get("_birthDate") {
		t.Errorf("clone typing: name %q type %q shadow ok %v", cbd.Name(), cbd.Type(), cbd.Shadow() == c.Get("_birthDate"))
	}
	if c.Get("_birthDate").Flags != FlagShadow || c.Type() != "Patient" || c.Flags != FlagResource {
		t.Error("flags or type not copied")
	}
	if cv := c.Get("valueQuantity"); cv.Name() != "value" || cv.Type() != "Quantity" || cv.Flags != FlagChoice {
		t.Errorf("choice: %q %q %b", cv.Name(), cv.Type(), cv.Flags)
	}
	if c.Get("deceasedBoolean").Shadow() != c {
		t.Error("shadow inside the clone not remapped")
	}
	// A subtree clone clears links that leave it, and keeps its key.
	sub := root.Get("deceasedBoolean").Clone()
	if sub.Shadow() != nil || sub.Key() != "deceasedBoolean" || sub.Parent != nil {
		t.Errorf("subtree clone: shadow %v key %q", sub.Shadow() != nil, sub.Key())
	}
	// Independent of the original.
	c.Get("list").Append(NewNull())
	c.Get("birthDate").SetString("changed")
	if compact(root) == compact(c) || root.Get("list").Len() != 3 {
		t.Error("editing the clone changed the original")
	}
	// And of the arena.
	want := compact(c)
	if _, err := p.Parse([]byte(`{"other":["x","y","z","w"],"more":{"a":1,"b":2,"c":3}}`)); err != nil {
		t.Fatal(err)
	}
	if got := compact(c); got != want {
		t.Errorf("clone changed by the next Parse: %s", got)
	}
}

func TestFromAny(t *testing.T) {
	n, err := FromAny(map[string]any{"b": []any{1, 2.5, "s", nil, true}, "a": map[string]any{"x": int64(-3)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := compact(n); got != `{"a":{"x":-3},"b":[1,2.5,"s",null,true]}` {
		t.Errorf("got %s", got)
	}
	checkTree(t, n, nil)
	if _, err := FromAny([]any{struct{}{}}); err == nil {
		t.Error("unsupported type accepted")
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1}`, true},
		{`{"a":1}`, `{"a":1.0}`, false},
		{`[1,2]`, `[2,1]`, false},
		{`{"a":null}`, `{"b":null}`, false},
		{`{"a":null}`, `{"a":null,"b":1}`, false},
		{`"x"`, `"x"`, true},
		{`"\u0078"`, `"x"`, true},
		{`true`, `"true"`, false},
		{`null`, `null`, true},
		{`{}`, `[]`, false},
	}
	for _, tc := range tests {
		a, b := mustParse(t, tc.a), mustParse(t, tc.b)
		if got := Equal(a, b); got != tc.want {
			t.Errorf("Equal(%s, %s) = %v", tc.a, tc.b, got)
		}
		if got := Equal(b, a); got != tc.want {
			t.Errorf("Equal(%s, %s) = %v", tc.b, tc.a, got)
		}
	}
	if !Equal(nil, nil) || Equal(nil, NewNull()) {
		t.Error("Equal with nil")
	}
}

// TestNoAllocs checks that parsing with a warm Parser, navigation, in-place
// edits and writing into a large enough buffer do not allocate.
func TestNoAllocs(t *testing.T) {
	doc := []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"F","given":["A","B"]}],"birthDate":"1970-01-01","text":{"div":"<div>a \"b\"\n</div>"}}`)
	var p Parser
	var root *Node
	parse := func() {
		var err error
		if root, err = p.Parse(doc); err != nil {
			t.Fatal(err)
		}
	}
	// Warm up past a text block boundary.
	for range 2 * textSlab / len(doc) {
		parse()
	}
	// Parsing allocates one text block per textSlab bytes of input.
	if got, limit := testing.AllocsPerRun(1000, parse), float64(len(doc))/textSlab+0.5; got > limit {
		t.Errorf("Parse: %v allocs per run, want at most %v", got, limit)
	}
	buf := make([]byte, 0, 4096)
	repl := NewString("x")
	ops := []struct {
		name string
		fn   func()
	}{
		{"Get", func() { _ = root.Get("name").Children()[0].Get("given") }},
		{"Index", func() { _ = root.Get("birthDate").Index() }},
		{"Set replace", func() { root.Set("id", repl) }},
		{"SetString", func() { root.Get("birthDate").SetString("1971") }},
		{"Remove and InsertAt", func() {
			g := root.Get("name").Children()[0].Get("given")
			a := g.Children()[0]
			g.Remove(a)
			g.InsertAt(1, a)
		}},
		{"ReplaceWith", func() {
			n := root.Get("name").Children()[0].Get("family")
			n.ReplaceWith(NewString("y"))
		}},
		{"Walk", func() { root.Walk(func(*Node) bool { return true }) }},
		{"AppendJSON", func() { buf = root.AppendJSON(buf[:0]) }},
	}
	for _, op := range ops {
		parse()
		allocs := testing.AllocsPerRun(100, op.fn)
		limit := 0.0
		if op.name == "ReplaceWith" {
			limit = 1 // the new node itself
		}
		if allocs > limit {
			t.Errorf("%s: %v allocs per run, want %v", op.name, allocs, limit)
		}
	}
}

func TestWalkRemoving(t *testing.T) {
	root := mustParse(t, `{"a":"x","b":1,"c":"y","d":[{"e":"z","f":2},"w",3],"g":"v"}`)
	var visited []string
	root.Walk(func(n *Node) bool {
		visited = append(visited, n.Path())
		if n.Kind == String {
			n.Detach()
			return false
		}
		if n.Kind == Number && n.Key() == "b" {
			n.ReplaceWith(NewString("replacement not visited"))
			return false
		}
		return true
	})
	if got := compact(root); got != `{"b":"replacement not visited","d":[{"f":2},3]}` {
		t.Errorf("after walk: %s", got)
	}
	// Paths are those at the time of the visit.
	want := "|/a|/b|/c|/d|/d/0|/d/0/e|/d/0/f|/d/1|/d/1|/g"
	if got := strings.Join(visited, "|"); got != want {
		t.Errorf("visited %s\nwant    %s", got, want)
	}
}

func TestInsertAtOutOfRangeChangesNothing(t *testing.T) {
	root := mustParse(t, `{"a":1,"b":[1,2],"c":{"x":true}}`)
	before := compact(root)
	x := root.Get("c").Get("x")
	tests := []func(){
		func() { root.Get("b").InsertAt(3, root.Get("a")) },
		func() { root.Get("b").InsertAt(2, root.Get("b").Children()[0]) }, // 1 item left after the move
		func() {
			x.SetKey("a")
			root.InsertAt(3, x) // "a" replaced: 2 members + x -> max index 2
		},
	}
	for i, fn := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("case %d: no panic", i)
				}
			}()
			fn()
		}()
		x.SetKey("x")
		if got := compact(root); got != before {
			t.Errorf("case %d: tree changed to %s", i, got)
		}
		checkTree(t, root, nil)
	}
}

func TestInsertAtLastPosition(t *testing.T) {
	root := mustParse(t, `{"a":1,"b":[1,2],"c":{"x":true}}`)
	b := root.Get("b")
	b.InsertAt(1, b.Children()[0]) // move within: 1 item left, so 1 is the end
	x := root.Get("c").Get("x")
	x.SetKey("a")
	root.InsertAt(2, x) // "a" replaced: b, c, then x as "a"
	if got := compact(root); got != `{"b":[2,1],"c":{},"a":true}` {
		t.Errorf("got %s", got)
	}
	checkTree(t, root, nil)
}

func TestRemoveFunc(t *testing.T) {
	n := mustParse(t, `[1,2,3,4,5,6]`)
	items := append([]*Node(nil), n.Children()...)
	var seen []string
	got := n.RemoveFunc(func(c *Node) bool {
		seen = append(seen, c.Value())
		return c.Value() == "2" || c.Value() == "3" || c.Value() == "6"
	})
	if got != 3 || compact(n) != "[1,4,5]" || strings.Join(seen, ",") != "1,2,3,4,5,6" {
		t.Errorf("RemoveFunc = %d, %s, visited %v", got, compact(n), seen)
	}
	for _, c := range items {
		removed := c.Value() == "2" || c.Value() == "3" || c.Value() == "6"
		if removed != (c.Parent == nil) {
			t.Errorf("item %s: parent %v", c.Value(), c.Parent)
		}
	}
	o := mustParse(t, `{"a":1,"b":2}`)
	if o.RemoveFunc(func(c *Node) bool { return c.Key() == "a" }) != 1 || compact(o) != `{"b":2}` || o.Get("a") != nil {
		t.Errorf("object: %s", compact(o))
	}
	if o.RemoveFunc(func(*Node) bool { return false }) != 0 || compact(o) != `{"b":2}` {
		t.Errorf("nothing removed: %s", compact(o))
	}
}

// TestSetPlain checks that a value or key set as plain is written as
// SetString and SetKey write it, and which texts IsPlain accepts.
func TestSetPlain(t *testing.T) {
	for _, c := range []struct {
		s     string
		plain bool
	}{
		{"", true}, {"abc", true}, {"2011-01-14T16:30:49-05:00", true}, {"Patient/" + strings.Repeat("0a", 32), true},
		{"héllo ☃", true}, {`a"b`, false}, {`a\b`, false}, {"a\nb", false}, {"\x1f", false}, {"\xff", false}, {"a\xc3", false},
	} {
		if got := IsPlain(c.s); got != c.plain {
			t.Errorf("IsPlain(%q) = %v, want %v", c.s, got, c.plain)
		}
		if !c.plain {
			continue
		}
		root, err := Parse([]byte(`{"k":1,"x":"y"}`))
		if err != nil {
			t.Fatal(err)
		}
		root.Children()[0].SetString(c.s)
		root.Children()[1].SetKey("key" + c.s)
		want := string(root.AppendJSON(nil))
		root.Children()[0].SetNull()
		root.Children()[0].SetPlainString(c.s)
		root.Children()[1].SetPlainKey("key" + c.s)
		if root.Children()[0].Flags&FlagRaw == 0 || root.Children()[0].Flags&FlagSet == 0 || root.Children()[1].Flags&FlagRawKey == 0 {
			t.Errorf("%q: flags %b and %b", c.s, root.Children()[0].Flags, root.Children()[1].Flags)
		}
		if got := string(root.AppendJSON(nil)); got != want {
			t.Errorf("%q: plain %s, want %s", c.s, got, want)
		}
		root.Children()[1].SetPlainValue(c.s)
		if root.Children()[1].Flags&FlagRaw == 0 || root.Children()[1].Value() != c.s {
			t.Errorf("%q: SetPlainValue gives %q, flags %b", c.s, root.Children()[1].Value(), root.Children()[1].Flags)
		}
		root.Children()[1].SetValue(c.s)
		if root.Children()[1].Flags&FlagRaw != 0 {
			t.Errorf("%q: SetValue keeps FlagRaw", c.s)
		}
	}
}
