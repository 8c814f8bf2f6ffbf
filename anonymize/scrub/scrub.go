package scrub

import (
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Kind is the kind of a PHI span.
type Kind uint8

// The kinds of PHI the scrubber finds.
const (
	KindName Kind = iota + 1
	KindLocation
	KindAddress
	KindDate
	KindTime
	KindPhone
	KindID
	KindEmail
	KindURL
	KindIP
	KindAge
)

var kindNames = [...]string{"", "NAME", "LOCATION", "ADDRESS", "DATE", "TIME", "PHONE", "ID", "EMAIL", "URL", "IP", "AGE>89"}

// String returns the kind's placeholder name ("NAME").
func (k Kind) String() string {
	if int(k) < len(kindNames) && k > 0 {
		return kindNames[k]
	}
	return "PHI"
}

// Placeholder returns the text that replaces a span of kind k ("[NAME]").
func (k Kind) Placeholder() string { return "[" + k.String() + "]" }

// Layer is the detection layer that found a span.
type Layer uint8

// The detection layers.
const (
	LayerPattern Layer = iota + 1
	LayerVocabulary
	LayerContext
)

// String returns the layer's name.
func (l Layer) String() string {
	switch l {
	case LayerPattern:
		return "pattern"
	case LayerVocabulary:
		return "vocabulary"
	case LayerContext:
		return "contextual"
	}
	return "unknown"
}

// Span is one replaced part of the input: the bytes [Start, End) of the
// input text. It holds no text.
type Span struct {
	Start, End int
	Kind       Kind
	Layer      Layer
	// Shifted reports a date replaced by the shifted date rather than a
	// placeholder.
	Shifted bool
}

// Options are the per-call inputs of Scrub.
type Options struct {
	// Identifiers are the sets of the contextual layer: typically the
	// patient's own and one shared by all notes (practitioners,
	// organisations). Nil entries are ignored.
	Identifiers []*Identifiers
	// ShiftDays, when non-nil, shifts every full date (day and month known)
	// by the days it returns instead of replacing it by [DATE]; dates
	// without a year are shifted within ReferenceYear (or a non-leap year).
	ShiftDays     func() int
	ReferenceYear int
	// KeepTimes leaves times of day ("14:30", "2 pm") in place.
	KeepTimes bool
	// Safe, when non-nil, holds extra words the vocabulary layer keeps as
	// clinical vocabulary (the drug names of an export's codes).
	Safe *Words
}

// Result is the output of Scrub.
type Result struct {
	Text  string
	Spans []Span
}

// Scrub returns text with every PHI span replaced. It never fails: input
// that is not valid UTF-8 is scrubbed byte-wise (an invalid byte is
// punctuation) and the output is valid UTF-8 with invalid bytes replaced by
// U+FFFD.
func Scrub(text string, opts Options) Result {
	s := getState(text, opts)
	defer putState(s)
	s.detect()
	return s.render()
}

// Detect returns the PHI spans of text without rewriting it.
func Detect(text string, opts Options) []Span {
	s := getState(text, opts)
	defer putState(s)
	s.detect()
	return s.mergedSpans()
}

type tokKind uint8

const (
	tWord tokKind = iota + 1
	tNum
	tSpace
	tPunct
)

type token struct {
	start, end int
	kind       tokKind
	newline    bool  // a space token with a line break
	lo, hi     int32 // a word's lower-cased form in state.lows
}

type state struct {
	text   string
	opts   Options
	toks   []token
	spans  []Span
	dates  []dateInfo // per span: the parsed date of a DATE span
	mdates []dateInfo // per merged span
	marked []bool     // per token: inside a span
	cls    []uint16   // per token: vocabulary flags of a word
	nlc    []int8     // per token: nameLike cache (0 unknown, 1 yes, -1 no)
	isName []bool     // per token, vocabulary layer
	kinds  []Kind     // per token, vocabulary layer
	pbuf   []byte     // scratch for place names
	work   []int      // scratch: name tokens to extend
	cbuf   []byte     // scratch for the contextual layer
	lows   []byte     // the words lower-cased, possessive 's removed
	hot    *[hotSize]hotEntry
	lower  []byte
	voc    *vocab
	cased  bool // the text uses capitals meaningfully (mixed case)
	// hostFail is the last token of a dotted run (host.example) that is no
	// host name, -1 before any.
	hostFail int
	out      strings.Builder
}

// hotSize is the number of entries of a state's word cache.
const hotSize = 4096

type hotEntry struct {
	h  uint64
	f  uint16
	ok bool
}

var statePool = sync.Pool{New: func() any { return &state{hot: new([hotSize]hotEntry)} }}

func getState(text string, opts Options) *state {
	s := statePool.Get().(*state)
	s.text, s.opts, s.voc = text, opts, loadVocab()
	s.toks, s.spans, s.marked, s.dates = s.toks[:0], s.spans[:0], s.marked[:0], s.dates[:0]
	s.hostFail = -1
	return s
}

func putState(s *state) {
	s.text = ""
	s.opts = Options{}
	if cap(s.toks) > 1<<16 {
		s.toks, s.marked, s.spans, s.cls, s.nlc, s.isName, s.kinds, s.dates, s.mdates = nil, nil, nil, nil, nil, nil, nil, nil, nil
	}
	s.out = strings.Builder{}
	statePool.Put(s)
}

func isLetterByte(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }

// tokenize splits the text into words, numbers, spaces and punctuation.
func (s *state) tokenize() {
	t := s.text
	upper, lower := 0, 0
	for i := 0; i < len(t); {
		c := t[i]
		start := i
		switch {
		case isLetterByte(c) || c >= 0x80 && startsLetter(t[i:]):
			for i < len(t) {
				c := t[i]
				if isLetterByte(c) {
					if c < 'a' {
						upper++
					} else {
						lower++
					}
					i++
				} else if c >= 0x80 && startsLetter(t[i:]) {
					_, n := utf8.DecodeRuneInString(t[i:])
					i += n
				} else if c == '\'' && i+1 < len(t) && isLetterByte(t[i+1]) && i > start {
					i++
				} else if isDigit(c) {
					// fio2, mso4, q2h: a word with digits.
					i++
				} else {
					break
				}
			}
			s.toks = append(s.toks, token{start: start, end: i, kind: tWord})
		case isDigit(c):
			for i < len(t) && isDigit(t[i]) {
				i++
			}
			s.toks = append(s.toks, token{start: start, end: i, kind: tNum})
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			nl := false
			for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r' || t[i] == '\f' || t[i] == '\v') {
				if t[i] == '\n' {
					nl = true
				}
				i++
			}
			s.toks = append(s.toks, token{start: start, end: i, kind: tSpace, newline: nl})
		default:
			if c >= 0x80 {
				_, n := utf8.DecodeRuneInString(t[i:])
				i += n
			} else {
				i++
			}
			s.toks = append(s.toks, token{start: start, end: i, kind: tPunct})
		}
	}
	// Mixed case: mostly lower-case, with enough capitals (2%) to carry meaning.
	s.cased = lower > 2*upper && upper*50 >= lower
	n := len(s.toks)
	s.marked = resize(s.marked, n)
	s.cls = resize(s.cls, n)
	s.nlc = resize(s.nlc, n)
	s.isName = resize(s.isName, n)
	s.kinds = resize(s.kinds, n)
	s.lows = s.lows[:0]
	for i := range s.toks {
		if s.toks[i].kind == tWord {
			w := s.lowerWord(i)
			s.toks[i].lo = int32(len(s.lows))
			s.lows = append(s.lows, w...)
			s.toks[i].hi = int32(len(s.lows))
			// A small direct-mapped cache in front of the big map: words
			// repeat, and the big map's probes miss the CPU caches.
			h := maphash.Bytes(s.voc.seed, w)
			c := &s.hot[h&(hotSize-1)]
			if c.h != h || !c.ok {
				*c = hotEntry{h: h, f: s.voc.words.get(h), ok: true}
			}
			s.cls[i] = c.f
			// A word no list knows may be a drug of the export's codes.
			if c.f&(wEnglish|wClinical|wStop) == 0 && s.opts.Safe != nil && s.opts.Safe.has(h) {
				s.cls[i] |= wClinical
			}
		}
	}
}

// resize returns b with length n, zeroed, reusing its storage.
func resize[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	b = b[:n]
	clear(b)
	return b
}

func startsLetter(t string) bool {
	r, n := utf8.DecodeRuneInString(t)
	return n > 1 && unicode.IsLetter(r)
}

func (s *state) tok(i int) string { return s.text[s.toks[i].start:s.toks[i].end] }

// word returns the lower-cased word i (possessive 's removed); the caller
// must not change it.
func (s *state) word(i int) []byte {
	t := s.toks[i]
	if t.kind != tWord {
		return nil
	}
	return s.lows[t.lo:t.hi:t.hi]
}

// lowerWord lower-cases word i in a scratch buffer valid until the next
// call.
func (s *state) lowerWord(i int) []byte {
	w := s.tok(i)
	s.lower = s.lower[:0]
	for j := 0; j < len(w); j++ {
		c := w[j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		s.lower = append(s.lower, c)
	}
	if n := len(s.lower); n > 2 && s.lower[n-2] == '\'' && s.lower[n-1] == 's' {
		s.lower = s.lower[:n-2]
	}
	if s.lower != nil && !isASCII(w) {
		s.lower = []byte(strings.ToLower(string(s.lower)))
	}
	return s.lower
}

func isASCII(w string) bool {
	for i := 0; i < len(w); i++ {
		if w[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (s *state) is(i int, k tokKind) bool { return i >= 0 && i < len(s.toks) && s.toks[i].kind == k }

func (s *state) punct(i int, c byte) bool {
	return s.is(i, tPunct) && s.text[s.toks[i].start] == c
}

// sp reports a space token without a line break.
func (s *state) sp(i int) bool { return s.is(i, tSpace) && !s.toks[i].newline }

func (s *state) num(i int) (int, int, bool) {
	if !s.is(i, tNum) {
		return 0, 0, false
	}
	t := s.tok(i)
	if len(t) > 9 {
		return 0, len(t), true
	}
	n, _ := strconv.Atoi(t)
	return n, len(t), true
}

func (s *state) lowerIs(i int, words ...string) bool {
	if !s.is(i, tWord) {
		return false
	}
	w := s.tok(i)
	for _, x := range words {
		if strings.EqualFold(w, x) {
			return true
		}
	}
	return false
}

// mark records tokens [i, j] as a span.
func (s *state) mark(i, j int, k Kind, l Layer) {
	if i < 0 || j >= len(s.toks) || j < i {
		return
	}
	s.spans = append(s.spans, Span{Start: s.toks[i].start, End: s.toks[j].end, Kind: k, Layer: l})
	for x := i; x <= j; x++ {
		s.marked[x] = true
	}
}

func (s *state) detect() {
	s.tokenize()
	s.patterns()
	for _, x := range s.opts.Identifiers {
		if x.Len() > 0 {
			s.contextual(x)
		}
	}
	s.vocabulary()
}
