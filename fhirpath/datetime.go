package fhirpath

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Precision is the precision of a date, dateTime or time value.
type Precision uint8

// Precisions from coarsest to finest.
const (
	PrecYear Precision = iota + 1
	PrecMonth
	PrecDay
	PrecHour
	PrecMinute
	PrecSecond
	PrecMillisecond
)

// DateTime is a System.DateTime value with a precision. Fields finer than
// the precision are zero. HasTZ tells whether a timezone offset was given;
// Offset is then its value in minutes east of UTC.
type DateTime struct {
	Year, Month, Day     int
	Hour, Minute, Second int
	Millisecond          int
	Prec                 Precision
	HasTZ                bool
	Offset               int
}

// Date is a System.Date value (precision year, month or day).
type Date DateTime

// Time is a System.Time value (precision hour to millisecond); only the
// Hour..Millisecond fields are used.
type Time DateTime

var errBadTemporal = errors.New("invalid date/time")

// ParseDate parses YYYY(-MM(-DD)?)?.
func ParseDate(s string) (Date, error) {
	var d DateTime
	rest, err := parseDatePart(s, &d)
	if err != nil || rest != "" {
		return Date{}, errBadTemporal
	}
	return Date(d), nil
}

// ParseDateTime parses a FHIR/FHIRPath dateTime: a date, optionally followed
// by 'T', a time and a timezone. A bare date is accepted (precision of the
// date).
func ParseDateTime(s string) (DateTime, error) {
	var d DateTime
	rest, err := parseDatePart(s, &d)
	if err != nil {
		return d, err
	}
	if rest == "" {
		return d, nil
	}
	if rest[0] != 'T' {
		return d, errBadTemporal
	}
	rest = rest[1:]
	if rest == "" {
		return d, nil
	}
	rest, err = parseTimePart(rest, &d)
	if err != nil {
		return d, err
	}
	if rest != "" {
		if err := parseTZ(rest, &d); err != nil {
			return d, err
		}
	}
	return d, nil
}

// ParseTime parses hh(:mm(:ss(.fff)?)?)? (no timezone).
func ParseTime(s string) (Time, error) {
	var d DateTime
	rest, err := parseTimePart(s, &d)
	if err != nil || rest != "" {
		return Time{}, errBadTemporal
	}
	return Time(d), nil
}

func num(s string, n int) (int, bool) {
	if len(s) < n || !allDigits(s[:n]) {
		return 0, false
	}
	v, _ := strconv.Atoi(s[:n])
	return v, true
}

func parseDatePart(s string, d *DateTime) (string, error) {
	y, ok := num(s, 4)
	if !ok {
		return s, errBadTemporal
	}
	d.Year, d.Prec, s = y, PrecYear, s[4:]
	if len(s) >= 3 && s[0] == '-' {
		m, ok := num(s[1:], 2)
		if !ok || m < 1 || m > 12 {
			return s, errBadTemporal
		}
		d.Month, d.Prec, s = m, PrecMonth, s[3:]
		if len(s) >= 3 && s[0] == '-' {
			dd, ok := num(s[1:], 2)
			if !ok || dd < 1 || dd > daysIn(d.Year, d.Month) {
				return s, errBadTemporal
			}
			d.Day, d.Prec, s = dd, PrecDay, s[3:]
		}
	}
	return s, nil
}

func parseTimePart(s string, d *DateTime) (string, error) {
	h, ok := num(s, 2)
	if !ok || h > 23 {
		return s, errBadTemporal
	}
	d.Hour, d.Prec, s = h, PrecHour, s[2:]
	if len(s) >= 3 && s[0] == ':' {
		m, ok := num(s[1:], 2)
		if !ok || m > 59 {
			return s, errBadTemporal
		}
		d.Minute, d.Prec, s = m, PrecMinute, s[3:]
		if len(s) >= 3 && s[0] == ':' {
			sec, ok := num(s[1:], 2)
			if !ok || sec > 59 {
				return s, errBadTemporal
			}
			d.Second, d.Prec, s = sec, PrecSecond, s[3:]
			if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
				p := 1
				for p < len(s) && isDigit(s[p]) {
					p++
				}
				frac := (s[1:p] + "00")[:3]
				ms, _ := strconv.Atoi(frac)
				d.Millisecond, d.Prec, s = ms, PrecMillisecond, s[p:]
			}
		}
	}
	return s, nil
}

func parseTZ(s string, d *DateTime) error {
	if s == "Z" {
		d.HasTZ, d.Offset = true, 0
		return nil
	}
	if len(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
		return errBadTemporal
	}
	h, ok1 := num(s[1:], 2)
	m, ok2 := num(s[4:], 2)
	if !ok1 || !ok2 || h > 14 || m > 59 {
		return errBadTemporal
	}
	d.HasTZ, d.Offset = true, h*60+m
	if s[0] == '-' {
		d.Offset = -d.Offset
	}
	return nil
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func (d DateTime) writeDate(b *strings.Builder) {
	fmt.Fprintf(b, "%04d", d.Year)
	if d.Prec >= PrecMonth {
		fmt.Fprintf(b, "-%02d", d.Month)
	}
	if d.Prec >= PrecDay {
		fmt.Fprintf(b, "-%02d", d.Day)
	}
}

func (d DateTime) writeTime(b *strings.Builder) {
	fmt.Fprintf(b, "%02d", d.Hour)
	if d.Prec >= PrecMinute {
		fmt.Fprintf(b, ":%02d", d.Minute)
	}
	if d.Prec >= PrecSecond {
		fmt.Fprintf(b, ":%02d", d.Second)
	}
	if d.Prec >= PrecMillisecond {
		fmt.Fprintf(b, ".%03d", d.Millisecond)
	}
}

// String formats d in FHIR form (without '@'): 2019-01-01T10:00:00.000+01:00.
func (d DateTime) String() string {
	var b strings.Builder
	d.writeDate(&b)
	if d.Prec >= PrecHour {
		b.WriteByte('T')
		d.writeTime(&b)
		if d.HasTZ {
			if d.Offset == 0 {
				b.WriteByte('Z')
			} else {
				off := d.Offset
				sign := byte('+')
				if off < 0 {
					sign, off = '-', -off
				}
				fmt.Fprintf(&b, "%c%02d:%02d", sign, off/60, off%60)
			}
		}
	}
	return b.String()
}

// String formats d as YYYY-MM-DD at its precision.
func (d Date) String() string {
	var b strings.Builder
	DateTime(d).writeDate(&b)
	return b.String()
}

// String formats t as hh:mm:ss.fff at its precision.
func (t Time) String() string {
	var b strings.Builder
	DateTime(t).writeTime(&b)
	return b.String()
}

// toTime converts d (at least hour precision or a date) to a time.Time,
// filling missing parts with their minimum. loc is used without a timezone.
func (d DateTime) toTime(loc *time.Location) time.Time {
	if d.HasTZ {
		loc = time.FixedZone("", d.Offset*60)
	}
	m, dd := d.Month, d.Day
	if m == 0 {
		m = 1
	}
	if dd == 0 {
		dd = 1
	}
	return time.Date(d.Year, time.Month(m), dd, d.Hour, d.Minute, d.Second, d.Millisecond*1e6, loc)
}

// fromTime builds a DateTime from t with the given precision and t's offset.
func fromTime(t time.Time, prec Precision, hasTZ bool) DateTime {
	_, off := t.Zone()
	d := DateTime{Year: t.Year(), Prec: prec, HasTZ: hasTZ && prec >= PrecHour}
	if d.HasTZ {
		d.Offset = off / 60
	}
	if prec >= PrecMonth {
		d.Month = int(t.Month())
	}
	if prec >= PrecDay {
		d.Day = t.Day()
	}
	if prec >= PrecHour {
		d.Hour = t.Hour()
	}
	if prec >= PrecMinute {
		d.Minute = t.Minute()
	}
	if prec >= PrecSecond {
		d.Second = t.Second()
	}
	if prec >= PrecMillisecond {
		d.Millisecond = t.Nanosecond() / 1e6
	}
	return d
}

// compareTemporal compares two date/time values field by field. ok is false
// when the result is unknown because the precisions differ at the point
// where the values are still equal. Seconds and milliseconds count as one
// precision. first is the first precision compared (PrecYear for dates,
// PrecHour for times).
func compareTemporal(a, b DateTime, first Precision) (int, bool) {
	if first == PrecYear && a.Prec >= PrecHour && b.Prec >= PrecHour && a.HasTZ != b.HasTZ {
		return 0, false
	}
	if first == PrecYear && a.Prec >= PrecHour && b.Prec >= PrecHour && a.HasTZ && b.HasTZ && a.Offset != b.Offset {
		// Normalize to UTC. A value without a timezone is taken as UTC.
		a = normalizeUTC(a)
		b = normalizeUTC(b)
	}
	pa, pb := a.Prec, b.Prec
	if pa == PrecMillisecond {
		pa = PrecSecond
	}
	if pb == PrecMillisecond {
		pb = PrecSecond
	}
	fa, fb := fields(a), fields(b)
	for p := first; p <= PrecSecond; p++ {
		if p > pa || p > pb {
			if pa == pb {
				return 0, true
			}
			return 0, false
		}
		x, y := fa[p], fb[p]
		if p == PrecSecond {
			x, y = x*1000+a.Millisecond, y*1000+b.Millisecond
		}
		if x != y {
			if x < y {
				return -1, true
			}
			return 1, true
		}
	}
	return 0, true
}

func normalizeUTC(d DateTime) DateTime {
	t := d.toTime(time.UTC).UTC()
	n := fromTime(t, d.Prec, true)
	n.Offset = 0
	return n
}

func fields(d DateTime) [PrecSecond + 1]int {
	return [PrecSecond + 1]int{0, d.Year, d.Month, d.Day, d.Hour, d.Minute, d.Second}
}

// addDuration adds n units (a calendar unit name) to d. Units finer than
// d's precision are converted to d's precision and truncated as the spec
// requires.
func addDuration(d DateTime, n Decimal, unit string, isTime bool) (DateTime, error) {
	unit = strings.TrimSuffix(unit, "s")
	switch unit {
	case "a", "mo":
		return d, fmt.Errorf("years and months must be calendar durations")
	case "wk":
		unit = "week"
	case "d":
		unit = "day"
	case "h":
		unit = "hour"
	case "min":
		unit = "minute"
	case "":
		unit = "second" // "s" trimmed
	case "m":
		unit = "millisecond" // "ms" trimmed
	}
	var prec Precision
	var mult int64 = 1
	switch unit {
	case "year":
		prec = PrecYear
	case "month":
		prec = PrecMonth
	case "week":
		prec, mult = PrecDay, 7
	case "day":
		prec = PrecDay
	case "hour":
		prec = PrecHour
	case "minute":
		prec = PrecMinute
	case "second":
		prec = PrecSecond
	case "millisecond":
		prec = PrecMillisecond
	default:
		return d, fmt.Errorf("unit is not a time unit")
	}
	// Convert to the value's precision when the unit is finer.
	target := d.Prec
	if isTime && target < PrecHour {
		target = PrecHour
	}
	amount := n
	if prec == PrecMillisecond && target == PrecSecond {
		prec = PrecSecond
		amount, _ = amount.Div(DecimalFromInt(1000))
	}
	if prec > target && prec >= PrecDay && target >= PrecDay {
		// convert to the target unit: ms→s→min→h→day
		factors := map[Precision]int64{PrecHour: 24, PrecMinute: 60, PrecSecond: 60, PrecMillisecond: 1000}
		for prec > target {
			amount, _ = amount.Div(DecimalFromInt(factors[prec]))
			prec--
		}
	} else if prec > target && target < PrecDay {
		// months/years: days to months are not convertible; truncate via
		// whole conversions only for day->year is undefined: drop.
		switch {
		case prec == PrecMonth && target == PrecYear:
			amount, _ = amount.Div(DecimalFromInt(12))
			prec = PrecYear
		case prec >= PrecDay && target == PrecMonth, prec >= PrecDay && target == PrecYear:
			// A duration in days is converted to whole weeks/days; without
			// day precision it cannot change the value beyond truncation.
			days := amount.Mul(DecimalFromInt(mult))
			for p := prec; p > PrecDay; p-- {
				f := map[Precision]int64{PrecHour: 24, PrecMinute: 60, PrecSecond: 60, PrecMillisecond: 1000}[p]
				days, _ = days.Div(DecimalFromInt(f))
			}
			mult = 1
			if target == PrecMonth {
				amount, _ = days.Div(DecimalFromInt(30))
			} else {
				amount, _ = days.Div(DecimalFromInt(365))
			}
			prec = target
		}
	}
	whole, ok := amount.Truncate().Int64()
	if !ok {
		return d, fmt.Errorf("duration out of range")
	}
	whole *= mult
	t := d.toTime(time.UTC)
	switch prec {
	case PrecYear:
		t = addMonthsClamped(t, int(whole)*12)
	case PrecMonth:
		t = addMonthsClamped(t, int(whole))
	case PrecDay:
		t = t.AddDate(0, 0, int(whole))
	case PrecHour:
		t = t.Add(time.Duration(whole) * time.Hour)
	case PrecMinute:
		t = t.Add(time.Duration(whole) * time.Minute)
	case PrecSecond:
		t = t.Add(time.Duration(whole) * time.Second)
	case PrecMillisecond:
		t = t.Add(time.Duration(whole) * time.Millisecond)
	}
	r := fromTime(t, d.Prec, d.HasTZ)
	if isTime {
		r.Year, r.Month, r.Day = 0, 0, 0
	}
	return r, nil
}

// addMonthsClamped adds months, clamping the day to the end of the month.
func addMonthsClamped(t time.Time, months int) time.Time {
	y, m, d := t.Date()
	total := int(m) - 1 + months
	ny := y + total/12
	nm := total % 12
	if nm < 0 {
		nm += 12
		ny--
	}
	if dim := daysIn(ny, nm+1); d > dim {
		d = dim
	}
	return time.Date(ny, time.Month(nm+1), d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
}
