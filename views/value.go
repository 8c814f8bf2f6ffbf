package views

import (
	"fhirdeid/jsontree"
	"strconv"
	"strings"
)

// Kind is the type of a column's values.
type Kind uint8

// The kinds of column. KindAny is a column without a declared type: each
// value keeps the kind it comes with.
const (
	KindAny Kind = iota
	KindString
	KindInteger
	KindDecimal
	KindBoolean
	KindDate
	KindDateTime
	KindInstant
	KindTime
	// KindJSON is a complex FHIR type (a column typed "Coding",
	// "Observation.referenceRange"...): the element as compact JSON text.
	KindJSON
)

var kindNames = [...]string{"any", "string", "integer", "decimal", "boolean", "date", "dateTime", "instant", "time", "json"}

// String returns the kind's name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// kindOfType maps a column's FHIR type (relative name or
// StructureDefinition URL) to a Kind. Complex types give KindJSON.
func kindOfType(t string) Kind {
	t = strings.TrimPrefix(t, "http://hl7.org/fhir/StructureDefinition/")
	switch t {
	case "":
		return KindAny
	case "boolean":
		return KindBoolean
	case "integer", "positiveInt", "unsignedInt", "integer64":
		return KindInteger
	case "decimal":
		return KindDecimal
	case "date":
		return KindDate
	case "dateTime":
		return KindDateTime
	case "instant":
		return KindInstant
	case "time":
		return KindTime
	case "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml":
		return KindString
	}
	return KindJSON
}

// Value is one cell of a row. Null is the zero Value. Text holds strings,
// the exact literal of a decimal, the FHIR text of dates, times and
// instants, and the JSON of complex values; Int holds integers and booleans
// (0 or 1). A collection column holds its items in List (Kind is the
// column's kind, Null false, even when the list is empty).
//
// Text may point into the resource's parse buffer: a Value is valid only
// during the callback that receives it; writers copy what they keep.
type Value struct {
	Kind Kind
	Null bool
	Text string
	Int  int64
	List []Value
}

// Bool returns the value of a boolean.
func (v Value) Bool() bool { return v.Int != 0 }

// AppendJSON appends v as JSON: null, true/false, a number for integers and
// decimals, a JSON value for KindJSON, a string otherwise; a list is an
// array.
func (v Value) AppendJSON(dst []byte) []byte {
	if v.List != nil {
		dst = append(dst, '[')
		for i, it := range v.List {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = it.AppendJSON(dst)
		}
		return append(dst, ']')
	}
	if v.Null {
		return append(dst, "null"...)
	}
	switch v.Kind {
	case KindBoolean:
		if v.Int != 0 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case KindInteger:
		return strconv.AppendInt(dst, v.Int, 10)
	case KindDecimal, KindJSON:
		return append(dst, v.Text...)
	}
	return jsontree.AppendString(dst, v.Text)
}

// String formats a non-list value as text: "true"/"false", the integer, the
// decimal literal, the date text...; "" for null.
func (v Value) String() string {
	if v.Null {
		return ""
	}
	switch v.Kind {
	case KindBoolean:
		if v.Int != 0 {
			return "true"
		}
		return "false"
	case KindInteger:
		return strconv.FormatInt(v.Int, 10)
	}
	return v.Text
}
