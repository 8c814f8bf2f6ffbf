package anonymize

import (
	"testing"
	"time"
)

// addDays moves dates as time.Date and AddDate do, over leap years,
// century and 400-year boundaries, month ends and the ends of the year
// range, and rejects what time.Date would normalise.
func TestAddDays(t *testing.T) {
	offsets := []int{-36600, -400, -366, -365, -50, -31, -29, -1, 0, 1, 28, 29, 50, 365, 366, 1461, 36600}
	check := func(y, m, d int) {
		base := time.Date(y, time.Month(m), d, 12, 0, 0, 0, time.UTC)
		calendar := base.Day() == d
		for _, off := range offsets {
			sy, sm, sd, valid, inRange := addDays(y, m, d, off)
			if valid != calendar {
				t.Fatalf("%04d-%02d-%02d: valid %v, time says %v", y, m, d, valid, calendar)
			}
			if !calendar {
				return
			}
			ty, tm, td := base.AddDate(0, 0, off).Date()
			want := ty >= 1 && ty <= 9999
			if inRange != want || (inRange && (sy != ty || sm != int(tm) || sd != td)) {
				t.Fatalf("%04d-%02d-%02d %+d: %04d-%02d-%02d %v, time: %04d-%02d-%02d", y, m, d, off, sy, sm, sd, inRange, ty, tm, td)
			}
		}
	}
	years := []int{1, 2, 3, 4, 5, 99, 100, 101, 399, 400, 401, 1582, 1600, 1700, 1899, 1900, 1904, 1970, 1999, 2000, 2001, 2023, 2024, 2100, 2400, 9998, 9999}
	for y := 1880; y <= 2130; y++ {
		years = append(years, y)
	}
	for _, y := range years {
		for m := 1; m <= 12; m++ {
			for d := 1; d <= 31; d++ {
				check(y, m, d)
			}
		}
	}
	// Every day of a whole 400-year cycle and its neighbours, one offset.
	for n := 0; n < daysPer400Years+800; n++ {
		y, m, d := civilDate(n)
		if dayNumber(y, m, d) != n {
			t.Fatalf("day %d: %04d-%02d-%02d gives back %d", n, y, m, d, dayNumber(y, m, d))
		}
	}
}
