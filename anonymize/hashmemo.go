package anonymize

import "hash/maphash"

// hashMemo remembers the cryptoHash results of recent values in one run
// (kept from call to call): references to the same patient, encounter or
// practitioner repeat from one resource to the next, and their output is
// then one lookup and a copy instead of parsing the reference and an HMAC.
// It is direct-mapped and holds values of up to hashMemoInput bytes, as
// copies (the tree's strings may be borrowed from the caller's buffer), and
// their results as bytes, which the caller copies out.
type hashMemo struct {
	seed    maphash.Seed
	entries [hashMemoSize]hashMemoEntry
	h       *Hasher    // the Hasher of the entries
	st      *hmacState // h's state for misses, saving the pool's round trip
}

const (
	hashMemoSize  = 1024
	hashMemoInput = 64
	// hashMemoOutput is the longest result of an input the memo keeps:
	// the hash (64 hex digits) replaces at least one byte of the input.
	hashMemoOutput = hashMemoInput - 1 + 64
)

type hashMemoEntry struct {
	n    uint8 // length of the input; 0 for an empty entry
	nout uint8 // length of the result
	ref  bool  // a Reference.reference (HashReference) rather than Hash
	in   [hashMemoInput]byte
	out  [hashMemoOutput]byte
}

// appendHash appends the cryptoHash of s to dst: h.HashReference(s) if ref,
// else h.Hash(s).
func (m *hashMemo) appendHash(dst []byte, h *Hasher, s string, ref bool) []byte {
	n := len(s)
	if n == 0 || n > hashMemoInput {
		return appendHashValue(dst, h, nil, s, ref)
	}
	if m.h != h {
		// First use, or another Hasher (a run serves one engine): start
		// afresh.
		m.seed, m.h, m.st = maphash.MakeSeed(), h, h.newState()
		clear(m.entries[:])
	}
	e := &m.entries[maphash.String(m.seed, s)%hashMemoSize]
	if int(e.n) == n && e.ref == ref && string(e.in[:n]) == s {
		return append(dst, e.out[:e.nout]...)
	}
	start := len(dst)
	dst = appendHashValue(dst, h, m.st, s, ref)
	if out := dst[start:]; len(out) <= hashMemoOutput {
		e.n, e.ref = uint8(copy(e.in[:], s)), ref
		e.nout = uint8(copy(e.out[:], out))
	}
	return dst
}

func appendHashValue(dst []byte, h *Hasher, st *hmacState, s string, ref bool) []byte {
	if ref {
		return h.appendHashReference(dst, st, s)
	}
	return h.appendHash(dst, st, s)
}
