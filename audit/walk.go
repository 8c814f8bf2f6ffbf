package audit

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of a resource the walker accepts.
const maxDepth = 256

var errSyntax = errors.New("invalid JSON")

// visitor receives the events of a walk. path holds the member names from
// the root to the current value; array indices are not in it. The slices
// passed are only valid during the call.
type visitor interface {
	objectStart(path [][]byte)
	objectEnd(path [][]byte)
	str(path [][]byte, v []byte)
}

// walker is a small JSON reader that reports every string value with its
// member path, without building a tree. It is reused from resource to
// resource and is not safe for concurrent use.
type walker struct {
	b    []byte
	i    int
	path [][]byte
	buf  []byte // unescaped string values
	v    visitor
	keys []byte // unescaped member names of the resource
}

// key returns a member name that stays valid for the whole walk: b itself
// when it aliases the document, else a copy (names with escapes).
func (w *walker) key(b []byte) []byte {
	if len(b) > 0 && len(w.buf) > 0 && &b[0] == &w.buf[0] {
		start := len(w.keys)
		w.keys = append(w.keys, b...)
		return w.keys[start:len(w.keys):len(w.keys)]
	}
	return b
}

func (w *walker) walk(b []byte, v visitor) error {
	w.b, w.i, w.path, w.v, w.keys = b, 0, w.path[:0], v, w.keys[:0]
	w.space()
	if err := w.value(0); err != nil {
		return err
	}
	w.space()
	if w.i != len(w.b) {
		return errSyntax
	}
	return nil
}

func (w *walker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

func (w *walker) value(depth int) error {
	if depth > maxDepth {
		return errors.New("JSON nested too deeply")
	}
	if w.i >= len(w.b) {
		return errSyntax
	}
	switch c := w.b[w.i]; {
	case c == '{':
		w.i++
		w.v.objectStart(w.path)
		w.space()
		if w.i < len(w.b) && w.b[w.i] == '}' {
			w.i++
			w.v.objectEnd(w.path)
			return nil
		}
		for {
			w.space()
			key, err := w.string()
			if err != nil {
				return err
			}
			w.space()
			if w.i >= len(w.b) || w.b[w.i] != ':' {
				return errSyntax
			}
			w.i++
			w.space()
			w.path = append(w.path, w.key(key))
			if err := w.value(depth + 1); err != nil {
				return err
			}
			w.path = w.path[:len(w.path)-1]
			w.space()
			if w.i >= len(w.b) {
				return errSyntax
			}
			if w.b[w.i] == ',' {
				w.i++
				continue
			}
			if w.b[w.i] == '}' {
				w.i++
				w.v.objectEnd(w.path)
				return nil
			}
			return errSyntax
		}
	case c == '[':
		w.i++
		w.space()
		if w.i < len(w.b) && w.b[w.i] == ']' {
			w.i++
			return nil
		}
		for {
			w.space()
			if err := w.value(depth + 1); err != nil {
				return err
			}
			w.space()
			if w.i >= len(w.b) {
				return errSyntax
			}
			if w.b[w.i] == ',' {
				w.i++
				continue
			}
			if w.b[w.i] == ']' {
				w.i++
				return nil
			}
			return errSyntax
		}
	case c == '"':
		s, err := w.string()
		if err != nil {
			return err
		}
		w.v.str(w.path, s)
		return nil
	default:
		// A number, true, false or null: skip to the next delimiter.
		start := w.i
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if w.i == start {
					return errSyntax
				}
				return nil
			}
			w.i++
		}
		if w.i == start {
			return errSyntax
		}
		return nil
	}
}

// string reads a JSON string at w.i and returns its unescaped bytes, which
// alias w.b when there is no escape and w.buf otherwise.
func (w *walker) string() ([]byte, error) {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return nil, errSyntax
	}
	w.i++
	start := w.i
	q := bytes.IndexByte(w.b[start:], '"')
	if q < 0 {
		return nil, errSyntax
	}
	if bytes.IndexByte(w.b[start:start+q], '\\') >= 0 {
		return w.escaped(start)
	}
	w.i = start + q + 1
	return w.b[start : start+q], nil
}

func (w *walker) escaped(start int) ([]byte, error) {
	w.buf = append(w.buf[:0], w.b[start:w.i]...)
	for w.i < len(w.b) {
		c := w.b[w.i]
		switch c {
		case '"':
			w.i++
			return w.buf, nil
		case '\\':
			if w.i+1 >= len(w.b) {
				return nil, errSyntax
			}
			e := w.b[w.i+1]
			w.i += 2
			switch e {
			case '"', '\\', '/':
				w.buf = append(w.buf, e)
			case 'b':
				w.buf = append(w.buf, '\b')
			case 'f':
				w.buf = append(w.buf, '\f')
			case 'n':
				w.buf = append(w.buf, '\n')
			case 'r':
				w.buf = append(w.buf, '\r')
			case 't':
				w.buf = append(w.buf, '\t')
			case 'u':
				r, ok := w.hex4()
				if !ok {
					return nil, errSyntax
				}
				if utf16.IsSurrogate(r) {
					r2 := utf8.RuneError
					if w.i+1 < len(w.b) && w.b[w.i] == '\\' && w.b[w.i+1] == 'u' {
						w.i += 2
						lo, ok := w.hex4()
						if !ok {
							return nil, errSyntax
						}
						r2 = lo
					}
					r = utf16.DecodeRune(r, r2)
				}
				w.buf = utf8.AppendRune(w.buf, r)
			default:
				return nil, errSyntax
			}
		default:
			w.buf = append(w.buf, c)
			w.i++
		}
	}
	return nil, errSyntax
}

func (w *walker) hex4() (rune, bool) {
	if w.i+4 > len(w.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(w.b[w.i:w.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	w.i += 4
	return rune(v), true
}
