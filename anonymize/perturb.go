package anonymize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// PerturbTarget tells how perturb treats a node of a FHIR type (§2.8).
type PerturbTarget uint8

const (
	// PerturbNone: the type is neither numeric nor a quantity; perturb
	// recurses into its children.
	PerturbNone PerturbTarget = iota
	// PerturbDecimal: a decimal value.
	PerturbDecimal
	// PerturbInteger: an integer value (roundTo forced to 0).
	PerturbInteger
	// PerturbPositiveInt: a positiveInt (roundTo 0, result at least 1).
	PerturbPositiveInt
	// PerturbUnsignedInt: an unsignedInt (roundTo 0, result at least 0).
	PerturbUnsignedInt
	// PerturbQuantity: a quantity type whose "value" child is perturbed.
	PerturbQuantity
)

// PerturbTargetOf classifies a FHIR type name for perturb: the numeric
// primitives (case-insensitive; integer64 is not one), and the quantity
// types of the release (R4: Age, Count, Duration, Distance, Money,
// MoneyQuantity, Quantity, SimpleQuantity; STU3 has no MoneyQuantity).
func PerturbTargetOf(fhirType, fhirVersion string) PerturbTarget {
	switch strings.ToLower(fhirType) {
	case "decimal":
		return PerturbDecimal
	case "integer":
		return PerturbInteger
	case "positiveint":
		return PerturbPositiveInt
	case "unsignedint":
		return PerturbUnsignedInt
	}
	switch fhirType {
	case "Age", "Count", "Duration", "Distance", "Money", "Quantity", "SimpleQuantity":
		return PerturbQuantity
	case "MoneyQuantity":
		if !strings.EqualFold(fhirVersion, "STU3") {
			return PerturbQuantity
		}
	}
	return PerturbNone
}

// PerturbNoise returns a number in [0, 1) drawn deterministically from a
// keyed hash of the parts (for the engine: resource type, resource id and
// the element's location), so that a re-run produces identical output and
// nobody without the key can predict or remove the noise. The parts are
// length-prefixed, so distinct part lists never collide.
func PerturbNoise(key string, parts ...string) float64 {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("fhirdeid perturb v1"))
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		m.Write(n[:])
		m.Write([]byte(p))
	}
	sum := m.Sum(nil)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// Perturb adds noise to a numeric value (§2.8). value is the JSON number's
// text; target is its classification (PerturbDecimal, PerturbInteger,
// PerturbPositiveInt or PerturbUnsignedInt; the value of a quantity is a
// decimal); u in [0, 1) positions the noise in the range: the noise is
// lower + u*(upper-lower) with the range [-s/2, s/2], where s is the span
// (fixed) or |value|*span (proportional). The sum is rounded to roundTo
// decimal places (0 for the integer types) with banker's rounding, and the
// result keeps .NET decimal's scale rules, so a zero span returns the value
// as written. positiveInt results below 1 become 1, unsignedInt results below
// 0 become 0.
//
// The reference implementation throws on a negative value with a
// proportional range; this one uses the magnitude of the value.
func Perturb(value string, target PerturbTarget, span float64, rangeType RangeType, roundTo int, u float64) (string, error) {
	if target == PerturbNone || target == PerturbQuantity {
		return "", errors.New("perturbing: the target must be a numeric value")
	}
	if span < 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return "", errors.New("perturbing: span must be a finite number >= 0")
	}
	if target != PerturbDecimal {
		roundTo = 0
	}
	if roundTo < 0 || roundTo > 28 {
		return "", errors.New("perturbing: roundTo must be between 0 and 28")
	}
	v, vScale, err := parseDecimal(value)
	if err != nil {
		return "", fmt.Errorf("perturbing: %w", err)
	}
	s := span
	if rangeType == Proportional {
		f, _ := v.Float64()
		s = math.Abs(f) * span
	}
	noiseF := -s/2 + u*s
	// .NET converts a double to decimal with 15 significant digits.
	noise, nScale, err := parseDecimal(strconv.FormatFloat(noiseF, 'e', 14, 64))
	if err != nil {
		return "", fmt.Errorf("perturbing: %w", err)
	}
	if noiseF == 0 {
		nScale = 0
	}
	sum := new(big.Rat).Add(v, noise)
	scale := max(vScale, nScale)
	if scale > 28 {
		sum, scale = roundHalfEven(sum, 28), 28
	}
	if scale > roundTo {
		sum, scale = roundHalfEven(sum, roundTo), roundTo
	}
	switch target {
	case PerturbPositiveInt:
		if sum.Sign() <= 0 {
			sum.SetInt64(1)
		}
	case PerturbUnsignedInt:
		if sum.Sign() < 0 {
			sum.SetInt64(0)
		}
	}
	out := sum.FloatString(scale)
	if strings.HasPrefix(out, "-") && strings.Trim(out, "-0.") == "" {
		out = out[1:] // no negative zero
	}
	return out, nil
}

// parseDecimal reads a JSON number into an exact rational and its decimal
// scale (the number of digits after the point, exponent applied).
func parseDecimal(s string) (*big.Rat, int, error) {
	s = strings.TrimSpace(s)
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, 0, errors.New("value is not a number")
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return nil, 0, errors.New("value is not a number")
		}
		exp = e
	}
	scale := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		scale = len(mant) - i - 1
	}
	scale -= exp
	if scale < 0 {
		scale = 0
	}
	return r, scale, nil
}

// roundHalfEven rounds x to n decimal places, ties to even.
func roundHalfEven(x *big.Rat, n int) *big.Rat {
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	scaled := new(big.Rat).Mul(x, new(big.Rat).SetInt(p))
	num, den := scaled.Num(), scaled.Denom()
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	// r has the sign of num; compare 2|r| with den.
	r2 := new(big.Int).Abs(r)
	r2.Lsh(r2, 1)
	switch c := r2.Cmp(den); {
	case c > 0 || (c == 0 && q.Bit(0) == 1):
		if num.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return new(big.Rat).SetFrac(q, p)
}
