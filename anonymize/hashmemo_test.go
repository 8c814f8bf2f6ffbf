package anonymize

import (
	"fmt"
	"strings"
	"testing"
)

// The memo gives what the Hasher gives, for references and plain values
// of the same text (which hash differently), across evictions, and for
// values too long to be kept.
func TestHashMemoSameOutput(t *testing.T) {
	h := NewHasher("memo-key", "R4")
	var m hashMemo
	var vals []string
	for i := range 3 * hashMemoSize {
		vals = append(vals, fmt.Sprintf("Patient/p-%d", i%(hashMemoSize+7)))
	}
	vals = append(vals, "", "#local", "Patient/"+strings.Repeat("x", hashMemoInput), "urn:uuid:0c3a9d4e-1b2f-4c5d-8e9f-0a1b2c3d4e5f")
	for round := range 2 {
		for _, v := range vals {
			for _, ref := range []bool{true, false} {
				want := h.Hash(v)
				if ref {
					want = h.HashReference(v)
				}
				got := string(m.appendHash([]byte("x"), h, v, ref))[1:]
				if got != want {
					t.Fatalf("round %d, ref %v, value #%d: memo gives a different hash", round, ref, len(v))
				}
			}
		}
	}
	if h.HashReference("Patient/p-1") == h.Hash("Patient/p-1") {
		t.Fatal("reference and plain hashes coincide: the test cannot tell them apart")
	}
}

func BenchmarkHashMemoReference(b *testing.B) {
	h := NewHasher("memo-key", "R4")
	var m hashMemo
	refs := []string{"Patient/0c3a9d4e-1b2f-4c5d-8e9f-0a1b2c3d4e5f", "Encounter/1c3a9d4e-1b2f-4c5d-8e9f-0a1b2c3d4e5f"}
	var buf [160]byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.appendHash(buf[:0], h, refs[i&1], true)
	}
}

// BenchmarkHashMemoMiss is the engine's cost of a value it has not hashed
// lately (resource ids are all such).
func BenchmarkHashMemoMiss(b *testing.B) {
	h := NewHasher("memo-key", "R4")
	var m hashMemo
	refs := make([]string, 1<<16)
	for i := range refs {
		refs[i] = fmt.Sprintf("Observation/0c3a9d4e-1b2f-4c5d-8e9f-%012d", i)
	}
	var buf [160]byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.appendHash(buf[:0], h, refs[i&(1<<16-1)], true)
	}
}
