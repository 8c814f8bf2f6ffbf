package synth

import (
	"encoding/base64"
	"sort"
	"unicode/utf8"

	"fhirdeid/jsontree"
)

// LeakChecker finds planted identifiers in de-identified output.
type LeakChecker struct {
	set     map[string]bool
	lengths []int
	found   map[string]bool
}

// NewLeakChecker returns a checker for the given identifiers.
func NewLeakChecker(identifiers []string) *LeakChecker {
	c := &LeakChecker{set: map[string]bool{}, found: map[string]bool{}}
	seen := map[int]bool{}
	for _, id := range identifiers {
		if id == "" {
			continue
		}
		c.set[id] = true
		if !seen[len(id)] {
			seen[len(id)] = true
			c.lengths = append(c.lengths, len(id))
		}
	}
	sort.Ints(c.lengths)
	return c
}

// CheckLine scans one resource (a JSON document): every string value, and the
// decoded content of every value that is valid base64 (attachments), for
// planted identifiers. An unparsable line is scanned as raw text.
func (c *LeakChecker) CheckLine(line []byte) {
	root, err := jsontree.Parse(line)
	if err != nil {
		c.scan(string(line))
		return
	}
	root.Walk(func(n *jsontree.Node) bool {
		if n.Kind != jsontree.String {
			return true
		}
		c.scan(n.Value())
		if len(n.Value()) >= 16 && len(n.Value())%4 == 0 {
			// Only text: hex hashes are valid base64 too, and their
			// "decoded" bytes are noise that can spell a short name.
			if raw, err := base64.StdEncoding.DecodeString(n.Value()); err == nil && isText(raw) {
				c.scan(string(raw))
			}
		}
		return true
	})
}

// isText reports whether b is UTF-8 text without control characters other
// than white space.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

// scan looks for identifiers that stand as words: starting at the
// beginning of s or after a character that is not a letter or digit, and
// ending at the end of s or before one.
func (c *LeakChecker) scan(s string) {
	for i := 0; i < len(s); i++ {
		if i > 0 && isAlnum(s[i-1]) {
			continue
		}
		for _, l := range c.lengths {
			if i+l > len(s) {
				break
			}
			if i+l < len(s) && isAlnum(s[i+l]) {
				continue
			}
			if w := s[i : i+l]; c.set[w] {
				c.found[w] = true
			}
		}
	}
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// Found returns the number of distinct identifiers seen so far. The
// identifiers themselves are PHI in a real data set, so callers report the
// count, not the values.
func (c *LeakChecker) Found() int { return len(c.found) }

// FoundIdentifiers returns the identifiers seen, sorted (for tests of the
// generator's own made-up data only).
func (c *LeakChecker) FoundIdentifiers() []string {
	var out []string
	for id := range c.found {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
