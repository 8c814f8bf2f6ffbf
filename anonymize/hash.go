package anonymize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"regexp"
	"strings"
	"sync"
)

// Hasher computes the cryptoHash method's values (§2.5): the lower-case hex
// HMAC-SHA256 of a value's text under the configuration's cryptoHashKey. It
// is safe for concurrent use.
type Hasher struct {
	pool  sync.Pool
	types map[string]bool
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
	return string(h.appendHash(out[:0], s))
}

// appendHash appends Hash(s) to dst.
func (h *Hasher) appendHash(dst []byte, s string) []byte {
	if s == "" {
		return dst
	}
	var sum [sha256.Size]byte
	h.sum(&sum, s)
	return hex.AppendEncode(dst, sum[:])
}

// maxPooledInput bounds the input buffer a pooled HMAC keeps.
const maxPooledInput = 64 << 10

func (h *Hasher) sum(dst *[sha256.Size]byte, s string) {
	st := h.pool.Get().(*hmacState)
	st.m.Reset()
	st.in = append(st.in[:0], s...)
	st.m.Write(st.in)
	st.m.Sum(st.sum[:0])
	*dst = st.sum
	if cap(st.in) > maxPooledInput {
		st.in = nil
	}
	h.pool.Put(st)
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
	return string(h.appendHashReference(stack[:0], ref))
}

// appendHashReference appends HashReference(ref) to dst.
func (h *Hasher) appendHashReference(dst []byte, ref string) []byte {
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
	dst = h.appendHash(dst, ref[start:end])
	return append(dst, ref[end:]...)
}

// transformReference is TransformReference without regular expressions.
func transformReference(ref string, fn func(string) string, types map[string]bool) string {
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

var resourceTypeSets sync.Map // upper-case version -> map[string]bool

func resourceTypeSet(fhirVersion string) map[string]bool {
	v := strings.ToUpper(fhirVersion)
	if s, ok := resourceTypeSets.Load(v); ok {
		return s.(map[string]bool)
	}
	types := ResourceTypes(v)
	if types == nil {
		types = ResourceTypes("R4")
	}
	set := make(map[string]bool, len(types))
	for _, t := range types {
		set[t] = true
	}
	got, _ := resourceTypeSets.LoadOrStore(v, set)
	return got.(map[string]bool)
}

// matchReference finds the id part of a reference as the three patterns of
// ReferencePatterns do, without regular expressions: it returns the id's
// bounds.
func matchReference(ref string, types map[string]bool) (idStart, idEnd int, ok bool) {
	switch {
	case strings.HasPrefix(ref, "urn:oid:"):
		id := ref[len("urn:oid:"):]
		return len("urn:oid:"), len(ref), isOID(id)
	case strings.HasPrefix(ref, "urn:uuid:"):
		id := ref[len("urn:uuid:"):]
		return len("urn:uuid:"), len(ref), isUUID(id)
	}
	// Literal: head "/" id, optionally followed by "/_history/" version.
	// Most references have no version, and Contains is much faster than
	// LastIndex.
	if strings.Contains(ref, "/_history/") {
		if i := strings.LastIndex(ref, "/_history/"); isRefID(ref[i+len("/_history/"):]) {
			if s, e, ok := matchLiteral(ref[:i], types); ok {
				return s, e, true
			}
		}
	}
	return matchLiteral(ref, types)
}

// matchLiteral matches "[http(s)://hostchars*]Type/id" exactly.
func matchLiteral(s string, types map[string]bool) (idStart, idEnd int, ok bool) {
	slash := strings.LastIndexByte(s, '/')
	if slash < 0 || !isRefID(s[slash+1:]) {
		return 0, 0, false
	}
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
		if c > 'Z' || !types[head[len(head)-n:]] {
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

// isRefID reports [A-Za-z0-9\-.]{1,64}.
func isRefID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !refIDChars[s[i]] {
			return false
		}
	}
	return true
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
