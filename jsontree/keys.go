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
	// keyCacheBits is the log2 of the number of slots of the two-way cache in
	// front of the table, which finds most names without a map lookup.
	keyCacheBits = 10
	// midCacheBits is the log2 of the number of slots of the two-way cache
	// of names of 8 to 15 bytes (see lookupMid).
	midCacheBits = 8
	// longCacheBits is the log2 of the number of slots of the two-way
	// cache of names of 16 to 23 bytes (see lookupLong).
	longCacheBits = 7
)

// keyTable interns member names for a Parser. It is not safe for
// concurrent use; each Parser (and each pooled scratch of Parse) has its
// own.
type keyTable struct {
	cache [1 << keyCacheBits]keySlot
	mid   [1 << midCacheBits]midSlot
	long  [1 << longCacheBits]longSlot
	m     map[string]*string
	bytes int
	names nameSlab
}

// nameSlab allocates interned names next to each other: their string
// headers in arrays of 256 and their bytes in blocks of 4 KiB, rather than
// two small allocations each scattered over the heap, so that the names a
// program reads through its nodes over and over share few cache lines. A
// full array or block is replaced, never moved, so the pointers handed out
// stay valid.
type nameSlab struct {
	hdrs []string
	text []byte
}

// add returns a pointer to a copy of s (not empty) in the slab.
func (a *nameSlab) add(s string) *string {
	if len(a.hdrs) == cap(a.hdrs) {
		a.hdrs = make([]string, 0, 256)
	}
	if len(s) > cap(a.text)-len(a.text) {
		a.text = make([]byte, 0, max(4096, len(s)))
	}
	k := len(a.text)
	a.text = append(a.text, s...)
	a.hdrs = append(a.hdrs, unsafe.String(&a.text[k], len(s)))
	return &a.hdrs[len(a.hdrs)-1]
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
	if len(s) < 8 {
		tag := shortTag(firstWord(s), len(s))
		if c := &t.cache[h]; c.tag == tag {
			return c.p, true
		}
		if c := &t.cache[h^1]; c.tag == tag {
			return c.p, true
		}
	} else {
		if c := &t.cache[h]; c.p != nil && *c.p == s {
			return c.p, true
		}
		if c := &t.cache[h^1]; c.p != nil && *c.p == s {
			return c.p, true
		}
	}
	return t.internSlow(s, h)
}

// keySlot is an entry of keyTable's cache: a name's pointer and, for a
// name of 1 to 7 bytes, its tag (see shortTag), so that such a name, most
// FHIR names, is found from its bytes as one word, without a load through
// the pointer nor a string comparison (see lookupShort). The tag of a
// longer name is 0, which no short name has.
type keySlot struct {
	p   *string
	tag uint64
}

// newSlot returns the cache slot of the name p points at.
func newSlot(p *string) keySlot {
	if n := len(*p); n < 8 {
		return keySlot{p, shortTag(firstWord(*p), n)}
	}
	return keySlot{p: p}
}

// newKeyTable returns a table whose cache starts as staticCache, so that a
// new Parser finds the common FHIR names without a map lookup: a program
// that pools its parsers (sync.Pool, emptied at each collection) makes new
// ones often.
func newKeyTable() *keyTable {
	return &keyTable{cache: staticCache, mid: staticMid, long: staticLong}
}

// midSlot is an entry of keyTable's cache of names of 8 to 15 bytes, the
// second most common kind in FHIR (reference, resourceType, valueQuantity,
// identifier...): a name's pointer, its first 8 bytes as a little-endian
// word, and its other bytes zero-extended with the name's length in the
// top byte (see midTag), so that such a name is found from two words of
// input without a load through the pointer nor a string comparison (see
// lookupMid). The tag of an empty slot is 0, which no name has.
type midSlot struct {
	p      *string
	lo, hi uint64
}

// midTag returns the second tag word of a name of n bytes, 8 to 15, whose
// bytes after the first 8, zero-extended, are hi: hi with n in its top
// byte, which hi leaves free.
func midTag(hi uint64, n int) uint64 { return hi | uint64(n)<<56 }

// midHash returns the slot of a name in keyTable.mid from its first word
// and its tag (see midSlot).
func midHash(lo, tag uint64) uint32 {
	x := (lo ^ tag*0x9e3779b97f4a7c15) * 0xff51afd7ed558ccd
	return uint32(x >> (64 - midCacheBits))
}

// lookupMid returns the pointer of the name of 8 to 15 bytes whose first
// 8 bytes are lo and whose second tag word (see midTag) is tag, as intern
// would, if the cache holds it; nil if it does not. It is small enough to
// be inlined.
func (t *keyTable) lookupMid(lo, tag uint64) *string {
	h := midHash(lo, tag)
	c := &t.mid[h]
	if c.lo != lo || c.hi != tag {
		if c = &t.mid[h^1]; c.lo != lo || c.hi != tag {
			return nil
		}
	}
	return c.p
}

// addMid puts p, a shared pointer that intern returned for a name of 8 to
// 15 bytes that lookupMid did not find, into the cache of such names. As
// in the main cache, a name's slots are h and h^1, the last one added in h.
func (t *keyTable) addMid(p *string) {
	c := newMidSlot(p)
	h := midHash(c.lo, c.hi)
	t.mid[h^1], t.mid[h] = t.mid[h], c
}

// longSlot is an entry of keyTable's cache of names of 16 to 23 bytes
// (effectiveDateTime, productOrService, valueCodeableConcept...), like
// midSlot with one word more: the name's first two words and its other
// bytes zero-extended with its length in the top byte (see midTag).
type longSlot struct {
	p          *string
	w0, w1, hi uint64
}

// longHash returns the slot of a name in keyTable.long from its words.
func longHash(w0, w1, tag uint64) uint32 {
	x := (w0 ^ w1*0x9e3779b97f4a7c15 ^ tag*0xc2b2ae3d27d4eb4f) * 0xff51afd7ed558ccd
	return uint32(x >> (64 - longCacheBits))
}

// lookupLong returns the pointer of the name of 16 to 23 bytes whose first
// two words are w0 and w1 and whose tag word (see midTag) is tag, as
// intern would, if the cache holds it; nil if it does not. h is
// longHash(w0, w1, tag), which the caller computes so that this inlines.
func (t *keyTable) lookupLong(h uint32, w0, w1, tag uint64) *string {
	c := &t.long[h]
	if c.w0 != w0 || c.w1 != w1 || c.hi != tag {
		if c = &t.long[h^1]; c.w0 != w0 || c.w1 != w1 || c.hi != tag {
			return nil
		}
	}
	return c.p
}

// addLong puts p, a shared pointer that intern returned for a name of 16
// to 23 bytes, into the cache of such names unless it is there already,
// as the last one added in its slot.
func (t *keyTable) addLong(p *string) {
	c := newLongSlot(p)
	h := longHash(c.w0, c.w1, c.hi)
	if t.lookupLong(h, c.w0, c.w1, c.hi) != nil {
		return
	}
	t.long[h^1], t.long[h] = t.long[h], c
}

// newLongSlot returns the long cache slot of the name p points at, 16 to
// 23 bytes long.
func newLongSlot(p *string) longSlot {
	s := *p
	var hi uint64
	for i := len(s) - 1; i >= 16; i-- {
		hi = hi<<8 | uint64(s[i])
	}
	return longSlot{p, firstWord(s), firstWord(s[8:]), midTag(hi, len(s))}
}

// newMidSlot returns the mid cache slot of the name p points at, 8 to 15
// bytes long.
func newMidSlot(p *string) midSlot {
	s := *p
	var hi uint64
	for i := len(s) - 1; i >= 8; i-- {
		hi = hi<<8 | uint64(s[i])
	}
	return midSlot{p, firstWord(s), midTag(hi, len(s))}
}

// shortTag returns the tag of a name of n bytes, 1 to 7, whose bytes
// zero-extended are lo: lo with n in its top byte, which lo leaves free.
func shortTag(lo uint64, n int) uint64 { return lo | uint64(n)<<56 }

// findShort returns the pointer of the name of n bytes, 1 to 7, whose
// bytes zero-extended are lo, as intern would, if the cache holds it; nil
// if it does not. It is lookupShort for a name that is not empty, small
// enough to be inlined.
func (t *keyTable) findShort(lo uint64, n int) *string {
	h, tag := hashWords(lo, 0, n), shortTag(lo, n)
	c := &t.cache[h]
	if c.tag != tag {
		if c = &t.cache[h^1]; c.tag != tag {
			return nil
		}
	}
	return c.p
}

// lookupShort returns the pointer of the name of n bytes, 0 to 7, whose
// bytes zero-extended are lo, as intern would, if the cache holds it.
func (t *keyTable) lookupShort(lo uint64, n int) (*string, bool) {
	if n == 0 {
		return nil, true // the tag 0 is a long name's
	}
	p := t.findShort(lo, n)
	return p, p != nil
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
			p = t.names.add(s)
			t.bytes += len(s)
		}
		if len(t.m) < maxKeys {
			if t.m == nil {
				t.m = make(map[string]*string, 256)
			}
			t.m[*p] = p
		}
	}
	// Two-way: a name's slots are h and h^1 (one cache line), the last
	// one found in h.
	t.cache[h^1], t.cache[h] = t.cache[h], newSlot(p)
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
	n := len(s)
	switch {
	case n >= 4:
		// Two overlapping 4-byte loads, the last one shifted in place.
		b := unsafe.Slice(unsafe.StringData(s), n)
		return uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))<<(8*(n-4))
	case n > 0:
		// Bytes 0, n/2 and n-1 are all of a name of 1 to 3 bytes.
		return uint64(s[0]) | uint64(s[n/2])<<(8*(n/2)) | uint64(s[n-1])<<(8*(n-1))
	}
	return 0
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
	lo := firstWord(s)
	if n := len(s); n < 8 {
		if c := &staticCache[hashWords(lo, 0, n)]; c.tag == shortTag(lo, n) {
			return c.p
		}
	} else if c := &staticCache[keyHash(s)]; c.p != nil && *c.p == s {
		return c.p
	}
	if p := staticKeys[s]; p != nil {
		return p // a name whose cache slot another one has
	}
	p := new(string)
	*p = s
	return p
}

// SharedName returns name itself, or, when it is one of the common FHIR
// member names, the copy of it that every Parser gives the members so
// named (Key returns it). A program that keeps a table of member names and
// compares them with Key can store them through SharedName: comparing two
// strings that share their bytes stops at the pointers.
func SharedName(name string) string {
	if p := staticKeys[name]; p != nil {
		return *p
	}
	return name
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
		contained actor beneficiary payor outcome namespace`)
	m := make(map[string]*string, len(names))
	var slab nameSlab
	for _, s := range names {
		p := slab.add(s)
		m[s] = p
		if c := &staticCache[keyHash(s)]; c.p == nil {
			*c = newSlot(p)
		}
		if n := len(s); n >= 8 && n < 16 {
			c := newMidSlot(p)
			if m := &staticMid[midHash(c.lo, c.hi)]; m.p == nil {
				*m = c
			}
		} else if n >= 16 && n < 24 {
			c := newLongSlot(p)
			if m := &staticLong[longHash(c.w0, c.w1, c.hi)]; m.p == nil {
				*m = c
			}
		}
	}
	return m
}()

// staticCache holds staticKeys by their keyHash, the first of the names
// that share a slot, so that SetKey finds a common name without a map
// lookup. Like staticKeys it is never changed after init.
var staticCache [1 << keyCacheBits]keySlot

// staticMid holds the staticKeys of 8 to 15 bytes by their midHash, the
// first of the names that share a slot; a new keyTable's mid cache starts
// as a copy of it.
var staticMid [1 << midCacheBits]midSlot

// staticLong is staticMid for the staticKeys of 16 to 23 bytes.
var staticLong [1 << longCacheBits]longSlot
