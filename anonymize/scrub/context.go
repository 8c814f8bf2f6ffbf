package scrub

import (
	"hash/maphash"
	"slices"
	"strings"
	"unicode"
)

// Identifiers is the contextual layer's input: one patient's own identifiers
// (names and their parts, addresses, phone numbers, identifier values) and
// those of the people and organisations around it. Values are kept only as
// keyed 64-bit hashes (the key is random and per process, never stored), matched
// case- and punctuation-insensitively. Build it with the Add methods, then
// share it read-only: it is safe for concurrent use once built.
type Identifiers struct {
	words  map[uint64]Kind // one normalised word
	seqs   map[uint64]Kind // several words, joined by single spaces
	starts map[uint64]bool // the first words of seqs
	maxSeq int
	ids    map[uint64]Kind // letters and digits only, lower-cased
	n      int
	// filter has the bit of every hash in the maps set (the bit at the
	// hash modulo its size, at least 16 bits per entry), so that most
	// lookups of a token that is no identifier are answered without the
	// maps: a set of a few thousand entries does not fit in a cache.
	filter []uint64
	// shared sets (NewSharedIdentifiers) keep common words only inside
	// sequences.
	shared bool
}

// NewIdentifiers returns an empty set.
func NewIdentifiers() *Identifiers {
	return &Identifiers{words: map[uint64]Kind{}, seqs: map[uint64]Kind{}, starts: map[uint64]bool{}, ids: map[uint64]Kind{}}
}

// NewSharedIdentifiers returns an empty set for identifiers matched in
// every patient's notes (practitioners, organisations): a word of a name
// that is also an English or clinical word ("Will", "General", "Medical")
// counts only as part of the whole name ("Will Tanner", "General Hospital
// of Springfield"), so that it is not removed from every note.
func NewSharedIdentifiers() *Identifiers {
	x := NewIdentifiers()
	x.shared = true
	return x
}

// Len returns the number of hashed entries.
func (x *Identifiers) Len() int {
	if x == nil {
		return 0
	}
	return x.n
}

// idSeed keys the hashes of every Identifiers set of the process: one key
// for all sets lets ContextHashes list a text's lookups once for any set.
var idSeed = maphash.MakeSeed()

func (x *Identifiers) h(s string) uint64 { return maphash.String(idSeed, s) }

// added counts an entry whose hash h was just put in a map and sets its
// bit in the filter, which grows (and is filled again from the maps) to
// keep at least 16 bits per entry.
func (x *Identifiers) added(h uint64) {
	x.n++
	if bits := len(x.filter) * 64; bits >= 16*x.n {
		x.filter[(h%uint64(bits))/64] |= 1 << (h % 64)
		return
	}
	size := 1024
	for size < 32*x.n {
		size *= 2
	}
	x.filter = make([]uint64, size/64)
	for _, m := range []map[uint64]Kind{x.words, x.seqs, x.ids} {
		for k := range m {
			x.filter[(k%uint64(size))/64] |= 1 << (k % 64)
		}
	}
	for k := range x.starts {
		x.filter[(k%uint64(size))/64] |= 1 << (k % 64)
	}
}

// mayHave reports whether h may be a key of one of the maps: false means
// it is in none.
func (x *Identifiers) mayHave(h uint64) bool {
	bits := uint64(len(x.filter) * 64)
	return bits > 0 && x.filter[(h%bits)/64]&(1<<(h%64)) != 0
}

// setKind records kind k for the hash h in m. An entry added twice keeps
// the smaller kind, so that a set does not depend on the order of its
// additions (the first pass adds the resources of several files at once):
// a word of a name and of an address is a name, a number that is a phone
// number and an identifier a phone number.
func setKind(m map[uint64]Kind, h uint64, k Kind) {
	if old, ok := m[h]; !ok || k < old {
		m[h] = k
	}
}

func splitWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' })
}

// AddName adds a person's or organisation's name: every word of two
// letters or more, and the whole name as a sequence.
func (x *Identifiers) AddName(name string) { x.addWords(name, KindName, 2) }

// AddAddress adds an address part (a line, a city, a district): its words
// of three letters or more that are not street-type words, its numbers of
// three digits or more, and the whole part as a sequence.
func (x *Identifiers) AddAddress(part string) {
	x.addWords(part, KindAddress, 3)
}

func (x *Identifiers) addWords(s string, k Kind, minLen int) {
	ws := splitWords(s)
	for i, w := range ws {
		ws[i] = strings.TrimSuffix(strings.Trim(w, "'"), "'s")
	}
	var keep []string
	for _, w := range ws {
		if w == "" {
			continue
		}
		keep = append(keep, w)
		if isAllDigits(w) {
			if len(w) >= 3 {
				h := x.h(w)
				setKind(x.ids, h, k)
				x.added(h)
			}
			continue
		}
		if len([]rune(w)) < minLen || k == KindAddress && (streetSuffixes[w] || compass[w]) {
			continue
		}
		if x.shared && loadVocab().flags(w)&(wEnglish|wClinical|wStop) != 0 {
			continue
		}
		h := x.h(w)
		setKind(x.words, h, k)
		x.added(h)
	}
	if len(keep) > 1 {
		if len(keep) > 8 {
			keep = keep[:8]
		}
		h, h0 := x.h(strings.Join(keep, " ")), x.h(keep[0])
		setKind(x.seqs, h, k)
		x.starts[h0] = true
		x.added(h)
		x.added(h0)
		x.n--
		if len(keep) > x.maxSeq {
			x.maxSeq = len(keep)
		}
	}
}

var compass = map[string]bool{"n": true, "s": true, "e": true, "w": true, "north": true, "south": true, "east": true, "west": true, "ne": true, "nw": true, "se": true, "sw": true}

// AddPhone adds a telephone or fax number: its digits (and its last ten
// and seven digits, as notes write them without a country or area code).
func (x *Identifiers) AddPhone(phone string) {
	d := digitsOnly(phone)
	if len(d) < 7 {
		x.AddIdentifier(phone)
		return
	}
	for _, tail := range []int{len(d), 10, 7} {
		if tail <= len(d) {
			h := x.h(d[len(d)-tail:])
			setKind(x.ids, h, KindPhone)
			x.added(h)
		}
	}
}

// AddIdentifier adds an identifier value (MRN, SSN, member number, e-mail):
// its letters and digits, lower-cased, when there are four or more.
func (x *Identifiers) AddIdentifier(value string) {
	a := alnumOnly(value)
	if len(a) < 4 {
		return
	}
	h := x.h(a)
	setKind(x.ids, h, KindID)
	x.added(h)
	if d := digitsOnly(value); len(d) >= 4 && d != a {
		h := x.h(d)
		setKind(x.ids, h, KindID)
		x.added(h)
	}
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func digitsOnly(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func alnumOnly(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// contextual marks the tokens matching the identifiers of x.
func (s *state) contextual(x *Identifiers) {
	n := len(s.toks)
	for i := 0; i < n; i++ {
		tk := s.toks[i]
		if tk.kind != tWord && tk.kind != tNum {
			continue
		}
		s.cbuf = s.appendLower(s.cbuf[:0], i)
		h := maphash.Bytes(idSeed, s.cbuf)
		// Multi-word sequences (address lines, full names).
		if x.maxSeq > 1 && x.mayHave(h) && x.starts[h] {
			j := i
			for w := 1; w < x.maxSeq; w++ {
				k := s.nextToken(j)
				if k < 0 {
					break
				}
				s.cbuf = append(s.cbuf, ' ')
				s.cbuf = s.appendLower(s.cbuf, k)
				j = k
				if hs := maphash.Bytes(idSeed, s.cbuf); x.mayHave(hs) {
					if kd, ok := x.seqs[hs]; ok {
						s.mark(i, j, kd, LayerContext)
					}
				}
			}
		}
		if tk.kind == tWord && x.mayHave(h) {
			if kd, ok := x.words[h]; ok {
				s.mark(i, i, kd, LayerContext)
				continue
			}
		}
		if len(x.ids) == 0 {
			continue
		}
		// Identifier-like runs: letters and digits joined by - . / ( ) #
		// or single spaces ("(555) 123-4567", "MRN-00123").
		s.cbuf = s.cbuf[:0]
		for k := i; k < n && k < i+maxIDRun; k++ {
			t := s.toks[k]
			if t.kind == tWord || t.kind == tNum {
				s.cbuf = s.appendLower(s.cbuf, k)
				if len(s.cbuf) >= minIDLen {
					if hi := maphash.Bytes(idSeed, s.cbuf); x.mayHave(hi) {
						if kd, ok := x.ids[hi]; ok {
							s.mark(i, k, kd, LayerContext)
						}
					}
				}
				continue
			}
			if s.joinsIDRun(k) {
				continue
			}
			break
		}
	}
}

// An identifier-like run spans at most maxIDRun tokens, and is looked up
// once it has minIDLen letters and digits.
const (
	maxIDRun = 12
	minIDLen = 4
)

// joinsIDRun reports whether token k, neither a word nor a number, joins
// the letters and digits around it into one identifier-like run: one of
// - . / ( ) #, or a single space between numbers ("410 555 1234"; spaces
// between words would make every word of prose start a long run).
func (s *state) joinsIDRun(k int) bool {
	t := s.toks[k]
	return t.kind == tPunct && containsByte("-./()#", s.text[t.start]) ||
		s.sp(k) && t.end-t.start == 1 && s.is(k+1, tNum) && (s.is(k-1, tNum) || s.punct(k-1, ')'))
}

// appendLower appends token i lower-cased to b.
func (s *state) appendLower(b []byte, i int) []byte {
	if s.toks[i].kind == tNum {
		return append(b, s.tok(i)...)
	}
	return append(b, s.word(i)...)
}

// nextToken returns the next word or number after i across spaces and
// light punctuation on the same line, or -1.
func (s *state) nextToken(i int) int {
	for j := i + 1; j < len(s.toks) && j < i+4; j++ {
		switch s.toks[j].kind {
		case tWord, tNum:
			return j
		case tSpace:
			if s.toks[j].newline {
				return -1
			}
		case tPunct:
			if !containsByte(",.-#", s.text[s.toks[j].start]) {
				return -1
			}
		}
	}
	return -1
}

// maxContextSeq is the most words of a sequence an Identifiers set holds
// (addWords keeps the first eight).
const maxContextSeq = 8

// ContextHashes appends to dst the hashes of every word, word sequence and
// identifier-like run of text (in format f) that the contextual layer may
// look up in an Identifiers set. A set for which MatchesAny of them is
// false marks nothing in text: the text's result is the same with or
// without it. Callers use it to reuse one text's result across patients.
func ContextHashes(text string, f Format, dst []uint64) []uint64 {
	switch f {
	case HTML:
		for _, sg := range htmlSegments(text) {
			dst = contextHashes(text[sg[0]:sg[1]], dst)
		}
		return dst
	case RTF:
		for _, sg := range rtfSegments(text) {
			dst = contextHashes(text[sg[0]:sg[1]], dst)
		}
		return dst
	}
	return contextHashes(text, dst)
}

// contextHashes lists the lookups of contextual for one plain text, for a
// set of the largest sequences, as contextual makes them.
func contextHashes(text string, dst []uint64) []uint64 {
	s := getState(text, Options{})
	defer putState(s)
	s.tokenize()
	start := len(dst)
	add := func(h uint64) { dst = append(dst, h) }
	n := len(s.toks)
	for i := 0; i < n; i++ {
		if k := s.toks[i].kind; k != tWord && k != tNum {
			continue
		}
		s.cbuf = s.appendLower(s.cbuf[:0], i)
		add(maphash.Bytes(idSeed, s.cbuf))
		j := i
		for w := 1; w < maxContextSeq; w++ {
			k := s.nextToken(j)
			if k < 0 {
				break
			}
			s.cbuf = append(s.cbuf, ' ')
			s.cbuf = s.appendLower(s.cbuf, k)
			j = k
			add(maphash.Bytes(idSeed, s.cbuf))
		}
		s.cbuf = s.cbuf[:0]
		for k := i; k < n && k < i+maxIDRun; k++ {
			t := s.toks[k]
			if t.kind == tWord || t.kind == tNum {
				s.cbuf = s.appendLower(s.cbuf, k)
				if len(s.cbuf) >= minIDLen {
					add(maphash.Bytes(idSeed, s.cbuf))
				}
				continue
			}
			if s.joinsIDRun(k) {
				continue
			}
			break
		}
	}
	// Sorted and without repeats (a one-word run is also its word).
	slices.Sort(dst[start:])
	return append(dst[:start], slices.Compact(dst[start:])...)
}

// MatchesAny reports whether x holds a word, sequence or identifier among
// the hashes of ContextHashes: false means that x marks nothing in their
// text.
func (x *Identifiers) MatchesAny(hashes []uint64) bool {
	if x.Len() == 0 {
		return false
	}
	if x.maxSeq > maxContextSeq {
		return true // not listed by ContextHashes
	}
	for _, h := range hashes {
		if !x.mayHave(h) {
			continue
		}
		if _, ok := x.words[h]; ok {
			return true
		}
		if _, ok := x.seqs[h]; ok {
			return true
		}
		if _, ok := x.ids[h]; ok {
			return true
		}
	}
	return false
}
