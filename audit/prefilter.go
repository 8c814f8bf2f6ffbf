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

// mayIdentify reports whether a resource has a member named like one of
// collectKeys: one pass over its quotes, several times faster than walking
// it. Most resources of an export (observations, procedures, ...) have none.
// A string value that reads like one of the names only makes it walk.
func mayIdentify(b []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return false
		}
		i += j + 1
		if i >= len(b) {
			return false
		}
		for _, k := range collectKeys[b[i]] {
			if e := i + len(k); e < len(b) && b[e] == '"' && string(b[i:e]) == k {
				return true
			}
		}
	}
}
