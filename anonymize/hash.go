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
	refRx []*regexp.Regexp
}

// NewHasher returns a Hasher keyed with the UTF-8 bytes of key. fhirVersion
// ("R4", the default when empty, or "STU3") selects the resource type names
// recognised in literal references.
func NewHasher(key, fhirVersion string) *Hasher {
	k := []byte(key)
	h := &Hasher{refRx: referencePatterns(fhirVersion)}
	h.pool.New = func() any { return hmac.New(sha256.New, k) }
	return h
}

// Hash returns lower-case hex HMAC-SHA256 of s; an empty s is returned
// unchanged.
func (h *Hasher) Hash(s string) string {
	if s == "" {
		return s
	}
	var sum [sha256.Size]byte
	h.sum(sum[:0], s)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

func (h *Hasher) sum(dst []byte, s string) []byte {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(s))
	dst = m.Sum(dst)
	h.pool.Put(m)
	return dst
}

// HashReference hashes only the id part of a Reference.reference value
// (§2.5): "#id" gives "#"+Hash(id); a literal reference
// "[http(s)://host/path/]Type/id[/_history/v]", "urn:oid:..." or
// "urn:uuid:..." keeps everything but the id; anything else (conditional
// references, unknown types, ids with characters outside [A-Za-z0-9-.]) is
// hashed whole.
func (h *Hasher) HashReference(ref string) string {
	return TransformReference(ref, h.Hash, h.refRx)
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
