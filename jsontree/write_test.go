package jsontree

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendJSONEscaping(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"plain", "abc", `"abc"`},
		{"empty", "", `""`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"short escapes", "\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"other controls", "\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"DEL is raw", "\x7f", "\"\x7f\""},
		{"html raw", "<a href=\"x\">&amp;</a>", `"<a href=\"x\">&amp;</a>"`},
		{"slash raw", "a/b", `"a/b"`},
		{"line separators raw", "\u2028\u2029", "\"\u2028\u2029\""},
		{"non-ASCII raw", "é日本😀", `"é日本😀"`},
		{"invalid UTF-8 replaced", "a\xffb\xc3", "\"a\ufffdb\ufffd\""},
		{"long with late escape", strings.Repeat("x", 40) + "\n" + strings.Repeat("y", 9), `"` + strings.Repeat("x", 40) + `\n` + strings.Repeat("y", 9) + `"`},
		{"long non-ASCII", strings.Repeat("ü", 30) + `"`, `"` + strings.Repeat("ü", 30) + `\""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := NewString(tc.value)
			got := string(n.AppendJSON(nil))
			if got != tc.want {
				t.Errorf("value: got %s, want %s", got, tc.want)
			}
			// The same escaping applies to member names.
			o := NewObject()
			o.Set(tc.value, NewNull())
			if got := string(o.AppendJSON(nil)); got != "{"+tc.want+":null}" {
				t.Errorf("key: got %s", got)
			}
			// The output is valid JSON that decodes to the value (with
			// invalid UTF-8 replaced, as encoding/json does).
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("output is not valid JSON: %v", err)
			}
			// Converting to runes replaces each invalid byte with U+FFFD.
			if want := string([]rune(tc.value)); back != want {
				t.Errorf("decodes to %q, want %q", back, want)
			}
		})
	}
}

// TestEscapesRoundTrip checks that a compact document using the minimal
// escaping is reproduced exactly, and that other escapings are normalized.
func TestEscapesRoundTrip(t *testing.T) {
	same := []string{
		`{"a":"line1\nline2\ttab \"q\" back\\slash","b":"\u0000\u001f\b\f\r"}`,
		`["<div xmlns=\"http://www.w3.org/1999/xhtml\">a &amp; b</div>"]`,
		`{"k\"ey":"v","k\\":1}`,
		"{\"u\":\"é and \u2028\"}",
	}
	for _, d := range same {
		n, err := ParseString(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if got := string(n.AppendJSON(nil)); got != d {
			t.Errorf("round trip:\n got %s\nwant %s", got, d)
		}
	}
	normalized := []struct{ in, want string }{
		{`"\u00e9"`, `"é"`},
		{`"\/"`, `"/"`},
		{`"\u000A"`, `"\n"`},
		{`"\u001F"`, `"\u001f"`},
		{`"\u003c"`, `"<"`},
		{`"\ud800"`, "\"\ufffd\""},
	}
	for _, tc := range normalized {
		n, err := ParseString(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got := string(n.AppendJSON(nil)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestAppendIndent(t *testing.T) {
	doc := `{"resourceType":"Patient","name":[{"given":["A","B"]}],"empty":{},"none":[],"n":1.50,"b":false,"z":null}`
	want := `{
  "resourceType": "Patient",
  "name": [
    {
      "given": [
        "A",
        "B"
      ]
    }
  ],
  "empty": {},
  "none": [],
  "n": 1.50,
  "b": false,
  "z": null
}`
	n, err := ParseString(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(n.AppendIndent(nil, "", "  ")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Same layout as encoding/json's Indent, prefix included.
	for _, prefix := range []string{"", ">>"} {
		var std bytes.Buffer
		if err := json.Indent(&std, []byte(doc), prefix, "\t"); err != nil {
			t.Fatal(err)
		}
		if got := string(n.AppendIndent(nil, prefix, "\t")); got != std.String() {
			t.Errorf("prefix %q:\ngot\n%s\nencoding/json\n%s", prefix, got, std.String())
		}
	}
	// Reparsing the indented text gives the compact document back.
	back, err := Parse(n.AppendIndent(nil, "", "  "))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(back.AppendJSON(nil)); got != doc {
		t.Errorf("indented text reparses to %s", got)
	}
	if got := string(NewString("x").AppendIndent([]byte("pre:"), "", "  ")); got != `pre:"x"` {
		t.Errorf("scalar: %s", got)
	}
}

func TestAppendJSONOddNodes(t *testing.T) {
	tests := []struct {
		n    *Node
		want string
	}{
		{nil, "null"},
		{&Node{}, "null"},
		{&Node{Kind: Number}, "null"},
		{func() *Node { n := &Node{Kind: Bool}; n.SetValue("yes"); return n }(), "false"},
		{NewBool(true), "true"},
		{NewNull(), "null"},
		{NewObject(), "{}"},
		{NewArray(), "[]"},
		{func() *Node {
			n := &Node{Kind: String, Elem: &Elem{Name: "n", Type: "string"}, Flags: FlagShadow | FlagChoice}
			n.SetValue("x")
			return n
		}(), `"x"`},
	}
	for _, tc := range tests {
		if got := string(tc.n.AppendJSON(nil)); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

// TestRawFlags checks the copy without scanning of the input's strings
// (FlagRaw, FlagRawKey): set by the parser only for strings without escapes,
// cleared when a value or a member name changes, so that the output is
// always escaped as AppendString escapes.
func TestRawFlags(t *testing.T) {
	var p Parser
	root, err := p.Parse([]byte(`{"a":"plain","b\"":"q\"uote","c":["x","y\\z"],"d":{"e":"é"}}`))
	if err != nil {
		t.Fatal(err)
	}
	a, c := root.Get("a"), root.Get("c")
	if a.Flags&(FlagRaw|FlagRawKey) != FlagRaw|FlagRawKey || root.Get(`b"`).Flags&(FlagRaw|FlagRawKey) != 0 {
		t.Errorf("flags: a %b, b %b", a.Flags, root.Get(`b"`).Flags)
	}
	if c.Children()[0].Flags&FlagRaw == 0 || c.Children()[1].Flags&FlagRaw != 0 || c.Children()[0].Flags&FlagRawKey != 0 {
		t.Errorf("array item flags %b %b", c.Children()[0].Flags, c.Children()[1].Flags)
	}
	if got, want := string(root.AppendJSON(nil)), `{"a":"plain","b\"":"q\"uote","c":["x","y\\z"],"d":{"e":"é"}}`; got != want {
		t.Errorf("round trip: got %s, want %s", got, want)
	}
	// Edits: a new value, a member renamed by Set, a member replaced.
	a.SetString("new\"line\n")
	c.Children()[0].SetString("tab\t")
	root.Get("d").Detach()
	moved := root.Get(`b"`)
	root.Set(`k\`, moved)
	nv := NewString("v")
	a.ReplaceWith(nv)
	if nv.Flags&FlagRawKey == 0 {
		t.Error("a replacement under the same plain name should be copied as it is")
	}
	if moved.Flags&FlagRawKey != 0 {
		t.Error("a renamed member keeps FlagRawKey")
	}
	want := `{"a":"v","c":["tab\t","y\\z"],"k\\":"q\"uote"}`
	if got := string(root.AppendJSON(nil)); got != want {
		t.Errorf("after edits: got %s, want %s", got, want)
	}
	// The same document written from an unflagged copy of the tree.
	clear := func(n *Node) bool { n.Flags &^= FlagRaw | FlagRawKey; return true }
	c2 := root.Clone()
	c2.Walk(clear)
	if got := string(c2.AppendJSON(nil)); got != want {
		t.Errorf("without the flags: got %s, want %s", got, want)
	}
}
