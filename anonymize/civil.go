package anonymize

// Calendar arithmetic for date shifting without package time: a date is
// turned into a day number, moved, and turned back, in the proleptic
// Gregorian calendar that time.Date uses. Days are counted from 0000-03-01,
// so that a year's leap day is its last day and each 400-year cycle has
// the same 146,097 days.

const (
	daysPer400Years = 400*365 + 97
	daysPer100Years = 100*365 + 24
	daysPer4Years   = 4*365 + 1
)

// daysInMonth returns the number of days of month m (1–12) of year y.
func daysInMonth(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// dayNumber returns the number of days from 0000-03-01 to y-m-d, for a
// valid date with y ≥ 0.
func dayNumber(y, m, d int) int {
	// Years begin in March: January and February belong to the year
	// before.
	if m <= 2 {
		y--
		m += 12
	}
	// m is 3..14: the days before the first of month m since March 1st.
	before := (153*(m-3) + 2) / 5
	return y*365 + y/4 - y/100 + y/400 + before + d - 1
}

// civilDate returns the date of day number n (n ≥ 0), the inverse of
// dayNumber.
func civilDate(n int) (y, m, d int) {
	c400 := n / daysPer400Years
	n -= c400 * daysPer400Years
	// The last day of a 400-year cycle is a 29 February that ends the
	// fourth century: it belongs to century 3, not to a fifth.
	c100 := min(n/daysPer100Years, 3)
	n -= c100 * daysPer100Years
	c4 := n / daysPer4Years
	n -= c4 * daysPer4Years
	c1 := min(n/365, 3)
	n -= c1 * 365
	y = c400*400 + c100*100 + c4*4 + c1
	// n is the day of the year that began on March 1st.
	mp := (5*n + 2) / 153 // 0 = March ... 11 = February
	d = n - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
		y++
	}
	return y, m, d
}

// addDays returns y-m-d moved by offset days, and ok=false when y-m-d is
// not a calendar date (day beyond the month's end) or the result falls
// outside years 1–9999. y must be 1–9999, m 1–12 and d ≥ 1.
func addDays(y, m, d, offset int) (sy, sm, sd int, valid, inRange bool) {
	if d > daysInMonth(y, m) {
		return 0, 0, 0, false, false
	}
	n := dayNumber(y, m, d) + offset
	if n < 0 {
		return 0, 0, 0, true, false
	}
	sy, sm, sd = civilDate(n)
	return sy, sm, sd, true, sy >= 1 && sy <= 9999
}
