package scrub

import "strings"

// hospitalWords end an institution's name ("Calvert Hospital").
var hospitalWords = map[string]bool{
	"hospital": true, "hosp": true, "memorial": true, "clinic": true, "infirmary": true, "healthcare": true,
	"sanitarium": true, "hospice": true, "regional": true, "rehab": true,
}

// institutionHeads make an institution's last word of "center", "centre" or
// "home" ("Medical Center", "Nursing Home").
var institutionHeads = map[string]bool{
	"medical": true, "health": true, "nursing": true, "rehab": true, "rehabilitation": true, "cancer": true,
	"surgical": true, "heart": true, "care": true, "trauma": true,
}

// notPlaces are destinations inside or around a hospital, not
// institutions: "went to step down", "back to bed".
var notPlaces = map[string]bool{
	"step": true, "stepdown": true, "floor": true, "home": true, "rehab": true, "or": true, "cath": true, "lab": true,
	"unit": true, "bed": true, "room": true, "chair": true, "bathroom": true, "commode": true, "sleep": true,
	"work": true, "radiology": true, "surgery": true, "dialysis": true, "ir": true, "ct": true, "mri": true,
	"xray": true, "procedure": true, "ward": true, "baseline": true, "normal": true, "sinus": true, "nursing": true,
	"care": true, "recovery": true, "pacu": true, "holding": true, "ambulance": true, "morgue": true, "hospital": true,
	"hosp": true, "icu": true, "ccu": true, "micu": true, "sicu": true, "er": true, "ed": true, "sitting": true,
	"bedside": true, "oob": true, "nh": true, "ecf": true, "snf": true, "rehabilitation": true, "clinic": true,
}

// class returns the vocabulary flags of word token i.
func (s *state) class(i int) uint16 { return s.cls[i] }

// nameLike reports a word that may be a name by itself: known only as a
// name or proper noun, or unknown to every list.
func (s *state) nameLike(i int) bool {
	if !s.is(i, tWord) {
		return false
	}
	if c := s.nlc[i]; c != 0 {
		return c > 0
	}
	r := s.nameLike1(i)
	s.nlc[i] = -1
	if r {
		s.nlc[i] = 1
	}
	return r
}

func (s *state) nameLike1(i int) bool {
	f := s.class(i)
	if f&(wClinical|wStop|wTitle|wRelation) != 0 {
		return false
	}
	if f&wEnglish != 0 {
		return false
	}
	if f&(wName|wProper|wPlace) != 0 {
		return true
	}
	// Unknown word: a name unless it has digits (fio2) or is a known
	// word's inflection or a clinical compound.
	w := s.tok(i)
	if len(w) < 2 {
		return false
	}
	// Contractions of abbreviations: "c'd", "con't", "d/c'ed" (but not
	// O'Connell: the apostrophe there starts a long part).
	if a := strings.LastIndexByte(w, '\''); a > 0 && len(w)-a-1 <= 2 {
		stem := string(s.word(i))
		stem = stem[:min(a, len(stem))]
		if len(stem) <= 3 {
			return false
		}
		f := s.voc.flags(stem)
		return f&(wEnglish|wClinical|wStop) == 0 && !s.voc.derived(stem)
	}
	if hasDigit(w) {
		// Quartermain3: a long unknown word glued to a short number.
		l := 0
		for l < len(w) && !isDigit(w[l]) {
			l++
		}
		// Synthea-style Alva958 too: four letters or more, three digits at most.
		if l < 4 || len(w)-l > 3 || !isAllDigits(w[l:]) {
			return false
		}
		lw := string(s.word(i))[:l]
		return s.voc.flags(lw)&(wEnglish|wClinical|wStop) == 0 && !s.voc.derived(lw)
	}
	return !s.voc.derived(string(s.word(i)))
}

func hasDigit(w string) bool {
	for i := 0; i < len(w); i++ {
		if isDigit(w[i]) {
			return true
		}
	}
	return false
}

var inflections = []string{"ations", "ation", "ings", "ing", "ied", "ies", "ed", "es", "s", "ly", "ally", "ness", "able", "er", "ers"}

var medSuffixes = []string{"itis", "osis", "oses", "emia", "emic", "ectomy", "ectomies", "otomy", "ostomy", "plasty", "scopy", "scopic", "gram", "graphy", "pathy", "algia", "uria", "cardia", "cardic", "pnea", "pneic", "penia", "plegia", "paresis", "trophy", "lysis", "lytic", "genic", "oma", "omas", "ocele", "rrhea", "rrhage", "sclerosis", "stasis", "tension", "tensive", "dynamic", "dynamics", "dynamically", "ology", "ologist", "ectasis", "itis", "mycin", "cillin", "floxacin", "azole", "olol", "pril", "sartan", "statin", "dipine", "parin", "prazole", "tidine", "semide", "thiazide", "zepam", "zolam", "barbital", "codone", "morphone", "triptan", "vudine", "navir", "cycline", "profen", "oxacin", "micin", "ceph", "cef", "mab", "nib"}

var medPrefixes = []string{"re", "non", "un", "pre", "post", "hypo", "hyper", "tachy", "brady", "intra", "extra", "sub", "inter", "anti", "de", "peri", "trans", "semi", "over", "under", "bi", "uni", "multi", "poly", "endo", "hemo", "cardio", "pneumo", "gastro", "neuro", "broncho", "dys", "micro", "macro", "mis"}

// derived reports an unknown word that is an inflection of a known one
// ("boluses", "reintubated") or has a medical suffix ("cholecystitis").
func (v *vocab) derived(w string) bool {
	for _, suf := range medSuffixes {
		if len(w) > len(suf)+2 && strings.HasSuffix(w, suf) {
			return true
		}
	}
	if v.inflected(w) {
		return true
	}
	for _, pre := range medPrefixes {
		if len(w) > len(pre)+3 && strings.HasPrefix(w, pre) {
			rest := w[len(pre):]
			if f := v.flags(rest); f&(wEnglish|wClinical) != 0 && f&(wName|wProper) == 0 || v.inflected(rest) {
				return true
			}
		}
	}
	return false
}

func (v *vocab) inflected(w string) bool {
	for _, suf := range inflections {
		if len(w) >= len(suf)+3 && strings.HasSuffix(w, suf) {
			stem := w[:len(w)-len(suf)]
			cands := []string{stem, stem + "e", stem + "y"}
			if n := len(stem); stem[n-1] == stem[n-2] {
				cands = append(cands, stem[:n-1]) // planned
			}
			if suf == "s" || suf == "ly" || suf == "er" || suf == "ers" || suf == "ness" {
				cands = cands[:1]
			}
			for _, cand := range cands {
				if f := v.flags(cand); f&(wEnglish|wClinical) != 0 && f&(wName|wProper) == 0 {
					return true
				}
			}
		}
	}
	return false
}

// maybeName reports a word that can be part of a name next to another
// name or after a title: not a function word or clinical term.
func (s *state) maybeName(i int) bool {
	if !s.is(i, tWord) {
		return false
	}
	f := s.class(i)
	if f&(wClinical|wStop|wTitle|wRelation) != 0 {
		return false
	}
	if f&wEnglish != 0 && f&(wName|wProper|wPlace) == 0 {
		// A plain English word: a name only when capitalised in cased text.
		return s.cased && s.capitalised(i)
	}
	return true
}

func (s *state) capitalised(i int) bool {
	c := s.text[s.toks[i].start]
	return c >= 'A' && c <= 'Z'
}

// sentenceStart reports a word at the start of a sentence or line.
func (s *state) sentenceStart(i int) bool {
	j := i - 1
	for j >= 0 && s.toks[j].kind == tSpace {
		if s.toks[j].newline {
			return true
		}
		j--
	}
	if j < 0 {
		return true
	}
	if s.toks[j].kind == tPunct {
		switch s.text[s.toks[j].start] {
		case '.', '!', '?', ':', ';', '-', '*', '"', '(':
			return true
		}
	}
	return false
}

// nextWord returns the next word token after i across spaces and the
// punctuation in skip, within the same line, or -1.
func (s *state) nextWord(i int, skip string) int {
	j := i + 1
	for j < len(s.toks) {
		switch s.toks[j].kind {
		case tWord:
			return j
		case tSpace:
			if s.toks[j].newline {
				return -1
			}
		case tPunct:
			if !containsByte(skip, s.text[s.toks[j].start]) {
				return -1
			}
		default:
			return -1
		}
		j++
	}
	return -1
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// vocabulary runs the vocabulary layer: names, places, institutions.
func (s *state) vocabulary() {
	n := len(s.toks)
	isName, kind := s.isName, s.kinds
	for i := 0; i < n; i++ {
		if s.toks[i].kind != tWord || s.marked[i] {
			continue
		}
		f := s.class(i)
		switch {
		case f&wTitle != 0:
			// Dr. Smith, dr healey, Mrs. A. Jones
			// Abbreviated titles take a period ("Dr. Smith"); a word title
			// ("fellow") ending a sentence is no title for the next one.
			skip := ""
			if s.toks[i].end-s.toks[i].start <= 4 {
				skip = "."
			}
			j := s.nextWord(i, skip)
			if j > 0 && !s.marked[j] && s.class(j)&wStop == 0 && !hasDigit(s.tok(j)) {
				isName[j], kind[j] = true, KindName
			}
		case f&wRelation != 0:
			j := s.nextWord(i, ",:(-")
			if j > 0 && !s.marked[j] && s.maybeName(j) && (s.class(j)&(wName|wProper) != 0 || s.nameLike(j) || s.cased && s.capitalised(j)) {
				isName[j], kind[j] = true, KindName
			}
			// The name before its relation: "sue (dtr)", "Mary, pt's wife".
			// A word that is also English ("plan, pt's wife") only in
			// parentheses or capitalised in mixed-case text.
			if j, paren := s.nameBeforeRelation(i); j >= 0 && !s.marked[j] && s.maybeName(j) &&
				(s.nameLike(j) || s.class(j)&(wName|wProper) != 0 && (paren || s.class(j)&wEnglish == 0) || s.casedAt(j) && s.capitalised(j)) {
				isName[j], kind[j] = true, KindName
			}
		}
		// An initial before a word: "Q. Lander", "j smith" is not taken.
		if s.toks[i].end-s.toks[i].start == 1 && s.punct(i+1, '.') && s.sp(i+2) && s.is(i+3, tWord) && !s.marked[i+3] &&
			s.class(i+3)&(wStop|wClinical) == 0 && (s.capitalised(i+3) || !s.cased) && s.toks[i+3].end-s.toks[i+3].start > 2 && !hasDigit(s.tok(i+3)) {
			isName[i], kind[i] = true, KindName
			isName[i+3], kind[i+3] = true, KindName
		}
		// An initial glued to a name: "J.Smith" (capital initial, title-case
		// name that is neither a function word nor clinical: not "E.Coli").
		if s.toks[i].end-s.toks[i].start == 1 && s.capitalised(i) && s.punct(i+1, '.') && s.is(i+2, tWord) && !s.marked[i+2] &&
			s.titleCase(i+2) && s.class(i+2)&(wStop|wClinical) == 0 && !hasDigit(s.tok(i+2)) {
			isName[i], kind[i] = true, KindName
			isName[i+2], kind[i+2] = true, KindName
		}
		if s.nameLike(i) {
			isName[i] = true
			if kind[i] == 0 {
				kind[i] = KindName
				if f&wPlace != 0 && f&wName == 0 {
					kind[i] = KindLocation
				}
			}
		} else if s.casedAt(i) && s.capitalised(i) && !s.sentenceStart(i) && f&(wName|wProper|wPlace) != 0 && f&(wClinical|wStop) == 0 {
			// A capitalised name-like English word mid-sentence ("seen by Green").
			isName[i] = true
			if kind[i] == 0 {
				kind[i] = KindName
			}
		}
		if f&wTrigger == 0 {
			continue
		}
		// Institutions: words before Hospital/Memorial/Clinic.
		if lw := string(s.word(i)); hospitalWords[lw] && f&wStop == 0 || (lw == "center" || lw == "centre" || lw == "home") && institutionHeads[string(s.word(max(s.prevWord(i), 0)))] && s.prevWord(i) >= 0 {
			a := i
			if !hospitalWords[lw] {
				a = s.prevWord(i) // the head is part of the name
			}
			head := a
			for k := 0; k < 3; k++ {
				p := a - 1
				if s.sp(p) || s.punct(p, '-') || s.punct(p, '.') && !s.sp(p-1) && s.is(p-1, tWord) {
					p--
				}
				if !s.is(p, tWord) {
					break
				}
				pf := s.class(p)
				if pf&(wStop|wClinical|wTitle|wRelation) != 0 || s.marked[p] && !isName[p] {
					break
				}
				a = p
			}
			if a < head || !hospitalWords[lw] && !s.genericBefore(head) {
				for x := a; x <= i; x++ {
					if s.toks[x].kind == tWord {
						isName[x], kind[x] = true, KindLocation
					}
				}
			}
		}
		// Places after a movement: "transferred to Holy Cross", "went to
		// Sacred Heart", "arrived from Kernan".
		if movementWords[string(s.word(i))] {
			s.movementPlace(i, isName, kind, false, "to", "from", "at")
		} else if residenceWords[string(s.word(i))] {
			// "lives in Quincy", "resident of Brookline".
			s.movementPlace(i, isName, kind, true, "in", "of", "at", "near", "from")
		}
		// University of X, U of X
		if s.lowerIs(i, "university", "univ", "u") && s.sp(i+1) && s.lowerIs(i+2, "of") && s.sp(i+3) && s.is(i+4, tWord) {
			for x := i; x <= i+4; x++ {
				if s.toks[x].kind == tWord {
					isName[x], kind[x] = true, KindLocation
				}
			}
		}
		// St. Agnes, Saint Mary
		if s.lowerIs(i, "st", "saint") && (s.punct(i+1, '.') && s.sp(i+2) && s.is(i+3, tWord) || s.sp(i+1) && s.is(i+2, tWord)) {
			j := s.nextWord(i, ".")
			if j > 0 && s.class(j)&(wStop|wClinical) == 0 && (s.capitalised(j) || !s.cased) {
				isName[i], kind[i] = true, KindLocation
				isName[j], kind[j] = true, KindLocation
			}
		}
	}
	// Multi-word place names from the list.
	if s.voc.maxPlaceWords > 1 {
		for i := 0; i < n; i++ {
			if s.toks[i].kind != tWord || s.marked[i] {
				continue
			}
			if !s.voc.placeStarts[string(s.word(i))] {
				continue
			}
			s.pbuf = append(s.pbuf[:0], s.word(i)...)
			j := i
			for w := 1; w < s.voc.maxPlaceWords; w++ {
				k := s.nextWord(j, ".-")
				if k < 0 || k-j > 3 {
					break
				}
				s.pbuf = append(s.pbuf, ' ')
				s.pbuf = append(s.pbuf, s.word(k)...)
				j = k
				if s.voc.places[string(s.pbuf)] && (!s.cased || s.capitalised(i)) {
					for x := i; x <= j; x++ {
						if s.toks[x].kind == tWord {
							isName[x], kind[x] = true, KindLocation
						}
					}
				}
			}
		}
	}
	// Chains: next to a name, name-like words join it ("Art White",
	// "V. DEGIORGIO", "Retterer-Moore").
	work := s.work[:0]
	for i := 0; i < n; i++ {
		if isName[i] {
			work = append(work, i)
		}
	}
	for len(work) > 0 {
		i := work[len(work)-1]
		work = work[:len(work)-1]
		for _, j := range [2]int{s.nextWord(i, "-"), s.prevWord(i)} {
			if j < 0 || isName[j] || s.marked[j] {
				continue
			}
			if s.maybeName(j) && (s.nameLike(j) || s.casedAt(j) && s.capitalised(j) && (s.class(j)&(wName|wProper) != 0 || j > i) ||
				s.class(j)&wName != 0 && s.class(i)&wName != 0 && s.class(j)&(wStop|wClinical) == 0) ||
				// "Bernard Foley": a name that is also a clinical word, title-case after a name.
				j > i && s.titleCase(j) && s.titleCase(i) && s.class(j)&wName != 0 && s.class(j)&wStop == 0 {
				isName[j], kind[j] = true, kind[i]
				work = append(work, j)
			}
		}
		// Initials: "V. Degiorgio"
		if p := i - 1; s.sp(p) && s.punct(p-1, '.') && s.is(p-2, tWord) && s.toks[p-2].end-s.toks[p-2].start == 1 && !isName[p-2] {
			isName[p-2], kind[p-2] = true, kind[i]
			work = append(work, p-2)
		}
	}
	s.work = work
	// Emit spans, joining adjacent name tokens.
	for i := 0; i < n; i++ {
		if !isName[i] || s.marked[i] {
			continue
		}
		j := i
		for {
			k := j + 1
			for k < n && (s.sp(k) || s.punct(k, '-') || s.punct(k, '.') && s.toks[j].end-s.toks[j].start == 1) && k < j+3 {
				k++
			}
			if k < n && isName[k] && !s.marked[k] && k > j+1 {
				j = k
				continue
			}
			break
		}
		// A ward or unit number after an institution-like name: "Blake 12".
		if s.nameLike(j) {
			k := j + 1
			if s.sp(k) {
				k++
			}
			if s.is(k, tNum) && s.toks[k].end-s.toks[k].start <= 2 && !((s.punct(k+1, '.') || s.punct(k+1, '/') || s.punct(k+1, ':') || s.punct(k+1, '-')) && s.is(k+2, tNum)) {
				u := k + 1
				if s.sp(u) {
					u++
				}
				if !(s.is(u, tWord) && (unitWords[string(s.word(u))] || timeWords[string(s.word(u))])) {
					j = k
				}
			}
		}
		s.mark(i, j, kind[i], LayerVocabulary)
		i = j
	}
}

// genericBefore reports an institution word at i used generically: after a
// function word that stands alone ("a nursing home", "to medical center";
// not "WALK-IN MEDICAL CENTER"), or at the start of the line.
func (s *state) genericBefore(i int) bool {
	p := i - 1
	if !s.sp(p) {
		return p < 0 || s.is(p, tSpace)
	}
	p--
	if !s.is(p, tWord) {
		return p < 0 || s.is(p, tSpace)
	}
	return genericWords[string(s.word(p))] && !s.marked[p] && (p == 0 || s.is(p-1, tSpace))
}

// genericWords make the institution word after them generic.
var genericWords = map[string]bool{"a": true, "an": true, "the": true, "to": true, "at": true, "in": true, "into": true, "from": true, "of": true, "for": true, "by": true}

// possessives stand between a name and its relation ("Mary, his wife").
var possessives = map[string]bool{"pt": true, "pts": true, "patient": true, "patients": true, "his": true, "her": true, "their": true, "the": true}

// nameBeforeRelation returns the word that names the relation word at i
// when it stands before it in parentheses or apposition, on the same line:
// "Sue (dtr)", "Sue, pt's daughter", "Sue - his wife"; else -1. paren
// reports the parenthesised form.
func (s *state) nameBeforeRelation(i int) (int, bool) {
	p := i - 1
	if s.sp(p) {
		p--
	}
	if s.is(p, tWord) && possessives[string(s.word(p))] {
		p--
		if s.sp(p) {
			p--
		}
	}
	paren := s.punct(p, '(')
	if !(paren || s.punct(p, ',') || s.punct(p, '-')) {
		return -1, false
	}
	p--
	if s.sp(p) {
		p--
	}
	if !s.is(p, tWord) {
		return -1, false
	}
	return p, paren
}

func (s *state) prevWord(i int) int {
	j := i - 1
	for j >= 0 {
		switch s.toks[j].kind {
		case tWord:
			return j
		case tSpace:
			if s.toks[j].newline {
				return -1
			}
		case tPunct:
			if s.text[s.toks[j].start] != '-' {
				return -1
			}
		default:
			return -1
		}
		j--
	}
	return -1
}

// timeWords follow a count, not a ward number ("Smith 2 days ago").
var timeWords = map[string]bool{"day": true, "days": true, "hour": true, "hours": true, "hr": true, "hrs": true, "h": true, "min": true, "mins": true, "minutes": true, "week": true, "weeks": true, "wk": true, "wks": true, "month": true, "months": true, "year": true, "years": true, "yr": true, "yrs": true, "times": true, "am": true, "pm": true, "of": true, "and": true, "or": true, "to": true}

var movementWords = map[string]bool{
	"transferred": true, "transfered": true, "transfer": true, "trans": true, "admitted": true, "readmitted": true,
	"sent": true, "went": true, "go": true, "going": true, "taken": true, "brought": true, "discharged": true,
	"arrived": true, "came": true, "flown": true, "flighted": true, "back": true, "returned": true, "moved": true,
	"referred": true, "xfer": true, "xferred": true, "d/c'd": true,
}

// residenceWords say where someone lives or comes from.
var residenceWords = map[string]bool{
	"lives": true, "lived": true, "living": true, "resides": true, "resided": true, "residing": true, "resident": true,
	"native": true, "born": true, "raised": true, "hometown": true, "originally": true,
}

// movementPlace marks the words after one of preps ("to", "from", "at")
// that follow a movement or residence word at i: up to three words that are
// neither function words nor clinical vocabulary, on the same line, before
// any punctuation. With strict, an English word in text without meaningful
// capitals is no place ("lives in ELDERLY HOUSING").
func (s *state) movementPlace(i int, isName []bool, kind []Kind, strict bool, preps ...string) {
	j := s.nextWord(i, "")
	if j < 0 || !s.lowerIs(j, preps...) {
		return
	}
	k := s.nextWord(j, "")
	if k >= 0 && s.lowerIs(k, "the") {
		k = s.nextWord(k, "")
	}
	var run []int
	for k >= 0 && len(run) < 3 {
		f := s.class(k)
		if f&(wStop|wClinical|wTitle|wRelation) != 0 || s.marked[k] || hasDigit(s.tok(k)) || hospitalWords[string(s.word(k))] || notPlaces[string(s.word(k))] {
			break
		}
		if s.casedAt(k) && !s.capitalised(k) && !s.nameLike(k) {
			break
		}
		if strict && !s.casedAt(k) && !s.nameLike(k) && f&(wName|wProper|wPlace) == 0 {
			break
		}
		run = append(run, k)
		k = s.nextWord(k, "")
	}
	for _, x := range run {
		isName[x] = true
		if kind[x] == 0 {
			kind[x] = KindLocation
		}
	}
}

// titleCase reports a word written Xxxx.
func (s *state) titleCase(i int) bool {
	w := s.tok(i)
	if len(w) < 2 || w[0] < 'A' || w[0] > 'Z' {
		return false
	}
	for j := 1; j < len(w); j++ {
		if w[j] >= 'A' && w[j] <= 'Z' {
			return false
		}
	}
	return true
}

// casedAt reports whether capitals carry meaning at word i: the text is
// mixed-case, or the word is title-case next to a lower-case word.
func (s *state) casedAt(i int) bool {
	if s.cased {
		return true
	}
	if !s.titleCase(i) {
		return false
	}
	for _, j := range [2]int{s.prevWord(i), s.nextWord(i, "")} {
		if j >= 0 {
			w := s.tok(j)
			if len(w) > 1 && w[0] >= 'a' && w[0] <= 'z' {
				return true
			}
		}
	}
	return false
}
