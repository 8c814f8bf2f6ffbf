package jsontree

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestKeyInterning checks that a Parser gives every member of the same name
// the same pointer, across documents too, that names read back right
// whichever way they were written, and that SetKey and Clone keep them.
func TestKeyInterning(t *testing.T) {
	var p Parser
	p.ReuseText = true
	doc := `{"resourceType":"Patient","telecom":[{"system":"phone","value":"1"},{"system":"email","value":"2"}],"x\u0079z":{"xyz":1},"":2}`
	root, err := p.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tel := root.Get("telecom").Children()
	if tel[0].Get("system").key != tel[1].Get("system").key || tel[0].Get("value").key != tel[1].Get("value").key {
		t.Error("two members named system (value) do not share their name")
	}
	first := tel[0].Get("system").key
	// An escaped name and a plain one with the same text share it too; the
	// flag says which was plain.
	esc, plain := root.Get("xyz"), root.Get("xyz").Get("xyz")
	if esc.Key() != "xyz" || plain.Key() != "xyz" || esc.key != plain.key {
		t.Errorf("escaped name %q, plain %q, shared %v", esc.Key(), plain.Key(), esc.key == plain.key)
	}
	if esc.Flags&FlagRawKey != 0 || plain.Flags&FlagRawKey == 0 {
		t.Errorf("FlagRawKey: escaped %v, plain %v", esc.Flags&FlagRawKey != 0, plain.Flags&FlagRawKey != 0)
	}
	if e := root.Children()[3]; e.Key() != "" || e.key != nil || root.key != nil || tel[0].key != nil {
		t.Error("an empty name, the root or an array item has a name pointer")
	}
	if got := compact(root); got != `{"resourceType":"Patient","telecom":[{"system":"phone","value":"1"},{"system":"email","value":"2"}],"xyz":{"xyz":1},"":2}` {
		t.Errorf("written as %s", got)
	}
	c := root.Clone()
	// The next document (text memory reused) has the same pointers, and the
	// first tree's names, kept by its clone, have not changed.
	root2, err := p.Parse([]byte(`{"telecom":[{"system":"fax"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if root2.Get("telecom").Children()[0].Get("system").key != first {
		t.Error("the same name in the next document has another pointer")
	}
	if got := compact(c); got != `{"resourceType":"Patient","telecom":[{"system":"phone","value":"1"},{"system":"email","value":"2"}],"xyz":{"xyz":1},"":2}` {
		t.Errorf("clone written as %s", got)
	}
	// SetKey: common FHIR names are shared, others get a pointer; the
	// same name keeps the flag, another clears it.
	n := root2.Get("telecom").Children()[0].Get("system")
	n.SetKey("system")
	if n.Flags&FlagRawKey == 0 || n.Key() != "system" {
		t.Error("SetKey with the same name cleared FlagRawKey")
	}
	n.SetKey("use")
	if n.Flags&FlagRawKey != 0 || n.Key() != "use" || n.key != staticKeys["use"] {
		t.Errorf("SetKey(use): %q, flag %v", n.Key(), n.Flags&FlagRawKey != 0)
	}
	n.SetKey(`odd "name"`)
	if n.Key() != `odd "name"` || compact(n.Parent) != `{"odd \"name\"":"fax"}` {
		t.Errorf("SetKey: %q, %s", n.Key(), compact(n.Parent))
	}
	n.SetKey("")
	if n.key != nil || n.Key() != "" {
		t.Error("SetKey(\"\") kept a pointer")
	}
}

// TestKeyTableBounds feeds a Parser documents with far more distinct
// member names than its table keeps: names stay right, and the table stops
// at its bounds.
func TestKeyTableBounds(t *testing.T) {
	var p Parser
	long := strings.Repeat("L", maxKeyLen+1)
	for d := range 20 {
		var sb strings.Builder
		sb.WriteString(`{"` + long + `":0`)
		for i := range 1000 {
			sb.WriteString(`,"k` + strconv.Itoa(d*1000+i) + strings.Repeat("x", i%40) + `":` + strconv.Itoa(i))
		}
		sb.WriteString(`}`)
		doc := sb.String()
		root, err := p.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := compact(root); got != doc {
			t.Fatalf("document %d written differently", d)
		}
		for i, c := range root.Children()[1:] {
			if want := "k" + strconv.Itoa(d*1000+i) + strings.Repeat("x", i%40); c.Key() != want {
				t.Fatalf("document %d member %d: %q, want %q", d, i, c.Key(), want)
			}
		}
		if got := root.Children()[0].Key(); got != long {
			t.Fatalf("long name read as %d bytes", len(got))
		}
	}
	if len(p.keys.m) > maxKeys || p.keys.bytes > maxKeyBytes {
		t.Errorf("table holds %d names, %d bytes; bounds %d, %d", len(p.keys.m), p.keys.bytes, maxKeys, maxKeyBytes)
	}
	if len(p.keys.m) < maxKeys/2 && p.keys.bytes < maxKeyBytes/2 {
		t.Errorf("table holds only %d names, %d bytes: the bounds were not reached", len(p.keys.m), p.keys.bytes)
	}
	if _, ok := p.keys.m[long]; ok {
		t.Error("a name longer than maxKeyLen was kept")
	}
}

// TestKeyHashSpread checks that the cache's hash does not send the common
// FHIR names to a handful of slots, which would make every lookup miss.
func TestKeyHashSpread(t *testing.T) {
	slots := map[uint32]int{}
	for s := range staticKeys {
		slots[keyHash(s)]++
	}
	if len(slots) < len(staticKeys)*3/4 {
		t.Errorf("%d common names in only %d cache slots", len(staticKeys), len(slots))
	}
}

// TestShortKeys checks the parser's fast path for names of up to 7 bytes
// (found from one word of input) against encoding/json and the general
// path: names of every length near the end of the input, non-ASCII,
// escaped and invalid ones, and names that differ only by a NUL.
func TestShortKeys(t *testing.T) {
	names := []string{"", "a", "id", "use", "code", "value", "system", "display", "resource", "reference",
		"é", "aé", "abcdefé", `a\"b`, `a\u0062`, `ab\u0000`, "a\tb", "a\x01", `\n`, "ab\xff"}
	var p Parser
	for _, name := range names {
		for pad := 0; pad <= 9; pad++ {
			checkName(t, &p, name, pad)
		}
	}
	// "ab" and "ab\u0000" have the same first word; they must stay apart.
	root, err := p.Parse([]byte(`{"ab":1,"ab\u0000":2,"x":[{"ab":3},{"ab\u0000":4}]}`))
	if err != nil {
		t.Fatal(err)
	}
	x := root.Get("x").Children()
	if x[0].Children()[0].Key() != "ab" || x[1].Children()[0].Key() != "ab\x00" || root.Children()[1].Key() != "ab\x00" {
		t.Errorf("names %q %q %q", root.Children()[1].Key(), x[0].Children()[0].Key(), x[1].Children()[0].Key())
	}
}

// checkName parses {"name":1,"x":{"name":2}} followed by pad spaces and
// checks it against encoding/json: rejected when that rejects it, else
// both members named as it decodes the name, by one shared pointer, with
// FlagRawKey exactly when the name has no escape. It returns the first
// member when the document is valid.
func checkName(t *testing.T, p *Parser, name string, pad int) (*Node, bool) {
	t.Helper()
	doc := `{"` + name + `":1,"x":{"` + name + `":2}}` + strings.Repeat(" ", pad)
	root, err := p.Parse([]byte(doc))
	var want map[string]any
	if werr := json.Unmarshal([]byte(doc), &want); werr != nil || !utf8.ValidString(doc) {
		if err == nil {
			t.Errorf("%q: accepted", doc)
		}
		return nil, false
	}
	if err != nil {
		t.Errorf("%q: %v", doc, err)
		return nil, false
	}
	var wantKey string
	for k := range want {
		if k != "x" {
			wantKey = k
		}
	}
	a, b := root.Children()[0], root.Children()[1].Children()[0]
	if a.Key() != wantKey || b.Key() != wantKey || a.key != b.key {
		t.Errorf("%q: names %q and %q, want %q, shared %v", doc, a.Key(), b.Key(), wantKey, a.key == b.key)
	}
	if raw := !strings.Contains(name, `\`); (a.Flags&FlagRawKey != 0) != raw {
		t.Errorf("%q: FlagRawKey %v", doc, !raw)
	}
	return a, true
}

// TestEmptyKeyCacheSlot checks that the empty name is never taken for the
// long name whose cache slot it would look in (a long name's slot has the
// tag 0, as the empty name's bytes would).
func TestEmptyKeyCacheSlot(t *testing.T) {
	var p Parser
	long := ""
	for i := 0; long == ""; i++ {
		if s := "longname" + strconv.Itoa(i); keyHash(s) == hashWords(0, 0, 0) {
			long = s
		}
	}
	root, err := p.Parse([]byte(`{"` + long + `":1,"x":{"":2}}          `))
	if err != nil {
		t.Fatal(err)
	}
	if k := root.Get("x").Children()[0].Key(); k != "" {
		t.Errorf("the empty name read as %q", k)
	}
}

// TestFirstWord checks the word of a name's first bytes, which the cache
// compares short names by, against a byte-by-byte reading.
func TestFirstWord(t *testing.T) {
	for _, s := range []string{"", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh", "abcdefghij", "\xff\x00\x7f", "é"} {
		var want uint64
		for i := min(len(s), 8) - 1; i >= 0; i-- {
			want = want<<8 | uint64(s[i])
		}
		if got := firstWord(s); got != want {
			t.Errorf("%q: %#x, want %#x", s, got, want)
		}
	}
}

// TestMidKeys checks the parser's fast paths for names of 8 to 15 and 16
// to 23 bytes (found from two and three words of input) against
// encoding/json and the general path: names of every length from 7 to 25
// near the end of the input, non-ASCII, escaped and invalid ones, names
// that differ only by a trailing NUL, and duplicates of them.
func TestMidKeys(t *testing.T) {
	names := []string{"display", "resource", "reference", "identifier", "resourceType", "valueQuantity",
		"clinicalStatus", "serviceProvider", "productOrService", "effectiveDateTime",
		"resourcé", "referencé", "abcdefghijklmné", `resource\"`, `resourc\u0065Type`, `resourceTyp\u0065`,
		`abcdefgh\u0000`, `resourceType\u0000`, "resource\tType", "resourceTy\x01", "resourceTy\xff",
		"valueCodeableConcept", "managingOrganization", "locationCodeableConcept", "locationCodeableConcepts",
		"medicationCodeableConcept", "abcdefghijklmnopqrstuvé", `productOrServic\u0065`, `productOrService\u0000`,
		`effectiveDateTime\"`, "effectiveDate\tTime", "effectiveDateTi\x01e", "effectiveDateTim\xff"}
	var p Parser
	for _, name := range names {
		for pad := 0; pad <= 25; pad++ {
			a, ok := checkName(t, &p, name, pad)
			if !ok {
				continue
			}
			if kp, _ := p.keys.intern(a.Key()); kp != a.key {
				t.Errorf("%q padded by %d: the name's pointer is not the table's", name, pad)
			}
			// The same name twice in one object, once written with an
			// escape, is a duplicate.
			dup := `{"` + name + `":1,"` + strings.Replace(name, "e", `\u0065`, 1) + `":2}` + strings.Repeat(" ", pad)
			if _, err := p.Parse([]byte(dup)); err == nil || !strings.Contains(err.Error(), "duplicate key") {
				t.Errorf("%q: %v, want a duplicate key", dup, err)
			}
		}
	}
	// Names that are equal once zero-extended stay apart.
	root, err := p.Parse([]byte(`{"abcdefgh":1,"abcdefgh\u0000":2,"x":[{"abcdefgh":3},{"abcdefgh\u0000":4},{"abcdefgh\u0000\u0000":5}]}`))
	if err != nil {
		t.Fatal(err)
	}
	x := root.Get("x").Children()
	if x[0].Children()[0].Key() != "abcdefgh" || x[1].Children()[0].Key() != "abcdefgh\x00" ||
		x[2].Children()[0].Key() != "abcdefgh\x00\x00" || root.Children()[1].Key() != "abcdefgh\x00" {
		t.Errorf("names %q %q %q %q", root.Children()[1].Key(), x[0].Children()[0].Key(), x[1].Children()[0].Key(), x[2].Children()[0].Key())
	}
}

// TestMidHashSpread checks that the caches of names of 8 to 15 and 16 to
// 23 bytes do not send the common FHIR ones to a handful of slots.
func TestMidHashSpread(t *testing.T) {
	slots, n := map[uint32]int{}, 0
	long, nl := map[uint32]int{}, 0
	for _, p := range staticKeys {
		if len(*p) >= 8 && len(*p) < 16 {
			c := newMidSlot(p)
			slots[midHash(c.lo, c.hi)]++
			n++
		} else if len(*p) >= 16 && len(*p) < 24 {
			c := newLongSlot(p)
			long[longHash(c.w0, c.w1, c.hi)]++
			nl++
		}
	}
	if n < 40 || len(slots) < n*3/4 {
		t.Errorf("%d common names of 8 to 15 bytes in only %d cache slots", n, len(slots))
	}
	if nl < 10 || len(long) < nl*3/4 {
		t.Errorf("%d common names of 16 to 23 bytes in only %d cache slots", nl, len(long))
	}
}

// TestDuplicateKeysFastPath checks duplicate detection for common FHIR
// names, which readKey finds in the caches without reading them in full:
// in objects of every size around dupScan and dupScanFast (where the
// linear checks give way to the map), with names of 16 bytes and more
// (left to readKeySlow) before and after dupScan members, a duplicate of
// each earlier member, written plainly or with whitespace around the
// colon, is an error at its offset, and the same object without it
// parses.
func TestDuplicateKeysFastPath(t *testing.T) {
	names := []string{"id", "use", "code", "value", "system", "display", "resource", "reference",
		"identifier", "resourceType", "valueQuantity", "productOrService", "clinicalStatus", "serviceProvider",
		"meta", "text", "status", "effectiveDateTime", "subject", "encounter", "category", "issued", "period",
		"type", "url", "medicationCodeableConcept", "extension", "coding", "name", "given", "family", "gender",
		"birthDate", "address", "telecom", "line", "city", "state", "country", "postalCode", "language", "unit"}
	var p Parser
	for size := 1; size <= dupScanFast+4; size++ {
		var sb strings.Builder
		sb.WriteString(`{`)
		for i := range size {
			if i > 0 {
				sb.WriteString(`,`)
			}
			sb.WriteString(`"` + names[i] + `":` + strconv.Itoa(i))
		}
		valid := sb.String() + `}`
		if _, err := p.Parse([]byte(valid)); err != nil {
			t.Fatalf("%d members: %v", size, err)
		}
		for j := range size {
			for _, colon := range []string{`:`, ` :`, `: `} {
				// Spaces after the document keep the name away from the
				// end of input, where readKey leaves names to readKeySlow.
				doc := sb.String() + `,"` + names[j] + `"` + colon + `0}` + strings.Repeat(" ", 32)
				_, err := p.Parse([]byte(doc))
				var se *SyntaxError
				if !errors.As(err, &se) || se.Msg != "duplicate key" || se.Offset != int64(sb.Len()+1) || se.Path != "/"+names[j] {
					t.Fatalf("%d members, duplicate of %q with %q: %v", size, names[j], colon, err)
				}
			}
		}
	}
}
