package server

import (
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCronNext(t *testing.T) {
	tests := []struct {
		expr, tz, from, want string
	}{
		{"0 1 * * *", "", "2026-03-10 00:59", "2026-03-10 01:00"},
		{"0 1 * * *", "", "2026-03-10 01:00", "2026-03-11 01:00"},
		{"*/15 * * * *", "", "2026-03-10 10:07", "2026-03-10 10:15"},
		{"*/15 * * * *", "", "2026-03-10 10:45", "2026-03-10 11:00"},
		{"5-10/2 * * * *", "", "2026-03-10 10:06", "2026-03-10 10:07"},
		{"5-10/2 * * * *", "", "2026-03-10 10:09", "2026-03-10 11:05"},
		{"30/10 * * * *", "", "2026-03-10 10:41", "2026-03-10 10:50"},
		{"0 0,12 * * *", "", "2026-03-10 00:00", "2026-03-10 12:00"},
		{"0 9 * * mon-fri", "", "2026-03-13 09:00", "2026-03-16 09:00"}, // Friday → Monday
		{"0 9 * * 7", "", "2026-03-10 09:00", "2026-03-15 09:00"},       // 7 is Sunday
		{"0 9 * * SUN", "", "2026-03-10 09:00", "2026-03-15 09:00"},
		{"0 0 1 jan *", "", "2026-03-10 09:00", "2027-01-01 00:00"},
		{"0 0 31 * *", "", "2026-04-01 00:00", "2026-05-31 00:00"},  // April has no 31st
		{"0 0 13 * 5", "", "2026-03-01 00:00", "2026-03-06 00:00"},  // Vixie: 13th OR Friday
		{"0 0 */2 * 5", "", "2026-03-01 00:00", "2026-03-13 00:00"}, // a field starting with "*": odd day AND Friday
		{"0 0 29 2 *", "", "2026-03-01 00:00", "2028-02-29 00:00"},
		{"@hourly", "", "2026-03-10 10:07", "2026-03-10 11:00"},
		{"@daily", "", "2026-03-10 10:07", "2026-03-11 00:00"},
		{"@weekly", "", "2026-03-10 10:07", "2026-03-15 00:00"},
		// Time zones: 01:00 in New York is 06:00 UTC in winter.
		{"0 1 * * *", "America/New_York", "2026-01-10 02:00", "2026-01-11 01:00"},
		// Spring forward (8 March 2026 in New York): 02:30 does not exist
		// that day and is skipped.
		{"30 2 * * *", "America/New_York", "2026-03-08 00:00", "2026-03-09 02:30"},
		// Fall back (1 November 2026): 01:30 occurs twice, runs once.
		{"30 1 * * *", "America/New_York", "2026-11-01 00:00", "2026-11-01 01:30"},
		{"0 0 30 2 *", "", "2026-01-01 00:00", ""}, // never
	}
	for _, tt := range tests {
		loc := time.UTC
		if tt.tz != "" {
			var err error
			if loc, err = time.LoadLocation(tt.tz); err != nil {
				t.Fatal(err)
			}
		}
		c, err := ParseCron(tt.expr, loc)
		if err != nil {
			t.Errorf("%q: %v", tt.expr, err)
			continue
		}
		got := c.Next(mustTime(t, loc, tt.from))
		if tt.want == "" {
			if !got.IsZero() {
				t.Errorf("%q after %s = %v, want none", tt.expr, tt.from, got)
			}
			continue
		}
		if want := mustTime(t, loc, tt.want); !got.Equal(want) {
			t.Errorf("%q after %s (%s) = %v, want %v", tt.expr, tt.from, loc, got, want)
		}
	}
}

func TestCronFallBackRunsOnce(t *testing.T) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCron("30 1 * * *", loc)
	first := c.Next(mustTime(t, loc, "2026-11-01 00:00"))
	second := c.Next(first)
	if want := mustTime(t, loc, "2026-11-02 01:30"); !second.Equal(want) {
		t.Errorf("after the first 01:30 of the fall-back day: %v, want %v", second, want)
	}
}

func TestCronErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"* * * *", "4 fields, want 5"},
		{"* * * * * *", "6 fields, want 5"},
		{"60 * * * *", "minute field at column 1: 60 out of range 0-59"},
		{"* 24 * * *", "hour field at column 3: 24 out of range 0-23"},
		{"* * 0 * *", "day of month field at column 5: 0 out of range 1-31"},
		{"* * * 13 *", "month field at column 7: 13 out of range 1-12"},
		{"* * * foo *", "month field at column 7: not a number or a name"},
		{"* * * * 8", "day of week field at column 9: 8 out of range 0-7"},
		{"*/0 * * * *", "minute field at column 1: step must be a positive number"},
		{"10-5 * * * *", "range start after its end"},
		{"1,,2 * * * *", "empty list item"},
		{"@often", "unknown macro"},
	}
	for _, tt := range tests {
		_, err := ParseCron(tt.expr, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.expr, err, tt.want)
		}
	}
}

func TestEvery(t *testing.T) {
	e := Every(5 * time.Second)
	from := time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)
	if got, want := e.Next(from), from.Add(2*time.Second); !got.Equal(want) {
		t.Errorf("Next(%v) = %v, want %v", from, got, want)
	}
	if got, want := e.Next(from.Add(2*time.Second)), from.Add(7*time.Second); !got.Equal(want) {
		t.Errorf("Next on a boundary = %v, want %v", got, want)
	}
}
