package fhirpath

import (
	"strconv"
	"strings"
	"unicode"

	"fhirdeid/jsontree"
)

// Quantity is a System.Quantity: a decimal value and a unit, either a UCUM
// code ("mg") or a calendar duration keyword ("days").
type Quantity struct {
	Value Decimal
	Unit  string
}

// String formats q as a FHIRPath literal: 4 'mg', 3 days.
func (q Quantity) String() string {
	if calendarUnits[q.Unit] {
		return q.Value.String() + " " + q.Unit
	}
	return q.Value.String() + " " + quote(q.Unit, '\'')
}

// Item is one element of a FHIRPath collection: either a node of the
// evaluated resource (Node is non-nil, its FHIR type is Node.Type) or a
// System value.
type Item struct {
	node *jsontree.Node
	val  any
}

// NodeItem returns an item for a typed node.
func NodeItem(n *jsontree.Node) Item { return Item{node: n} }

// ValueItem returns an item for a System value: bool, string, int64 (or
// int), Decimal, Date, DateTime, Time or Quantity.
func ValueItem(v any) Item {
	if i, ok := v.(int); ok {
		v = int64(i)
	}
	return Item{val: v}
}

// Node returns the item's node, or nil for a System value. The caller may
// change, remove or replace the node.
func (it Item) Node() *jsontree.Node { return it.node }

// Value returns the item's System value: the value of a System item, or the
// converted value of a FHIR primitive node (a string for code, id, uri...;
// int64 for integer types; Decimal; Date; DateTime for dateTime and instant;
// Time; bool) or of a Quantity node. ok is false for other nodes and for a
// primitive without a value.
func (it Item) Value() (v any, ok bool) {
	if it.node == nil {
		return it.val, it.val != nil
	}
	return nodeValue(it.node)
}

// TypeName returns the item's type: the FHIR type of a node ("string",
// "HumanName", "Patient") or the System type of a value in the lower-case
// form used by the conformance suite ("boolean", "integer", "decimal",
// "string", "date", "dateTime", "time", "Quantity").
func (it Item) TypeName() string {
	if it.node != nil {
		return it.node.Type()
	}
	return systemTypeName(it.val)
}

func systemTypeName(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case string:
		return "string"
	case int64:
		return "integer"
	case Decimal:
		return "decimal"
	case Date:
		return "date"
	case DateTime:
		return "dateTime"
	case Time:
		return "time"
	case Quantity:
		return "Quantity"
	}
	return ""
}

// systemType returns the System type name of a System value ("String").
func systemType(v any) string {
	switch v.(type) {
	case bool:
		return "Boolean"
	case string:
		return "String"
	case int64:
		return "Integer"
	case Decimal:
		return "Decimal"
	case Date:
		return "Date"
	case DateTime:
		return "DateTime"
	case Time:
		return "Time"
	case Quantity:
		return "Quantity"
	}
	return ""
}

// primitiveSystemType maps a FHIR primitive type to its System type.
func primitiveSystemType(t string) string {
	switch t {
	case "boolean":
		return "Boolean"
	case "integer", "positiveInt", "unsignedInt", "integer64":
		return "Integer"
	case "decimal":
		return "Decimal"
	case "date":
		return "Date"
	case "dateTime", "instant":
		return "DateTime"
	case "time":
		return "Time"
	case "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml":
		return "String"
	}
	return ""
}

var quantityTypes = map[string]bool{
	"Quantity": true, "Age": true, "Duration": true, "Distance": true, "Count": true,
	"SimpleQuantity": true, "MoneyQuantity": true,
}

// nodeValue converts a node to a System value.
func nodeValue(n *jsontree.Node) (any, bool) {
	switch n.Kind {
	case jsontree.Object:
		if quantityTypes[n.Type()] {
			return quantityFromNode(n)
		}
		return nil, false
	case jsontree.Null, jsontree.Array, jsontree.Invalid:
		return nil, false
	}
	t := n.Type()
	switch primitiveSystemType(t) {
	case "Boolean":
		return n.Value() == "true", true
	case "Integer":
		i, err := strconv.ParseInt(n.Value(), 10, 64)
		if err != nil {
			return nil, false
		}
		return i, true
	case "Decimal":
		d, err := ParseDecimal(n.Value())
		if err != nil {
			return nil, false
		}
		return d, true
	case "Date":
		d, err := ParseDate(n.Value())
		if err != nil {
			return nil, false
		}
		return d, true
	case "DateTime":
		d, err := ParseDateTime(n.Value())
		if err != nil {
			return nil, false
		}
		return d, true
	case "Time":
		d, err := ParseTime(n.Value())
		if err != nil {
			return nil, false
		}
		return d, true
	case "String":
		return n.Value(), true
	}
	// Untyped scalar: by JSON kind.
	switch n.Kind {
	case jsontree.Bool:
		return n.Value() == "true", true
	case jsontree.Number:
		if i, err := strconv.ParseInt(n.Value(), 10, 64); err == nil {
			return i, true
		}
		if d, err := ParseDecimal(n.Value()); err == nil {
			return d, true
		}
		return nil, false
	case jsontree.String:
		return n.Value(), true
	}
	return nil, false
}

func quantityFromNode(n *jsontree.Node) (any, bool) {
	var q Quantity
	var haveValue bool
	var unit, code, system string
	for _, c := range n.Children() {
		switch c.Key() {
		case "value":
			d, err := ParseDecimal(c.Value())
			if err != nil {
				return nil, false
			}
			q.Value, haveValue = d, true
		case "unit":
			unit = c.Value()
		case "code":
			code = c.Value()
		case "system":
			system = c.Value()
		}
	}
	if !haveValue {
		return nil, false
	}
	switch {
	case code != "" && (system == "" || system == "http://unitsofmeasure.org"):
		q.Unit = code
	case unit != "":
		q.Unit = unit
	default:
		q.Unit = "1"
	}
	return q, true
}

// toDecimal widens an Integer to a Decimal.
func toDec(v any) (Decimal, bool) {
	switch x := v.(type) {
	case int64:
		return DecimalFromInt(x), true
	case Decimal:
		return x, true
	}
	return Decimal{}, false
}

// ucumCalendar maps calendar keywords to the UCUM units that are equal to
// them (seconds and below) or only equivalent (larger units).
var calendarToUCUM = map[string]string{
	"year": "a", "years": "a", "month": "mo", "months": "mo", "week": "wk", "weeks": "wk",
	"day": "d", "days": "d", "hour": "h", "hours": "h", "minute": "min", "minutes": "min",
	"second": "s", "seconds": "s", "millisecond": "ms", "milliseconds": "ms",
}

// normUnit canonicalizes a quantity's unit for comparison. strict is true
// for equality, where calendar units above seconds are not equal to UCUM
// units.
func normUnit(u string, strict bool) string {
	if c, ok := calendarToUCUM[u]; ok {
		if strict {
			switch c {
			case "a", "mo":
				return "cal:" + c
			}
			return c
		}
		return c
	}
	return u
}

// baseQuantity converts q to the base units of its dimension, keeping the
// significant digits of its value. ok is false for a unit this engine does
// not know.
func baseQuantity(q Quantity) (Quantity, dims, bool) {
	u := normUnit(q.Unit, false)
	uv, ok := parseUCUM(u)
	if !ok {
		return Quantity{}, dims{}, false
	}
	v := q.Value.Mul(uv.factor)
	if uv.factor.scale > 0 {
		v = v.trim()
	}
	return Quantity{Value: v}, uv.dims, true
}

// quantityCompare compares two quantities; ok is false when the units are
// not comparable.
func quantityCompare(a, b Quantity, strict bool) (int, bool) {
	ua, ub := normUnit(a.Unit, strict), normUnit(b.Unit, strict)
	if ua == ub {
		return a.Value.Cmp(b.Value), true
	}
	if strings.HasPrefix(ua, "cal:") || strings.HasPrefix(ub, "cal:") {
		return 0, false
	}
	x, dx, okx := baseQuantity(Quantity{Value: a.Value, Unit: ua})
	y, dy, oky := baseQuantity(Quantity{Value: b.Value, Unit: ub})
	if !okx || !oky || dx != dy {
		return 0, false
	}
	return x.Value.Cmp(y.Value), true
}

// itemValue returns the System value used to compare an item: the item's
// value, or the node itself for complex nodes.
func itemValue(it Item) (any, bool) {
	return it.Value()
}

// stringOf returns the string of a String item or a FHIR string-like
// primitive without boxing it.
func stringOf(it Item) (string, bool) {
	if it.node != nil {
		n := it.node
		if n.Kind == jsontree.String && primitiveSystemType(n.Type()) == "String" {
			return n.Value(), true
		}
		return "", false
	}
	s, ok := it.val.(string)
	return s, ok
}

// itemsEqual implements = on two single items: result, known.
func itemsEqual(a, b Item) (bool, bool) {
	if sa, ok := stringOf(a); ok {
		if sb, ok := stringOf(b); ok {
			return sa == sb, true
		}
	}
	va, oka := itemValue(a)
	vb, okb := itemValue(b)
	if !oka || !okb {
		if a.node != nil && b.node != nil && !oka && !okb {
			return nodesEqual(a.node, b.node), true
		}
		return false, true
	}
	return valuesEqual(va, vb)
}

func valuesEqual(va, vb any) (bool, bool) {
	switch x := va.(type) {
	case bool:
		y, ok := vb.(bool)
		return ok && x == y, true
	case string:
		y, ok := vb.(string)
		return ok && x == y, true
	case int64, Decimal:
		if y, ok := vb.(Quantity); ok {
			// a number equals a quantity with unit '1'
			if y.Unit == "1" {
				dx, _ := toDec(x)
				return dx.Cmp(y.Value) == 0, true
			}
			return false, true
		}
		dx, _ := toDec(x)
		dy, ok := toDec(vb)
		return ok && dx.Cmp(dy) == 0, true
	case Date, DateTime:
		c, known, ok := compareDates(va, vb)
		if !ok {
			return false, true
		}
		return c == 0, known
	case Time:
		y, ok := vb.(Time)
		if !ok {
			return false, true
		}
		c, known := compareTemporal(DateTime(x), DateTime(y), PrecHour)
		return c == 0, known
	case Quantity:
		y, ok := vb.(Quantity)
		if !ok {
			if d, ok := toDec(vb); ok && x.Unit == "1" {
				return x.Value.Cmp(d) == 0, true
			}
			return false, true
		}
		c, ok := quantityCompare(x, y, true)
		if !ok {
			return false, false
		}
		return c == 0, true
	}
	return false, true
}

// compareDates compares Date/DateTime values. ok is false when b is not a
// date.
func compareDates(va, vb any) (c int, known bool, ok bool) {
	a, ok1 := asDateTime(va)
	b, ok2 := asDateTime(vb)
	if !ok1 || !ok2 {
		return 0, false, false
	}
	c, known = compareTemporal(a, b, PrecYear)
	return c, known, true
}

func asDateTime(v any) (DateTime, bool) {
	switch x := v.(type) {
	case Date:
		return DateTime(x), true
	case DateTime:
		return x, true
	}
	return DateTime{}, false
}

// nodesEqual compares two complex nodes member by member.
func nodesEqual(a, b *jsontree.Node) bool { return nodesMatch(a, b, false) }

// nodesMatch compares two nodes recursively: objects by member name (the
// order of members does not matter, element ids are ignored), arrays item
// by item, scalars by value, or by equivalence (case and whitespace of
// strings, precision of numbers) when equiv is set.
func nodesMatch(a, b *jsontree.Node, equiv bool) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case jsontree.Object:
		if countSignificant(a) != countSignificant(b) {
			return false
		}
		for _, ca := range a.Children() {
			if ignoredMember(a, ca) {
				continue
			}
			cb := b.Get(ca.Key())
			if cb == nil || !nodesMatch(ca, cb, equiv) {
				return false
			}
		}
		return true
	case jsontree.Array:
		if len(a.Children()) != len(b.Children()) {
			return false
		}
		for i := range a.Children() {
			if !nodesMatch(a.Children()[i], b.Children()[i], equiv) {
				return false
			}
		}
		return true
	case jsontree.Number:
		da, e1 := ParseDecimal(a.Value())
		db, e2 := ParseDecimal(b.Value())
		if e1 == nil && e2 == nil {
			if equiv {
				s := min(da.scale, db.scale)
				return da.Round(int(s)).Cmp(db.Round(int(s))) == 0
			}
			return da.Cmp(db) == 0
		}
	case jsontree.String:
		if equiv {
			return normalizeString(a.Value()) == normalizeString(b.Value())
		}
	}
	return a.Value() == b.Value()
}

// ignoredMember reports whether member c of object o takes no part in
// equality: the id of an element (not of a resource).
func ignoredMember(o, c *jsontree.Node) bool {
	return c.Key() == "id" && o.Flags&jsontree.FlagResource == 0
}

func countSignificant(o *jsontree.Node) int {
	n := 0
	for _, c := range o.Children() {
		if !ignoredMember(o, c) {
			n++
		}
	}
	return n
}

// itemsEquivalent implements ~ on two single items.
func itemsEquivalent(a, b Item) bool {
	va, oka := itemValue(a)
	vb, okb := itemValue(b)
	if !oka || !okb {
		if a.node != nil && b.node != nil && !oka && !okb {
			return nodesMatch(a.node, b.node, true)
		}
		return false
	}
	switch x := va.(type) {
	case string:
		y, ok := vb.(string)
		return ok && normalizeString(x) == normalizeString(y)
	case int64, Decimal:
		dx, _ := toDec(x)
		dy, ok := toDec(vb)
		if !ok {
			return false
		}
		s := min(dx.scale, dy.scale)
		return dx.Round(int(s)).Cmp(dy.Round(int(s))) == 0
	case Date, DateTime:
		a, _ := asDateTime(va)
		b, ok := asDateTime(vb)
		if !ok {
			return false
		}
		c, known := compareTemporal(a, b, PrecYear)
		return known && c == 0
	case Time:
		y, ok := vb.(Time)
		if !ok {
			return false
		}
		c, known := compareTemporal(DateTime(x), DateTime(y), PrecHour)
		return known && c == 0
	case Quantity:
		y, ok := vb.(Quantity)
		if !ok {
			return false
		}
		if normUnit(x.Unit, false) == normUnit(y.Unit, false) {
			return itemsEquivalent(Item{val: x.Value}, Item{val: y.Value})
		}
		bx, dx, okx := baseQuantity(x)
		by, dy, oky := baseQuantity(y)
		if !okx || !oky || dx != dy {
			return false
		}
		return itemsEquivalent(Item{val: bx.Value}, Item{val: by.Value})
	}
	eq, known := valuesEqual(va, vb)
	return known && eq
}

func normalizeString(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.TrimSpace(s) {
		if unicode.IsSpace(r) {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// literalString formats an item the way the conformance suite writes
// outputs: a date as @2014-01, a quantity as 1.5 'cm', other values plainly.
func literalString(it Item) string {
	v, ok := it.Value()
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x)
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case Decimal:
		return x.String()
	case Date:
		return "@" + x.String()
	case DateTime:
		return "@" + x.String()
	case Time:
		return "@T" + x.String()
	case Quantity:
		return x.String()
	}
	return ""
}
