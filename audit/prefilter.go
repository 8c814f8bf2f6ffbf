package audit

import "bytes"

// collectKeys are the member names under which Collect finds identifiers,
// by first letter. A resource with none of them has nothing to collect.
var collectKeys = func() [256][]string {
	var k [256][]string
	for _, name := range []string{
		"name", "valueHumanName", "family", "given", // HumanName
		"telecom", "valueContactPoint", // ContactPoint
		"identifier", "valueIdentifier", // Identifier
		"address", "valueAddress", // Address
		"birthDate", "deceasedDateTime",
		"attachment", "photo", "valueAttachment", "presentedForm", "contentAttachment", "sourceAttachment", "content", // Attachment
	} {
		k[name[0]] = append(k[name[0]], name)
	}
	return k
}()

// maxEscapedKey is the longest of collectKeys with every byte escaped as
// \uXXXX.
const maxEscapedKey = 17 * 6

// mayIdentify reports whether a resource has a member named like one of
// collectKeys: one pass over its colons (a member name is a string followed
// by one, white space between), several times faster than walking it. Most
// resources of an export (observations, procedures, ...) have none. A
// string value that reads like one of the names followed by a colon, and a
// member name with a backslash escape, only make it walk.
func mayIdentify(b []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], ':')
		if j < 0 {
			return false
		}
		i += j + 1
		e := i - 2 // the closing quote of the name, before any white space
		for e >= 0 && (b[e] == ' ' || b[e] == '\t' || b[e] == '\n' || b[e] == '\r') {
			e--
		}
		if e < 1 || b[e] != '"' {
			continue
		}
		// The longest name is 17 bytes, 102 with every letter escaped.
		s, esc := e-1, false
		for s >= 0 && e-s <= maxEscapedKey+1 && b[s] != '"' {
			esc = esc || b[s] == '\\'
			s--
		}
		if s < 0 || b[s] != '"' || s+1 >= e {
			continue
		}
		if esc {
			// A name with escapes ("n\u0061me"), which the parsers
			// decode: walk it rather than decode here.
			return true
		}
		if e-s > 18 {
			continue
		}
		for _, k := range collectKeys[b[s+1]] {
			if string(b[s+1:e]) == k {
				return true
			}
		}
	}
}
