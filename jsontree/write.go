package jsontree

import (
	"math/bits"
	"unicode/utf8"
)

// AppendJSON appends the compact JSON text of n to dst and returns the
// extended buffer.
//
// Numbers are written with their literal text, unchanged; object members
// and array items in their order. Strings (values and member names) are
// written with the minimal standard escaping: '"' and '\\' as \" and \\,
// the control characters \b \f \n \r \t in short form and the others as
// \u00XX (lowercase hex). Nothing else is escaped: not "<", ">" and "&"
// (unlike encoding/json), not "/", and not U+2028 and U+2029, which JSON
// allows raw. Invalid UTF-8 in a string (possible only if it was set so by
// the program) is written as U+FFFD. Hence a compact document whose strings
// use exactly this escaping (as Synthea's and most servers' output does)
// is reproduced byte for byte by Parse followed by AppendJSON.
//
// Typing fields (Elem, the shadow) and Flags are not written. A Number
// whose Value is empty and a node of kind Invalid are written as null. A nil
// node is written as null.
func (n *Node) AppendJSON(dst []byte) []byte {
	if n == nil {
		return append(dst, "null"...)
	}
	switch n.Kind {
	case String:
		return n.appendString(dst)
	case Number:
		if n.Value() == "" {
			return append(dst, "null"...)
		}
		return append(dst, n.Value()...)
	case Bool:
		if n.Value() == "true" {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case Object:
		dst = append(dst, '{')
		for i, c := range n.Children() {
			if i > 0 {
				dst = append(dst, ',')
			}
			if c.Flags&FlagRawKey != 0 {
				dst = append(dst, '"')
				dst = append(dst, c.Key()...)
				dst = append(dst, '"', ':')
			} else {
				dst = AppendString(dst, c.Key())
				dst = append(dst, ':')
			}
			// A string that is the input's text, most values, is written
			// here rather than in a call, which would make the loop keep
			// its state on the stack.
			if c.Kind == String && c.Flags&FlagRaw != 0 {
				dst = append(dst, '"')
				dst = append(dst, c.Value()...)
				dst = append(dst, '"')
			} else {
				dst = c.AppendJSON(dst)
			}
		}
		return append(dst, '}')
	case Array:
		dst = append(dst, '[')
		for i, c := range n.Children() {
			if i > 0 {
				dst = append(dst, ',')
			}
			if c.Kind == String && c.Flags&FlagRaw != 0 {
				dst = append(dst, '"')
				dst = append(dst, c.Value()...)
				dst = append(dst, '"')
			} else {
				dst = c.AppendJSON(dst)
			}
		}
		return append(dst, ']')
	}
	return append(dst, "null"...)
}

// appendString appends String n's value as JSON: as it is when it is the
// input's text (FlagRaw), else escaped by AppendString.
func (n *Node) appendString(dst []byte) []byte {
	if n.Flags&FlagRaw != 0 {
		dst = append(dst, '"')
		dst = append(dst, n.Value()...)
		return append(dst, '"')
	}
	return AppendString(dst, n.Value())
}

// AppendIndent appends the indented JSON text of n to dst and returns the
// extended buffer. Each object member and array item begins on a new line
// starting with prefix followed by one copy of indent per level of nesting;
// a member's name is followed by ": ". Empty objects and arrays are written
// as {} and []. As with encoding/json's Indent, the text does not begin with
// prefix and has no trailing newline. Common FHIR tools use an indent of two
// spaces. Values are written as by AppendJSON.
func (n *Node) AppendIndent(dst []byte, prefix, indent string) []byte {
	return n.appendIndent(dst, prefix, indent, 0)
}

func (n *Node) appendIndent(dst []byte, prefix, indent string, depth int) []byte {
	if n == nil || (n.Kind != Object && n.Kind != Array) || n.Len() == 0 {
		if n != nil && n.Kind == Object {
			return append(dst, "{}"...)
		}
		if n != nil && n.Kind == Array {
			return append(dst, "[]"...)
		}
		return n.AppendJSON(dst)
	}
	open, close := byte('{'), byte('}')
	if n.Kind == Array {
		open, close = '[', ']'
	}
	dst = append(dst, open)
	for i, c := range n.Children() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = newline(dst, prefix, indent, depth+1)
		if n.Kind == Object {
			dst = AppendString(dst, c.Key())
			dst = append(dst, ':', ' ')
		}
		dst = c.appendIndent(dst, prefix, indent, depth+1)
	}
	dst = newline(dst, prefix, indent, depth)
	return append(dst, close)
}

func newline(dst []byte, prefix, indent string, depth int) []byte {
	dst = append(dst, '\n')
	dst = append(dst, prefix...)
	for range depth {
		dst = append(dst, indent...)
	}
	return dst
}

// needsEscape marks the ASCII bytes that cannot be copied into a JSON
// string as they are.
var needsEscape = [utf8.RuneSelf]bool{
	'"': true, '\\': true,
	0x00: true, 0x01: true, 0x02: true, 0x03: true, 0x04: true, 0x05: true, 0x06: true, 0x07: true,
	0x08: true, 0x09: true, 0x0a: true, 0x0b: true, 0x0c: true, 0x0d: true, 0x0e: true, 0x0f: true,
	0x10: true, 0x11: true, 0x12: true, 0x13: true, 0x14: true, 0x15: true, 0x16: true, 0x17: true,
	0x18: true, 0x19: true, 0x1a: true, 0x1b: true, 0x1c: true, 0x1d: true, 0x1e: true, 0x1f: true,
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string with minimal escaping; bytes of
// invalid UTF-8 become U+FFFD, so the result is always valid JSON.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied as is
	i := 0
	for i < len(s) {
		// Skip 8 plain ASCII bytes at a time.
		for i+8 <= len(s) {
			x := load64(s, i)
			m := stopMask(x)
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if !needsEscape[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// load64 reads s[i:i+8] as a little-endian word; the compiler merges the
// byte loads into one.
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
