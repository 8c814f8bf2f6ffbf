package fhirpath

import (
	"strings"
)

// A small subset of UCUM, enough to compare and convert the common units
// of clinical data: the metric base units with prefixes, time, volume,
// percent and a few customary units, combined with "." and "/" and integer
// exponents ("mg/dL", "m2", "km/h"). Annotations ("{cells}") count as 1.
// Units outside the subset are compared only when they are written the
// same.

// dims counts the exponents of mass, length, time and amount of substance.
type dims [4]int8

// unitValue is a unit reduced to a factor of the base units and dimensions.
type unitValue struct {
	factor Decimal
	dims   dims
}

var ucumAtoms = map[string]struct {
	factor string
	dims   dims
	prefix bool // metric: accepts prefixes
}{
	"g":       {"1", dims{1, 0, 0, 0}, true},
	"m":       {"1", dims{0, 1, 0, 0}, true},
	"s":       {"1", dims{0, 0, 1, 0}, true},
	"mol":     {"1", dims{0, 0, 0, 1}, true},
	"L":       {"0.001", dims{0, 3, 0, 0}, true},
	"l":       {"0.001", dims{0, 3, 0, 0}, true},
	"min":     {"60", dims{0, 0, 1, 0}, false},
	"h":       {"3600", dims{0, 0, 1, 0}, false},
	"d":       {"86400", dims{0, 0, 1, 0}, false},
	"wk":      {"604800", dims{0, 0, 1, 0}, false},
	"mo":      {"2629800", dims{0, 0, 1, 0}, false},  // mean Julian month
	"a":       {"31557600", dims{0, 0, 1, 0}, false}, // Julian year
	"%":       {"0.01", dims{}, false},
	"1":       {"1", dims{}, false},
	"[in_i]":  {"0.0254", dims{0, 1, 0, 0}, false},
	"[ft_i]":  {"0.3048", dims{0, 1, 0, 0}, false},
	"[lb_av]": {"453.59237", dims{1, 0, 0, 0}, false},
	"[oz_av]": {"28.349523125", dims{1, 0, 0, 0}, false},
}

// ucumPrefixes are the metric prefixes, longest first where they overlap.
var ucumPrefixes = []struct{ sym, factor string }{
	{"da", "10"}, {"k", "1000"}, {"h", "100"}, {"d", "0.1"}, {"c", "0.01"}, {"m", "0.001"},
	{"u", "0.000001"}, {"n", "0.000000001"}, {"p", "0.000000000001"}, {"M", "1000000"}, {"G", "1000000000"},
}

// parseUCUM reduces a unit expression of the subset; ok is false outside it.
func parseUCUM(u string) (unitValue, bool) {
	if u == "" {
		return unitValue{}, false
	}
	r := unitValue{factor: DecimalFromInt(1)}
	div := false
	if u[0] == '/' { // "/min": per minute
		div, u = true, u[1:]
	}
	for u != "" {
		end := strings.IndexAny(u, "./")
		term := u
		next := ""
		if end >= 0 {
			term, next = u[:end], u[end:]
		}
		t, ok := parseUCUMTerm(term)
		if !ok {
			return unitValue{}, false
		}
		for i := range r.dims {
			if div {
				r.dims[i] -= t.dims[i]
			} else {
				r.dims[i] += t.dims[i]
			}
		}
		if div {
			f, ok := r.factor.Div(t.factor)
			if !ok {
				return unitValue{}, false
			}
			r.factor = f
		} else {
			r.factor = r.factor.Mul(t.factor)
		}
		if next == "" {
			break
		}
		div = next[0] == '/'
		u = next[1:]
		if u == "" {
			return unitValue{}, false
		}
	}
	return r, true
}

// parseUCUMTerm reduces one prefixed atom with an optional exponent.
func parseUCUMTerm(t string) (unitValue, bool) {
	// Annotations stand for 1.
	if i := strings.IndexByte(t, '{'); i >= 0 {
		if !strings.HasSuffix(t, "}") {
			return unitValue{}, false
		}
		t = t[:i]
		if t == "" {
			return unitValue{factor: DecimalFromInt(1)}, true
		}
	}
	exp := 1
	if j := strings.IndexAny(t, "-0123456789"); j > 0 && t[j-1] != '[' && !strings.HasSuffix(t, "]") {
		n := 0
		neg := t[j] == '-'
		digits := t[j:]
		if neg {
			digits = digits[1:]
		}
		if digits == "" || !allDigits(digits) || len(digits) > 2 {
			return unitValue{}, false
		}
		for _, d := range digits {
			n = n*10 + int(d-'0')
		}
		if neg {
			n = -n
		}
		exp, t = n, t[:j]
	}
	base, ok := ucumAtom(t)
	if !ok {
		return unitValue{}, false
	}
	r := unitValue{factor: DecimalFromInt(1)}
	for i := 0; i < abs(exp); i++ {
		r.factor = r.factor.Mul(base.factor)
	}
	if exp < 0 {
		f, ok := DecimalFromInt(1).Div(r.factor)
		if !ok {
			return unitValue{}, false
		}
		r.factor = f
	}
	for i := range r.dims {
		r.dims[i] = base.dims[i] * int8(exp)
	}
	return r, true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// ucumAtom resolves an atom with an optional metric prefix.
func ucumAtom(s string) (unitValue, bool) {
	if a, ok := ucumAtoms[s]; ok {
		f, _ := ParseDecimal(a.factor)
		return unitValue{factor: f, dims: a.dims}, true
	}
	for _, p := range ucumPrefixes {
		rest, ok := strings.CutPrefix(s, p.sym)
		if !ok {
			continue
		}
		if a, ok := ucumAtoms[rest]; ok && a.prefix {
			f, _ := ParseDecimal(a.factor)
			pf, _ := ParseDecimal(p.factor)
			return unitValue{factor: f.Mul(pf), dims: a.dims}, true
		}
	}
	return unitValue{}, false
}
