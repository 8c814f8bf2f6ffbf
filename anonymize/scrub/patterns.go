package scrub

import (
	"strings"
)

// dateInfo is a parsed date of a DATE span, for shifting.
type dateInfo struct {
	y, m, d  int // y 0: no year; d 0: no day
	yDigits  int // 2 or 4
	sep      byte
	iso      bool // yyyy-mm-dd
	monthLen int  // month written as a name: its length
	full     bool // the month's full name
}

var months = map[string]int{
	"january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
	"june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9,
	"october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}

// ambiguousMonths are month names that are also common words: dates only
// with a number next to them.
var ambiguousMonths = map[string]bool{"may": true, "mar": true, "march": true, "dec": true, "jan": true, "sept": true, "sep": true, "oct": true, "aug": true, "jun": true, "jul": true, "apr": true, "feb": true, "nov": true}

var streetSuffixes = map[string]bool{
	"street": true, "st": true, "avenue": true, "ave": true, "av": true, "road": true, "rd": true, "boulevard": true,
	"blvd": true, "lane": true, "ln": true, "drive": true, "dr": true, "way": true, "court": true, "ct": true,
	"place": true, "pl": true, "terrace": true, "ter": true, "circle": true, "cir": true, "parkway": true,
	"pkwy": true, "highway": true, "hwy": true, "square": true, "sq": true, "trail": true, "trl": true, "pike": true,
	"crescent": true, "cres": true, "close": true, "row": true, "walk": true, "path": true, "loop": true, "alley": true,
	"bend": true, "crossing": true, "glen": true, "heights": true, "hollow": true, "ridge": true, "point": true,
	"grove": true, "gardens": true, "plaza": true, "expressway": true, "turnpike": true, "tpke": true, "route": true, "rte": true,
}

var unitWords = map[string]bool{
	"u": true, "units": true, "unit": true, "mg": true, "mcg": true, "ml": true, "cc": true, "iu": true, "meq": true,
	"g": true, "gm": true, "kg": true, "l": true, "mmol": true, "ng": true, "k": true, "cells": true, "copies": true,
	"plts": true, "platelets": true, "wbc": true, "x": true,
}

var idKeywords = map[string]bool{
	"mrn": true, "mr": true, "ssn": true, "acct": true, "account": true, "id": true, "record": true, "no": true,
	"number": true, "num": true, "member": true, "policy": true, "license": true, "lic": true, "serial": true,
	"sn": true, "dea": true, "npi": true, "medicaid": true, "medicare": true, "insurance": true, "plate": true,
	"vin": true, "fax": true, "pager": true, "tel": true, "phone": true, "ph": true, "cell": true, "beeper": true,
}

var urlWords = map[string]bool{"http": true, "https": true, "ftp": true, "file": true, "www": true}

var tlds = map[string]bool{"com": true, "org": true, "net": true, "edu": true, "gov": true, "io": true, "us": true, "info": true, "biz": true, "uk": true, "de": true, "ca": true}

// patterns runs the pattern layer over the tokens.
func (s *state) patterns() {
	t := s.text
	// E-mail addresses and URLs first: they contain digits and words.
	for i := range s.toks {
		if s.toks[i].kind != tPunct {
			continue
		}
		if t[s.toks[i].start] == '@' && i > 0 && i+1 < len(s.toks) && (s.is(i-1, tWord) || s.is(i-1, tNum)) && s.is(i+1, tWord) {
			a, b := i, i
			for a-1 >= 0 && (s.is(a-1, tWord) || s.is(a-1, tNum) || s.punct(a-1, '.') || s.punct(a-1, '_') || s.punct(a-1, '-') || s.punct(a-1, '+')) {
				a--
			}
			for b+1 < len(s.toks) && (s.is(b+1, tWord) || s.is(b+1, tNum) || (s.punct(b+1, '.') || s.punct(b+1, '-')) && b+2 < len(s.toks) && (s.is(b+2, tWord) || s.is(b+2, tNum))) {
				b++
			}
			s.mark(a, b, KindEmail, LayerPattern)
		}
	}
	for i := 0; i < len(s.toks); i++ {
		if s.marked[i] {
			continue
		}
		switch s.toks[i].kind {
		case tWord:
			i = s.wordPattern(i)
		case tNum:
			i = s.numberPattern(i)
		case tPunct:
			// '92: a two-digit year.
			if c := t[s.toks[i].start]; (c == '\'' || c == '`') && s.is(i+1, tNum) && s.toks[i+1].end-s.toks[i+1].start == 2 && !s.is(i+2, tWord) && !s.is(i-1, tNum) {
				s.mark(i, i+1, KindDate, LayerPattern)
				s.setDate(dateInfo{})
				i++
			}
		}
	}
}

// urlEnd returns the last token of a URL starting at token i.
func (s *state) urlEnd(i int) int {
	j := i
	for j+1 < len(s.toks) && s.toks[j+1].kind != tSpace {
		c := s.text[s.toks[j+1].start]
		if s.toks[j+1].kind == tPunct && strings.IndexByte("<>\"'()[]{}|\\^`", c) >= 0 {
			break
		}
		j++
	}
	// Trailing sentence punctuation is not part of it.
	for j > i && s.toks[j].kind == tPunct && strings.IndexByte(".,;:!?", s.text[s.toks[j].start]) >= 0 {
		j--
	}
	return j
}

func (s *state) wordPattern(i int) int {
	wb := s.word(i)
	// Most words start no pattern: decide without allocating.
	if s.cls[i]&wPattern == 0 && !s.punct(i+1, '.') && !hasDigit(s.tok(i)) {
		return i
	}
	w := string(wb)
	switch {
	case (w == "http" || w == "https" || w == "ftp" || w == "file") && s.punct(i+1, ':') && s.punct(i+2, '/'):
		j := s.urlEnd(i)
		s.mark(i, j, KindURL, LayerPattern)
		return j
	case w == "www" && s.punct(i+1, '.'):
		j := s.urlEnd(i)
		s.mark(i, j, KindURL, LayerPattern)
		return j
	}
	// host.example.com
	// A dotted run that ended in no top-level domain ends there from any of
	// its words too: hostFail keeps "A.A.A.…" linear.
	if i > s.hostFail && s.punct(i+1, '.') && s.is(i+2, tWord) {
		j := i
		for s.punct(j+1, '.') && (s.is(j+2, tWord) || s.is(j+2, tNum)) {
			j += 2
		}
		if j > i && tlds[strings.ToLower(s.tok(j))] && !s.is(j+1, tWord) && !s.is(j+1, tNum) {
			j = s.urlEnd(i)
			s.mark(i, j, KindURL, LayerPattern)
			return j
		}
		s.hostFail = j
	}
	if hasDigit(w) {
		// A word with digits: an identifier when it has five or more.
		d := 0
		for j := 0; j < len(w); j++ {
			if isDigit(w[j]) {
				d++
			}
		}
		if d >= 5 {
			end := s.idEnd(i)
			s.mark(i, end, KindID, LayerPattern)
			return end
		}
		return i
	}
	if m, ok := months[w]; ok {
		return s.monthDate(i, m, w)
	}
	// P.O. Box 123
	if w == "box" && s.is(i+2, tNum) && s.sp(i+1) {
		if i >= 4 && s.lowerIs(i-2, "o") || i >= 1 && s.lowerIs(i-2, "po") {
			a := i - 2
			for a > 0 && (s.is(a-1, tWord) || s.is(a-1, tPunct)) && a > i-5 && !s.is(a-1, tSpace) {
				a--
			}
			s.mark(a, i+2, KindAddress, LayerPattern)
			return i + 2
		}
	}
	// Identifier keywords: MRN: 12345, acct # 4411, SSN 123-45-6789.
	if idKeywords[w] {
		j := i + 1
		for k := 0; k < 4 && j < len(s.toks) && (s.toks[j].kind == tSpace && !s.toks[j].newline || s.toks[j].kind == tPunct && strings.IndexByte("#:.-=", s.text[s.toks[j].start]) >= 0 || s.lowerIs(j, "no", "number", "num", "is", "of")); k++ {
			j++
		}
		if s.is(j, tNum) || s.is(j, tWord) && (hasDigit(s.tok(j)) || s.idEnd(j) > j) {
			end := s.idEnd(j)
			if end >= 0 && s.digitsIn(j, end) >= 3 {
				k := KindID
				if w == "fax" || w == "pager" || w == "tel" || w == "phone" || w == "ph" || w == "cell" || w == "beeper" {
					k = KindPhone
					if s.sp(end+1) && s.is(end+2, tWord) && extension(s.word(end+2)) {
						end += 2
					}
				}
				s.mark(j, end, k, LayerPattern)
				return end
			}
		}
	}
	return i
}

// idEnd returns the last token of an identifier-like run (letters, digits,
// '-' or '/' between them) starting at j, or -1.
func (s *state) idEnd(j int) int {
	end := j
	for end+1 < len(s.toks) {
		switch {
		case s.is(end+1, tNum) || s.is(end+1, tWord) && s.toks[end+1].start == s.toks[end].end:
			end++
		case (s.punct(end+1, '-') || s.punct(end+1, '/') || s.punct(end+1, '.')) && s.is(end+2, tNum):
			end += 2
		default:
			return end
		}
	}
	return end
}

func (s *state) digitsIn(i, j int) int {
	n := 0
	for x := i; x <= j; x++ {
		if s.toks[x].kind == tNum {
			n += s.toks[x].end - s.toks[x].start
		}
	}
	return n
}

// monthDate handles a month name at token i.
func (s *state) monthDate(i, m int, w string) int {
	j := i
	if s.punct(j+1, '.') {
		j++
	}
	info := dateInfo{m: m, monthLen: len(w), full: w == strings.ToLower(monthNames[m])}
	// Month day[st|nd|rd|th][,] [year]
	k := j + 1
	if s.sp(k) || s.punct(k, '-') {
		k++
	}
	if d, n, ok := s.num(k); ok && n <= 2 && d >= 1 && d <= 31 && (j > i || s.sp(j+1) || s.punct(j+1, '-') || s.toks[k].start == s.toks[j].end) {
		end := k
		if s.is(end+1, tWord) && s.toks[end+1].start == s.toks[end].end && s.lowerIs(end+1, "st", "nd", "rd", "th") {
			end++
		}
		info.d = d
		// year
		y := end + 1
		if s.punct(y, ',') {
			y++
		}
		if s.sp(y) {
			y++
		}
		if s.punct(y, '\'') && s.is(y+1, tNum) {
			y++
		}
		if yy, n, ok := s.num(y); ok && (n == 4 && yy >= 1800 && yy <= 2199 || n == 2 && s.punct(y-1, '\'')) {
			info.y, info.yDigits, end = yy, n, y
		} else if d > 12 || !ambiguousMonths[w] || n == 2 {
			// "July 22"
		}
		s.mark(i, end, KindDate, LayerPattern)
		s.setDate(info)
		return end
	}
	// Month year: July 1992, Jul-92, Jul '92
	if s.punct(k, '\'') {
		k++
	}
	if yy, n, ok := s.num(k); ok && (n == 4 && yy >= 1800 && yy <= 2199 || n == 2 && (s.punct(k-1, '\'') || s.punct(k-1, '-'))) {
		s.mark(i, k, KindDate, LayerPattern)
		s.setDate(dateInfo{})
		return k
	}
	// 22Jul, 22 July handled from the number; a month alone is a date when
	// it is not a common word.
	if !ambiguousMonths[w] {
		s.mark(i, j, KindDate, LayerPattern)
		s.setDate(dateInfo{})
		return j
	}
	return i
}

func (s *state) setDate(d dateInfo) {
	for len(s.dates) < len(s.spans)-1 {
		s.dates = append(s.dates, dateInfo{})
	}
	s.dates = append(s.dates[:len(s.spans)-1], d)
}

// numberPattern handles a number at token i.
func (s *state) numberPattern(i int) int {
	v, n, _ := s.num(i)
	t := s.text
	next := func(j int) byte {
		if j < len(s.toks) && s.toks[j].kind == tPunct {
			return t[s.toks[j].start]
		}
		return 0
	}
	// A number glued to a word before it (A12345, MRN123456) or inside a
	// decimal: decided by length only.
	if s.punct(i-1, '.') && s.is(i-2, tNum) {
		return i
	}
	// Phone numbers: (ddd) ddd-dddd, ddd-ddd-dddd, ddd.ddd.dddd, 1-ddd-ddd-dddd
	if s.punct(i-1, '(') && n == 3 && next(i+1) == ')' {
		k := i + 2
		if s.sp(k) {
			k++
		}
		if _, n2, ok := s.num(k); ok && n2 == 3 && (next(k+1) == '-' || next(k+1) == '.') {
			if _, n3, ok := s.num(k + 2); ok && n3 == 4 {
				s.mark(i-1, k+2, KindPhone, LayerPattern)
				return k + 2
			}
		}
	}
	if n == 3 || n == 1 && v == 1 {
		start := i
		k := i
		if n == 1 {
			if c := next(k + 1); c == '-' || c == '.' || c == ' ' {
				if _, n0, ok := s.num(k + 2); ok && n0 == 3 {
					k += 2
				}
			}
		}
		if c := next(k + 1); c == '-' || c == '.' || c == '/' || s.sp(k+1) {
			if _, n2, ok := s.num(k + 2); ok && n2 == 3 {
				if c2 := next(k + 3); c2 == '-' || c2 == '.' || c2 == '/' || s.sp(k+3) {
					if _, n3, ok := s.num(k + 4); ok && n3 == 4 {
						end := k + 4
						if s.sp(end+1) && s.is(end+2, tWord) && extension(s.word(end+2)) {
							end += 2
						} else if s.sp(end+1) && s.lowerIs(end+2, "x", "ext") {
							if _, _, ok := s.num(end + 3); ok {
								end += 3
							} else if s.punct(end+3, '.') && s.is(end+4, tNum) {
								end += 4
							}
						}
						s.mark(start, end, KindPhone, LayerPattern)
						return end
					}
				}
			}
			// SSN ddd-dd-dddd
			if c == '-' {
				if _, n2, ok := s.num(k + 2); ok && n2 == 2 && next(k+3) == '-' {
					if _, n3, ok := s.num(k + 4); ok && n3 == 4 {
						s.mark(start, k+4, KindID, LayerPattern)
						return k + 4
					}
				}
			}
			// ddd-dddd
			if c == '-' || c == '.' {
				if _, n2, ok := s.num(k + 2); ok && n2 == 4 && !s.is(k+3, tNum) && next(k+3) != '-' {
					s.mark(start, k+2, KindPhone, LayerPattern)
					return k + 2
				}
			}
		}
	}
	// IP addresses
	if n <= 3 && next(i+1) == '.' && s.is(i+2, tNum) && next(i+3) == '.' && s.is(i+4, tNum) && next(i+5) == '.' && s.is(i+6, tNum) {
		ok := true
		for _, j := range []int{i, i + 2, i + 4, i + 6} {
			if x, l, _ := s.num(j); l > 3 || x > 255 {
				ok = false
			}
		}
		if ok {
			s.mark(i, i+6, KindIP, LayerPattern)
			return i + 6
		}
	}
	// yyyy-mm-dd, yyyy/mm/dd
	if n == 4 && v >= 1800 && v <= 2199 {
		if c := next(i + 1); c == '-' || c == '/' || c == '.' {
			if m, _, ok := s.num(i + 2); ok && m >= 1 && m <= 12 && next(i+3) == c {
				if d, _, ok := s.num(i + 4); ok && d >= 1 && d <= 31 {
					s.mark(i, i+4, KindDate, LayerPattern)
					s.setDate(dateInfo{y: v, m: m, d: d, yDigits: 4, sep: c, iso: true})
					return i + 4
				}
			}
		}
	}
	// m/d, m/d/yy, m/d/yyyy, m-d-yy, m.d.yy; m/yy
	if n <= 2 && v >= 1 && v <= 12 {
		if c := next(i + 1); (c == '/' || c == '-' || c == '.') && s.is(i+2, tNum) {
			d, dn, _ := s.num(i + 2)
			if dn <= 2 && d >= 1 && d <= 31 {
				end := i + 2
				info := dateInfo{m: v, d: d, sep: c}
				if next(end+1) == c {
					if y, yn, ok := s.num(end + 2); ok && (yn == 2 || yn == 4) {
						end += 2
						info.y, info.yDigits = y, yn
					}
				}
				// 2.5 is a number, 2.5.97 a date.
				if c != '.' || info.y != 0 {
					if !(c == '.' && s.is(i-2, tNum)) {
						s.mark(i, end, KindDate, LayerPattern)
						s.setDate(info)
						return end
					}
				}
			} else if c == '/' && (dn == 2 || dn == 4) && d >= 0 {
				// m/yy, m/yyyy
				if dn == 4 && d >= 1800 && d <= 2199 || dn == 2 {
					s.mark(i, i+2, KindDate, LayerPattern)
					s.setDate(dateInfo{})
					return i + 2
				}
			}
		}
	}
	// 22 July, 22Jul, 22-Jul-92
	if n <= 2 && v >= 1 && v <= 31 {
		k := i + 1
		if s.sp(k) || s.punct(k, '-') {
			k++
		}
		if s.is(k, tWord) {
			if m, ok := months[string(s.word(k))]; ok && (s.toks[k].start == s.toks[i].end || !ambiguousMonths[string(s.word(k))] || s.tok(k)[0] < 'a') {
				end := k
				info := dateInfo{m: m, d: v, monthLen: s.toks[k].end - s.toks[k].start, full: string(s.word(k)) == strings.ToLower(monthNames[m])}
				y := end + 1
				if s.punct(y, '.') {
					y++
				}
				if s.punct(y, ',') || s.punct(y, '-') {
					y++
				}
				if s.sp(y) {
					y++
				}
				if yy, yn, ok := s.num(y); ok && (yn == 4 && yy >= 1800 && yy <= 2199 || yn == 2 && s.punct(y-1, '-')) {
					end = y
					info.y, info.yDigits = yy, yn
				}
				s.mark(i, end, KindDate, LayerPattern)
				s.setDate(info)
				return end
			}
		}
	}
	// Times: 14:30, 2:30pm, 2 pm, 0830h
	if n <= 2 && next(i+1) == ':' {
		if mm, mn, ok := s.num(i + 2); ok && mn == 2 && v <= 24 && mm < 60 {
			end := i + 2
			if next(end+1) == ':' && s.is(end+2, tNum) {
				end += 2
			}
			if e := s.ampm(end); e > 0 {
				end = e
			}
			if !s.opts.KeepTimes {
				s.mark(i, end, KindTime, LayerPattern)
			}
			return end
		}
	}
	if n <= 2 && v >= 1 && v <= 12 {
		if e := s.ampm(i); e > 0 {
			if !s.opts.KeepTimes {
				s.mark(i, e, KindTime, LayerPattern)
			}
			return e
		}
	}
	// Ages over 89: 92 yo, 95 y/o, 91-year-old, age 93
	if n <= 3 && v >= 90 && v < 150 {
		k := i + 1
		if s.sp(k) || s.punct(k, '-') {
			k++
		}
		if s.lowerIs(k, "yo", "y", "yr", "yrs", "year", "years", "yoa", "yof", "yom", "y.o") || s.lowerIs(i-2, "age", "aged") && (s.sp(i-1) || s.punct(i-1, ':')) {
			end := i
			if s.is(k, tWord) && !s.lowerIs(i-2, "age", "aged") {
				end = k
				for end+2 < len(s.toks) && end < k+6 && (s.punct(end+1, '/') || s.punct(end+1, '.') || s.punct(end+1, '-') || s.sp(end+1)) && s.lowerIs(end+2, "o", "old") {
					end += 2
				}
			}
			s.mark(i, end, KindAge, LayerPattern)
			return end
		}
	}
	// 74': a two-digit year with the apostrophe after it.
	if n == 2 && (next(i+1) == '\'' || next(i+1) == '`') && !s.is(i+2, tWord) && !s.is(i-1, tPunct) {
		s.mark(i, i+1, KindDate, LayerPattern)
		s.setDate(dateInfo{})
		return i + 1
	}
	// Years standing alone.
	if n == 4 && v >= 1900 && v <= 2099 && !s.is(i-1, tWord) && !(s.sp(i+1) && s.is(i+2, tWord) && unitWords[string(s.word(i+2))]) && !(next(i+1) == '.' && s.is(i+2, tNum)) {
		s.mark(i, i, KindDate, LayerPattern)
		s.setDate(dateInfo{})
		return i
	}
	// Street addresses: 123 Main Street, 12 N. Oak Ave
	if n <= 5 && v > 0 {
		if end := s.streetEnd(i); end > 0 {
			s.mark(i, end, KindAddress, LayerPattern)
			return end
		}
	}
	// ZIP codes and other long numbers: MRN-like identifiers.
	if n >= 5 {
		if s.sp(i+1) && s.is(i+2, tWord) && unitWords[string(s.word(i+2))] || s.is(i+1, tWord) && unitWords[string(s.word(i+1))] {
			return i
		}
		end := i
		if n == 5 && next(i+1) == '-' {
			if _, n4, ok := s.num(i + 2); ok && n4 == 4 {
				end = i + 2
			}
		}
		start := i
		if s.is(i-1, tWord) && s.toks[i-1].end == s.toks[i].start && s.toks[i-1].end-s.toks[i-1].start <= 4 {
			start = i - 1
		}
		end = max(end, s.idEnd(i))
		s.mark(start, end, KindID, LayerPattern)
		return end
	}
	return i
}

// ampm returns the last token of "am"/"pm"/"a.m." after number token i, or 0.
func (s *state) ampm(i int) int {
	k := i + 1
	if s.sp(k) {
		k++
	}
	if s.lowerIs(k, "am", "pm") {
		return k
	}
	if s.lowerIs(k, "a", "p") && s.punct(k+1, '.') && s.lowerIs(k+2, "m") {
		if s.punct(k+3, '.') {
			return k + 3
		}
		return k + 2
	}
	return 0
}

// streetEnd returns the last token of a street address starting with the
// house number at token i, or 0.
func (s *state) streetEnd(i int) int {
	if !s.sp(i + 1) {
		return 0
	}
	k := i + 2
	words := 0
	for words < 4 && s.is(k, tWord) {
		w := string(s.word(k))
		if words > 0 && streetSuffixes[w] {
			end := k
			if s.punct(end+1, '.') {
				end++
			}
			// Apt 4, Suite 200
			if s.punct(end+1, ',') || s.sp(end+1) {
				a := end + 2
				if s.sp(a) {
					a++
				}
				if s.lowerIs(a, "apt", "suite", "ste", "unit", "apartment") {
					b := a + 1
					if s.punct(b, '.') {
						b++
					}
					if s.sp(b) {
						b++
					}
					if s.punct(b, '#') {
						b++
					}
					if s.is(b, tNum) || s.is(b, tWord) && s.toks[b].end-s.toks[b].start <= 2 {
						end = b
					}
				}
			}
			return end
		}
		if f := s.voc.flags(w); f&wStop != 0 || f&wClinical != 0 && !streetSuffixes[w] {
			return 0
		}
		words++
		k++
		if s.punct(k, '.') {
			// Only initials and direction abbreviations take a period
			// inside an address ("12 N. Oak St"); "2 hour period. Dr."
			// is two sentences.
			if s.toks[k-1].end-s.toks[k-1].start > 1 && !compass[w] && w != "mt" && w != "ft" {
				return 0
			}
			k++
		}
		if !s.sp(k) {
			return 0
		}
		k++
	}
	return 0
}

// extension reports "x12" or "ext123" after a phone number.
func extension(w []byte) bool {
	for _, p := range []string{"ext", "x"} {
		if len(w) > len(p) && string(w[:len(p)]) == p && isAllDigits(string(w[len(p):])) {
			return true
		}
	}
	return false
}
