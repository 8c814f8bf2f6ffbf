package scrub

import (
	"bufio"
	"bytes"
	_ "embed"
	"hash/maphash"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// Word flags of the vocabulary layer.
const (
	wEnglish  uint16 = 1 << iota // a lower-case English word
	wClinical                    // clinical vocabulary: never a name
	wName                        // a given or family name
	wProper                      // a proper noun of the English list
	wPlace                       // a place name
	wTitle                       // a title that a name follows (dr, mrs)
	wRelation                    // a relation that a name may follow (wife)
	wStop                        // a function word a name never is
	wPattern                     // a word that may start a pattern (month, MRN, http)
	wTrigger                     // a word that starts a vocabulary rule (hospital, transferred, st)
)

var (
	//go:embed lists/words.txt.gz
	wordsGz []byte
	//go:embed lists/proper.txt.gz
	properGz []byte
	//go:embed lists/names.txt.gz
	namesGz []byte
	//go:embed lists/places.txt.gz
	placesGz []byte
	//go:embed lists/clinical.txt
	clinicalTxt string
)

var titles = "dr dr. drs doctor mr mrs ms miss mister md prof professor nurse attending resident intern fellow np pa-c rev father sister"
var relations = "husband wife son daughter dtr dau mother mom father dad brother bro sister sis niece nephew friend boyfriend girlfriend fiance fiancee grandson granddaughter grandmother grandfather aunt uncle cousin neighbor neighbour spouse partner hcp proxy sitter guardian stepson stepdaughter"
var stops = "a an and or but the to of in on at by for with from as is was were be been are am has had have do did does not no yes this that these those it its he she they them his her their him we us our you your i me my re per via into onto over under after before then than so if when while who whom which what where why how all any some each every other both either neither here there now today tonight tomorrow yesterday also still just only very well up down out off again further once more most less least few many much such same own too can will would should could may might must shall aware notified called paged spoke said says states stated made saw seen see note notes team service office floor unit ward room bed pt patient family md rn np"

type vocab struct {
	seed          maphash.Seed
	words         wordTable       // by maphash of the lower-case word: no key compare
	places        map[string]bool // multi-word place names ("san diego")
	placeStarts   map[string]bool
	maxPlaceWords int
}

// loadVocab builds the vocabulary once, when the first text is scrubbed.
var loadVocab = sync.OnceValue(newVocab)

// newVocab builds the vocabulary from the embedded lists.
func newVocab() *vocab {
	v := &vocab{seed: maphash.MakeSeed(), words: newWordTable(1 << 19), places: map[string]bool{}, placeStarts: map[string]bool{}}
	add := func(gz []byte, flag uint16) {
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			panic("scrub: embedded list: " + err.Error())
		}
		br := bufio.NewReaderSize(zr, 64<<10)
		for {
			w, err := br.ReadSlice('\n')
			if err == io.EOF && len(w) == 0 {
				break
			}
			if err != nil && err != io.EOF {
				panic("scrub: embedded list: " + err.Error())
			}
			w = bytes.TrimSuffix(w, []byte{'\n'})
			w = bytes.TrimSuffix(w, []byte{'\r'})
			if len(w) == 0 {
				continue
			}
			if flag == wPlace && bytes.ContainsAny(w, " -") {
				s := string(w)
				n := len(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '-' }))
				if n > 1 {
					nw := normWords(s)
					v.places[nw] = true
					v.placeStarts[strings.SplitN(nw, " ", 2)[0]] = true
					if n > v.maxPlaceWords {
						v.maxPlaceWords = n
					}
					continue
				}
			}
			v.words.or(maphash.Bytes(v.seed, w), flag)
		}
	}
	add(wordsGz, wEnglish)
	add(properGz, wProper)
	add(namesGz, wName)
	add(placesGz, wPlace)
	for _, line := range strings.Split(clinicalTxt, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, w := range strings.Fields(line) {
			v.words.or(v.h(w), wClinical)
		}
	}
	for _, w := range strings.Fields(titles) {
		v.words.or(v.h(w), wTitle)
	}
	for _, w := range strings.Fields(relations) {
		v.words.or(v.h(w), wRelation)
	}
	for _, w := range strings.Fields(stops) {
		v.words.or(v.h(w), wStop)
	}
	for _, m := range []map[string]bool{idKeywords, urlWords, {"box": true}} {
		for w := range m {
			v.words.or(v.h(w), wPattern)
		}
	}
	for w := range months {
		v.words.or(v.h(w), wPattern)
	}
	for _, m := range []map[string]bool{hospitalWords, movementWords, residenceWords, {"center": true, "centre": true, "home": true,
		"university": true, "univ": true, "u": true, "st": true, "saint": true}} {
		for w := range m {
			v.words.or(v.h(w), wTrigger)
		}
	}
	// Days and months are dates' business, not names.
	for _, w := range strings.Fields("monday tuesday wednesday thursday friday saturday sunday english spanish american african asian hispanic caucasian latino christian jewish catholic muslim") {
		h := v.h(w)
		v.words.set(h, (v.words.get(h)|wEnglish)&^(wName|wProper|wPlace))
	}
	return v
}

// normWords lower-cases s and joins its words with single spaces.
func normWords(s string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 0x80)
	}), " ")
}

func (v *vocab) h(w string) uint64 { return maphash.String(v.seed, w) }

// flags returns the flags of a lower-case word.
func (v *vocab) flags(w string) uint16 { return v.words.get(maphash.String(v.seed, w)) }

// wordTable maps the 64-bit hashes of words to their flags: an open-addressed
// table of one word per entry, the hash's top 48 bits and the flags, so that
// a lookup reads one cache line and building it allocates once (a Go map of
// the same words took three times as long to fill). Two words whose hashes
// share 48 bits share their flags, as two sharing 64 did in the map: with a
// few hundred thousand words the chance is below one in a billion per
// lookup. An entry's flags are never 0, so 0 marks a free slot.
type wordTable struct {
	slots []uint64
	mask  uint64
	n     int // entries
}

// newWordTable returns a table of n slots (a power of two); set panics
// past three quarters of them, where probing would slow down (and a full
// table would never find a free slot).
func newWordTable(n int) wordTable {
	return wordTable{slots: make([]uint64, n), mask: uint64(n - 1)}
}

const wordFlagBits = 0xffff

// find returns the slot of hash h: its entry, or the free slot where it
// would go.
func (t *wordTable) find(h uint64) *uint64 {
	key := h &^ wordFlagBits
	for i := h >> 16 & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if *s == 0 || *s&^wordFlagBits == key {
			return s
		}
	}
}

// get returns the flags of hash h, 0 for an unknown word.
func (t *wordTable) get(h uint64) uint16 { return uint16(*t.find(h)) }

// set sets the flags of h; flags 0 is ignored (it would free the slot).
func (t *wordTable) set(h uint64, flags uint16) {
	if flags == 0 {
		return
	}
	s := t.find(h)
	if *s == 0 {
		if t.n++; t.n > len(t.slots)/4*3 {
			panic("scrub: the embedded word lists outgrew the vocabulary table")
		}
	}
	*s = h&^wordFlagBits | uint64(flags)
}

// or adds flags to those of h.
func (t *wordTable) or(h uint64, flags uint16) { t.set(h, t.get(h)|flags) }
