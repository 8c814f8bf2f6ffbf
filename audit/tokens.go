package audit

import (
	"unicode"
	"unicode/utf8"
)

// tokens is a string cut into normalised tokens: runs of letters and
// digits, lower-cased, with everything else — spaces, punctuation, symbols —
// dropped, and the "T" of an ISO date-time ("1965-01-13T08:00") taken as a
// separator so that a date-time holds its date's tokens. The tokens are
// packed one after the other in text, so that the concatenation of tokens
// i..j is text[off[i]:off[j+1]]: "555-532-1156", "(555) 532 1156" and
// "5555321156" all read "5555321156" over their tokens.
type tokens struct {
	text []byte
	off  []int // len(off) == number of tokens + 1
}

func (t *tokens) n() int { return len(t.off) - 1 }

// span returns the concatenation of tokens i..j-1.
func (t *tokens) span(i, j int) []byte { return t.text[t.off[i]:t.off[j]] }

const (
	classOther = iota
	classLetter
	classDigit
)

func runeClass(r rune) int {
	switch {
	case r < utf8.RuneSelf:
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			return classLetter
		case r >= '0' && r <= '9':
			return classDigit
		}
		return classOther
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsDigit(r):
		return classDigit
	}
	return classOther
}

// asciiClass is runeClass for ASCII bytes; asciiLower lower-cases them.
var asciiClass, asciiLower [128]byte

func init() {
	for c := range 128 {
		asciiClass[c] = byte(runeClass(rune(c)))
		asciiLower[c] = byte(c)
		if c >= 'A' && c <= 'Z' {
			asciiLower[c] = byte(c + 'a' - 'A')
		}
	}
}

// split cuts s into t, reusing t's storage.
func (t *tokens) split(s []byte) {
	if cap(t.text) < len(s) {
		t.text = make([]byte, 0, len(s)+len(s)/4)
	}
	t.text = t.text[:0]
	t.off = append(t.off[:0], 0)
	in, prevDigit := false, false
	for i := 0; i < len(s); {
		c := s[i]
		var cl int
		if c < utf8.RuneSelf {
			i++
			cl = int(asciiClass[c])
			if (c == 'T' || c == 't') && prevDigit && i < len(s) && s[i] >= '0' && s[i] <= '9' {
				cl = classOther // the T of an ISO date-time
			}
			if cl != classOther {
				in, prevDigit = true, cl == classDigit
				t.text = append(t.text, asciiLower[c])
				continue
			}
		} else {
			r, size := utf8.DecodeRune(s[i:])
			i += size
			cl = runeClass(r)
			if cl != classOther {
				in, prevDigit = true, cl == classDigit
				t.text = utf8.AppendRune(t.text, unicode.ToLower(r))
				continue
			}
		}
		prevDigit = false
		if in {
			t.off = append(t.off, len(t.text))
			in = false
		}
	}
	if in {
		t.off = append(t.off, len(t.text))
	}
}

// letters and digits report what kinds of characters text has.
func letters(text []byte) (hasLetter, hasDigit bool) {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRune(text[i:])
		i += size
		switch runeClass(r) {
		case classLetter:
			hasLetter = true
		case classDigit:
			hasDigit = true
		}
	}
	return
}
