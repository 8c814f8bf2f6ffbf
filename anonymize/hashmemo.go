package anonymize

import "hash/maphash"

// hashMemo remembers the cryptoHash results of recent values in one run
// (kept from call to call): references to the same patient, encounter or
// practitioner repeat from one resource to the next, and their output is
// then one lookup instead of parsing the reference, an HMAC and a new
// string. It is direct-mapped and holds no value longer than
// hashMemoInput; its inputs are copies (the tree's strings may be borrowed
// from the caller's buffer), its outputs the strings the Hasher made.
type hashMemo struct {
	seed    maphash.Seed
	entries [hashMemoSize]hashMemoEntry
}

const (
	hashMemoSize  = 1024
	hashMemoInput = 64
)

type hashMemoEntry struct {
	n   uint8 // length of the input; 0 for an empty entry
	ref bool  // a Reference.reference (HashReference) rather than Hash
	in  [hashMemoInput]byte
	out string
}

// hash returns the cryptoHash of s: h.HashReference(s) if ref, else h.Hash(s).
func (m *hashMemo) hash(h *Hasher, s string, ref bool) string {
	n := len(s)
	if n == 0 || n > hashMemoInput {
		return hashValue(h, s, ref)
	}
	if m.seed == (maphash.Seed{}) {
		m.seed = maphash.MakeSeed()
	}
	e := &m.entries[maphash.String(m.seed, s)%hashMemoSize]
	if int(e.n) == n && e.ref == ref && string(e.in[:n]) == s {
		return e.out
	}
	out := hashValue(h, s, ref)
	e.n, e.ref, e.out = uint8(copy(e.in[:], s)), ref, out
	return out
}

func hashValue(h *Hasher, s string, ref bool) string {
	if ref {
		return h.HashReference(s)
	}
	return h.Hash(s)
}
