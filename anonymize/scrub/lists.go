package scrub

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"hash/maphash"
	"io"
	"strings"
	"sync"
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
	words         map[uint64]uint16 // by maphash of the lower-case word: no key compare
	places        map[string]bool   // multi-word place names ("san diego")
	placeStarts   map[string]bool
	maxPlaceWords int
}

var loadVocab = sync.OnceValue(func() *vocab {
	v := &vocab{seed: maphash.MakeSeed(), words: make(map[uint64]uint16, 300000), places: map[string]bool{}, placeStarts: map[string]bool{}}
	add := func(gz []byte, flag uint16) {
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			panic("scrub: embedded list: " + err.Error())
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			panic("scrub: embedded list: " + err.Error())
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			w := sc.Text()
			if w == "" {
				continue
			}
			if strings.ContainsAny(w, " -") && flag == wPlace {
				n := len(strings.FieldsFunc(w, func(r rune) bool { return r == ' ' || r == '-' }))
				if n > 1 {
					nw := normWords(w)
					v.places[nw] = true
					v.placeStarts[strings.SplitN(nw, " ", 2)[0]] = true
					if n > v.maxPlaceWords {
						v.maxPlaceWords = n
					}
					continue
				}
			}
			v.words[v.h(w)] |= flag
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
			v.words[v.h(w)] |= wClinical
		}
	}
	for _, w := range strings.Fields(titles) {
		v.words[v.h(w)] |= wTitle
	}
	for _, w := range strings.Fields(relations) {
		v.words[v.h(w)] |= wRelation
	}
	for _, w := range strings.Fields(stops) {
		v.words[v.h(w)] |= wStop
	}
	for _, m := range []map[string]bool{idKeywords, urlWords, {"box": true}} {
		for w := range m {
			v.words[v.h(w)] |= wPattern
		}
	}
	for w := range months {
		v.words[v.h(w)] |= wPattern
	}
	for _, m := range []map[string]bool{hospitalWords, movementWords, residenceWords, {"center": true, "centre": true, "home": true,
		"university": true, "univ": true, "u": true, "st": true, "saint": true}} {
		for w := range m {
			v.words[v.h(w)] |= wTrigger
		}
	}
	// Days and months are dates' business, not names.
	for _, w := range strings.Fields("monday tuesday wednesday thursday friday saturday sunday english spanish american african asian hispanic caucasian latino christian jewish catholic muslim") {
		v.words[v.h(w)] = (v.words[v.h(w)] | wEnglish) &^ (wName | wProper | wPlace)
	}
	return v
})

// normWords lower-cases s and joins its words with single spaces.
func normWords(s string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 0x80)
	}), " ")
}

func (v *vocab) h(w string) uint64 { return maphash.String(v.seed, w) }

// flags returns the flags of a lower-case word.
func (v *vocab) flags(w string) uint16 { return v.words[maphash.String(v.seed, w)] }
