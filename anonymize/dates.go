package anonymize

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DateType is one of the FHIR date primitive types the date methods handle.
type DateType uint8

// The date primitive types.
const (
	Date DateType = iota + 1
	DateTime
	Instant
)

// ParseDateType recognises "date", "dateTime" and "instant"
// (case-insensitively, as the reference implementation does).
func ParseDateType(fhirType string) (DateType, bool) {
	// Most types asked about are other types ("string", "code"): the
	// length tells them apart before any case folding. The only non-ASCII
	// letters that strings.EqualFold folds to ASCII ones are the Kelvin
	// sign (k) and the long s (2 bytes, s): "date" and "dateTime" have
	// neither, "instant" has one s, so it may be 8 bytes long.
	switch len(fhirType) {
	case len("date"):
		if fhirType == "date" || strings.EqualFold(fhirType, "date") {
			return Date, true
		}
	case len("instant"):
		if fhirType == "instant" || strings.EqualFold(fhirType, "instant") {
			return Instant, true
		}
	case len("dateTime"):
		if fhirType == "dateTime" || strings.EqualFold(fhirType, "dateTime") {
			return DateTime, true
		}
		if strings.EqualFold(fhirType, "instant") {
			return Instant, true
		}
	}
	return 0, false
}

// String returns the FHIR type name.
func (t DateType) String() string {
	switch t {
	case Date:
		return "date"
	case DateTime:
		return "dateTime"
	case Instant:
		return "instant"
	}
	return "invalid"
}

// dateParts is a date value as the date patterns of §2.3 read it.
type dateParts struct {
	year, month, day int // month and day 0 when absent
	timePart         string
	ok               bool
}

// parseDateParts reads a value as the reference implementation's patterns
// do, matched unanchored (the first position where a year starts):
//
//	date:     YYYY(-MM(-DD)?)?
//	dateTime: YYYY(-MM(-DD(Thh:mm:ss(.f+)?TZ)?)?)?
//
// where YYYY is four digits other than 0000, MM 01-12, DD 01-31, hh 00-23,
// mm 00-59, ss 00-60, and TZ, which is mandatory in the time part, is Z or
// ±hh:mm with hh 00-13 (or 14:00). timePart is the whole "T...TZ" text. The
// patterns are written out by hand; the tests hold the regular expressions
// and compare.
func parseDateParts(value string, t DateType) dateParts {
	for i := 0; i+4 <= len(value); i++ {
		y, ok := digits(value, i, 4)
		if !ok || y == 0 {
			continue
		}
		p := dateParts{year: y, ok: true}
		pos := i + 4
		m, ok := dashTwo(value, pos)
		if !ok || m < 1 || m > 12 {
			return p
		}
		p.month, pos = m, pos+3
		d, ok := dashTwo(value, pos)
		if !ok || d < 1 || d > 31 {
			return p
		}
		p.day, pos = d, pos+3
		if t != Date {
			if end := timeEnd(value, pos); end > pos {
				p.timePart = value[pos:end]
			}
		}
		return p
	}
	return dateParts{}
}

// digits reads n ASCII digits at s[i:].
func digits(s string, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range []byte(s[i : i+n]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// dashTwo reads "-dd" at s[i:].
func dashTwo(s string, i int) (int, bool) {
	if i >= len(s) || s[i] != '-' {
		return 0, false
	}
	return digits(s, i+1, 2)
}

// timeEnd returns the end of "Thh:mm:ss(.f+)?TZ" at s[i:], or i when there
// is none.
func timeEnd(s string, i int) int {
	p := i
	if p >= len(s) || s[p] != 'T' {
		return i
	}
	p++
	for k, max := range [3]int{23, 59, 60} {
		if k > 0 {
			if p >= len(s) || s[p] != ':' {
				return i
			}
			p++
		}
		v, ok := digits(s, p, 2)
		if !ok || v > max {
			return i
		}
		p += 2
	}
	if p < len(s) && s[p] == '.' {
		q := p + 1
		for q < len(s) && s[q] >= '0' && s[q] <= '9' {
			q++
		}
		if q == p+1 {
			return i
		}
		p = q
	}
	if p >= len(s) {
		return i
	}
	switch s[p] {
	case 'Z':
		return p + 1
	case '+', '-':
		h, ok := digits(s, p+1, 2)
		if !ok || p+3 >= len(s) || s[p+3] != ':' {
			return i
		}
		m, ok := digits(s, p+4, 2)
		if !ok || m > 59 || h > 14 || (h == 14 && m != 0) {
			return i
		}
		return p + 6
	}
	return i
}

// ageOverThreshold reports whether a date "indicates age > 89" relative to
// today (§2.3): a missing month or day counts as 1.
func (p dateParts) ageOverThreshold(today time.Time) bool {
	return p.ageOverOn(today.Date())
}

// ageOverOn is ageOverThreshold with today's date given as its parts (one
// Date call: Year, Month and Day each work out the whole date).
func (p dateParts) ageOverOn(ty int, tm time.Month, td int) bool {
	month, day := p.month, p.day
	if month == 0 {
		month = 1
	}
	if day == 0 {
		day = 1
	}
	age := ty - p.year
	if int(tm) < month || (int(tm) == month && td < day) {
		age--
	}
	return age > 89
}

// DateShiftOffset derives the date-shift offset in days, in [-50, 50], from
// a prefix (the scope's prefix or the root resource id) and the dateShiftKey
// (§2.3): fold the UTF-8 bytes of prefix+key with o = (o*131 + b) mod 101,
// then subtract 50.
func DateShiftOffset(prefix, key string) int {
	// The fold is linear: over the n bytes b_i of prefix+key it gives
	// Σ b_i·131^(n-1-i) mod 101, and 131 ≡ 30 (mod 101), whose powers
	// repeat every 100 (Fermat). Summing independent terms with one
	// division at the end, rather than a chain of n dependent steps, makes
	// it several times faster. A term is at most 255·100: the sum cannot
	// overflow for any input that fits in memory.
	var sum uint64
	k := 0
	for i := len(key) - 1; i >= 0; i-- {
		sum += uint64(key[i]) * uint64(pow30[k])
		if k++; k == len(pow30) {
			k = 0
		}
	}
	for i := len(prefix) - 1; i >= 0; i-- {
		sum += uint64(prefix[i]) * uint64(pow30[k])
		if k++; k == len(pow30) {
			k = 0
		}
	}
	return int(sum%101) - 50
}

// pow30 holds 30^k mod 101 for k in [0, 100).
var pow30 = func() (t [100]uint8) {
	p := 1
	for k := range t {
		t[k] = uint8(p)
		p = p * 30 % 101
	}
	return t
}()

// ErrDateRange reports a date that is not a valid calendar date, or that a
// shift moves outside the years 1 to 9999.
var ErrDateRange = errors.New("date out of range")

// ShiftDate applies dateShift to one date, dateTime or instant value (§2.3).
// When the value has a day and does not indicate an age over 89 relative to
// today, its calendar date is moved by offset days and it returns
// OpPerturb: a time with a zone is kept as zeros of the same length with the
// zone verbatim ("2015-02-07T13:28:17.123-05:00" becomes
// "2015-01-17T00:00:00.000-05:00"); without a zone the time is dropped.
// Otherwise it falls back to RedactDate and returns OpRedact.
//
// keep is false when the value is removed. The error never quotes the value.
func ShiftDate(value string, t DateType, offset int, partial bool, today time.Time) (out string, keep bool, op Operation, err error) {
	var stack [64]byte
	b, out, keep, op, err := appendShiftDate(stack[:0], value, t, offset, partial, today)
	if b != nil {
		out = string(b)
	}
	return out, keep, op, err
}

// appendShiftDate is ShiftDate, but a shifted date is appended to dst and
// returned as b (out is then empty), so that the caller decides where its
// bytes live; a redacted value is returned as out with b nil.
func appendShiftDate(dst []byte, value string, t DateType, offset int, partial bool, today time.Time) (b []byte, out string, keep bool, op Operation, err error) {
	p := parseDateParts(value, t)
	if !p.ok || p.day == 0 || p.ageOverThreshold(today) {
		out, keep = redactDateParts(value, p, partial, today)
		return nil, out, keep, OpRedact, nil
	}
	y, m, day, valid, inRange := addDays(p.year, p.month, p.day, offset)
	if !valid {
		return nil, "", false, OpPerturb, fmt.Errorf("shifting %s: %w: not a calendar date", t, ErrDateRange)
	}
	if !inRange {
		return nil, "", false, OpPerturb, fmt.Errorf("shifting %s: %w", t, ErrDateRange)
	}
	b = append(dst, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+day/10), byte('0'+day%10))
	if p.timePart != "" {
		// "T" HH:mm:ss(.fff) zone: zero every digit of the time, keep the zone.
		tp := p.timePart
		end := 1
		for end < len(tp) && tp[end] != 'Z' && tp[end] != '+' && tp[end] != '-' {
			end++
		}
		b = append(b, 'T')
		for i := 1; i < end; i++ {
			if c := tp[i]; c >= '0' && c <= '9' {
				b = append(b, '0')
			} else {
				b = append(b, c)
			}
		}
		b = append(b, tp[end:]...)
	}
	return b, "", true, OpPerturb, nil
}

// RedactDate applies redact to a date, dateTime or instant value (§2.4.1):
// without partial dates the value is removed; with them only the 4-digit
// year is kept, and the value is removed if it indicates an age over 89.
// A value the date pattern does not match is kept as it is. The operation is
// always OpRedact.
func RedactDate(value string, t DateType, partial bool, today time.Time) (out string, keep bool) {
	return redactDateParts(value, parseDateParts(value, t), partial, today)
}

func redactDateParts(value string, p dateParts, partial bool, today time.Time) (string, bool) {
	if !partial {
		return "", false
	}
	if !p.ok {
		return value, true
	}
	if p.ageOverThreshold(today) {
		return "", false
	}
	if p.year >= 0 && p.year <= 9999 {
		y := [4]byte{byte('0' + p.year/1000), byte('0' + p.year/100%10), byte('0' + p.year/10%10), byte('0' + p.year%10)}
		return string(y[:]), true
	}
	return fmt.Sprintf("%04d", p.year), true
}

// RedactAge applies redact to the value of an Age (§2.4.2): without partial
// ages it is removed; with them it is removed when over 89 and kept
// otherwise. The reference implementation fails on a non-integer age; this
// one compares the decimal value instead (90.5 is removed, 45.5 kept). An
// unparsable number is an error that does not quote it.
func RedactAge(value string, partial bool) (out string, keep bool, err error) {
	if !partial {
		return "", false, nil
	}
	s := strings.TrimSpace(value)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return value, n <= 89, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "", false, errors.New("redacting age: value is not a number")
	}
	return value, f <= 89, nil
}

// RedactPostalCode applies redact to an element named postalCode (§2.4.3).
// Without partial zip codes the value is removed (OpRedact). With them, a
// value starting with a restricted prefix has every digit replaced by 0, a
// value of at least 3 characters keeps its first 3 and has the digits of the
// rest replaced by 0, and a shorter value is kept; the operation is then
// OpAbstract.
func RedactPostalCode(value string, partial bool, restricted []string) (out string, keep bool, op Operation) {
	if !partial {
		return "", false, OpRedact
	}
	zero := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '0'
			}
			return r
		}, s)
	}
	for _, x := range restricted {
		if strings.HasPrefix(value, x) {
			return zero(value), true, OpAbstract
		}
	}
	// The first three characters (UTF-16 code units in .NET; runes here, the
	// same for any real postal code).
	n, i := 0, 0
	for i < len(value) && n < 3 {
		_, size := utf8.DecodeRuneInString(value[i:])
		i += size
		n++
	}
	if n < 3 {
		return value, true, OpAbstract
	}
	return value[:i] + zero(value[i:]), true, OpAbstract
}
