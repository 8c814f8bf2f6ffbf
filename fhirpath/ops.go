package fhirpath

import (
	"strings"
	"time"

	"fhirdeid/jsontree"
)

// boolOf applies singleton evaluation for a boolean operand: empty → (false,
// false); a single boolean → its value; a single other item → true.
func boolOf(v []Item) (b bool, known bool, ok bool) {
	if len(v) == 0 {
		return false, false, true
	}
	if len(v) > 1 {
		return false, false, false
	}
	x, has := v[0].Value()
	if bb, isBool := x.(bool); has && isBool {
		return bb, true, true
	}
	return true, true, true
}

var (
	trueItems  = []Item{{val: true}}
	falseItems = []Item{{val: false}}
)

func boolItems(b bool) []Item {
	if b {
		return trueItems
	}
	return falseItems
}

func (cp *compiler) binary(e *binaryExpr) (evalFn, error) {
	if e.op == "or" {
		if fn, ok, err := cp.orChain(e); ok || err != nil {
			return fn, err
		}
	}
	l, err := cp.compile(e.l)
	if err != nil {
		return nil, err
	}
	r, err := cp.compile(e.r)
	if err != nil {
		return nil, err
	}
	src, pos, op := cp.src, e.pos, e.op
	operand := func(c *evalCtx, f evalFn, in []Item) (bool, bool, error) {
		v, err := f(c, in)
		if err != nil {
			return false, false, err
		}
		b, known, ok := boolOf(v)
		if !ok {
			return false, false, rtErr(src, pos, "operand of %q must be a single boolean", op)
		}
		return b, known, nil
	}
	switch op {
	case "and", "or", "xor", "implies":
		return func(c *evalCtx, in []Item) ([]Item, error) {
			a, aKnown, err := operand(c, l, in)
			if err != nil {
				return nil, err
			}
			// Short cuts.
			switch {
			case op == "and" && aKnown && !a:
				return falseItems, nil
			case op == "or" && aKnown && a:
				return trueItems, nil
			case op == "implies" && aKnown && !a:
				return trueItems, nil
			}
			b, bKnown, err := operand(c, r, in)
			if err != nil {
				return nil, err
			}
			switch op {
			case "and":
				if bKnown && !b {
					return falseItems, nil
				}
				if aKnown && bKnown {
					return trueItems, nil
				}
			case "or":
				if bKnown && b {
					return trueItems, nil
				}
				if aKnown && bKnown {
					return falseItems, nil
				}
			case "xor":
				if aKnown && bKnown {
					return boolItems(a != b), nil
				}
			case "implies":
				if bKnown && b {
					return trueItems, nil
				}
				if aKnown && bKnown {
					return falseItems, nil
				}
			}
			return nil, nil
		}, nil
	}
	return func(c *evalCtx, in []Item) ([]Item, error) {
		a, err := l(c, in)
		if err != nil {
			return nil, err
		}
		b, err := r(c, in)
		if err != nil {
			return nil, err
		}
		return binaryOp2(c, src, pos, op, a, b)
	}, nil
}

func binaryOp2(c *evalCtx, src string, pos int, op string, a, b []Item) ([]Item, error) {
	switch op {
	case "|":
		return union(c, a, b), nil
	case "=", "!=":
		if len(a) == 0 || len(b) == 0 {
			return nil, nil
		}
		if len(a) != len(b) {
			return boolItems(op == "!="), nil
		}
		eq := true
		for i := range a {
			e, known := itemsEqual(a[i], b[i])
			if !known && c.env != nil && c.env.PartialDatesAsRanges {
				e, known = rangeCompare("=", a[i], b[i])
			}
			if !known {
				return nil, nil
			}
			if !e {
				eq = false
				break
			}
		}
		return boolItems(eq == (op == "=")), nil
	case "~", "!~":
		eq := collectionsEquivalent(a, b)
		return boolItems(eq == (op == "~")), nil
	case "in", "contains":
		elem, coll := a, b
		if op == "contains" {
			elem, coll = b, a
		}
		if len(elem) == 0 {
			return nil, nil
		}
		if len(elem) > 1 {
			return nil, rtErr(src, pos, "left operand of %q must be a single item", op)
		}
		return boolItems(contains(coll, elem[0])), nil
	case "&":
		var s1, s2 string
		if len(a) > 1 || len(b) > 1 {
			return nil, rtErr(src, pos, "operands of \"&\" must be single strings")
		}
		if len(a) == 1 {
			v, _ := a[0].Value()
			s1, _ = v.(string)
		}
		if len(b) == 1 {
			v, _ := b[0].Value()
			s2, _ = v.(string)
		}
		if len(s1)+len(s2) > maxString {
			return nil, rtErr(src, pos, "string longer than %d bytes", maxString)
		}
		return c.one(Item{val: s1 + s2}), nil
	}
	if len(a) == 0 || len(b) == 0 {
		return nil, nil
	}
	if len(a) > 1 || len(b) > 1 {
		return nil, rtErr(src, pos, "operands of %q must be single items", op)
	}
	switch op {
	case "<", ">", "<=", ">=":
		// Dates and times compare without boxing their values.
		if ta, fa, ok := temporalOf(a[0]); ok {
			if tb, fb, ok := temporalOf(b[0]); ok && fa == fb {
				cmp, known := compareTemporal(ta, tb, fa)
				if !known && c.env != nil && c.env.PartialDatesAsRanges {
					return boolItems(rangeOrder(op, ta, tb, fa)), nil
				}
				if !known {
					return nil, nil
				}
				return boolItems(compareResult(op, cmp)), nil
			}
		}
	}
	va, oka := a[0].Value()
	vb, okb := b[0].Value()
	if !oka || !okb {
		return nil, rtErr(src, pos, "operands of %q must be values", op)
	}
	switch op {
	case "<", ">", "<=", ">=":
		cmp, known, err := compareValues(va, vb)
		if err != nil {
			return nil, rtErr(src, pos, "cannot compare %s with %s", systemType(va), systemType(vb))
		}
		if !known {
			return nil, nil
		}
		return boolItems(compareResult(op, cmp)), nil
	}
	if s1, ok := va.(string); ok {
		if s2, ok := vb.(string); ok && len(s1)+len(s2) > maxString {
			return nil, rtErr(src, pos, "string longer than %d bytes", maxString)
		}
	}
	v, ok, err := arith(op, va, vb)
	if err != nil {
		return nil, rtErr(src, pos, "%s", err.Error())
	}
	if !ok {
		return nil, nil
	}
	return c.one(Item{val: v}), nil
}

// maxString bounds the strings built by + and &, so that an expression
// cannot exhaust memory ('a'.repeat($this & $this)).
const maxString = 1 << 24

// checkInt reports an error for a result outside the 32-bit Integer range
// of FHIRPath (operands are in range, so int64 arithmetic cannot wrap).
func checkInt(n int64) (any, bool, error) {
	if n > 1<<31-1 || n < -(1<<31) {
		return nil, false, opError("integer overflow")
	}
	return n, true, nil
}

// compareResult applies an ordering operator to a comparison result.
func compareResult(op string, cmp int) bool {
	switch op {
	case "<":
		return cmp < 0
	case ">":
		return cmp > 0
	case "<=":
		return cmp <= 0
	}
	return cmp >= 0
}

// temporalOf returns the date/time of a Date, DateTime or Time item (or of
// a FHIR date, dateTime, instant or time node) and the first precision its
// comparison starts at.
func temporalOf(it Item) (DateTime, Precision, bool) {
	if n := it.node; n != nil {
		if n.Kind != jsontree.String {
			return DateTime{}, 0, false
		}
		switch n.Type() {
		case "date":
			d, err := ParseDate(n.Value())
			return DateTime(d), PrecYear, err == nil
		case "dateTime", "instant":
			d, err := ParseDateTime(n.Value())
			return d, PrecYear, err == nil
		case "time":
			d, err := ParseTime(n.Value())
			return DateTime(d), PrecHour, err == nil
		}
		return DateTime{}, 0, false
	}
	switch v := it.val.(type) {
	case Date:
		return DateTime(v), PrecYear, true
	case DateTime:
		return v, PrecYear, true
	case Time:
		return DateTime(v), PrecHour, true
	}
	return DateTime{}, 0, false
}

type opError string

func (e opError) Error() string { return string(e) }

// compareValues orders two values of compatible types.
func compareValues(va, vb any) (int, bool, error) {
	switch x := va.(type) {
	case int64, Decimal:
		dx, _ := toDec(x)
		if dy, ok := toDec(vb); ok {
			return dx.Cmp(dy), true, nil
		}
		if q, ok := vb.(Quantity); ok && q.Unit == "1" {
			return dx.Cmp(q.Value), true, nil
		}
	case string:
		if y, ok := vb.(string); ok {
			return strings.Compare(x, y), true, nil
		}
	case Date, DateTime:
		c, known, ok := compareDates(va, vb)
		if ok {
			return c, known, nil
		}
	case Time:
		if y, ok := vb.(Time); ok {
			c, known := compareTemporal(DateTime(x), DateTime(y), PrecHour)
			return c, known, nil
		}
	case Quantity:
		if y, ok := vb.(Quantity); ok {
			// Quantities of units that cannot be compared (or that this
			// engine cannot convert) give an empty result, as = does.
			c, ok := quantityCompare(x, y, false)
			return c, ok, nil
		}
	}
	return 0, false, opError("incomparable")
}

// arith applies an arithmetic operator; ok is false for an empty result
// (division by zero).
func arith(op string, va, vb any) (any, bool, error) {
	switch x := va.(type) {
	case int64:
		if y, ok := vb.(int64); ok {
			switch op {
			case "+":
				return checkInt(x + y)
			case "-":
				return checkInt(x - y)
			case "*":
				if x != 0 && (y > 1<<32 || y < -(1<<32)) {
					return nil, false, opError("integer overflow")
				}
				return checkInt(x * y)
			case "div":
				if y == 0 {
					return nil, false, nil
				}
				return x / y, true, nil
			case "mod":
				if y == 0 {
					return nil, false, nil
				}
				return x % y, true, nil
			}
		}
		return arithDec(op, va, vb)
	case Decimal:
		return arithDec(op, va, vb)
	case string:
		if y, ok := vb.(string); ok && op == "+" {
			return x + y, true, nil
		}
	case Date, DateTime, Time:
		return arithDate(op, va, vb)
	case Quantity:
		return arithQuantity(op, x, vb)
	}
	return nil, false, opError("operator " + op + " is not defined for " + systemType(va) + " and " + systemType(vb))
}

func arithDec(op string, va, vb any) (any, bool, error) {
	dx, _ := toDec(va)
	for range 1 {
		if q, ok := vb.(Quantity); ok && op == "*" {
			return Quantity{Value: dx.Mul(q.Value), Unit: q.Unit}, true, nil
		}
		dy, ok := toDec(vb)
		if !ok {
			break
		}
		switch op {
		case "+":
			return dx.Add(dy), true, nil
		case "-":
			return dx.Sub(dy), true, nil
		case "*":
			return dx.Mul(dy), true, nil
		case "/":
			r, ok := dx.Div(dy)
			return r, ok, nil
		case "div":
			r, ok := dx.DivTrunc(dy)
			if !ok {
				return nil, false, nil
			}
			n, _ := r.Int64()
			return n, true, nil
		case "mod":
			r, ok := dx.Mod(dy)
			return r, ok, nil
		}
	}
	return nil, false, opError("operator " + op + " is not defined for " + systemType(va) + " and " + systemType(vb))
}

func arithDate(op string, va, vb any) (any, bool, error) {
	q, ok := vb.(Quantity)
	if !ok || (op != "+" && op != "-") {
		return nil, false, opError("operator " + op + " is not defined for " + systemType(va) + " and " + systemType(vb))
	}
	{
		amount := q.Value
		if op == "-" {
			amount = amount.Neg()
		}
		var d DateTime
		isTime := false
		switch t := va.(type) {
		case Date:
			d = DateTime(t)
		case DateTime:
			d = t
		case Time:
			d, isTime = DateTime(t), true
		}
		r, err := addDuration(d, amount, q.Unit, isTime)
		if err != nil {
			return nil, false, opError("cannot add a quantity with unit that is not a time unit to a date")
		}
		switch va.(type) {
		case Date:
			return Date(r), true, nil
		case Time:
			return Time(r), true, nil
		}
		return r, true, nil
	}
}

func arithQuantity(op string, x Quantity, vb any) (any, bool, error) {
	{
		switch y := vb.(type) {
		case Quantity:
			switch op {
			case "+", "-":
				if normUnit(x.Unit, false) != normUnit(y.Unit, false) {
					// Convert y to x's unit.
					ux, okx := parseUCUM(normUnit(x.Unit, false))
					uy, oky := parseUCUM(normUnit(y.Unit, false))
					if !okx || !oky || ux.dims != uy.dims {
						return nil, false, opError("incompatible units")
					}
					f, ok := uy.factor.Div(ux.factor)
					if !ok {
						return nil, false, opError("incompatible units")
					}
					y = Quantity{Value: y.Value.Mul(f), Unit: x.Unit}
				}
				if op == "+" {
					return Quantity{Value: x.Value.Add(y.Value), Unit: x.Unit}, true, nil
				}
				return Quantity{Value: x.Value.Sub(y.Value), Unit: x.Unit}, true, nil
			case "*":
				return Quantity{Value: x.Value.Mul(y.Value), Unit: mulUnit(x.Unit, y.Unit)}, true, nil
			case "/":
				r, ok := x.Value.Div(y.Value)
				if !ok {
					return nil, false, nil
				}
				if x.Unit == y.Unit {
					return Quantity{Value: r, Unit: "1"}, true, nil
				}
				return Quantity{Value: r, Unit: x.Unit + "/" + y.Unit}, true, nil
			}
		case int64, Decimal:
			dy, _ := toDec(y)
			switch op {
			case "*":
				return Quantity{Value: x.Value.Mul(dy), Unit: x.Unit}, true, nil
			case "/":
				r, ok := x.Value.Div(dy)
				if !ok {
					return nil, false, nil
				}
				return Quantity{Value: r, Unit: x.Unit}, true, nil
			}
		}
	}
	return nil, false, opError("operator " + op + " is not defined for Quantity and " + systemType(vb))
}

func mulUnit(a, b string) string {
	if a == "1" {
		return b
	}
	if b == "1" {
		return a
	}
	if a == b {
		return a + "2"
	}
	return a + "." + b
}

// contains reports whether coll has an item equal to it.
func contains(coll []Item, it Item) bool {
	for _, x := range coll {
		if eq, known := itemsEqual(x, it); known && eq {
			return true
		}
	}
	return false
}

// union merges a and b removing duplicates. Two nodes are duplicates only
// when they are the same node: the specification compares with =, but a
// path such as Patient.address.city | Patient.contact.address.city must
// yield both cities even if they are equal, or a de-identification rule
// would miss one.
func union(c *evalCtx, a, b []Item) []Item {
	out := c.alloc(len(a) + len(b))
	if len(a)+len(b) > 32 {
		var seen itemSet
		for _, list := range [][]Item{a, b} {
			for _, it := range list {
				if seen.add(it) {
					out = append(out, it)
				}
			}
		}
		return out
	}
	for _, list := range [][]Item{a, b} {
		for _, it := range list {
			if !containsSame(out, it) {
				out = append(out, it)
			}
		}
	}
	return out
}

// containsSame reports whether coll holds it: the same node, or an equal
// System value.
func containsSame(coll []Item, it Item) bool {
	for _, x := range coll {
		if x.node != nil || it.node != nil {
			if x.node == it.node {
				return true
			}
			continue
		}
		if eq, known := itemsEqual(x, it); known && eq {
			return true
		}
	}
	return false
}

// collectionsEquivalent implements ~ on collections (order-independent).
func collectionsEquivalent(a, b []Item) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
outer:
	for _, x := range a {
		for j, y := range b {
			if !used[j] && itemsEquivalent(x, y) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

// rangeCompare compares two date/time items as ranges of instants (see
// Env.PartialDatesAsRanges); known is false when they are not two values of
// the same temporal family.
func rangeCompare(op string, a, b Item) (result, known bool) {
	ta, fa, ok := temporalOf(a)
	if !ok {
		return false, false
	}
	tb, fb, ok := temporalOf(b)
	if !ok || fa != fb {
		return false, false
	}
	return rangeOrder(op, ta, tb, fa), true
}

// rangeOrder applies op to a and b taken as the ranges of instants they
// cover.
func rangeOrder(op string, a, b DateTime, first Precision) bool {
	alo, ahi := instantRange(a, first)
	blo, bhi := instantRange(b, first)
	switch op {
	case "<", "<=":
		return alo.Before(bhi)
	case ">", ">=":
		return blo.Before(ahi)
	}
	// "=": the ranges overlap.
	return alo.Before(bhi) && blo.Before(ahi)
}

// instantRange returns the half-open range [lo, hi) of instants d covers;
// a value without a time zone is taken as UTC.
func instantRange(d DateTime, first Precision) (lo, hi time.Time) {
	if first == PrecHour {
		d.Year, d.Month, d.Day = 2000, 1, 1 // times of day: any fixed date
	}
	lo = d.toTime(time.UTC)
	switch d.Prec {
	case PrecYear:
		hi = lo.AddDate(1, 0, 0)
	case PrecMonth:
		hi = lo.AddDate(0, 1, 0)
	case PrecDay:
		hi = lo.AddDate(0, 0, 1)
	case PrecHour:
		hi = lo.Add(time.Hour)
	case PrecMinute:
		hi = lo.Add(time.Minute)
	case PrecSecond:
		hi = lo.Add(time.Second)
	default:
		hi = lo.Add(time.Millisecond)
	}
	return lo, hi
}
