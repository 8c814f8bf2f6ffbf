package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A Schedule tells when a pipeline runs next.
type Schedule interface {
	// Next returns the first scheduled time strictly after t, or the zero
	// time when there is none.
	Next(t time.Time) time.Time
	// String returns the schedule as written.
	String() string
}

// Cron is a schedule in the five-field crontab format:
//
//	minute hour day-of-month month day-of-week
//
// Each field is "*", a number, a range "a-b", a step "*/n" or "a-b/n" or
// "a/n" (from a to the field's maximum), or a comma-separated list of those.
// Months may be named jan…dec and weekdays sun…sat (case-insensitive); both 0
// and 7 are Sunday. As in Vixie cron, when both day-of-month and day-of-week
// are restricted (neither starts with "*"), a day matches if either does.
// The macros @yearly (@annually), @monthly, @weekly, @daily (@midnight) and
// @hourly are accepted.
//
// Times are evaluated in Location. On a daylight-saving change a time that
// does not exist that day is skipped, and one that occurs twice runs once.
type Cron struct {
	expr   string
	minute uint64 // bit i: minute i
	hour   uint64
	dom    uint64 // bits 1..31
	month  uint64 // bits 1..12
	dow    uint64 // bits 0..6
	// domStar and dowStar record a field that starts with "*".
	domStar, dowStar bool
	// Location is the time zone of the schedule (UTC when nil).
	Location *time.Location
}

var cronMacros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

var (
	monthNames = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
	dayNames   = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
)

// cronField describes one of the five fields.
type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var cronFields = [5]cronField{
	{"minute", 0, 59, nil},
	{"hour", 0, 23, nil},
	{"day of month", 1, 31, nil},
	{"month", 1, 12, monthNames},
	{"day of week", 0, 7, dayNames},
}

// ParseCron parses a five-field cron expression evaluated in loc (UTC when
// nil). Errors name the field and the column where it starts.
func ParseCron(expr string, loc *time.Location) (*Cron, error) {
	if loc == nil {
		loc = time.UTC
	}
	c := &Cron{expr: expr, Location: loc}
	spec := strings.TrimSpace(expr)
	if strings.HasPrefix(spec, "@") {
		m, ok := cronMacros[strings.ToLower(spec)]
		if !ok {
			return nil, errors.New("parse schedule: unknown macro (want @yearly, @monthly, @weekly, @daily or @hourly)")
		}
		spec = m
	}
	fields, cols := splitFields(spec)
	if len(fields) != 5 {
		return nil, fmt.Errorf("parse schedule: %d fields, want 5 (minute hour day-of-month month day-of-week)", len(fields))
	}
	var bits [5]uint64
	for i, f := range fields {
		b, err := parseCronField(f, cronFields[i])
		if err != nil {
			return nil, fmt.Errorf("parse schedule: %s field at column %d: %w", cronFields[i].name, cols[i]+1, err)
		}
		bits[i] = b
	}
	c.minute, c.hour, c.dom, c.month, c.dow = bits[0], bits[1], bits[2], bits[3], bits[4]
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar = strings.HasPrefix(fields[2], "*")
	c.dowStar = strings.HasPrefix(fields[4], "*")
	return c, nil
}

// splitFields splits s at runs of blanks and returns the fields with their
// byte offsets.
func splitFields(s string) (fields []string, cols []int) {
	start := -1
	for i := 0; i <= len(s); i++ {
		blank := i == len(s) || s[i] == ' ' || s[i] == '\t'
		switch {
		case blank && start >= 0:
			fields = append(fields, s[start:i])
			cols = append(cols, start)
			start = -1
		case !blank && start < 0:
			start = i
		}
	}
	return fields, cols
}

// parseCronField parses one field into a bit set of the values it allows.
func parseCronField(s string, f cronField) (uint64, error) {
	var bits uint64
	for part := range strings.SplitSeq(s, ",") {
		if part == "" {
			return 0, errors.New("empty list item")
		}
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 {
				return 0, errors.New("step must be a positive number")
			}
			step = n
		}
		lo, hi := f.min, f.max
		if f.names != nil && f.max == 7 {
			hi = 6 // "*" in day of week is 0-6
		}
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = cronValue(a, f); err != nil {
				return 0, err
			}
			if hi, err = cronValue(b, f); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, errors.New("range start after its end")
			}
		default:
			v, err := cronValue(rng, f)
			if err != nil {
				return 0, err
			}
			lo = v
			if !hasStep {
				hi = v
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

// cronValue parses a number or a name of field f and checks its range.
func cronValue(s string, f cronField) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, errors.New("not a number or a name")
		}
		return 0, errors.New("not a number")
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d out of range %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// String returns the expression as it was given.
func (c *Cron) String() string { return c.expr }

// dayMatches reports whether the date of t matches the day fields.
func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// Next returns the first time after t, to the minute, that the schedule
// matches, in c.Location; the zero time if none within eight years (an
// impossible date such as 30 February).
func (c *Cron) Next(t time.Time) time.Time {
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc).Truncate(time.Minute)
	fromWall := wallClock(t)
	t = t.Add(time.Minute)
	limit := t.AddDate(8, 0, 0)
	for t.Before(limit) {
		if c.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
			continue
		}
		if !c.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
			continue
		}
		if c.hour&(1<<uint(t.Hour())) == 0 {
			next := time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
			if !next.After(t) { // a daylight-saving fold can map back
				next = t.Truncate(time.Hour).Add(time.Hour)
			}
			t = next
			continue
		}
		if c.minute&(1<<uint(t.Minute())) == 0 || !wallClock(t).After(fromWall) {
			// The second condition skips the repeated hour of a
			// daylight-saving fold: a wall time runs once.
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

// wallClock returns t's date and time of day as if t were in UTC, to compare
// wall-clock readings across a daylight-saving fold.
func wallClock(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
}

// Every is a schedule that fires at a fixed interval, aligned to multiples of
// the interval since the Unix epoch. It serves tests and sub-minute soak
// runs; configured pipelines use Cron.
type Every time.Duration

// Next returns the first multiple of the interval after t.
func (e Every) Next(t time.Time) time.Time {
	d := time.Duration(e)
	if d <= 0 {
		return time.Time{}
	}
	return t.Truncate(d).Add(d)
}

// String describes the interval.
func (e Every) String() string { return "@every " + time.Duration(e).String() }
