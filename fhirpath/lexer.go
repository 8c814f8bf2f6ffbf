package fhirpath

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// tokenKind is the lexical class of a token.
type tokenKind uint8

const (
	tokEOF tokenKind = iota
	tokIdent
	tokDelimIdent // `...`
	tokString
	tokNumber
	tokDate
	tokDateTime
	tokTime
	tokPercent // %
	tokDollar  // $this, $index, $total (text holds the name without "$")
	tokOp      // punctuation and symbolic operators
)

var tokenKindNames = [...]string{"end of expression", "identifier", "identifier", "string", "number", "date", "dateTime", "time", "%", "$variable", "operator"}

// token is one lexical token. pos is the 0-based byte offset in the
// expression.
type token struct {
	kind tokenKind
	text string // decoded text for strings and delimited identifiers
	pos  int
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of expression"
	case tokOp:
		return fmt.Sprintf("%q", t.text)
	case tokIdent:
		return fmt.Sprintf("identifier %s", t.text)
	case tokDollar:
		return "$" + t.text
	}
	return tokenKindNames[t.kind]
}

// SyntaxError is a parse error of an expression. Line and Column are 1-based
// positions in the expression text.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

// Error formats the error as "fhirpath: line:column: message".
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("fhirpath: %d:%d: %s", e.Line, e.Column, e.Msg)
}

// lineCol converts a byte offset to a 1-based line and column (columns count
// runes).
func lineCol(src string, pos int) (int, int) {
	if pos > len(src) {
		pos = len(src)
	}
	line, col := 1, 1
	for _, r := range src[:pos] {
		if r == '\n' {
			line++
			col = 1
			continue
		}
		col++
	}
	return line, col
}

type lexer struct {
	src  string
	pos  int
	toks []token
}

func (lx *lexer) errorf(pos int, format string, args ...any) error {
	l, c := lineCol(lx.src, pos)
	return &SyntaxError{Line: l, Column: c, Msg: fmt.Sprintf(format, args...)}
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// lex splits src into tokens.
func lex(src string) ([]token, error) {
	lx := &lexer{src: src}
	for {
		if err := lx.skipSpace(); err != nil {
			return nil, err
		}
		if lx.pos >= len(src) {
			lx.toks = append(lx.toks, token{kind: tokEOF, pos: lx.pos})
			return lx.toks, nil
		}
		if err := lx.next(); err != nil {
			return nil, err
		}
	}
}

func (lx *lexer) skipSpace() error {
	s := lx.src
	for lx.pos < len(s) {
		c := s[lx.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f':
			lx.pos++
		case c == '/' && lx.pos+1 < len(s) && s[lx.pos+1] == '/':
			for lx.pos < len(s) && s[lx.pos] != '\n' {
				lx.pos++
			}
		case c == '/' && lx.pos+1 < len(s) && s[lx.pos+1] == '*':
			end := strings.Index(s[lx.pos+2:], "*/")
			if end < 0 {
				return lx.errorf(lx.pos, "unterminated comment")
			}
			lx.pos += 2 + end + 2
		default:
			return nil
		}
	}
	return nil
}

var twoCharOps = []string{"<=", ">=", "!=", "!~"}

func (lx *lexer) emit(k tokenKind, text string, pos int) {
	lx.toks = append(lx.toks, token{kind: k, text: text, pos: pos})
}

func (lx *lexer) next() error {
	s, start := lx.src, lx.pos
	c := s[start]
	switch {
	case isIdentStart(c):
		p := start + 1
		for p < len(s) && isIdentPart(s[p]) {
			p++
		}
		lx.pos = p
		lx.emit(tokIdent, s[start:p], start)
		return nil
	case isDigit(c):
		p := start + 1
		for p < len(s) && isDigit(s[p]) {
			p++
		}
		if p+1 < len(s) && s[p] == '.' && isDigit(s[p+1]) {
			p += 2
			for p < len(s) && isDigit(s[p]) {
				p++
			}
		}
		lx.pos = p
		lx.emit(tokNumber, s[start:p], start)
		return nil
	case c == '\'' || c == '`':
		text, p, err := lx.quoted(start, c)
		if err != nil {
			return err
		}
		lx.pos = p
		if c == '`' {
			lx.emit(tokDelimIdent, text, start)
		} else {
			lx.emit(tokString, text, start)
		}
		return nil
	case c == '@':
		return lx.dateTime(start)
	case c == '$':
		p := start + 1
		for p < len(s) && isIdentPart(s[p]) {
			p++
		}
		name := s[start+1 : p]
		if name != "this" && name != "index" && name != "total" {
			return lx.errorf(start, "unknown special variable $%s", name)
		}
		lx.pos = p
		lx.emit(tokDollar, name, start)
		return nil
	case c == '%':
		lx.pos++
		lx.emit(tokPercent, "%", start)
		return nil
	}
	for _, op := range twoCharOps {
		if strings.HasPrefix(s[start:], op) {
			lx.pos += 2
			lx.emit(tokOp, op, start)
			return nil
		}
	}
	if strings.IndexByte(".,()[]{}+-*/&|<>=~", c) >= 0 {
		lx.pos++
		lx.emit(tokOp, s[start:start+1], start)
		return nil
	}
	r, _ := utf8.DecodeRuneInString(s[start:])
	return lx.errorf(start, "unexpected character %q", r)
}

// quoted reads a string or delimited identifier starting at the quote q at
// start, decoding escapes. It returns the text and the offset after the
// closing quote.
func (lx *lexer) quoted(start int, q byte) (string, int, error) {
	s := lx.src
	var b strings.Builder
	p := start + 1
	for {
		if p >= len(s) {
			what := "string"
			if q == '`' {
				what = "delimited identifier"
			}
			return "", 0, lx.errorf(start, "unterminated %s", what)
		}
		c := s[p]
		if c == q {
			return b.String(), p + 1, nil
		}
		if c != '\\' {
			b.WriteByte(c)
			p++
			continue
		}
		if p+1 >= len(s) {
			return "", 0, lx.errorf(p, "unterminated escape sequence")
		}
		e := s[p+1]
		switch e {
		case '`', '\'', '"', '\\', '/':
			b.WriteByte(e)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if p+6 > len(s) {
				return "", 0, lx.errorf(p, "invalid unicode escape")
			}
			var r rune
			for _, h := range s[p+2 : p+6] {
				var d rune
				switch {
				case h >= '0' && h <= '9':
					d = h - '0'
				case h >= 'a' && h <= 'f':
					d = h - 'a' + 10
				case h >= 'A' && h <= 'F':
					d = h - 'A' + 10
				default:
					return "", 0, lx.errorf(p, "invalid unicode escape")
				}
				r = r<<4 | d
			}
			b.WriteRune(r)
			p += 6
			continue
		default:
			return "", 0, lx.errorf(p, "invalid escape sequence \\%c", e)
		}
		p += 2
	}
}

// digits reports whether s[p:p+n] are all digits.
func digits(s string, p, n int) bool {
	if p+n > len(s) {
		return false
	}
	for i := p; i < p+n; i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// dateTime lexes a date, dateTime or time literal starting with '@'.
func (lx *lexer) dateTime(start int) error {
	s := lx.src
	p := start + 1
	if p < len(s) && s[p] == 'T' {
		end, ok := scanTime(s, p+1)
		if !ok {
			return lx.errorf(start, "invalid time literal")
		}
		lx.pos = end
		lx.emit(tokTime, s[start+1:end], start)
		return nil
	}
	if !digits(s, p, 4) {
		return lx.errorf(start, "invalid date literal")
	}
	p += 4
	if p+2 < len(s)+0 && s[p] == '-' && digits(s, p+1, 2) {
		p += 3
		if p < len(s) && s[p] == '-' && digits(s, p+1, 2) {
			p += 3
		}
	}
	if p < len(s) && s[p] == 'T' {
		p++
		if digits(s, p, 2) {
			end, ok := scanTime(s, p)
			if !ok {
				return lx.errorf(start, "invalid dateTime literal")
			}
			p = end
			if p < len(s) && s[p] == 'Z' {
				p++
			} else if p < len(s) && (s[p] == '+' || s[p] == '-') && digits(s, p+1, 2) && p+3 < len(s) && s[p+3] == ':' && digits(s, p+4, 2) {
				p += 6
			}
		}
		lx.pos = p
		lx.emit(tokDateTime, s[start+1:p], start)
		return nil
	}
	lx.pos = p
	lx.emit(tokDate, s[start+1:p], start)
	return nil
}

// scanTime scans hh(:mm(:ss(.fff)?)?)? at p.
func scanTime(s string, p int) (int, bool) {
	if !digits(s, p, 2) {
		return p, false
	}
	p += 2
	if p < len(s) && s[p] == ':' && digits(s, p+1, 2) {
		p += 3
		if p < len(s) && s[p] == ':' && digits(s, p+1, 2) {
			p += 3
			if p+1 < len(s) && s[p] == '.' && isDigit(s[p+1]) {
				p += 2
				for p < len(s) && isDigit(s[p]) {
					p++
				}
			}
		}
	}
	return p, true
}
