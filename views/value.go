package views

import (
	"strconv"
	"strings"
	"time"

	"fhirdeid/jsontree"
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
// In a column with an ansi/type date or timestamp (Column.SQLType), Int
// also holds the value as a number: days since 1970-01-01 for SQLDate (and
// Text is then the date alone), microseconds since 1970-01-01T00:00:00 for
// SQLTimestamp (the time as written, its offset ignored) and
// SQLTimestampTZ (the instant, in UTC).
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

// parseDate reads a full date, alone or at the start of a dateTime
// ("2020-02-03", "2020-02-03T04:05:06Z"), as days since 1970-01-01.
func parseDate(s string) (int64, bool) {
	if len(s) < 10 || (len(s) > 10 && s[10] != 'T') {
		return 0, false
	}
	t, err := time.Parse("2006-01-02", s[:10])
	if err != nil {
		return 0, false
	}
	return t.Unix() / 86400, true
}

// parseTimestamp reads a dateTime or instant with at least seconds
// ("2020-02-03T04:05:06.789+02:00") as microseconds since 1970-01-01: of
// the instant (in UTC) with utc, which then needs the time zone; of the
// time as written otherwise.
func parseTimestamp(s string, utc bool) (int64, bool) {
	if len(s) < 19 || s[10] != 'T' {
		return 0, false
	}
	t, err := time.Parse("2006-01-02T15:04:05Z07:00", s)
	if err != nil {
		if utc {
			return 0, false
		}
		if t, err = time.Parse("2006-01-02T15:04:05", s); err != nil {
			return 0, false
		}
	}
	if utc {
		return t.UnixMicro(), true
	}
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	return time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), time.UTC).UnixMicro(), true
}
