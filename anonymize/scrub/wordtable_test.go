package scrub

import "testing"

// TestWordTable fills a small table with hashes that collide on their slot
// and on their low 16 bits, and reads every one back.
func TestWordTable(t *testing.T) {
	tb := newWordTable(16)
	var hs []uint64
	for i := range 10 {
		// Slot 3 for all (bits 16..19), distinct top bits, low bits equal
		// to the flags of another entry.
		h := uint64(i+1)<<40 | 3<<16 | 0xbeef
		hs = append(hs, h)
		tb.or(h, uint16(1<<(i%9)))
		tb.or(h, wStop)
	}
	for i, h := range hs {
		if got, want := tb.get(h), uint16(1<<(i%9))|wStop; got != want {
			t.Errorf("entry %d: flags %#x, want %#x", i, got, want)
		}
	}
	if got := tb.get(uint64(11)<<40 | 3<<16); got != 0 {
		t.Errorf("absent hash: flags %#x, want 0", got)
	}
	tb.set(hs[4], wName)
	if got := tb.get(hs[4]); got != wName {
		t.Errorf("set: flags %#x, want %#x", got, wName)
	}
	if got := tb.get(hs[5]); got != 1<<5|wStop {
		t.Errorf("neighbour after set: flags %#x", got)
	}
}

// TestVocabLists checks a few words of each list against their flags.
func TestVocabLists(t *testing.T) {
	v := loadVocab()
	for _, c := range []struct {
		w    string
		want uint16
	}{
		{"house", wEnglish}, {"mary", wName}, {"monday", wEnglish}, {"husband", wRelation}, {"the", wStop}, {"dr", wTitle},
	} {
		if got := v.flags(c.w); got&c.want == 0 {
			t.Errorf("%s: flags %#x lack %#x", c.w, got, c.want)
		}
	}
	if got := v.flags("monday"); got&(wName|wProper|wPlace) != 0 {
		t.Errorf("monday: flags %#x, want no name flags", got)
	}
	if got := v.flags("xqzvbnm"); got != 0 {
		t.Errorf("unknown word: flags %#x", got)
	}
}

// TestWordTableBound checks that filling a table past three quarters
// panics instead of slowing down (or looping, once full).
func TestWordTableBound(t *testing.T) {
	tb := newWordTable(16)
	for i := range 12 {
		tb.or(uint64(i+1)<<20, wStop)
	}
	tb.or(uint64(1)<<20, wName) // an existing entry: no new slot
	defer func() {
		if recover() == nil {
			t.Error("a 13th entry in 16 slots did not panic")
		}
	}()
	tb.or(uint64(13)<<20, wStop)
}
