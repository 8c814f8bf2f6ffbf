package anonymize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Hasher computes the cryptoHash method's values (§2.5): the lower-case hex
// HMAC-SHA256 of a value's text under the configuration's cryptoHashKey. It
// is safe for concurrent use.
type Hasher struct {
	pool  sync.Pool
	types *typeSet
}

// NewHasher returns a Hasher keyed with the UTF-8 bytes of key. fhirVersion
// ("R4", the default when empty, or "STU3") selects the resource type names
// recognised in literal references.
func NewHasher(key, fhirVersion string) *Hasher {
	k := []byte(key)
	h := &Hasher{types: resourceTypeSet(fhirVersion)}
	h.pool.New = func() any { return &hmacState{m: hmac.New(sha256.New, k)} }
	return h
}

// hmacState is a keyed HMAC with its buffers, so that hashing a value
// allocates nothing. A state is used by one goroutine at a time (it lives in
// the Hasher's pool). Repeated values are the engine's to remember
// (hashMemo, per run).
type hmacState struct {
	m   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// Hash returns lower-case hex HMAC-SHA256 of s; an empty s is returned
// unchanged.
func (h *Hasher) Hash(s string) string {
	if s == "" {
		return s
	}
	var out [2 * sha256.Size]byte
	return string(h.appendHash(out[:0], nil, s))
}

// appendHash appends Hash(s) to dst, computed with st, or with a pooled
// state when st is nil.
func (h *Hasher) appendHash(dst []byte, st *hmacState, s string) []byte {
	if s == "" {
		return dst
	}
	var sum [sha256.Size]byte
	if st != nil {
		st.sumInto(&sum, s)
	} else {
		h.sum(&sum, s)
	}
	return appendHex(dst, &sum)
}

// appendHex appends the lower-case hex of sum, as hex.AppendEncode does but
// eight digits at a time: each nibble of four bytes is spread into a byte
// of a word and turned into its digit there (a hash miss costs about 240
// ns, a byte at a time took 35 of them).
func appendHex(dst []byte, sum *[sha256.Size]byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 2*sha256.Size)[:n+2*sha256.Size]
	out := dst[n:]
	for i := 0; i < sha256.Size; i += 4 {
		x := uint64(binary.BigEndian.Uint32(sum[i:]))
		x = (x | x<<16) & 0x0000ffff0000ffff
		x = (x | x<<8) & 0x00ff00ff00ff00ff
		x = (x | x<<4) & 0x0f0f0f0f0f0f0f0f                           // one nibble per byte, first digit highest
		letters := (x + 0x0606060606060606) >> 4 & 0x0101010101010101 // 1 where the nibble is 10 or more
		binary.BigEndian.PutUint64(out[2*i:], x+0x3030303030303030+letters*('a'-'0'-10))
	}
	return dst
}

// maxPooledInput bounds the input buffer a pooled HMAC keeps.
const maxPooledInput = 64 << 10

func (h *Hasher) sum(dst *[sha256.Size]byte, s string) {
	st := h.pool.Get().(*hmacState)
	st.sumInto(dst, s)
	h.pool.Put(st)
}

// newState returns a keyed HMAC state of h's own, for a caller that hashes
// many values from one goroutine (hashMemo).
func (h *Hasher) newState() *hmacState { return h.pool.New().(*hmacState) }

// sumInto sets dst to the HMAC of s.
func (st *hmacState) sumInto(dst *[sha256.Size]byte, s string) {
	st.m.Reset()
	st.in = append(st.in[:0], s...)
	st.m.Write(st.in)
	st.m.Sum(st.sum[:0])
	*dst = st.sum
	if cap(st.in) > maxPooledInput {
		st.in = nil
	}
}

// HashReference hashes only the id part of a Reference.reference value
// (§2.5): "#id" gives "#"+Hash(id); a literal reference
// "[http(s)://host/path/]Type/id[/_history/v]", "urn:oid:..." or
// "urn:uuid:..." keeps everything but the id; anything else (conditional
// references, unknown types, ids with characters outside [A-Za-z0-9-.]) is
// hashed whole.
func (h *Hasher) HashReference(ref string) string {
	if ref == "" {
		return ref
	}
	var stack [256]byte
	return string(h.appendHashReference(stack[:0], nil, ref))
}

// appendHashReference appends HashReference(ref) to dst, hashing with st
// as appendHash does.
func (h *Hasher) appendHashReference(dst []byte, st *hmacState, ref string) []byte {
	if ref == "" {
		return dst
	}
	start, end := 0, len(ref)
	if strings.HasPrefix(ref, "#") {
		start = 1
	} else if s, e, ok := matchReference(ref, h.types); ok {
		start, end = s, e
	}
	dst = append(dst, ref[:start]...)
	dst = h.appendHash(dst, st, ref[start:end])
	return append(dst, ref[end:]...)
}

// transformReference is TransformReference without regular expressions.
func transformReference(ref string, fn func(string) string, types *typeSet) string {
	if ref == "" {
		return ref
	}
	if rest, ok := strings.CutPrefix(ref, "#"); ok {
		return "#" + fn(rest)
	}
	if idStart, idEnd, ok := matchReference(ref, types); ok {
		return ref[:idStart] + fn(ref[idStart:idEnd]) + ref[idEnd:]
	}
	return fn(ref)
}

var resourceTypeSets sync.Map // upper-case version -> *typeSet

func resourceTypeSet(fhirVersion string) *typeSet {
	v := strings.ToUpper(fhirVersion)
	if s, ok := resourceTypeSets.Load(v); ok {
		return s.(*typeSet)
	}
	types := ResourceTypes(v)
	if types == nil {
		types = ResourceTypes("R4")
	}
	set := newTypeSet(types)
	got, _ := resourceTypeSets.LoadOrStore(v, set)
	return got.(*typeSet)
}

// typeSet is a set of resource type names, open-addressed on their length
// and three letters: a lookup costs a multiplication and a string compare or
// two, where a map hashed the whole name (a quarter of a reference's cost).
type typeSet struct {
	slots [typeSlots]string
}

const typeSlots = 1024 // a power of two, several times the number of types

func newTypeSet(names []string) *typeSet {
	t := new(typeSet)
	if len(names) > typeSlots/2 {
		panic("anonymize: too many resource types for typeSet")
	}
	for _, n := range names {
		if n == "" || t.has(n) {
			continue
		}
		i := typeSlot(n)
		for t.slots[i] != "" {
			i = (i + 1) & (typeSlots - 1)
		}
		t.slots[i] = n
	}
	return t
}

func typeSlot(s string) uint32 {
	n := len(s)
	h := uint32(n) | uint32(s[0])<<8 | uint32(s[n/2])<<16 | uint32(s[n-1])<<24
	return h * 0x9E3779B1 >> (32 - 10) // 10 = log2(typeSlots)
}

// has reports whether s is in the set.
func (t *typeSet) has(s string) bool {
	if s == "" {
		return false
	}
	for i := typeSlot(s); ; i = (i + 1) & (typeSlots - 1) {
		switch t.slots[i] {
		case s:
			return true
		case "":
			return false
		}
	}
}

// matchReference finds the id part of a reference as the three patterns of
// ReferencePatterns do, without regular expressions: it returns the id's
// bounds.
func matchReference(ref string, types *typeSet) (idStart, idEnd int, ok bool) {
	switch {
	case strings.HasPrefix(ref, "urn:oid:"):
		id := ref[len("urn:oid:"):]
		return len("urn:oid:"), len(ref), isOID(id)
	case strings.HasPrefix(ref, "urn:uuid:"):
		id := ref[len("urn:uuid:"):]
		return len("urn:uuid:"), len(ref), isUUID(id)
	}
	// Literal: head "/" id, optionally followed by "/_history/" version:
	// a version is the last segment, after "/_history".
	p := lastID(ref)
	if p < 0 {
		return 0, 0, false
	}
	if head, ok := strings.CutSuffix(ref[:p-1], "/_history"); ok {
		if q := lastID(head); q >= 0 {
			if s, e, ok := matchLiteral(head, q, types); ok {
				return s, e, true
			}
		}
	}
	return matchLiteral(ref, p, types)
}

// lastID returns the start of s's last segment, after its last '/', when
// that segment is an id ([A-Za-z0-9\-.]{1,64}), else -1: one scan from the
// end instead of finding the slash and then checking the id.
func lastID(s string) int {
	for i := len(s) - 1; i >= 0 && len(s)-i <= 65; i-- {
		c := s[i]
		if c == '/' {
			if i == len(s)-1 {
				return -1
			}
			return i + 1
		}
		if !refIDChars[c] {
			return -1
		}
	}
	return -1
}

// matchLiteral matches "[http(s)://hostchars*]Type/id" exactly, where id
// starts at p (lastID(s)).
func matchLiteral(s string, p int, types *typeSet) (idStart, idEnd int, ok bool) {
	slash := p - 1
	head := s[:slash]
	// The type is a suffix of head; what precedes it is empty or a scheme
	// and host characters.
	// Resource type names are letters, starting with a capital: only the
	// capitals of head's trailing letters can start one.
	for n := 1; n <= len(head) && n <= maxTypeNameLen; n++ {
		c := head[len(head)-n]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			break
		}
		if c > 'Z' || !types.has(head[len(head)-n:]) {
			continue
		}
		if pre := head[:len(head)-n]; pre == "" || isURLPrefix(pre) {
			return slash + 1, len(s), true
		}
	}
	return 0, 0, false
}

// maxTypeNameLen bounds the length of resource type names.
const maxTypeNameLen = 40

func isURLPrefix(s string) bool {
	rest, ok := strings.CutPrefix(s, "http://")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "https://"); !ok {
			return false
		}
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(isAlnum(c) || c == '\\' || c == '/' || c == '.' || c == ':' || c == '%' || c == '$') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// refIDChars are the characters of an id: [A-Za-z0-9\-.].
var refIDChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isAlnum(byte(c)) || c == '-' || c == '.'
	}
	return t
}()

// isOID reports [0-2](\.(0|[1-9][0-9]*))+.
func isOID(s string) bool {
	if len(s) < 3 || s[0] < '0' || s[0] > '2' || s[1] != '.' {
		return false
	}
	for _, arc := range strings.Split(s[2:], ".") {
		if arc == "" || (arc[0] == '0' && len(arc) > 1) {
			return false
		}
		for i := 0; i < len(arc); i++ {
			if arc[i] < '0' || arc[i] > '9' {
				return false
			}
		}
	}
	return true
}

// isUUID reports 8-4-4-4-12 hexadecimal digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// TransformReference applies fn to the id part of a reference as described
// for HashReference; encrypt uses it too. patterns come from
// ReferencePatterns.
func TransformReference(ref string, fn func(string) string, patterns []*regexp.Regexp) string {
	if ref == "" {
		return ref
	}
	if rest, ok := strings.CutPrefix(ref, "#"); ok {
		return "#" + fn(rest)
	}
	for _, rx := range patterns {
		m := rx.FindStringSubmatchIndex(ref)
		if m == nil {
			continue
		}
		// Groups: 1 = prefix, last-but-one = id, last = suffix.
		n := len(m) / 2
		idStart, idEnd := m[2*(n-2)], m[2*(n-2)+1]
		sufStart := m[2*(n-1)]
		prefix := ref[:idStart]
		suffix := ""
		if sufStart >= 0 {
			suffix = ref[sufStart:]
		}
		return prefix + fn(ref[idStart:idEnd]) + suffix
	}
	return fn(ref)
}

var referencePatternCache sync.Map // version string -> []*regexp.Regexp

// ReferencePatterns returns the three reference-id patterns of §2.5 for a
// FHIR release ("R4" or "STU3"): literal URL, urn:oid and urn:uuid. In each,
// the last two groups are the id and the suffix.
func ReferencePatterns(fhirVersion string) []*regexp.Regexp {
	return referencePatterns(fhirVersion)
}

func referencePatterns(fhirVersion string) []*regexp.Regexp {
	v := strings.ToUpper(fhirVersion)
	if v == "" {
		v = "R4"
	}
	if p, ok := referencePatternCache.Load(v); ok {
		return p.([]*regexp.Regexp)
	}
	types := ResourceTypes(v)
	if types == nil {
		types = ResourceTypes("R4")
	}
	// The host part allows letters, digits, \ / . : % $ but not '-' or '_',
	// exactly as the reference implementation does.
	literal := `^(((http|https)://([A-Za-z0-9\\/.:%$])*)?(` + strings.Join(types, "|") + `)/)([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$`
	p := []*regexp.Regexp{
		regexp.MustCompile(literal),
		regexp.MustCompile(`^(urn:oid:)([0-2](?:\.(?:0|[1-9][0-9]*))+)()$`),
		regexp.MustCompile(`^(urn:uuid:)([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})()$`),
	}
	got, _ := referencePatternCache.LoadOrStore(v, p)
	return got.([]*regexp.Regexp)
}
