package audit

import (
	"unicode"
	"unicode/utf8"
)

// tokens is a string cut into normalised tokens: runs of letters or runs of
// digits (a change between letters and digits also cuts), lower-cased, with
// everything else — spaces, punctuation, symbols — dropped. The tokens are
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

// split cuts s into t, reusing t's storage.
func (t *tokens) split(s []byte) {
	t.text = t.text[:0]
	t.off = append(t.off[:0], 0)
	prev := classOther
	for i := 0; i < len(s); {
		c := s[i]
		var r rune
		size := 1
		if c < utf8.RuneSelf {
			r = rune(c)
		} else {
			r, size = utf8.DecodeRune(s[i:])
		}
		i += size
		cl := runeClass(r)
		if cl != prev && prev != classOther {
			t.off = append(t.off, len(t.text))
		}
		prev = cl
		if cl == classOther {
			continue
		}
		if r < utf8.RuneSelf {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			t.text = append(t.text, c)
		} else {
			t.text = utf8.AppendRune(t.text, unicode.ToLower(r))
		}
	}
	if prev != classOther {
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
