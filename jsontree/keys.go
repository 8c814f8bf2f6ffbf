package jsontree

import (
	"encoding/binary"
	"strings"
	"unsafe"
)

// Member names are stored on a node as one pointer to a string (Node.key)
// rather than a string header: FHIR repeats a few hundred names endlessly
// (resourceType, id, system, value, use...), so a Parser hands the members
// of every document pointers to one shared copy of each name, and a node
// spends 8 bytes on its name instead of 16, with nothing allocated per
// member. The strings pointed at are never changed: SetKey points a node
// at another one.

// Bounds of a Parser's table of member names: past them (a document with
// more distinct names than FHIR has, as hostile input may be), a name gets
// a pointer of its own per member, so that the table cannot grow without
// limit over a stream of documents.
const (
	maxKeys     = 8192      // names in the table
	maxKeyBytes = 256 << 10 // bytes of the names in the table
	maxKeyLen   = 128       // longest name kept in the table
	// keyCacheBits is the log2 of the size of the direct-mapped cache in
	// front of the table, which finds most names without a map lookup.
	keyCacheBits = 10
)

// keyTable interns member names for a Parser. It is not safe for
// concurrent use; each Parser (and each pooled scratch of Parse) has its
// own.
type keyTable struct {
	cache [1 << keyCacheBits]keySlot
	m     map[string]*string
	bytes int
}

// intern returns a pointer to a string equal to s that never changes, nil
// for "", and whether it is shared: then every call with the same text
// returns the same pointer, so that names can be compared by pointer. s
// itself may be a slice of a document's text: a name kept in the table is
// copied first.
func (t *keyTable) intern(s string) (*string, bool) {
	if len(s) == 0 {
		return nil, true
	}
	h := keyHash(s)
	if c := &t.cache[h]; c.s == s {
		return c.p, true
	}
	return t.internSlow(s, h)
}

// keySlot is an entry of keyTable's cache: a name and its pointer, the
// name repeated so that a hit costs no load through the pointer, and its
// first 8 bytes (zero-extended), which for a name of up to 7 bytes is all
// of it: such a name is found with no string comparison (see lookupShort).
type keySlot struct {
	s  string
	p  *string
	lo uint64
}

// lookupShort returns the pointer of the name of n < 8 bytes whose bytes,
// zero-extended, are lo, as intern would, if the cache holds it.
func (t *keyTable) lookupShort(lo uint64, n int) (*string, bool) {
	c := &t.cache[hashWords(lo, 0, n)]
	if c.lo == lo && len(c.s) == n {
		return c.p, true
	}
	return nil, false
}

//go:noinline
func (t *keyTable) internSlow(s string, h uint32) (*string, bool) {
	p, ok := t.m[s]
	if !ok {
		p = staticKeys[s]
		if p == nil {
			if len(s) > maxKeyLen || len(t.m) >= maxKeys || t.bytes+len(s) > maxKeyBytes {
				// Past the bounds: a pointer of the member's own, to its
				// text as it is (like a Value, a slice of the document's
				// text), not kept in the table.
				p = new(string)
				*p = s
				return p, false
			}
			p = new(string)
			*p = strings.Clone(s)
			t.bytes += len(s)
		}
		if len(t.m) < maxKeys {
			if t.m == nil {
				t.m = make(map[string]*string, 256)
			}
			t.m[*p] = p
		}
	}
	t.cache[h] = keySlot{*p, p, firstWord(*p)}
	return p, true
}

// keyHash returns the cache slot of name s (not empty): a multiplicative
// hash of its length and of up to 16 of its bytes, the first and last 8.
func keyHash(s string) uint32 {
	var hi uint64
	if n := len(s); n > 8 {
		hi = binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[n-8:]), 8))
	}
	return hashWords(firstWord(s), hi, len(s))
}

// firstWord returns the first 8 bytes of s, or all of a shorter s
// zero-extended, as a little-endian word.
func firstWord(s string) uint64 {
	if len(s) >= 8 {
		return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s), 8))
	}
	var x uint64
	for i := len(s) - 1; i >= 0; i-- {
		x = x<<8 | uint64(s[i])
	}
	return x
}

// hashWords hashes a name of n bytes whose first word (see firstWord) is
// lo and whose last 8 bytes are hi (0 for a name of up to 8 bytes).
func hashWords(lo, hi uint64, n int) uint32 {
	x := (lo ^ hi*0x9e3779b97f4a7c15 ^ uint64(n)<<59) * 0xff51afd7ed558ccd
	return uint32(x >> (64 - keyCacheBits))
}

// keyPtr returns the pointer a node named s stores: nil for "", the shared
// copy of a common FHIR name, or else a pointer of its own.
func keyPtr(s string) *string {
	if s == "" {
		return nil
	}
	if p := staticKeys[s]; p != nil {
		return p
	}
	p := new(string)
	*p = s
	return p
}

// staticKeys holds shared copies of member names common in FHIR, so that
// SetKey and Clone give them to nodes without allocating, and every
// Parser's table starts from the same copies. It is never changed after
// init, so it is safe for concurrent use.
var staticKeys = func() map[string]*string {
	names := strings.Fields(`resourceType id meta versionId lastUpdated source profile security tag
		extension modifierExtension url value valueString valueCode valueBoolean valueInteger
		valueDecimal valueDateTime valueQuantity valueCodeableConcept valueReference valueCoding
		text status div identifier system code display coding type use period start end
		reference name family given prefix suffix telecom rank address line city district state
		postalCode country gender birthDate deceasedBoolean deceasedDateTime maritalStatus
		multipleBirthBoolean multipleBirthInteger communication language preferred
		generalPractitioner managingOrganization link other subject patient encounter
		category effectiveDateTime effectivePeriod issued performer component unit
		interpretation note authoredOn recorder asserter onsetDateTime abatementDateTime
		recordedDate clinicalStatus verificationStatus class serviceProvider participant
		individual location reasonCode reasonReference hospitalization occurrenceDateTime
		primarySource lotNumber vaccineCode intent medicationCodeableConcept requester
		dosageInstruction sequence timing route doseAndRate item billablePeriod created
		provider priority insurance coverage focal diagnosis procedure total amount currency
		payment entry fullUrl resource request method search mode data contentType attachment
		content date description author custodian context valueSet version title
		contained actor beneficiary payor outcome`)
	m := make(map[string]*string, len(names))
	for _, s := range names {
		p := new(string)
		*p = s
		m[s] = p
	}
	return m
}()
