package fhirpath

// Precision digits of date/time values, as precision() counts them.
var dateDigits = map[Precision]int64{PrecYear: 4, PrecMonth: 6, PrecDay: 8, PrecHour: 10, PrecMinute: 12, PrecSecond: 14, PrecMillisecond: 17}
var timeDigits = map[Precision]int64{PrecHour: 2, PrecMinute: 4, PrecSecond: 6, PrecMillisecond: 9}

func fnPrecision(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(f) == 0 {
		return nil, nil
	}
	if len(f) > 1 {
		return nil, k.errf("input must be a single item")
	}
	v, _ := f[0].Value()
	var n int64
	switch x := v.(type) {
	case Decimal:
		n = int64(x.scale)
	case int64:
		n = 0
	case Date:
		n = dateDigits[x.Prec]
	case DateTime:
		n = dateDigits[x.Prec]
	case Time:
		n = timeDigits[x.Prec]
	default:
		return nil, k.errf("input has no precision")
	}
	return c.one(Item{val: n}), nil
}

func fnComparable(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(f) != 1 {
		return nil, nil
	}
	a, _ := f[0].Value()
	b, ok, err := k.single(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	qa, ok1 := a.(Quantity)
	qb, ok2 := b.(Quantity)
	if !ok1 || !ok2 {
		return nil, k.errf("arguments must be quantities")
	}
	_, cmp := quantityCompare(qa, qb, false)
	return boolItems(cmp), nil
}

// precisionFor maps a digit count to a date/time precision.
func precisionFor(digits int64, table map[Precision]int64) (Precision, bool) {
	for p, d := range table {
		if d == digits {
			return p, true
		}
	}
	return 0, false
}

func fnBoundary(high bool) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		if len(f) == 0 {
			return nil, nil
		}
		if len(f) > 1 {
			return nil, k.errf("input must be a single item")
		}
		v, _ := f[0].Value()
		p := int64(-1)
		if len(k.args) == 1 {
			n, ok, err := k.integer(c, 0, in)
			if err != nil {
				return nil, err
			}
			if ok {
				if n < 0 {
					return nil, nil
				}
				p = n
			}
		}
		switch x := v.(type) {
		case int64:
			d, ok := decBoundary(DecimalFromInt(x), p, high)
			if !ok {
				return nil, nil
			}
			return c.one(Item{val: d}), nil
		case Decimal:
			d, ok := decBoundary(x, p, high)
			if !ok {
				return nil, nil
			}
			return c.one(Item{val: d}), nil
		case Quantity:
			d, ok := decBoundary(x.Value, p, high)
			if !ok {
				return nil, nil
			}
			return c.one(Item{val: Quantity{Value: d, Unit: x.Unit}}), nil
		case Date:
			if p < 0 {
				p = 8
			}
			prec, ok := precisionFor(p, dateDigits)
			if !ok || prec > PrecDay {
				return nil, nil
			}
			return c.one(Item{val: Date(dtBoundary(DateTime(x), prec, high, false))}), nil
		case DateTime:
			if p < 0 {
				p = 17
			}
			prec, ok := precisionFor(p, dateDigits)
			if !ok {
				return nil, nil
			}
			return c.one(Item{val: dtBoundary(x, prec, high, true)}), nil
		case Time:
			if p < 0 {
				p = 9
			}
			prec, ok := precisionFor(p, timeDigits)
			if !ok {
				return nil, nil
			}
			return c.one(Item{val: Time(dtBoundary(DateTime(x), prec, high, false))}), nil
		}
		return nil, k.errf("input must be a number, quantity, date or time")
	}
}

// decBoundary returns the least (or greatest) value that d may stand for,
// given its precision, at p fractional digits (default 8). As the HL7
// reference implementation does, a negative value's low boundary is the
// negated high boundary of its magnitude (and vice versa); for a magnitude,
// the low boundary is truncated to p digits and the high boundary rounded
// half up.
func decBoundary(d Decimal, p int64, high bool) (Decimal, bool) {
	if p < 0 {
		p = 8
	}
	if p > 31 {
		return Decimal{}, false
	}
	if d.Sign() < 0 {
		r, ok := decBoundary(d.Neg(), p, !high)
		r = r.Neg()
		r.negZero = r.IsZero()
		return r, ok
	}
	// Half a unit in the last place of d.
	var half Decimal
	half.unscaled.SetInt64(5)
	half.scale = d.scale + 1
	var b Decimal
	if high {
		b = d.Add(half)
	} else {
		b = d.Sub(half)
	}
	if int32(p) >= b.scale || high {
		return b.Round(int(p)), true
	}
	var r Decimal
	r.unscaled.Quo(&b.unscaled, pow10(b.scale-int32(p)))
	r.scale = int32(p)
	return r, true
}

// dtBoundary fills d to precision prec with the minimum (or maximum) values.
func dtBoundary(d DateTime, prec Precision, high, tz bool) DateTime {
	r := d
	if d.Prec < PrecMonth && prec >= PrecMonth {
		r.Month = 1
		if high {
			r.Month = 12
		}
	}
	if d.Prec < PrecDay && prec >= PrecDay {
		r.Day = 1
		if high {
			r.Day = daysIn(r.Year, r.Month)
		}
	}
	type part struct {
		p   Precision
		ptr *int
		max int
	}
	for _, pt := range []part{{PrecHour, &r.Hour, 23}, {PrecMinute, &r.Minute, 59}, {PrecSecond, &r.Second, 59}, {PrecMillisecond, &r.Millisecond, 999}} {
		if d.Prec < pt.p && prec >= pt.p {
			*pt.ptr = 0
			if high {
				*pt.ptr = pt.max
			}
		}
	}
	// Drop parts finer than prec.
	if prec < d.Prec {
		r = truncateTo(r, prec)
	}
	r.Prec = prec
	if tz && prec >= PrecHour && !r.HasTZ {
		r.HasTZ = true
		r.Offset = 14 * 60
		if high {
			r.Offset = -12 * 60
		}
	}
	if prec < PrecHour {
		r.HasTZ, r.Offset = false, 0
	}
	return r
}

func truncateTo(d DateTime, p Precision) DateTime {
	if p < PrecMillisecond {
		d.Millisecond = 0
	}
	if p < PrecSecond {
		d.Second = 0
	}
	if p < PrecMinute {
		d.Minute = 0
	}
	if p < PrecHour {
		d.Hour = 0
	}
	if p < PrecDay {
		d.Day = 0
	}
	if p < PrecMonth {
		d.Month = 0
	}
	return d
}
