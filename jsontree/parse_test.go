package jsontree

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestSyntaxErrors(t *testing.T) {
	// A 20-member object followed by a duplicate of its fourth key, to
	// exercise the map-based duplicate check.
	var big strings.Builder
	big.WriteString("{")
	for i := range 20 {
		fmt.Fprintf(&big, `"k%d":%d,`, i, i)
	}
	bigDup := big.String() + `"k3":0}`
	deep := strings.Repeat("[", MaxDepth+1)

	tests := []struct {
		name   string
		in     string
		msg    string
		offset int64
		line   int
		col    int
		path   string
	}{
		{"empty", ``, "empty input", 0, 1, 1, ""},
		{"only space", "  \n ", "unexpected end of input", 4, 2, 2, ""},
		{"bom only", "\xEF\xBB\xBF", "empty input", 3, 1, 4, ""},
		{"trailing comma object", `{"a":1,}`, "trailing comma", 7, 1, 8, ""},
		{"trailing comma array", `[1,2,]`, "trailing comma", 5, 1, 6, ""},
		{"trailing comma nested", `{"a":[1,]}`, "trailing comma", 8, 1, 9, "/a"},
		{"line comment", "// c\n{}", "comments are not allowed", 0, 1, 1, ""},
		{"block comment after member", `{"a":1 /*x*/}`, "comments are not allowed", 7, 1, 8, ""},
		{"hash comment", `# x`, "comments are not allowed", 0, 1, 1, ""},
		{"NaN", `NaN`, "invalid character at start of value", 0, 1, 1, ""},
		{"Infinity in array", `[Infinity]`, "invalid character at start of value", 1, 1, 2, "/0"},
		{"negative Infinity", `[-Infinity]`, "invalid number: missing digits after '-'", 2, 1, 3, "/0"},
		{"leading zero", `01`, "invalid number: leading zero", 0, 1, 1, ""},
		{"negative leading zero", `[-01]`, "invalid number: leading zero", 2, 1, 3, "/0"},
		{"dot at end", `1.`, "unexpected end of input", 2, 1, 3, ""},
		{"dot without digits", `1.e5`, "invalid number: missing digits after '.'", 2, 1, 3, ""},
		{"exponent at end", `1e`, "unexpected end of input", 2, 1, 3, ""},
		{"exponent without digits", `[1e+]`, "invalid number: missing digits in exponent", 4, 1, 5, "/0"},
		{"minus alone", `-`, "unexpected end of input", 1, 1, 2, ""},
		{"leading plus", `+1`, "invalid number: leading '+'", 0, 1, 1, ""},
		{"leading dot", `.5`, "invalid number: missing digits before '.'", 0, 1, 1, ""},
		{"hex number", `0x1F`, "data after top-level value", 1, 1, 2, ""},
		{"control char", "\"a\x01b\"", "control character in string", 2, 1, 3, ""},
		{"raw tab", "{\"a\":\"x\ty\"}", "control character in string", 7, 1, 8, "/a"},
		{"raw newline in key", "{\"a\nb\":1}", "control character in string", 3, 1, 4, ""},
		{"invalid escape", `"\x"`, "invalid escape sequence", 1, 1, 2, ""},
		{"invalid escape after escape", `"\n\q"`, "invalid escape sequence", 3, 1, 4, ""},
		{"short unicode escape", `"\u12"`, "invalid \\u escape", 1, 1, 2, ""},
		{"bad hex in unicode escape", `["\u12G4"]`, "invalid \\u escape", 2, 1, 3, "/0"},
		{"control char after escape", "\"\\n\x1f\"", "control character in string", 3, 1, 4, ""},
		{"control char after escape and run", "\"\\n" + strings.Repeat("a", 20) + "\x01\"", "control character in string", 23, 1, 24, ""},
		{"invalid UTF-8 after escape and run", "\"\\n" + strings.Repeat("a", 20) + "\xc3(\"", "invalid UTF-8 in string", 23, 1, 24, ""},
		{"unterminated after escape and run", "\"\\n" + strings.Repeat("a", 20), "unexpected end of input", 23, 1, 24, ""},
		{"invalid UTF-8", "\"ab\xffcd\"", "invalid UTF-8 in string", 3, 1, 4, ""},
		{"truncated UTF-8", "{\"a\":\"\xc3\"}", "invalid UTF-8 in string", 6, 1, 7, "/a"},
		{"invalid UTF-8 after escape", "\"\\n\xff\"", "invalid UTF-8 in string", 3, 1, 4, ""},
		{"invalid UTF-8 before escape", "\"\xff\\n\"", "invalid UTF-8 in string", 1, 1, 2, ""},
		{"surrogate encoded in UTF-8", "\"\xed\xa0\x80\"", "invalid UTF-8 in string", 1, 1, 2, ""},
		{"invalid UTF-8 in key", "{\"\xfe\":1}", "invalid UTF-8 in string", 2, 1, 3, ""},
		{"invalid UTF-8 outside string", "[\xff]", "invalid character at start of value", 1, 1, 2, "/0"},
		{"unterminated string", `"abc`, "unexpected end of input", 4, 1, 5, ""},
		{"unterminated escape", `"abc\`, "unexpected end of input", 5, 1, 6, ""},
		{"unterminated after escape", `"a\nbc`, "unexpected end of input", 6, 1, 7, ""},
		{"duplicate key", `{"a":1,"a":2}`, "duplicate key", 7, 1, 8, "/a"},
		{"duplicate nested", `{"name":[{"given":["x"],"given":[]}]}`, "duplicate key", 24, 1, 25, "/name/0/given"},
		{"duplicate escaped", `{"a":1,"\u0061":2}`, "duplicate key", 7, 1, 8, "/a"},
		{"duplicate in big object", bigDup, "duplicate key", int64(strings.LastIndex(bigDup, `"k3"`)), 1, strings.LastIndex(bigDup, `"k3"`) + 1, "/k3"},
		{"duplicate key pointer escaping", `{"x":{"a/b~":1,"a/b~":2}}`, "duplicate key", 15, 1, 16, "/x/a~1b~0"},
		{"duplicate multiline", "{\n  \"a\": 1,\n  \"a\": 2\n}", "duplicate key", 14, 3, 3, "/a"},
		{"duplicate crlf", "{\r\n\"a\":1,\r\n\"a\":2}", "duplicate key", 11, 3, 1, "/a"},
		{"garbage after object", `{} x`, "data after top-level value", 3, 1, 4, ""},
		{"two values", `1 2`, "data after top-level value", 2, 1, 3, ""},
		{"extra close", `{}}`, "data after top-level value", 2, 1, 3, ""},
		{"missing colon", `{"a" 1}`, "expected ':' after object key", 5, 1, 6, ""},
		{"number key", `{1:2}`, "expected string for object key", 1, 1, 2, ""},
		{"single quotes key", `{'a':1}`, "expected string for object key", 1, 1, 2, ""},
		{"single quotes value", `['a']`, "single-quoted strings are not allowed", 1, 1, 2, "/0"},
		{"missing comma array", `[1 2]`, "expected ',' or ']' after array item", 3, 1, 4, ""},
		{"missing comma object", `{"a":1 "b":2}`, "expected ',' or '}' after object member", 7, 1, 8, ""},
		{"mismatched close", `[1}`, "expected ',' or ']' after array item", 2, 1, 3, ""},
		{"bad literal", `[tru]`, "invalid literal", 1, 1, 2, "/0"},
		{"truncated literal", `[tru`, "unexpected end of input", 4, 1, 5, "/0"},
		{"truncated null", `nul`, "unexpected end of input", 3, 1, 4, ""},
		{"wrong case literal", `{"a":nulL}`, "invalid literal", 5, 1, 6, "/a"},
		{"True", `True`, "invalid character at start of value", 0, 1, 1, ""},
		{"missing value", `{"a":}`, "expected value", 5, 1, 6, "/a"},
		{"leading comma", `[,1]`, "expected value", 1, 1, 2, "/0"},
		{"empty member", `{,}`, "expected string for object key", 1, 1, 2, ""},
		{"double comma", `{"a":1,,"b":2}`, "expected string for object key", 7, 1, 8, ""},
		{"unclosed array", `{"a":[1,2`, "unexpected end of input", 9, 1, 10, "/a"},
		{"unclosed object", `[{"a":1`, "unexpected end of input", 7, 1, 8, "/0"},
		{"unclosed after comma", `[1,`, "unexpected end of input", 3, 1, 4, "/1"},
		{"unclosed after colon", `{"a":`, "unexpected end of input", 5, 1, 6, "/a"},
		{"unclosed after key", `{"a"`, "unexpected end of input", 4, 1, 5, ""},
		{"bom then error", "\xEF\xBB\xBF[1,]", "trailing comma", 6, 1, 7, ""},
		{"bom in middle", "[1]\xEF\xBB\xBF", "data after top-level value", 3, 1, 4, ""},
		{"path through arrays", `{"a":[[0,{"b":[1,x]}]]}`, "invalid character at start of value", 17, 1, 18, "/a/0/1/b/1"},
		{"too deep", deep, fmt.Sprintf("nesting depth exceeds %d", MaxDepth), MaxDepth, 1, MaxDepth + 1, strings.Repeat("/0", MaxDepth)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []string{"fresh", "reused"} {
				var n *Node
				var err error
				if mode == "fresh" {
					n, err = Parse([]byte(tc.in))
				} else {
					var p Parser
					if _, err := p.Parse([]byte(`{"warm":[1,"up",{"x":null}]}`)); err != nil {
						t.Fatal(err)
					}
					n, err = p.Parse([]byte(tc.in))
				}
				if err == nil {
					t.Fatalf("%s: Parse succeeded with kind %v, want error %q", mode, n.Kind, tc.msg)
				}
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("%s: error %T is not a *SyntaxError", mode, err)
				}
				got := *se
				want := SyntaxError{Offset: tc.offset, Line: tc.line, Column: tc.col, Path: tc.path, Msg: tc.msg}
				if got != want {
					t.Errorf("%s: got  %+v\nwant %+v", mode, got, want)
				}
			}
		})
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	_, err := ParseString(`{"name":[{"given":["x"],"given":[]}]}`)
	want := "jsontree: duplicate key at /name/0/given (line 1, column 25, offset 24)"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	_, err = ParseString(`[1,]`)
	want = "jsontree: trailing comma (line 1, column 4, offset 3)"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

// TestErrorsHaveNoValues checks that no error quotes a string or other
// value from the document.
func TestErrorsHaveNoValues(t *testing.T) {
	const secret = "SECRETVALUE"
	docs := []string{
		`{"a":"SECRETVALUE` + "\x01" + `"}`,
		`{"a":"SECRETVALUE"`,
		`{"a":"SECRETVALUE" x}`,
		`{"a":SECRETVALUE}`,
		`{"a":"SECRETVALUE\q"}`,
		`{"a":"SECRETVALUE` + "\xff" + `"}`,
		`["SECRETVALUE",]`,
		`["SECRETVALUE"]SECRETVALUE`,
		`{"a":1SECRETVALUE}`,
		`{"a":"\u00e9SECRETVALUE\x"}`,
		`{"a":[1,2,SECRETVALUE]}`,
		`SECRETVALUE`,
		`{"a":"x","b":tSECRETVALUE}`,
	}
	for _, d := range docs {
		_, err := ParseString(d)
		if err == nil {
			t.Errorf("document %q parsed without error", d)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error for %q quotes a value: %v", d, err)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	n, err := ParseString(ok)
	if err != nil {
		t.Fatalf("depth %d: %v", MaxDepth, err)
	}
	depth := 0
	for ; n != nil; depth++ {
		if len(n.Children()) == 0 {
			break
		}
		n = n.Children()[0]
	}
	if depth != MaxDepth-1 {
		t.Errorf("innermost array at depth %d, want %d", depth, MaxDepth-1)
	}
	objs := strings.Repeat(`{"a":`, MaxDepth) + "1" + strings.Repeat("}", MaxDepth)
	if _, err := ParseString(objs); err != nil {
		t.Errorf("objects nested %d deep: %v", MaxDepth, err)
	}
	objs = strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	if _, err := ParseString(objs); err == nil {
		t.Errorf("objects nested %d deep parsed", MaxDepth+1)
	}
}

func TestNumbersKeepText(t *testing.T) {
	tests := []string{
		"0", "-0", "-0.0", "1.50", "1e400", "-1E-400", "1E+2", "0.000",
		"100000000000000000000000001", "3.141592653589793238462643383279",
		"123456789012345678901234567890e-30", "0e0", "-0.0e-0",
	}
	var p Parser
	for _, lit := range tests {
		doc := `{"v":` + lit + `,"a":[` + lit + `]}`
		for _, parse := range []func([]byte) (*Node, error){Parse, p.Parse} {
			n, err := parse([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", lit, err)
			}
			v := n.Get("v")
			if v.Kind != Number || v.Value() != lit {
				t.Errorf("%s: got %v %q", lit, v.Kind, v.Value())
			}
			if a := n.Get("a").Children()[0]; a.Kind != Number || a.Value() != lit {
				t.Errorf("%s in array: got %v %q", lit, a.Kind, a.Value())
			}
			if out := string(n.AppendJSON(nil)); out != doc {
				t.Errorf("%s: round trip %q", lit, out)
			}
		}
		if !ValidNumber(lit) {
			t.Errorf("ValidNumber(%q) = false", lit)
		}
	}
}

func TestValidNumber(t *testing.T) {
	tests := []struct {
		lit  string
		want bool
	}{
		{"0", true}, {"-0", true}, {"1.5e10", true}, {"1E-2", true},
		{"", false}, {"-", false}, {"+1", false}, {"01", false}, {"1.", false},
		{".1", false}, {"1e", false}, {"1e+", false}, {"NaN", false}, {"Infinity", false},
		{" 1", false}, {"1 ", false}, {"0x10", false}, {"1_000", false}, {"--1", false},
	}
	for _, tc := range tests {
		if got := ValidNumber(tc.lit); got != tc.want {
			t.Errorf("ValidNumber(%q) = %v, want %v", tc.lit, got, tc.want)
		}
	}
}

func TestStringDecoding(t *testing.T) {
	tests := []struct {
		in      string // JSON string literal
		want    string
		escaped bool
	}{
		{`""`, "", false},
		{`"plain"`, "plain", false},
		{`"a\"b"`, `a"b`, true},
		{`"\\"`, `\`, true},
		{`"\/"`, `/`, true},
		{`"\b\f\n\r\t"`, "\b\f\n\r\t", true},
		{`"\u0000"`, "\x00", true},
		{`"\u00e9\u00E9"`, "éé", true},
		{`"é and 日本"`, "é and 日本", false},
		{`"\ud83d\ude00"`, "😀", true},
		{`"\uD83D\uDE00x"`, "😀x", true},
		{`"\ud83d"`, "\ufffd", true},
		{`"\ude00"`, "\ufffd", true},
		{`"\ud83dx"`, "\ufffdx", true},
		{`"\ud83d\u0041"`, "\ufffdA", true},
		{`"\ud83d\ud83d\ude00"`, "\ufffd😀", true},
		{`"<>&\u2028\u2029"`, "<>&\u2028\u2029", true},
		{"\"\u2028\"", "\u2028", false},
		{`"` + strings.Repeat("abcdefgh", 10) + `\n"`, strings.Repeat("abcdefgh", 10) + "\n", true},
		{`"` + strings.Repeat("é", 20) + `"`, strings.Repeat("é", 20), false},
		{`"\u0041` + strings.Repeat("é", 20) + `"`, "A" + strings.Repeat("é", 20), true},
		{`"\n` + strings.Repeat("abcdefgh", 20) + `\t` + "xyz" + `\"` + strings.Repeat("é", 5) + "ijklmnopq" + `"`,
			"\n" + strings.Repeat("abcdefgh", 20) + "\txyz\"" + strings.Repeat("é", 5) + "ijklmnopq", true},
	}
	var p Parser
	for _, tc := range tests {
		for _, parse := range []func([]byte) (*Node, error){Parse, p.Parse} {
			n, err := parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("%s: %v", tc.in, err)
			}
			if n.Kind != String || n.Value() != tc.want {
				t.Errorf("%s: got %v %q, want %q", tc.in, n.Kind, n.Value(), tc.want)
			}
			if got := n.Flags&FlagEscaped != 0; got != tc.escaped {
				t.Errorf("%s: FlagEscaped = %v, want %v", tc.in, got, tc.escaped)
			}
			// encoding/json agrees on the decoded text.
			var std string
			if err := json.Unmarshal([]byte(tc.in), &std); err != nil {
				t.Fatalf("%s: encoding/json: %v", tc.in, err)
			}
			if std != n.Value() {
				t.Errorf("%s: encoding/json decodes %q, we decode %q", tc.in, std, n.Value())
			}
		}
	}
}

func TestKeysAndOrder(t *testing.T) {
	doc := `{"z":1,"a":{"y":[3,2,1],"b":null},"m":true,"a\"k":"v","":false}`
	n, err := ParseString(doc)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range n.Children() {
		keys = append(keys, c.Key())
	}
	want := []string{"z", "a", "m", `a"k`, ""}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %q, want %q", keys, want)
	}
	if got := string(n.AppendJSON(nil)); got != doc {
		t.Errorf("round trip:\n got %s\nwant %s", got, doc)
	}
	checkTree(t, n, nil)
	y := n.Get("a").Get("y")
	if y.Kind != Array || len(y.Children()) != 3 || y.Children()[0].Value() != "3" || y.Children()[2].Value() != "1" {
		t.Errorf("array y = %s", y.AppendJSON(nil))
	}
	if b := n.Get("m"); b.Kind != Bool || b.Value() != "true" {
		t.Errorf("m = %v %q", b.Kind, b.Value())
	}
	if nl := n.Get("a").Get("b"); nl.Kind != Null || nl.Value() != "" {
		t.Errorf("b = %v %q", nl.Kind, nl.Value())
	}
}

func TestBOMAndWhitespace(t *testing.T) {
	tests := []struct{ in, out string }{
		{"\xEF\xBB\xBF{\"a\":1}", `{"a":1}`},
		{" \t\r\n[ 1 , 2 ]\r\n ", `[1,2]`},
		{"{ \"a\" : { } , \"b\" : [ ] }", `{"a":{},"b":[]}`},
		{`"x"`, `"x"`},
		{`  7  `, `7`},
		{`null`, `null`},
	}
	for _, tc := range tests {
		n, err := ParseString(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := string(n.AppendJSON(nil)); got != tc.out {
			t.Errorf("%q: got %s, want %s", tc.in, got, tc.out)
		}
	}
}

// TestAgreesWithEncodingJSON compares trees with encoding/json's decoding
// on a set of valid documents.
func TestAgreesWithEncodingJSON(t *testing.T) {
	docs := []string{
		`{"resourceType":"Patient","id":"x","name":[{"given":["A","B"],"family":"C"}],"active":true,"multipleBirthInteger":2,"deceasedBoolean":false,"_gender":{"extension":[{"url":"u","valueCode":"x"}]},"n":null}`,
		`[1,-2.5e3,"\u00e9\n",[[]],{}]`,
		`{"a":{"b":{"c":{"d":[{"e":"` + strings.Repeat("long ", 200) + `"}]}}}}`,
	}
	for _, d := range docs {
		n, err := ParseString(d)
		if err != nil {
			t.Fatalf("%v", err)
		}
		dec := json.NewDecoder(strings.NewReader(d))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if got := toAny(n); !reflect.DeepEqual(got, want) {
			t.Errorf("tree differs from encoding/json:\n got %#v\nwant %#v", got, want)
		}
	}
}

// toAny converts a tree to encoding/json's generic form (numbers as
// json.Number).
func toAny(n *Node) any {
	switch n.Kind {
	case Null:
		return nil
	case Bool:
		return n.Value() == "true"
	case Number:
		return json.Number(n.Value())
	case String:
		return n.Value()
	case Array:
		a := make([]any, 0, len(n.Children()))
		for _, c := range n.Children() {
			a = append(a, toAny(c))
		}
		return a
	case Object:
		m := make(map[string]any, len(n.Children()))
		for _, c := range n.Children() {
			m[c.Key()] = toAny(c)
		}
		return m
	}
	return fmt.Sprintf("invalid kind %d", n.Kind)
}

// checkTree verifies the structural invariants below n: each child's
// Parent is its container, array items have empty keys, object members
// have distinct keys, and scalars have no children.
func checkTree(t *testing.T, n, parent *Node) {
	t.Helper()
	if n.Parent != parent {
		t.Fatalf("node at %s: wrong Parent", n.Path())
	}
	switch n.Kind {
	case Object:
		seen := map[string]bool{}
		for _, c := range n.Children() {
			if seen[c.Key()] {
				t.Fatalf("object at %s: duplicate key %q", n.Path(), c.Key())
			}
			seen[c.Key()] = true
			checkTree(t, c, n)
		}
	case Array:
		for _, c := range n.Children() {
			if c.Key() != "" {
				t.Fatalf("item at %s has key %q", c.Path(), c.Key())
			}
			checkTree(t, c, n)
		}
	default:
		if len(n.Children()) != 0 {
			t.Fatalf("scalar at %s has children", n.Path())
		}
	}
}

// TestParserReuse checks that a Clone of one document survives the next
// Parse on the same Parser, and that reused arenas give the same trees.
func TestParserReuse(t *testing.T) {
	first := `{"resourceType":"Patient","name":[{"family":"Fa\"mily","given":["One","Two"]}],"n":1.50,"list":[1,2,3,4,5,6,7,8,9,10]}`
	second := `{"resourceType":"Observation","valueQuantity":{"value":7.25,"unit":"mg"},"status":"final","note":[{"text":"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}]}`
	var p Parser
	data := []byte(first)
	n1, err := p.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	keep := n1.Clone()
	family := n1.Get("name").Children()[0].Get("family").Value() // a string survives too
	// The caller may reuse its input buffer.
	copy(data, bytes.Repeat([]byte{'#'}, len(data)))
	for range 50 {
		n2, err := p.Parse([]byte(second))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(n2.AppendJSON(nil)); got != second {
			t.Fatalf("second document: %s", got)
		}
	}
	if got := string(keep.AppendJSON(nil)); got != first {
		t.Errorf("clone of first document after reuse:\n got %s\nwant %s", got, first)
	}
	checkTree(t, keep, nil)
	if family != `Fa"mily` {
		t.Errorf("string from first document changed to %q", family)
	}
	// A parse error does not disturb the next document.
	if _, err := p.Parse([]byte(`{"a":[1,2,{"b":`)); err == nil {
		t.Fatal("truncated document parsed")
	}
	n3, err := p.Parse([]byte(first))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(n3.AppendJSON(nil)); got != first {
		t.Errorf("after error: %s", got)
	}
	checkTree(t, n3, nil)
}

// TestParserManyNodes exercises arena growth: documents larger than the
// arenas' first chunks, then smaller ones.
func TestParserManyNodes(t *testing.T) {
	var p Parser
	for _, n := range []int{10, 5000, 40000, 3, 20000} {
		var sb strings.Builder
		sb.WriteString(`{"items":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"i":%d,"s":"v%d","a":[%d,true,null]}`, i, i, i)
		}
		sb.WriteString(`],"end":"x"}`)
		doc := sb.String()
		root, err := p.Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%d items: %v", n, err)
		}
		if got := len(root.Get("items").Children()); got != n {
			t.Fatalf("%d items: got %d", n, got)
		}
		if got := string(root.AppendJSON(nil)); got != doc {
			t.Fatalf("%d items: round trip differs", n)
		}
		checkTree(t, root, nil)
		// Appending to an arena-backed child list must not overwrite a
		// neighbour's children.
		items := root.Get("items")
		first := items.Children()[0].Get("a")
		first.Append(NewString("added"))
		if n > 1 {
			if got := string(items.Children()[1].AppendJSON(nil)); got != `{"i":1,"s":"v1","a":[1,true,null]}` {
				t.Fatalf("neighbour changed: %s", got)
			}
		}
	}
}

// TestLargeString parses a document holding one 256 MiB string value.
func TestLargeString(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB document skipped in short mode")
	}
	const size = 256 << 20
	// {"data":"abcdefgh...abcdefgh\n"} with a 256 MiB value.
	doc := make([]byte, 9+size-8+4)
	copy(doc, `{"data":"`)
	body := doc[9 : 9+size-8]
	copy(body, "abcdefgh")
	for k := 8; k < len(body); k *= 2 {
		copy(body[k:], body[:k])
	}
	copy(doc[9+size-8:], `\n"}`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	var p Parser
	n, err := p.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("parsed %d bytes in %v, allocating %d bytes", len(doc), elapsed, allocated)
	// One copy of the input, plus small change.
	if allocated > uint64(len(doc))+1<<20 {
		t.Errorf("parsing allocated %d bytes for a %d-byte document", allocated, len(doc))
	}
	v := n.Get("data")
	if v == nil || v.Kind != String || len(v.Value()) != len(body)+1 {
		t.Fatalf("value of length %d, want %d", len(v.Value()), len(body)+1)
	}
	if v.Value()[:len(body)] != string(body) || v.Value()[len(body)] != '\n' {
		t.Error("value differs from the document's string")
	}
	// The parser is usable afterwards and has dropped the big arenas.
	if _, err := p.Parse([]byte(`{"small":1}`)); err != nil {
		t.Fatal(err)
	}
}

func TestSyntaxErrorPathSanitized(t *testing.T) {
	long := strings.Repeat("k", 100)
	tests := []struct{ in, path string }{
		{`{"` + long + `":1,"` + long + `":2}`, "/" + strings.Repeat("k", maxErrorToken) + "..."},
		{`{"a\nb":[1,]}`, "/a\ufffdb"},
		{`{"é` + strings.Repeat("é", 40) + `":x}`, "/" + strings.Repeat("é", 32) + "..."},
		{`{"a\u0000":x}`, "/a\ufffd"},
	}
	for _, tc := range tests {
		_, err := ParseString(tc.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Fatalf("%s: error %v", tc.in, err)
		}
		if se.Path != tc.path {
			t.Errorf("%.20s...: path %q, want %q", tc.in, se.Path, tc.path)
		}
	}
}

// TestParseConcurrent runs the allocating Parse (which shares pooled work
// buffers) and per-goroutine Parsers at the same time; run it with -race.
func TestParseConcurrent(t *testing.T) {
	docs := []string{
		`{"resourceType":"Patient","name":[{"given":["A","B"]}],"n":1.50}`,
		`[1,2,{"a":"\u00e9\n","b":[true,false,null]}]`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17}`,
		`{"a":1,"a":2}`,
	}
	want := make([]string, len(docs))
	for i, d := range docs {
		if n, err := ParseString(d); err == nil {
			want[i] = compact(n)
		} else {
			want[i] = err.Error()
		}
	}
	const workers = 4
	errs := make(chan string, workers)
	for w := range workers {
		go func() {
			var p Parser
			var kept []*Node
			for round := range 300 {
				i := (round + w) % len(docs)
				var n *Node
				var err error
				if round%2 == 0 {
					n, err = Parse([]byte(docs[i]))
				} else {
					n, err = p.Parse([]byte(docs[i]))
				}
				got := ""
				if err != nil {
					got = err.Error()
				} else {
					got = compact(n)
					if round%2 == 0 {
						kept = append(kept, n)
					}
				}
				if got != want[i] {
					errs <- fmt.Sprintf("worker %d round %d: got %s, want %s", w, round, got, want[i])
					return
				}
			}
			// Trees from Parse stay intact while others parse.
			for _, n := range kept {
				if s := compact(n); s != want[0] && s != want[1] && s != want[2] {
					errs <- "a tree from Parse changed: " + s
					return
				}
			}
			errs <- ""
		}()
	}
	for range workers {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

func TestParserReuseText(t *testing.T) {
	var p Parser
	a, err := p.Parse([]byte(`{"k":"first"}`))
	if err != nil {
		t.Fatal(err)
	}
	first := a.Get("k").Value()
	if _, err := p.Parse([]byte(`{"k":"other"}`)); err != nil {
		t.Fatal(err)
	}
	if first != "first" {
		t.Errorf("without ReuseText a string changed: %q", first)
	}
	p.ReuseText = true
	a, _ = p.Parse([]byte(`{"k":"again"}`))
	kept := a.Get("k").Value()
	b, _ := p.Parse([]byte(`{"k":"later"}`))
	if kept != "later" || b.Get("k").Value() != "later" {
		t.Errorf("with ReuseText the text memory is not reused: %q, %q", kept, b.Get("k").Value())
	}
	// Steady state: no allocation at all.
	doc := []byte(`{"resourceType":"Patient","name":[{"family":"Doe","given":["J"]}],"active":true}`)
	if n := testing.AllocsPerRun(100, func() { p.Parse(doc) }); n != 0 {
		t.Errorf("%v allocations per Parse with ReuseText", n)
	}
}

func TestParserBorrow(t *testing.T) {
	p := Parser{Borrow: true}
	data := []byte(`{"k":"plain","e":"a\"b\\c\u00e9\n","n":1.50,"` + "\xc3\xa9" + `":"\ud800x"}`)
	orig := string(data)
	n, err := p.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != orig {
		t.Fatalf("the input was written: %q", data)
	}
	want, err := Parse([]byte(orig))
	if err != nil {
		t.Fatal(err)
	}
	if got, w := n.AppendJSON(nil), want.AppendJSON(nil); !bytes.Equal(got, w) {
		t.Fatalf("borrowed tree differs:\n%s\n%s", got, w)
	}
	// Unescaped strings and numbers are the input's own bytes.
	within := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		b := uintptr(unsafe.Pointer(&data[0]))
		return p >= b && p < b+uintptr(len(data))
	}
	for _, s := range []string{n.Get("k").Value(), n.Get("n").Value()} {
		if !within(s) {
			t.Errorf("%q is not a slice of the input", s)
		}
	}
	// Member names are the parser's interned copies, which must not keep
	// the borrowed input.
	if k := n.Get("k").Key(); within(k) || k != "k" {
		t.Errorf("member name %q is a slice of the borrowed input", k)
	}
	if e := n.Get("e").Value(); within(e) || e != "a\"b\\c\u00e9\n" {
		t.Errorf("escaped string %q decoded into the input or wrongly", e)
	}
	// Errors inside and after escaped strings are located as without Borrow.
	for _, doc := range []string{`{"a":"x\qy"}`, `["ab\"c`, `["a\\"b"]`, `{"a":"\u12"}`, "[\"\\n\x01\"]", `{"a\"":1,"a\"":2}`} {
		_, e1 := Parse([]byte(doc))
		_, e2 := p.Parse([]byte(doc))
		se1, ok1 := e1.(*SyntaxError)
		se2, ok2 := e2.(*SyntaxError)
		if !ok1 || !ok2 || *se1 != *se2 {
			t.Errorf("%s: errors differ: %v / %v", doc, e1, e2)
		}
	}
	// A document without escapes costs no text memory at all.
	big := bytes.Repeat([]byte(`{"system":"phone","value":"555-0100","use":"home"},`), 2000)
	big = append(append([]byte(`[`), big[:len(big)-1]...), ']')
	p.Parse(big) // warm the arenas up
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if _, err := p.Parse(big); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	if d := m1.TotalAlloc - m0.TotalAlloc; d > uint64(len(big))/4 {
		t.Errorf("a borrowed parse of %d bytes allocated %d bytes", len(big), d)
	}
}

// TestParseLargeArenas parses documents over 4 MB, whose arenas are sized
// from the density of their first part and a bound counted from their
// bytes: dense, dense then sparse, sparse then dense. Each is reproduced
// byte for byte, and a document whose bound is high only because a string
// is full of commas does not get memory for the values it does not have.
func TestParseLargeArenas(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 60 MB of documents")
	}
	dense := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"a":%d,"b":[1,{}],"c":"x"}`, i%10)
		}
		return b.String()
	}
	commas := strings.Repeat(",{[", 2<<20)
	docs := map[string]string{
		"dense":          `[` + dense(200000) + `]`,
		"dense commas":   `[` + strings.Repeat(`{"system":"phone","value":"555-0100","use":"home"},`, 20000) + `"` + commas + `"]`,
		"commas dense":   `["` + commas + `",` + dense(200000) + `]`,
		"sparse dense":   `["` + strings.Repeat("x", 5<<20) + `",` + dense(200000) + `]`,
		"dense in array": `{"k":[[` + dense(100000) + `],[` + dense(100000) + `]]}`,
	}
	var p Parser
	for name, doc := range docs {
		for _, borrow := range []bool{false, true} {
			p.Borrow = borrow
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			n, err := p.Parse([]byte(doc))
			runtime.ReadMemStats(&m1)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if out := n.AppendJSON(nil); string(out) != doc {
				t.Fatalf("%s: not reproduced (%d bytes, want %d)", name, len(out), len(doc))
			}
			if name == "dense commas" {
				// 20,000 elements of 13 bytes per value, extrapolated to
				// the rest: about 600,000 nodes (67 MB), plus the input
				// copy unless borrowed. Its bound alone would ask for 6.4
				// million nodes (720 MB).
				if d := m1.TotalAlloc - m0.TotalAlloc; d > 150<<20 {
					t.Errorf("%s (borrow %v): %d MB allocated for a %d MB document", name, borrow, d>>20, len(doc)>>20)
				}
			}
		}
		f, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out := f.AppendJSON(nil); string(out) != doc {
			t.Fatalf("%s: not reproduced by Parse", name)
		}
	}
}

// TestPendingGrowth checks that a long array costs its tree and little
// more: the list of items read so far (Parser.pending) doubles when it
// grows, so its discarded copies add up to about its final size, not four
// times it as append's growth by a quarter would. For a large document
// that garbage is usually still on the heap when the tree is done.
func TestPendingGrowth(t *testing.T) {
	const items = 260_000 // just under a power of two
	doc := []byte("[" + strings.Repeat("0,", items-1) + "0]")
	var p Parser
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if _, err := p.Parse(doc); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	tree := (items+1+maxNodeChunk)*int(unsafe.Sizeof(Node{})) + items*int(ptrSize) + len(doc)
	pending := int(m1.TotalAlloc-m0.TotalAlloc) - tree
	if limit := 5 * items * int(ptrSize) / 2; pending > limit {
		t.Errorf("parsing %d items allocated %d bytes beyond the tree, want at most %d", items, pending, limit)
	}
}

// TestStopMask checks that the lowest byte stopMask flags is the lowest
// that is '"', '\\', a control character or not ASCII, as specialMask
// with the top bits, on words of bytes drawn from each class and its
// neighbours.
func TestStopMask(t *testing.T) {
	bytesOf := []byte{0, 1, 0x1f, 0x20, 0x21, '"', 0x23, 'A', '[', '\\', ']', 'z', 0x7e, 0x7f, 0x80, 0x9f, 0xa0, 0xc3, 0xff}
	lowest := func(x uint64) int {
		for i := range 8 {
			c := byte(x >> (8 * i))
			if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
				return i
			}
		}
		return 8
	}
	state := uint64(1)
	for range 200000 {
		var x uint64
		for i := range 8 {
			state = state*6364136223846793005 + 1442695040888963407
			x |= uint64(bytesOf[(state>>33)%uint64(len(bytesOf))]) << (8 * i)
		}
		want := lowest(x)
		got := bits.TrailingZeros64(stopMask(x)) >> 3
		old := bits.TrailingZeros64(specialMask(x)|x&msb) >> 3
		if got != want || old != want {
			t.Fatalf("%#016x: stopMask says byte %d, specialMask %d, want %d", x, got, old, want)
		}
	}
}
