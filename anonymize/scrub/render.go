package scrub

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// mergedSpans returns the spans sorted and merged where they overlap or
// touch; a merged span keeps the kind and layer of its first part, and is
// Shifted only if it is one shiftable date.
func (s *state) mergedSpans() []Span {
	if len(s.spans) == 0 {
		return nil
	}
	type sd struct {
		sp Span
		d  dateInfo
	}
	all := make([]sd, len(s.spans))
	for i, sp := range s.spans {
		all[i].sp = sp
		if i < len(s.dates) {
			all[i].d = s.dates[i]
		}
	}
	slices.SortStableFunc(all, func(a, b sd) int { return a.sp.Start - b.sp.Start })
	var out []Span
	s.mdates = s.mdates[:0]
	for _, x := range all {
		if len(out) > 0 && x.sp.Start < out[len(out)-1].End {
			last := &out[len(out)-1]
			if x.sp.End > last.End {
				last.End = x.sp.End
				s.mdates[len(out)-1] = dateInfo{}
			}
			continue
		}
		out = append(out, x.sp)
		s.mdates = append(s.mdates, x.d)
	}
	for i := range out {
		if out[i].Kind == KindDate && s.opts.ShiftDays != nil && s.mdates[i].m != 0 && s.mdates[i].d != 0 {
			out[i].Shifted = true
		}
	}
	return out
}

func (s *state) render() Result {
	spans := s.mergedSpans()
	if len(spans) == 0 && isValidUTF8(s.text) {
		return Result{Text: s.text}
	}
	var b strings.Builder
	b.Grow(len(s.text) + 16)
	pos := 0
	for i, sp := range spans {
		writeValid(&b, s.text[pos:sp.Start])
		if sp.Shifted {
			b.WriteString(s.shiftDate(s.mdates[i]))
		} else {
			b.WriteString(sp.Kind.Placeholder())
		}
		pos = sp.End
	}
	writeValid(&b, s.text[pos:])
	return Result{Text: b.String(), Spans: spans}
}

func writeValid(b *strings.Builder, t string) {
	b.WriteString(strings.ToValidUTF8(t, "\uFFFD"))
}

var monthNames = [...]string{"", "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}

// shiftDate writes a parsed date moved by the caller's offset, in the form
// it was written in.
func (s *state) shiftDate(d dateInfo) string {
	y := d.y
	if d.yDigits == 2 {
		if y < 50 {
			y += 2000
		} else {
			y += 1900
		}
	}
	noYear := d.y == 0 && d.yDigits == 0
	if noYear {
		y = s.opts.ReferenceYear
		if y == 0 {
			y = 2001
		}
	}
	t := time.Date(y, time.Month(d.m), d.d, 12, 0, 0, 0, time.UTC).AddDate(0, 0, s.opts.ShiftDays())
	var b strings.Builder
	yearText := func() string {
		if d.yDigits == 2 {
			return twoDigits(t.Year() % 100)
		}
		return strconv.Itoa(t.Year())
	}
	switch {
	case d.iso:
		b.WriteString(strconv.Itoa(t.Year()))
		b.WriteByte(d.sep)
		b.WriteString(twoDigits(int(t.Month())))
		b.WriteByte(d.sep)
		b.WriteString(twoDigits(t.Day()))
	case d.monthLen > 0:
		name := monthNames[t.Month()]
		if !d.full {
			name = name[:3]
		}
		b.WriteString(name)
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(t.Day()))
		if !noYear {
			b.WriteString(", ")
			b.WriteString(yearText())
		}
	default:
		sep := d.sep
		if sep == 0 {
			sep = '/'
		}
		b.WriteString(strconv.Itoa(int(t.Month())))
		b.WriteByte(sep)
		b.WriteString(strconv.Itoa(t.Day()))
		if !noYear {
			b.WriteByte(sep)
			b.WriteString(yearText())
		}
	}
	return b.String()
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

func isValidUTF8(t string) bool { return utf8.ValidString(t) }
