package anonymize

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ValueKind is the JSON kind of a configuration Value.
type ValueKind uint8

// The kinds of a Value.
const (
	NullValue ValueKind = iota
	BoolValue
	NumberValue
	StringValue
	ObjectValue
	ArrayValue
)

var valueKindNames = [...]string{"null", "boolean", "number", "string", "object", "array"}

// String returns the JSON name of the kind: "null", "string", "object", ...
func (k ValueKind) String() string {
	if int(k) < len(valueKindNames) {
		return valueKindNames[k]
	}
	return "invalid"
}

// Value is a JSON (or YAML) value read from a configuration file. Object
// members keep their order in the file, which matters for the cases of a
// generalize rule; numbers keep their literal text.
type Value struct {
	Kind ValueKind
	// Text is the decoded text of a string, the literal of a number, or
	// "true"/"false" for a boolean.
	Text string
	// Members are the members of an object, in file order.
	Members []Member
	// Items are the items of an array.
	Items []Value
	// Line and Col locate the value in the file (1-based; 0 when unknown).
	Line, Col int
}

// Member is one member of an object Value.
type Member struct {
	Key   string
	Value Value
	// Line and Col locate the member's key in the file.
	Line, Col int
}

// Get returns the member named key (compared exactly) of an object.
func (v *Value) Get(key string) (*Value, bool) {
	for i := range v.Members {
		if v.Members[i].Key == key {
			return &v.Members[i].Value, true
		}
	}
	return nil, false
}

// clone returns a deep copy of v.
func (v Value) clone() Value {
	c := v
	if v.Members != nil {
		c.Members = make([]Member, len(v.Members))
		for i, m := range v.Members {
			c.Members[i] = Member{Key: m.Key, Value: m.Value.clone(), Line: m.Line, Col: m.Col}
		}
	}
	if v.Items != nil {
		c.Items = make([]Value, len(v.Items))
		for i, it := range v.Items {
			c.Items[i] = it.clone()
		}
	}
	return c
}

// CSharpString returns the text that .NET's object.ToString() gives for the
// value as deserialized by Newtonsoft.Json, which is what the Microsoft
// anonymizer uses for method settings such as replaceWith: strings as they
// are, numbers as their literal, booleans as "True"/"False", objects and
// arrays as compact JSON. It reports false for null.
func (v Value) CSharpString() (string, bool) {
	switch v.Kind {
	case NullValue:
		return "", false
	case BoolValue:
		if v.Text == "true" {
			return "True", true
		}
		return "False", true
	case StringValue, NumberValue:
		return v.Text, true
	}
	return string(v.AppendJSON(nil)), true
}

// AppendJSON appends the compact JSON encoding of v to b.
func (v Value) AppendJSON(b []byte) []byte {
	switch v.Kind {
	case NullValue:
		return append(b, "null"...)
	case BoolValue, NumberValue:
		return append(b, v.Text...)
	case StringValue:
		return appendJSONString(b, v.Text)
	case ArrayValue:
		b = append(b, '[')
		for i, it := range v.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = it.AppendJSON(b)
		}
		return append(b, ']')
	case ObjectValue:
		b = append(b, '{')
		for i, m := range v.Members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, m.Key)
			b = append(b, ':')
			b = m.Value.AppendJSON(b)
		}
		return append(b, '}')
	}
	return b
}

// appendJSONString appends s as a JSON string literal, escaping only what
// JSON requires (no HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// SyntaxError is a malformed configuration file. It locates the problem
// but never quotes the file's content.
type SyntaxError struct {
	Line, Col int
	Msg       string
}

// Error implements the error interface.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d column %d: %s", e.Line, e.Col, e.Msg)
}

// parseJSON reads one JSON document the way the Microsoft anonymizer's
// Newtonsoft reader does for configuration files: a leading UTF-8 byte order
// mark, comments (// and /* */) and trailing commas are tolerated; duplicate
// member names in one object are an error.
func parseJSON(data []byte) (Value, error) {
	p := &jsonParser{s: data, line: 1, lineStart: 0}
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		p.pos = 3
		p.lineStart = 3
	}
	if err := p.skipSpace(); err != nil {
		return Value{}, err
	}
	v, err := p.value(0)
	if err != nil {
		return Value{}, err
	}
	if err := p.skipSpace(); err != nil {
		return Value{}, err
	}
	if p.pos < len(p.s) {
		return Value{}, p.errorf("unexpected data after the top-level value")
	}
	return v, nil
}

type jsonParser struct {
	s         []byte
	pos       int
	line      int
	lineStart int
}

const maxDepth = 200

func (p *jsonParser) col() int {
	return utf8.RuneCount(p.s[p.lineStart:p.pos]) + 1
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return &SyntaxError{Line: p.line, Col: p.col(), Msg: fmt.Sprintf(format, args...)}
}

func (p *jsonParser) skipSpace() error {
	for p.pos < len(p.s) {
		switch c := p.s[p.pos]; c {
		case '\n':
			p.pos++
			p.line++
			p.lineStart = p.pos
		case ' ', '\t', '\r':
			p.pos++
		case '/':
			if p.pos+1 >= len(p.s) {
				return p.errorf("unexpected '/'")
			}
			switch p.s[p.pos+1] {
			case '/':
				for p.pos < len(p.s) && p.s[p.pos] != '\n' {
					p.pos++
				}
			case '*':
				p.pos += 2
				for {
					if p.pos+1 >= len(p.s) {
						return p.errorf("unterminated comment")
					}
					if p.s[p.pos] == '*' && p.s[p.pos+1] == '/' {
						p.pos += 2
						break
					}
					if p.s[p.pos] == '\n' {
						p.line++
						p.lineStart = p.pos + 1
					}
					p.pos++
				}
			default:
				return p.errorf("unexpected '/'")
			}
		default:
			return nil
		}
	}
	return nil
}

func (p *jsonParser) value(depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, p.errorf("nesting deeper than %d", maxDepth)
	}
	if p.pos >= len(p.s) {
		return Value{}, p.errorf("unexpected end of input")
	}
	line, col := p.line, p.col()
	switch c := p.s[p.pos]; {
	case c == '{':
		return p.object(depth, line, col)
	case c == '[':
		return p.array(depth, line, col)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return Value{}, err
		}
		return Value{Kind: StringValue, Text: s, Line: line, Col: col}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		n, err := p.number()
		if err != nil {
			return Value{}, err
		}
		return Value{Kind: NumberValue, Text: n, Line: line, Col: col}, nil
	default:
		for _, lit := range [...]struct {
			word string
			kind ValueKind
		}{{"true", BoolValue}, {"false", BoolValue}, {"null", NullValue}} {
			if strings.HasPrefix(string(p.s[p.pos:min(len(p.s), p.pos+len(lit.word))]), lit.word) {
				p.pos += len(lit.word)
				v := Value{Kind: lit.kind, Line: line, Col: col}
				if lit.kind == BoolValue {
					v.Text = lit.word
				}
				return v, nil
			}
		}
		return Value{}, p.errorf("unexpected character %s", quoteChar(c))
	}
}

// quoteChar names a syntax character for an error. Only ASCII punctuation is
// shown, never letters or digits, so no file content leaks into messages.
func quoteChar(c byte) string {
	if c > 0x20 && c < 0x7f && !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') {
		return "'" + string(c) + "'"
	}
	return "(byte 0x" + strconv.FormatUint(uint64(c), 16) + ")"
}

func (p *jsonParser) object(depth, line, col int) (Value, error) {
	p.pos++ // {
	v := Value{Kind: ObjectValue, Members: []Member{}, Line: line, Col: col}
	seen := map[string]bool{}
	for {
		if err := p.skipSpace(); err != nil {
			return Value{}, err
		}
		if p.pos >= len(p.s) {
			return Value{}, p.errorf("unterminated object")
		}
		if p.s[p.pos] == '}' {
			p.pos++
			return v, nil
		}
		if p.s[p.pos] != '"' {
			return Value{}, p.errorf("expected a member name")
		}
		kl, kc := p.line, p.col()
		key, err := p.str()
		if err != nil {
			return Value{}, err
		}
		if seen[key] {
			return Value{}, &SyntaxError{Line: kl, Col: kc, Msg: fmt.Sprintf("duplicate key %q", key)}
		}
		seen[key] = true
		if err := p.skipSpace(); err != nil {
			return Value{}, err
		}
		if p.pos >= len(p.s) || p.s[p.pos] != ':' {
			return Value{}, p.errorf("expected ':' after a member name")
		}
		p.pos++
		if err := p.skipSpace(); err != nil {
			return Value{}, err
		}
		mv, err := p.value(depth + 1)
		if err != nil {
			return Value{}, err
		}
		v.Members = append(v.Members, Member{Key: key, Value: mv, Line: kl, Col: kc})
		if err := p.skipSpace(); err != nil {
			return Value{}, err
		}
		if p.pos >= len(p.s) {
			return Value{}, p.errorf("unterminated object")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++ // a trailing comma before '}' is tolerated, as by Newtonsoft
		case '}':
			p.pos++
			return v, nil
		default:
			return Value{}, p.errorf("expected ',' or '}' in an object")
		}
	}
}

func (p *jsonParser) array(depth, line, col int) (Value, error) {
	p.pos++ // [
	v := Value{Kind: ArrayValue, Items: []Value{}, Line: line, Col: col}
	for {
		if err := p.skipSpace(); err != nil {
			return Value{}, err
		}
		if p.pos >= len(p.s) {
			return Value{}, p.errorf("unterminated array")
		}
		if p.s[p.pos] == ']' {
			p.pos++
			return v, nil
		}
		it, err := p.value(depth + 1)
		if err != nil {
			return Value{}, err
		}
		v.Items = append(v.Items, it)
		if err := p.skipSpace(); err != nil {
			return Value{}, err
		}
		if p.pos >= len(p.s) {
			return Value{}, p.errorf("unterminated array")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return v, nil
		default:
			return Value{}, p.errorf("expected ',' or ']' in an array")
		}
	}
}

func (p *jsonParser) number() (string, error) {
	start := p.pos
	if p.s[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(p.s) && p.s[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return "", p.errorf("malformed number")
	}
	if p.pos < len(p.s) && p.s[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return "", p.errorf("malformed number")
		}
	}
	if p.pos < len(p.s) && (p.s[p.pos] == 'e' || p.s[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.s) && (p.s[p.pos] == '+' || p.s[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return "", p.errorf("malformed number")
		}
	}
	return string(p.s[start:p.pos]), nil
}

var errBadEscape = errors.New("invalid escape sequence in a string")

func (p *jsonParser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == '"' {
			s := p.s[start:p.pos]
			p.pos++
			if !utf8.Valid(s) {
				return fixUTF8(string(s)), nil
			}
			return string(s), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errorf("control character in a string")
		}
		p.pos++
	}
	var b strings.Builder
	b.Write(p.s[start:p.pos])
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '"':
			p.pos++
			return fixUTF8(b.String()), nil
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c != '\\':
			b.WriteByte(c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.s) {
			break
		}
		e := p.s[p.pos+1]
		p.pos += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("%v", errBadEscape)
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if p.pos+1 < len(p.s) && p.s[p.pos] == '\\' && p.s[p.pos+1] == 'u' {
					save := p.pos
					p.pos += 2
					// Only a high surrogate followed by a low one is a
					// pair; otherwise the next escape stands on its own.
					if lo, ok := p.hex4(); ok && utf16.DecodeRune(r, lo) != utf8.RuneError {
						r2 = utf16.DecodeRune(r, lo)
					} else {
						p.pos = save
					}
				}
				r = r2
			}
			b.WriteRune(r)
		default:
			return "", p.errorf("%v", errBadEscape)
		}
	}
	return "", p.errorf("unterminated string")
}

// fixUTF8 replaces every byte of s that is not part of valid UTF-8 by
// U+FFFD, as a .NET or Go UTF-8 decoder does when reading text.
func fixUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.s[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(n), true
}
