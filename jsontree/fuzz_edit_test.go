package jsontree

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// FuzzEdit applies a sequence of edits, chosen by the bytes of ops, to a
// parsed document and checks after each one that the tree is consistent,
// that Path locates every node, and that the written text is valid JSON
// that parses back to an equal tree. Only edits that are valid for the
// chosen nodes are made, so no panic is expected. Shadows (SetShadow) set
// on nodes must survive every other edit.
func FuzzEdit(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"x"},[]],"c":{"d":null},"e":"s"}`), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	f.Add([]byte(`[[],{},"x",1,true,null]`), []byte{3, 17, 33, 4, 200, 9, 1, 66})
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":["A"]}],"_birthDate":{"id":"1"}}`), []byte{12, 40, 7, 99, 150, 2, 8})
	keys := []string{"a", "b", "", "a/b~", "é", `q"`}
	f.Fuzz(func(t *testing.T, doc, ops []byte) {
		var p Parser
		root, err := p.Parse(doc)
		if err != nil {
			return
		}
		if len(ops) > 64 {
			ops = ops[:64]
		}
		shadows := map[*Node]*Node{}
		for step := 0; step+1 < len(ops); step += 2 {
			op, arg := ops[step]%16, int(ops[step+1])
			var nodes []*Node
			root.Walk(func(n *Node) bool { nodes = append(nodes, n); return true })
			n := nodes[arg%len(nodes)]
			other := nodes[(arg/3+step)%len(nodes)]
			switch op {
			case 0:
				if n.Kind == Object {
					n.Set(keys[arg%len(keys)], NewString("v"+strconv.Itoa(step)))
				}
			case 1:
				if n.Kind == Array {
					n.Append(NewNull())
				}
			case 2:
				if n.Kind == Array || n.Kind == Object {
					v := NewBool(true)
					v.SetKey(keys[arg%len(keys)])
					pos := arg % (len(n.Children()) + 1)
					if n.Kind == Object && n.Get(v.Key()) != nil {
						pos = arg % len(n.Children()) // one member is replaced
					}
					n.InsertAt(pos, v)
				}
			case 3:
				if n.Parent != nil {
					if !n.Parent.Remove(n) {
						t.Fatal("Remove of a child returned false")
					}
				}
			case 4:
				n.Detach()
			case 5:
				if n.Parent != nil {
					n.ReplaceWith(NewObject())
				}
			case 6:
				n.SetString(`s"` + strconv.Itoa(arg))
			case 7:
				if err := n.SetNumber("-" + strconv.Itoa(arg) + ".50"); err != nil {
					t.Fatal(err)
				}
			case 8:
				n.SetBool(arg%2 == 0)
			case 9:
				n.SetNull()
			case 10:
				// Move another node under n, unless that would make a cycle.
				if isAncestor(other, n) {
					break
				}
				if n.Kind == Array {
					n.Append(other)
				} else if n.Kind == Object {
					n.Set(keys[arg%len(keys)], other)
				}
			case 11:
				if n.Parent != nil && !isAncestor(other, n) {
					n.ReplaceWith(other)
				}
			case 12:
				if n.Parent != nil {
					n.ReplaceWith(other.Clone())
				}
			case 13:
				if n.Parent != nil && n.Parent.Kind == Array {
					par := n.Parent
					n.Detach()
					par.InsertAt(arg%(len(par.Children())+1), n)
				}
			case 14:
				n.SetShadow(other)
				shadows[n] = other
			case 15:
				n.SetShadow(nil)
				delete(shadows, n)
			}
			for n, s := range shadows {
				if n.Shadow() != s {
					t.Fatalf("step %d: a shadow was lost or changed", step)
				}
			}
			checkTree(t, root, nil)
			root.Walk(func(c *Node) bool {
				if got := resolvePointer(root, c.Path()); got != c {
					t.Fatalf("Path %q does not lead back to its node", c.Path())
				}
				return true
			})
			out := root.AppendJSON(nil)
			if !json.Valid(out) {
				t.Fatalf("invalid output %q", out)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("output does not parse: %v", err)
			}
			if !Equal(back, root) {
				t.Fatalf("reparsed tree differs: %s", out)
			}
			if c := root.Clone().AppendJSON(nil); !bytes.Equal(c, out) {
				t.Fatalf("clone differs")
			}
		}
	})
}

// isAncestor reports whether a is n or one of n's ancestors.
func isAncestor(a, n *Node) bool {
	for ; n != nil; n = n.Parent {
		if n == a {
			return true
		}
	}
	return false
}

// resolvePointer follows a JSON pointer from root, or returns nil.
func resolvePointer(root *Node, ptr string) *Node {
	if ptr == "" {
		return root
	}
	n := root
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n.Kind {
		case Object:
			n = n.Get(tok)
		case Array:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n.Children()) {
				return nil
			}
			n = n.Children()[i]
		default:
			return nil
		}
		if n == nil {
			return nil
		}
	}
	return n
}
