package scrub

import (
	"strings"
	"sync"
	"unicode"
)

// Words is a set of extra safe words for the vocabulary layer: words it
// treats as clinical vocabulary, never as names, such as the drug names that
// an export's medication codes display ("Aggrestat", "Jolivette"). Only the
// vocabulary layer reads it: the contextual layer (a patient's own names)
// and the patterns still apply to these words. AddText is safe for
// concurrent use; fill the set first, then share it read-only: Scrub reads
// it without locking.
type Words struct {
	mu   sync.RWMutex
	set  map[uint64]struct{}
	seen map[uint64]struct{} // displays already added: exports repeat them
}

// NewWords returns an empty set.
func NewWords() *Words { return &Words{set: map[uint64]struct{}{}, seen: map[uint64]struct{}{}} }

// AddText adds the words of a terminology display ("Acetaminophen 325 MG
// Oral Tablet"): every run of three letters or more, lower-cased; words with
// digits are left out.
func (w *Words) AddText(display string) {
	if w == nil || display == "" {
		return
	}
	v := loadVocab()
	dh := v.h(display)
	w.mu.RLock()
	_, done := w.seen[dh]
	w.mu.RUnlock()
	if done {
		return
	}
	var hs []uint64
	for _, f := range strings.FieldsFunc(display, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if len(f) < 3 || strings.IndexFunc(f, unicode.IsDigit) >= 0 {
			continue
		}
		hs = append(hs, v.h(strings.ToLower(f)))
	}
	w.mu.Lock()
	w.seen[dh] = struct{}{}
	for _, h := range hs {
		w.set[h] = struct{}{}
	}
	w.mu.Unlock()
}

// Len returns the number of words.
func (w *Words) Len() int {
	if w == nil {
		return 0
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.set)
}

// has reports a word by its vocabulary hash.
func (w *Words) has(h uint64) bool {
	_, ok := w.set[h]
	return ok
}
