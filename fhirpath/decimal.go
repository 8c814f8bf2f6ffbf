package fhirpath

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Decimal is an exact decimal number: unscaled × 10^-scale. The scale
// records the number of fractional digits written, so 1.50 keeps its
// precision. The zero Decimal is 0.
type Decimal struct {
	unscaled big.Int
	scale    int32
	// negZero marks a zero written with a minus sign ("-0.0"), which only
	// lowBoundary() produces.
	negZero bool
}

// divScale is the number of fractional digits kept by division.
const divScale = 8

// ParseDecimal parses a decimal literal such as "-12.50".
func ParseDecimal(s string) (Decimal, error) {
	var d Decimal
	t := s
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if t == "" {
		return d, errors.New("invalid decimal")
	}
	intPart, frac, hasDot := strings.Cut(t, ".")
	if intPart == "" || (hasDot && frac == "") || !allDigits(intPart) || !allDigits(frac) {
		return d, errors.New("invalid decimal")
	}
	if _, ok := d.unscaled.SetString(intPart+frac, 10); !ok {
		return d, errors.New("invalid decimal")
	}
	if neg {
		d.unscaled.Neg(&d.unscaled)
	}
	d.scale = int32(len(frac))
	return d, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// DecimalFromInt returns n as a Decimal with scale 0.
func DecimalFromInt(n int64) Decimal {
	var d Decimal
	d.unscaled.SetInt64(n)
	return d
}

// decimalFromFloat converts a float64 result of a math function, keeping at
// most 8 fractional digits and trimming trailing zeros.
func decimalFromFloat(f float64) (Decimal, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Decimal{}, false
	}
	d, err := ParseDecimal(strconv.FormatFloat(f, 'f', divScale, 64))
	if err != nil {
		return Decimal{}, false
	}
	return d.trim(), true
}

// trim removes trailing fractional zeros.
func (d Decimal) trim() Decimal {
	var r Decimal
	r.unscaled.Set(&d.unscaled)
	r.scale = d.scale
	ten := big.NewInt(10)
	var q, m big.Int
	for r.scale > 0 {
		q.QuoRem(&r.unscaled, ten, &m)
		if m.Sign() != 0 {
			break
		}
		r.unscaled.Set(&q)
		r.scale--
	}
	return r
}

func pow10(n int32) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// rescale returns d's unscaled value at scale s (s >= d.scale).
func (d *Decimal) rescale(s int32) *big.Int {
	if s == d.scale {
		return new(big.Int).Set(&d.unscaled)
	}
	return new(big.Int).Mul(&d.unscaled, pow10(s-d.scale))
}

// String formats d with its scale: "1.50", "-3", "0.001".
func (d Decimal) String() string {
	s := d.unscaled.String()
	neg := false
	if strings.HasPrefix(s, "-") {
		neg = true
		s = s[1:]
	}
	if d.scale > 0 {
		for int32(len(s)) <= d.scale {
			s = "0" + s
		}
		s = s[:int32(len(s))-d.scale] + "." + s[int32(len(s))-d.scale:]
	}
	if neg || (d.negZero && d.unscaled.Sign() == 0) {
		s = "-" + s
	}
	return s
}

// Cmp compares d and e numerically.
func (d Decimal) Cmp(e Decimal) int {
	s := max(d.scale, e.scale)
	return d.rescale(s).Cmp(e.rescale(s))
}

// Sign returns -1, 0 or 1.
func (d Decimal) Sign() int { return d.unscaled.Sign() }

// Scale returns the number of fractional digits.
func (d Decimal) Scale() int { return int(d.scale) }

// Add returns d + e.
func (d Decimal) Add(e Decimal) Decimal {
	s := max(d.scale, e.scale)
	var r Decimal
	r.unscaled.Add(d.rescale(s), e.rescale(s))
	r.scale = s
	return r
}

// Sub returns d - e.
func (d Decimal) Sub(e Decimal) Decimal { return d.Add(e.Neg()) }

// Neg returns -d.
func (d Decimal) Neg() Decimal {
	var r Decimal
	r.unscaled.Neg(&d.unscaled)
	r.scale = d.scale
	return r
}

// Mul returns d × e.
func (d Decimal) Mul(e Decimal) Decimal {
	var r Decimal
	r.unscaled.Mul(&d.unscaled, &e.unscaled)
	r.scale = d.scale + e.scale
	return r
}

// Div returns d / e rounded half away from zero to 8 fractional digits
// with trailing zeros trimmed; ok is false when e is zero.
func (d Decimal) Div(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	// d/e = (du/10^ds) / (eu/10^es); scale the numerator so the quotient has
	// divScale+1 digits, then round.
	num := new(big.Int).Set(&d.unscaled)
	den := new(big.Int).Set(&e.unscaled)
	// quotient scale = ds - es + k, choose k so that it equals divScale+1.
	k := int32(divScale+1) - d.scale + e.scale
	if k >= 0 {
		num.Mul(num, pow10(k))
	} else {
		den.Mul(den, pow10(-k))
	}
	var r Decimal
	r.unscaled.Quo(num, den)
	r.scale = divScale + 1
	return r.Round(divScale).trim(), true
}

// DivTrunc returns the integer quotient of d / e truncated toward zero.
func (d Decimal) DivTrunc(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	s := max(d.scale, e.scale)
	var r Decimal
	r.unscaled.Quo(d.rescale(s), e.rescale(s))
	return r, true
}

// Mod returns d mod e (sign of d); ok is false when e is zero.
func (d Decimal) Mod(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	s := max(d.scale, e.scale)
	var r Decimal
	r.unscaled.Rem(d.rescale(s), e.rescale(s))
	r.scale = s
	return r, true
}

// Round rounds half away from zero to n fractional digits (n >= 0).
func (d Decimal) Round(n int) Decimal {
	if int32(n) >= d.scale {
		var r Decimal
		r.unscaled.Set(d.rescale(int32(n)))
		r.scale = int32(n)
		return r
	}
	p := pow10(d.scale - int32(n))
	abs := new(big.Int).Abs(&d.unscaled)
	half := new(big.Int).Rsh(p, 1)
	abs.Add(abs, half)
	abs.Quo(abs, p)
	if d.unscaled.Sign() < 0 {
		abs.Neg(abs)
	}
	var r Decimal
	r.unscaled.Set(abs)
	r.scale = int32(n)
	return r
}

// Truncate drops the fractional digits.
func (d Decimal) Truncate() Decimal {
	var r Decimal
	r.unscaled.Quo(&d.unscaled, pow10(d.scale))
	return r
}

// Floor returns the greatest integer <= d.
func (d Decimal) Floor() Decimal {
	t := d.Truncate()
	if d.Sign() < 0 && t.Cmp(d) != 0 {
		t = t.Sub(DecimalFromInt(1))
	}
	return t
}

// Ceiling returns the least integer >= d.
func (d Decimal) Ceiling() Decimal {
	t := d.Truncate()
	if d.Sign() > 0 && t.Cmp(d) != 0 {
		t = t.Add(DecimalFromInt(1))
	}
	return t
}

// Int64 returns d as an int64 if it is integral and fits.
func (d Decimal) Int64() (int64, bool) {
	t := d.Truncate()
	if t.Cmp(d) != 0 || !t.unscaled.IsInt64() {
		return 0, false
	}
	return t.unscaled.Int64(), true
}

// Float64 returns d as the nearest float64.
func (d Decimal) Float64() float64 {
	f, _ := strconv.ParseFloat(d.String(), 64)
	return f
}

// IsZero reports whether d is zero.
func (d Decimal) IsZero() bool { return d.unscaled.Sign() == 0 }
