package jsontree

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/internal/testshared"
)

// FuzzParse checks that parsing never panics, that what parses is written
// back as text that parses to the same tree, and that the parser agrees
// with encoding/json on what is valid JSON (apart from the checks that
// encoding/json does not make: duplicate keys and invalid UTF-8).
func FuzzParse(f *testing.F) {
	seeds := []string{
		`{}`, `[]`, `""`, `0`, `-0.0`, `1.50`, `1e400`, `100000000000000000000000001`,
		`true`, `false`, `null`, " \t\r\n{ \"a\" : [ 1 , 2 ] } ",
		`{"a":"\u00e9\ud83d\ude00\ud800\n\t\"\\\/"}`,
		`{"resourceType":"Patient","name":[{"given":["A"],"_given":[{"id":"1"}]}],"birthDate":"1970"}`,
		`{"a":1,"a":2}`, `{"a":1,}`, `[1,]`, `// x`, `NaN`, `01`, `"\x"`, "\"\xff\"",
		"\xEF\xBB\xBF[1]", `[[[[[[[[[[]]]]]]]]]]`, `{"k\"ey":"<&>\u2028"}`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k1":0}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// The FHIRPath conformance suite's resources, when available.
	if dir := testshared.Path(); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "conformance", "fhirpath-r4", "input-json", "*.json"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	var p Parser
	pb := Parser{Borrow: true, ReuseText: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data)
		n2, err2 := p.Parse(data)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("fresh and reused parsers disagree: %v / %v", err, err2)
		}
		// A borrowing parser and ParseString read the input in place: they
		// must not write it, and must give the same trees and errors.
		orig := string(data)
		n3, err3 := pb.Parse(data)
		if string(data) != orig {
			t.Fatalf("a borrowing parser changed its input:\n%q\n%q", orig, data)
		}
		n4, err4 := ParseString(orig)
		if (err == nil) != (err3 == nil) || (err == nil) != (err4 == nil) {
			t.Fatalf("copying and borrowing parsers disagree: %v / %v / %v", err, err3, err4)
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *SyntaxError", err)
			}
			if se2 := err2.(*SyntaxError); *se != *se2 {
				t.Fatalf("fresh and reused errors differ: %v / %v", se, se2)
			}
			if se3, se4 := err3.(*SyntaxError), err4.(*SyntaxError); *se != *se3 || *se != *se4 {
				t.Fatalf("copying and borrowing errors differ: %v / %v / %v", se, se3, se4)
			}
			if se.Offset < 0 || se.Offset > int64(len(data)) || se.Line < 1 || se.Column < 1 {
				t.Fatalf("bad position in %v", se)
			}
			if json.Valid(data) && se.Msg != "duplicate key" && se.Msg != "invalid UTF-8 in string" &&
				!strings.HasPrefix(se.Msg, "nesting depth") && !bytes.HasPrefix(data, []byte("\xEF\xBB\xBF")) {
				t.Fatalf("encoding/json accepts what we reject: %v", err)
			}
			return
		}
		out := n.AppendJSON(nil)
		if out2 := n2.AppendJSON(nil); !bytes.Equal(out, out2) {
			t.Fatalf("fresh and reused trees differ:\n%s\n%s", out, out2)
		}
		if out3 := n3.AppendJSON(nil); !bytes.Equal(out, out3) || !Equal(n, n3) {
			t.Fatalf("copying and borrowing trees differ:\n%s\n%s", out, out3)
		}
		if out4 := n4.AppendJSON(nil); !bytes.Equal(out, out4) || !Equal(n, n4) {
			t.Fatalf("Parse and ParseString trees differ:\n%s\n%s", out, out4)
		}
		if !json.Valid(out) {
			t.Fatalf("output is not valid JSON: %q", out)
		}
		if !json.Valid(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))) {
			t.Fatalf("we accept what encoding/json rejects: %q", data)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		if again := back.AppendJSON(nil); !bytes.Equal(out, again) {
			t.Fatalf("second round trip differs:\n%s\n%s", out, again)
		}
		if c := n.Clone().AppendJSON(nil); !bytes.Equal(out, c) {
			t.Fatalf("clone differs:\n%s\n%s", out, c)
		}
		ind, err := Parse(n.AppendIndent(nil, "", "  "))
		if err != nil {
			t.Fatalf("indented output does not parse: %v", err)
		}
		if got := ind.AppendJSON(nil); !bytes.Equal(out, got) {
			t.Fatalf("indented output reparses differently:\n%s\n%s", out, got)
		}
		// Same decoding as encoding/json (valid UTF-8 here).
		var want any
		dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))))
		dec.UseNumber()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if got := toAny(n); !jsonEqual(got, want) {
			t.Fatalf("tree differs from encoding/json:\n got %#v\nwant %#v", got, want)
		}
	})
}

// jsonEqual compares generic JSON values.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}
