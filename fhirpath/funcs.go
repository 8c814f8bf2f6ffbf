package fhirpath

import (
	"encoding/base64"
	"encoding/hex"
	"html"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

var builtins map[string]*builtin

func init() {
	builtins = map[string]*builtin{
		// Existence.
		"empty":  {fn: fnEmpty},
		"exists": {max: 1, modes: []argMode{argLambda}, fn: fnExists},
		"all":    {min: 1, max: 1, modes: []argMode{argLambda}, fn: fnAll},
		"allTrue": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return boolTest(k, f, func(b bool) bool { return b }, true)
		}},
		"anyTrue": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return boolTest(k, f, func(b bool) bool { return b }, false)
		}},
		"allFalse": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return boolTest(k, f, func(b bool) bool { return !b }, true)
		}},
		"anyFalse": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return boolTest(k, f, func(b bool) bool { return !b }, false)
		}},
		"subsetOf":   {min: 1, max: 1, fn: fnSubsetOf},
		"supersetOf": {min: 1, max: 1, fn: fnSupersetOf},
		"count": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return c.one(Item{val: int64(len(f))}), nil
		}},
		"distinct": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return distinctItems(c, f), nil
		}},
		"isDistinct": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return boolItems(len(distinctItems(c, f)) == len(f)), nil
		}},
		"not": {fn: fnNot},
		// Filtering and projection.
		"where":     {min: 1, max: 1, modes: []argMode{argLambda}, fn: fnWhere},
		"select":    {min: 1, max: 1, modes: []argMode{argLambda}, fn: fnSelect},
		"repeat":    {min: 1, max: 1, modes: []argMode{argLambda}, fn: fnRepeat, unordered: true},
		"ofType":    {min: 1, max: 1, modes: []argMode{argType}, fn: fnOfType},
		"aggregate": {min: 1, max: 2, modes: []argMode{argLambda, argValue}, fn: fnAggregate},
		"sort":      {max: 8, modes: []argMode{argLambda, argLambda, argLambda, argLambda, argLambda, argLambda, argLambda, argLambda}, fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) { return sortItems(c, k, f) }},
		// Subsetting.
		"single": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			if len(f) > 1 {
				return nil, k.errf("input has more than one item")
			}
			return f, nil
		}},
		"first": {ordered: true, fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			if len(f) == 0 {
				return nil, nil
			}
			return f[:1:1], nil
		}},
		"last": {ordered: true, fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			if len(f) == 0 {
				return nil, nil
			}
			return f[len(f)-1:], nil
		}},
		"tail": {ordered: true, fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			if len(f) <= 1 {
				return nil, nil
			}
			return f[1:], nil
		}},
		"skip":      {min: 1, max: 1, ordered: true, fn: fnSkip},
		"take":      {min: 1, max: 1, ordered: true, fn: fnTake},
		"intersect": {min: 1, max: 1, fn: fnIntersect},
		"exclude":   {min: 1, max: 1, fn: fnExclude},
		// Combining.
		"union": {min: 1, max: 1, fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			o, err := k.value(c, 0, in)
			if err != nil {
				return nil, err
			}
			return union(c, f, o), nil
		}},
		"combine": {min: 1, max: 1, fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			o, err := k.value(c, 0, in)
			if err != nil {
				return nil, err
			}
			out := c.alloc(len(f) + len(o))
			return append(append(out, f...), o...), nil
		}},
		// Conversion.
		"iif":                {min: 2, max: 3, focusArgs: true, fn: fnIif},
		"toBoolean":          {fn: convFn(toBoolean, false)},
		"convertsToBoolean":  {fn: convFn(toBoolean, true)},
		"toInteger":          {fn: convFn(toInteger, false)},
		"convertsToInteger":  {fn: convFn(toInteger, true)},
		"toDecimal":          {fn: convFn(toDecimal, false)},
		"convertsToDecimal":  {fn: convFn(toDecimal, true)},
		"toString":           {fn: fnToString},
		"convertsToString":   {fn: convFn(toStringValue, true)},
		"toDate":             {fn: convFn(toDate, false)},
		"convertsToDate":     {fn: convFn(toDate, true)},
		"toDateTime":         {fn: convFn(toDateTime, false)},
		"convertsToDateTime": {fn: convFn(toDateTime, true)},
		"toTime":             {fn: convFn(toTime, false)},
		"convertsToTime":     {fn: convFn(toTime, true)},
		"toQuantity":         {max: 1, fn: fnToQuantity(false)},
		"convertsToQuantity": {max: 1, fn: fnToQuantity(true)},
		// Strings.
		"indexOf":        {min: 1, max: 1, fn: fnIndexOf},
		"substring":      {min: 1, max: 2, fn: fnSubstring},
		"startsWith":     {min: 1, max: 1, fn: strPred(strings.HasPrefix)},
		"endsWith":       {min: 1, max: 1, fn: strPred(strings.HasSuffix)},
		"contains":       {min: 1, max: 1, fn: strPred(strings.Contains)},
		"upper":          {fn: strMap(strings.ToUpper)},
		"lower":          {fn: strMap(strings.ToLower)},
		"trim":           {fn: strMap(strings.TrimSpace)},
		"replace":        {min: 2, max: 2, fn: fnReplace},
		"matches":        {min: 1, max: 1, fn: fnMatches(false)},
		"matchesFull":    {min: 1, max: 1, fn: fnMatches(true)},
		"replaceMatches": {min: 2, max: 2, fn: fnReplaceMatches},
		"length":         {fn: fnLength},
		"toChars":        {fn: fnToChars},
		"split":          {min: 1, max: 1, fn: fnSplit},
		"join":           {max: 1, fn: fnJoin},
		"encode":         {min: 1, max: 1, fn: fnEncode(true)},
		"decode":         {min: 1, max: 1, fn: fnEncode(false)},
		"escape":         {min: 1, max: 1, fn: fnEscape(true)},
		"unescape":       {min: 1, max: 1, fn: fnEscape(false)},
		// Math.
		"abs":      {fn: mathFn("abs")},
		"ceiling":  {fn: mathFn("ceiling")},
		"floor":    {fn: mathFn("floor")},
		"truncate": {fn: mathFn("truncate")},
		"exp":      {fn: mathFn("exp")},
		"ln":       {fn: mathFn("ln")},
		"sqrt":     {fn: mathFn("sqrt")},
		"log":      {min: 1, max: 1, fn: fnLog},
		"power":    {min: 1, max: 1, fn: fnPower},
		"round":    {max: 1, fn: fnRound},
		// Tree navigation.
		"children":    {unordered: true, fn: fnChildren},
		"descendants": {unordered: true, fn: fnDescendants},
		// Utility.
		"trace":          {min: 1, max: 2, modes: []argMode{argValue, argLambda}, fn: fnTrace},
		"defineVariable": {min: 1, max: 2, modes: []argMode{argValue, argLambda}, fn: fnDefineVariable},
		"now": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return c.one(Item{val: fromTime(c.timeNow(), PrecMillisecond, true)}), nil
		}},
		"today": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return c.one(Item{val: Date(fromTime(c.timeNow(), PrecDay, false))}), nil
		}},
		"timeOfDay": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			d := fromTime(c.timeNow(), PrecMillisecond, false)
			d.Year, d.Month, d.Day = 0, 0, 0
			return c.one(Item{val: Time(d)}), nil
		}},
		// Types.
		"is":   {min: 1, max: 1, modes: []argMode{argType}, fn: fnIs},
		"as":   {min: 1, max: 1, modes: []argMode{argType}, fn: fnAs},
		"type": {fn: fnType},
		// FHIR.
		"extension": {min: 1, max: 1, fn: fnExtension},
		"hasValue": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			return boolItems(len(f) == 1 && f[0].node != nil && typed.HasValue(f[0].node)), nil
		}},
		"getValue": {fn: func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
			if len(f) != 1 || f[0].node == nil || !typed.HasValue(f[0].node) {
				return nil, nil
			}
			v, ok := f[0].Value()
			if !ok {
				return nil, nil
			}
			return c.one(Item{val: v}), nil
		}},
		"lowBoundary":       {max: 1, fn: fnBoundary(false)},
		"highBoundary":      {max: 1, fn: fnBoundary(true)},
		"precision":         {fn: fnPrecision},
		"comparable":        {min: 1, max: 1, fn: fnComparable},
		"resolve":           {unsupported: "references are not resolved"},
		"conformsTo":        {min: 1, max: 1, unsupported: "profiles are not validated"},
		"memberOf":          {min: 1, max: 1, unsupported: "terminology services are not available"},
		"subsumes":          {min: 1, max: 1, unsupported: "terminology services are not available"},
		"subsumedBy":        {min: 1, max: 1, unsupported: "terminology services are not available"},
		"htmlChecks":        {unsupported: "narrative checks are not available"},
		"elementDefinition": {unsupported: "profiles are not available"},
		"slice":             {min: 2, max: 2, unsupported: "profiles are not available"},
		"checkModifiers":    {min: 1, max: 1, unsupported: "profiles are not available"},
	}
}

func fnEmpty(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	return boolItems(len(f) == 0), nil
}

func fnExists(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(k.args) == 0 {
		return boolItems(len(f) > 0), nil
	}
	for i, it := range f {
		match, _, err := c.criteria(k.args[0], it, i)
		if err != nil {
			return nil, err
		}
		if match {
			return trueItems, nil
		}
	}
	return falseItems, nil
}

func fnAll(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	for i, it := range f {
		match, _, err := c.criteria(k.args[0], it, i)
		if err != nil {
			return nil, err
		}
		if !match {
			return falseItems, nil
		}
	}
	return trueItems, nil
}

func boolTest(k *callSite, f []Item, pred func(bool) bool, all bool) ([]Item, error) {
	for _, it := range f {
		v, _ := it.Value()
		b, ok := v.(bool)
		if !ok {
			return nil, k.errf("input must contain booleans")
		}
		if all && !pred(b) {
			return falseItems, nil
		}
		if !all && pred(b) {
			return trueItems, nil
		}
	}
	return boolItems(all), nil
}

func fnSubsetOf(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	o, err := k.value(c, 0, in)
	if err != nil {
		return nil, err
	}
	for _, it := range f {
		if !contains(o, it) {
			return falseItems, nil
		}
	}
	return trueItems, nil
}

func fnSupersetOf(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	o, err := k.value(c, 0, in)
	if err != nil {
		return nil, err
	}
	for _, it := range o {
		if !contains(f, it) {
			return falseItems, nil
		}
	}
	return trueItems, nil
}

func fnNot(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	b, known, ok := boolOf(f)
	if !ok {
		return nil, k.errf("input must be a single boolean")
	}
	if !known {
		return nil, nil
	}
	return boolItems(!b), nil
}

func fnWhere(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	out := c.alloc(len(f))
	for i, it := range f {
		match, ok, err := c.criteria(k.args[0], it, i)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, k.errf("criteria must evaluate to a single boolean")
		}
		if match {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnSelect(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(f) == 1 {
		return c.lambda(k.args[0], f[0], 0)
	}
	var out []Item
	for i, it := range f {
		r, err := c.lambda(k.args[0], it, i)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// maxRepeat bounds the result of repeat(), which could otherwise grow
// without end on System values (1.repeat($this + 1)).
const maxRepeat = 1 << 16

func fnRepeat(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	var out []Item
	var seen itemSet
	queue := f
	for len(queue) > 0 {
		var next []Item
		for i, it := range queue {
			r, err := c.lambda(k.args[0], it, i)
			if err != nil {
				return nil, err
			}
			for _, x := range r {
				if seen.add(x) {
					if len(out) >= maxRepeat {
						return nil, k.errf("result has more than %d items", maxRepeat)
					}
					out = append(out, x)
					next = append(next, x)
				}
			}
		}
		queue = next
	}
	return out, nil
}

// itemSet is a set of items with containsSame semantics: nodes by
// identity, System values by equality. Nodes, strings, booleans and numbers
// are hashed; other values are compared one by one.
type itemSet struct {
	nodes  map[*jsontree.Node]struct{}
	keys   map[string]struct{}
	others []Item
}

// add inserts it and reports whether it was not there yet.
func (s *itemSet) add(it Item) bool {
	if it.node != nil {
		if s.nodes == nil {
			s.nodes = map[*jsontree.Node]struct{}{}
		}
		if _, ok := s.nodes[it.node]; ok {
			return false
		}
		s.nodes[it.node] = struct{}{}
		return true
	}
	var key string
	switch v := it.val.(type) {
	case string:
		key = "s" + v
	case bool:
		key = "b" + strconv.FormatBool(v)
	case int64:
		key = "n" + strconv.FormatInt(v, 10)
	case Decimal:
		key = "n" + v.trim().String()
	default:
		if containsSame(s.others, it) {
			return false
		}
		s.others = append(s.others, it)
		return true
	}
	if s.keys == nil {
		s.keys = map[string]struct{}{}
	}
	if _, ok := s.keys[key]; ok {
		return false
	}
	s.keys[key] = struct{}{}
	return true
}

func fnOfType(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	out := c.alloc(len(f))
	for _, it := range f {
		if isType(c.cfg.model, it, k.args[0].typ, true) {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnIs(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(f) == 0 {
		return nil, nil
	}
	if len(f) > 1 {
		return nil, k.errf("input must be a single item")
	}
	return boolItems(isType(c.cfg.model, f[0], k.args[0].typ, false)), nil
}

func fnAs(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(f) > 1 {
		return nil, k.errf("input must be a single item")
	}
	return fnOfType(c, k, in, f)
}

// The typing of the nodes of a TypeInfo (see fnType).
var (
	typeInfoElem      = &jsontree.Elem{Type: "TypeInfo"}
	typeInfoNamespace = &jsontree.Elem{Name: "namespace", Type: "string"}
	typeInfoName      = &jsontree.Elem{Name: "name", Type: "string"}
)

// typeInfo is the item returned by type(): it has a namespace and a name.
// It is represented as a synthetic object node.
func fnType(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	out := c.alloc(len(f))
	for _, it := range f {
		ns, name := "System", ""
		if it.node != nil {
			ns, name = "FHIR", it.node.Type()
		} else {
			name = systemType(it.val)
		}
		obj := &jsontree.Node{Kind: jsontree.Object, Elem: typeInfoElem}
		nsNode, nameNode := jsontree.NewString(ns), jsontree.NewString(name)
		nsNode.Elem, nameNode.Elem = typeInfoNamespace, typeInfoName
		obj.Set("namespace", nsNode)
		obj.Set("name", nameNode)
		out = append(out, Item{node: obj})
	}
	return out, nil
}

func fnAggregate(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	var total []Item
	if len(k.args) > 1 {
		var err error
		if total, err = k.value(c, 1, in); err != nil {
			return nil, err
		}
	}
	saveT, saveH := c.total, c.hasTotal
	defer func() { c.total, c.hasTotal = saveT, saveH }()
	for i, it := range f {
		c.total, c.hasTotal = total, true
		r, err := c.lambda(k.args[0], it, i)
		if err != nil {
			return nil, err
		}
		total = r
	}
	return total, nil
}

func fnSkip(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	n, ok, err := k.integer(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	if n <= 0 {
		return f, nil
	}
	if n >= int64(len(f)) {
		return nil, nil
	}
	return f[n:], nil
}

func fnTake(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	n, ok, err := k.integer(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	if n >= int64(len(f)) {
		return f, nil
	}
	return f[:n:n], nil
}

func fnIntersect(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	o, err := k.value(c, 0, in)
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, it := range f {
		if contains(o, it) && !contains(out, it) {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnExclude(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	o, err := k.value(c, 0, in)
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, it := range f {
		if !contains(o, it) {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnIif(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(f) > 1 {
		return nil, k.errf("input must have at most one item")
	}
	r, err := k.value(c, 0, in)
	if err != nil {
		return nil, err
	}
	if len(r) > 1 {
		return nil, k.errf("criterion must be a single boolean")
	}
	var cond bool
	if len(r) == 1 {
		v, _ := r[0].Value()
		b, ok := v.(bool)
		if !ok {
			return nil, k.errf("criterion must be a boolean")
		}
		cond = b
	}
	if cond {
		return k.value(c, 1, in)
	}
	if len(k.args) > 2 {
		return k.value(c, 2, in)
	}
	return nil, nil
}

// Conversions.

type converter func(v any) (any, bool)

func convFn(conv converter, test bool) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		if len(f) == 0 {
			return nil, nil
		}
		if len(f) > 1 {
			return nil, k.errf("input must be a single item")
		}
		v, ok := f[0].Value()
		var r any
		if ok {
			r, ok = conv(v)
		}
		if test {
			return boolItems(ok), nil
		}
		if !ok {
			return nil, nil
		}
		return c.one(Item{val: r}), nil
	}
}

// fnToString converts to a string; a FHIR primitive gives the text it has
// in the resource ("2015-02-07T13:28:17+00:00" stays as written).
func fnToString(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	if len(f) == 1 && f[0].node != nil && typed.HasValue(f[0].node) {
		if _, ok := f[0].Value(); ok {
			return c.one(Item{val: f[0].node.Value()}), nil
		}
	}
	return convFn(toStringValue, false)(c, k, in, f)
}

func toBoolean(v any) (any, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case int64:
		if x == 0 || x == 1 {
			return x == 1, true
		}
	case Decimal:
		if x.Cmp(DecimalFromInt(1)) == 0 {
			return true, true
		}
		if x.IsZero() {
			return false, true
		}
	case string:
		switch strings.ToLower(x) {
		case "true", "t", "yes", "y", "1", "1.0":
			return true, true
		case "false", "f", "no", "n", "0", "0.0":
			return false, true
		}
	}
	return nil, false
}

func toInteger(v any) (any, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return int64(1), true
		}
		return int64(0), true
	case string:
		s := x
		if s != "" && (s[0] == '+' || s[0] == '-') {
			s = s[1:]
		}
		if s == "" || !allDigits(s) {
			return nil, false
		}
		n, err := strconv.ParseInt(x, 10, 32)
		if err != nil {
			return nil, false
		}
		return n, true
	}
	return nil, false
}

func toDecimal(v any) (any, bool) {
	switch x := v.(type) {
	case int64:
		return DecimalFromInt(x), true
	case Decimal:
		return x, true
	case bool:
		if x {
			return DecimalFromInt(1), true
		}
		return DecimalFromInt(0), true
	case string:
		d, err := ParseDecimal(x)
		if err != nil {
			return nil, false
		}
		return d, true
	}
	return nil, false
}

func toStringValue(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case Decimal:
		return x.String(), true
	case Date:
		return x.String(), true
	case DateTime:
		return x.String(), true
	case Time:
		return x.String(), true
	case Quantity:
		return x.String(), true
	}
	return nil, false
}

func toDate(v any) (any, bool) {
	switch x := v.(type) {
	case Date:
		return x, true
	case DateTime:
		d := x
		if d.Prec > PrecDay {
			d = DateTime{Year: d.Year, Month: d.Month, Day: d.Day, Prec: PrecDay}
		}
		return Date(d), true
	case string:
		if d, err := ParseDate(x); err == nil {
			return d, true
		}
		if d, err := ParseDateTime(x); err == nil {
			return toDate(d)
		}
	}
	return nil, false
}

func toDateTime(v any) (any, bool) {
	switch x := v.(type) {
	case Date:
		return DateTime(x), true
	case DateTime:
		return x, true
	case string:
		if d, err := ParseDateTime(x); err == nil {
			return d, true
		}
	}
	return nil, false
}

func toTime(v any) (any, bool) {
	switch x := v.(type) {
	case Time:
		return x, true
	case string:
		if t, err := ParseTime(strings.TrimPrefix(x, "T")); err == nil {
			return t, true
		}
	}
	return nil, false
}

func fnToQuantity(test bool) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		if len(f) == 0 {
			return nil, nil
		}
		if len(f) > 1 {
			return nil, k.errf("input must be a single item")
		}
		v, ok := f[0].Value()
		var q Quantity
		if ok {
			q, ok = toQuantity(v)
		}
		if ok && len(k.args) == 1 {
			unit, has, err := k.str(c, 0, in)
			if err != nil {
				return nil, err
			}
			if has && unit != q.Unit {
				// Only identical or calendar-equivalent units convert.
				if _, okc := quantityCompare(q, Quantity{Value: q.Value, Unit: unit}, false); !okc {
					ok = false
				} else if normUnit(unit, false) != normUnit(q.Unit, false) {
					ok = false
				} else {
					q.Unit = unit
				}
			}
		}
		if test {
			return boolItems(ok), nil
		}
		if !ok {
			return nil, nil
		}
		return c.one(Item{val: q}), nil
	}
}

func toQuantity(v any) (Quantity, bool) {
	switch x := v.(type) {
	case Quantity:
		return x, true
	case int64:
		return Quantity{Value: DecimalFromInt(x), Unit: "1"}, true
	case Decimal:
		return Quantity{Value: x, Unit: "1"}, true
	case bool:
		if x {
			return Quantity{Value: DecimalFromInt(1), Unit: "1"}, true
		}
		return Quantity{Value: DecimalFromInt(0), Unit: "1"}, true
	case string:
		return parseQuantityString(x)
	}
	return Quantity{}, false
}

func parseQuantityString(s string) (Quantity, bool) {
	s = strings.TrimSpace(s)
	numEnd := 0
	for numEnd < len(s) && (isDigit(s[numEnd]) || s[numEnd] == '.' || (numEnd == 0 && (s[0] == '+' || s[0] == '-'))) {
		numEnd++
	}
	d, err := ParseDecimal(s[:numEnd])
	if err != nil {
		return Quantity{}, false
	}
	rest := strings.TrimSpace(s[numEnd:])
	if rest == "" {
		return Quantity{Value: d, Unit: "1"}, true
	}
	if calendarUnits[rest] {
		return Quantity{Value: d, Unit: rest}, true
	}
	if len(rest) >= 2 && rest[0] == '\'' && rest[len(rest)-1] == '\'' {
		return Quantity{Value: d, Unit: rest[1 : len(rest)-1]}, true
	}
	return Quantity{}, false
}

// Strings.

// focusString returns the single string of the focus; ok is false when the
// focus is empty.
func focusString(k *callSite, f []Item) (string, bool, error) {
	if len(f) == 0 {
		return "", false, nil
	}
	if len(f) > 1 {
		return "", false, k.errf("input must be a single string")
	}
	v, ok := f[0].Value()
	s, isStr := v.(string)
	if !ok || !isStr {
		return "", false, k.errf("input must be a string")
	}
	return s, true, nil
}

func fnIndexOf(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	s, ok, err := focusString(k, f)
	if err != nil || !ok {
		return nil, err
	}
	sub, ok, err := k.str(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	i := strings.Index(s, sub)
	if i > 0 {
		i = utf8.RuneCountInString(s[:i])
	}
	return c.one(Item{val: int64(i)}), nil
}

func fnSubstring(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	s, ok, err := focusString(k, f)
	if err != nil || !ok {
		return nil, err
	}
	start, ok, err := k.integer(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	r := []rune(s)
	if start < 0 || start >= int64(len(r)) {
		return nil, nil
	}
	end := int64(len(r))
	if len(k.args) > 1 {
		n, ok, err := k.integer(c, 1, in)
		if err != nil {
			return nil, err
		}
		if ok {
			if n < 0 {
				n = 0
			}
			end = min(start+n, end)
		}
	}
	return c.one(Item{val: string(r[start:end])}), nil
}

func strPred(pred func(s, sub string) bool) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		s, ok, err := focusString(k, f)
		if err != nil || !ok {
			return nil, err
		}
		sub, ok, err := k.str(c, 0, in)
		if err != nil || !ok {
			return nil, err
		}
		return boolItems(pred(s, sub)), nil
	}
}

func strMap(m func(string) string) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		s, ok, err := focusString(k, f)
		if err != nil || !ok {
			return nil, err
		}
		return c.one(Item{val: m(s)}), nil
	}
}

func fnReplace(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	s, ok, err := focusString(k, f)
	if err != nil || !ok {
		return nil, err
	}
	pat, ok, err := k.str(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	rep, ok, err := k.str(c, 1, in)
	if err != nil || !ok {
		return nil, err
	}
	return c.one(Item{val: strings.ReplaceAll(s, pat, rep)}), nil
}

func fnMatches(full bool) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		s, ok, err := focusString(k, f)
		if err != nil || !ok {
			return nil, err
		}
		re, ok, err := k.regexpArg(c, 0, in, full)
		if err != nil || !ok {
			return nil, err
		}
		return boolItems(re.MatchString(s)), nil
	}
}

func fnReplaceMatches(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	s, ok, err := focusString(k, f)
	if err != nil || !ok {
		return nil, err
	}
	re, ok, err := k.regexpArg(c, 0, in, false)
	if err != nil || !ok {
		return nil, err
	}
	rep, ok, err := k.str(c, 1, in)
	if err != nil || !ok {
		return nil, err
	}
	if re.String() == "(?s)" {
		return c.one(Item{val: s}), nil // an empty pattern changes nothing
	}
	return c.one(Item{val: re.ReplaceAllString(s, dotNetReplacement(rep))}), nil
}

func fnLength(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	s, ok, err := focusString(k, f)
	if err != nil || !ok {
		return nil, err
	}
	return c.one(Item{val: int64(utf8.RuneCountInString(s))}), nil
}

func fnToChars(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	s, ok, err := focusString(k, f)
	if err != nil || !ok {
		return nil, err
	}
	out := c.alloc(utf8.RuneCountInString(s))
	for _, r := range s {
		out = append(out, Item{val: string(r)})
	}
	return out, nil
}

func fnSplit(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	s, ok, err := focusString(k, f)
	if err != nil || !ok {
		return nil, err
	}
	sep, ok, err := k.str(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	parts := strings.Split(s, sep)
	out := c.alloc(len(parts))
	for _, p := range parts {
		out = append(out, Item{val: p})
	}
	return out, nil
}

func fnJoin(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	sep := ""
	if len(k.args) == 1 {
		s, ok, err := k.str(c, 0, in)
		if err != nil {
			return nil, err
		}
		if ok {
			sep = s
		}
	}
	var b strings.Builder
	for i, it := range f {
		v, _ := it.Value()
		s, ok := v.(string)
		if !ok {
			return nil, k.errf("input must contain strings")
		}
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(s)
	}
	return c.one(Item{val: b.String()}), nil
}

func fnEncode(encode bool) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		s, ok, err := focusString(k, f)
		if err != nil || !ok {
			return nil, err
		}
		format, ok, err := k.str(c, 0, in)
		if err != nil || !ok {
			return nil, err
		}
		var r string
		switch format {
		case "hex":
			if encode {
				r = hex.EncodeToString([]byte(s))
			} else {
				b, err := hex.DecodeString(s)
				if err != nil {
					return nil, nil
				}
				r = string(b)
			}
		case "base64", "urlbase64":
			enc := base64.StdEncoding
			if format == "urlbase64" {
				enc = base64.URLEncoding
			}
			if encode {
				r = enc.EncodeToString([]byte(s))
			} else {
				b, err := enc.DecodeString(s)
				if err != nil {
					return nil, nil
				}
				r = string(b)
			}
		default:
			return nil, k.errf("unknown encoding")
		}
		return c.one(Item{val: r}), nil
	}
}

func fnEscape(escape bool) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		s, ok, err := focusString(k, f)
		if err != nil || !ok {
			return nil, err
		}
		target, ok, err := k.str(c, 0, in)
		if err != nil || !ok {
			return nil, err
		}
		var r string
		switch target {
		case "html":
			if escape {
				r = html.EscapeString(s)
				r = strings.ReplaceAll(r, "&#39;", "&#39;")
				r = strings.ReplaceAll(r, "&#34;", "&quot;")
			} else {
				r = html.UnescapeString(s)
			}
		case "json":
			if escape {
				q := strconv.Quote(s)
				r = q[1 : len(q)-1]
			} else {
				u, ok := unescapeJSON(s)
				if !ok {
					return nil, nil
				}
				r = u
			}
		default:
			return nil, k.errf("unknown escape target")
		}
		return c.one(Item{val: r}), nil
	}
}

// Math.

func focusNumber(k *callSite, f []Item) (any, bool, error) {
	if len(f) == 0 {
		return nil, false, nil
	}
	if len(f) > 1 {
		return nil, false, k.errf("input must be a single number")
	}
	v, _ := f[0].Value()
	switch v.(type) {
	case int64, Decimal, Quantity:
		return v, true, nil
	}
	return nil, false, k.errf("input must be a number")
}

func mathFn(name string) builtinFn {
	return func(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
		v, ok, err := focusNumber(k, f)
		if err != nil || !ok {
			return nil, err
		}
		if q, isQ := v.(Quantity); isQ {
			if name != "abs" {
				return nil, k.errf("input must be a number")
			}
			if q.Value.Sign() < 0 {
				q.Value = q.Value.Neg()
			}
			return c.one(Item{val: q}), nil
		}
		switch name {
		case "abs":
			if n, isInt := v.(int64); isInt {
				if n < 0 {
					n = -n
				}
				return c.one(Item{val: n}), nil
			}
			d := v.(Decimal)
			if d.Sign() < 0 {
				d = d.Neg()
			}
			return c.one(Item{val: d}), nil
		case "ceiling", "floor", "truncate":
			if n, isInt := v.(int64); isInt {
				return c.one(Item{val: n}), nil
			}
			d := v.(Decimal)
			switch name {
			case "ceiling":
				d = d.Ceiling()
			case "floor":
				d = d.Floor()
			default:
				d = d.Truncate()
			}
			n, ok := d.Int64()
			if !ok {
				return nil, k.errf("result out of range")
			}
			return c.one(Item{val: n}), nil
		}
		d, _ := toDec(v)
		x := d.Float64()
		var r float64
		switch name {
		case "exp":
			r = math.Exp(x)
		case "ln":
			r = math.Log(x)
		case "sqrt":
			if x < 0 {
				return nil, nil
			}
			r = math.Sqrt(x)
		}
		rd, ok := decimalFromFloat(r)
		if !ok {
			return nil, nil
		}
		return c.one(Item{val: rd}), nil
	}
}

func fnLog(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	v, ok, err := focusNumber(k, f)
	if err != nil || !ok {
		return nil, err
	}
	b, ok, err := k.single(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	x, _ := toDec(v)
	base, isNum := toDec(b)
	if !isNum {
		return nil, k.errf("base must be a number")
	}
	r, ok := decimalFromFloat(math.Log(x.Float64()) / math.Log(base.Float64()))
	if !ok {
		return nil, nil
	}
	return c.one(Item{val: r}), nil
}

func fnPower(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	v, ok, err := focusNumber(k, f)
	if err != nil || !ok {
		return nil, err
	}
	e, ok, err := k.single(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	bi, bInt := v.(int64)
	ei, eInt := e.(int64)
	if bInt && eInt && ei >= 0 {
		r, ok := intPow(bi, ei)
		if !ok {
			return nil, nil // out of the Integer range
		}
		return c.one(Item{val: r}), nil
	}
	x, _ := toDec(v)
	y, isNum := toDec(e)
	if !isNum {
		return nil, k.errf("exponent must be a number")
	}
	r, ok := decimalFromFloat(math.Pow(x.Float64(), y.Float64()))
	if !ok {
		return nil, nil
	}
	return c.one(Item{val: r}), nil
}

// intPow computes b**e by squaring; ok is false when the result leaves the
// 32-bit Integer range of FHIRPath.
func intPow(b, e int64) (int64, bool) {
	const limit = 1<<31 - 1
	r := int64(1)
	for e > 0 {
		if e&1 == 1 {
			r *= b
			if r > limit || r < -limit-1 {
				return 0, false
			}
		}
		e >>= 1
		if e > 0 {
			b *= b
			if b > limit || b < -limit-1 {
				if r != 0 {
					return 0, false
				}
			}
		}
	}
	return r, true
}

func fnRound(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	v, ok, err := focusNumber(k, f)
	if err != nil || !ok {
		return nil, err
	}
	prec := int64(0)
	if len(k.args) == 1 {
		p, ok, err := k.integer(c, 0, in)
		if err != nil {
			return nil, err
		}
		if ok {
			if p < 0 {
				return nil, k.errf("precision must not be negative")
			}
			prec = p
		}
	}
	d, _ := toDec(v)
	return c.one(Item{val: d.Round(int(prec))}), nil
}

// Tree navigation.

func fnChildren(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	var out []Item
	for _, it := range f {
		if it.node != nil {
			out = c.allChildren(it.node, out)
		}
	}
	return out, nil
}

func fnDescendants(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	var out []Item
	var walk func(n *jsontree.Node)
	walk = func(n *jsontree.Node) {
		start := len(out)
		out = c.allChildren(n, out)
		end := len(out)
		for i := start; i < end; i++ {
			walk(out[i].node)
		}
	}
	for _, it := range f {
		if it.node != nil {
			walk(it.node)
		}
	}
	return out, nil
}

func fnTrace(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	name, _, err := k.str(c, 0, in)
	if err != nil {
		return nil, err
	}
	if c.env == nil || c.env.Trace == nil {
		return f, nil
	}
	shown := f
	if len(k.args) > 1 {
		var all []Item
		for i, it := range f {
			r, err := c.lambda(k.args[1], it, i)
			if err != nil {
				return nil, err
			}
			all = append(all, r...)
		}
		shown = all
	}
	c.env.Trace(name, shown)
	return f, nil
}

// fnDefineVariable sets %name to the focus, or to the second argument
// evaluated on the focus, for the rest of the evaluation, and returns the
// focus. Defining a name twice, or a predefined name, is an error.
func fnDefineVariable(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	name, ok, err := k.str(c, 0, in)
	if err != nil {
		return nil, err
	}
	if !ok || name == "" {
		return nil, k.errf("the variable name must be a string")
	}
	if _, predefined := constants[name]; predefined || name == "context" || name == "resource" || name == "rootResource" {
		return nil, k.errf("cannot redefine %%%s", name)
	}
	for _, v := range c.vars {
		if v.name == name {
			return nil, k.errf("variable %%%s is already defined", name)
		}
	}
	value := f
	if len(k.args) > 1 {
		save := c.this
		c.this = f
		value, err = k.args[1].fn(c, f)
		c.this = save
		if err != nil {
			return nil, err
		}
	}
	c.vars = append(c.vars, variable{name: name, items: value})
	return f, nil
}

func fnExtension(c *evalCtx, k *callSite, in, f []Item) ([]Item, error) {
	url, ok, err := k.str(c, 0, in)
	if err != nil || !ok {
		return nil, err
	}
	var out []Item
	var buf []Item
	for _, it := range f {
		if it.node == nil {
			continue
		}
		buf = c.childrenNamed(it.node, "extension", buf[:0])
		for _, e := range buf {
			for _, ch := range e.node.Children() {
				if ch.Key() == "url" && ch.Value() == url {
					out = append(out, e)
					break
				}
			}
		}
	}
	return out, nil
}

// unescapeJSON decodes JSON string escapes in s.
func unescapeJSON(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch != '\\' {
			b.WriteByte(ch)
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			b.WriteByte(s[i])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+4 >= len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", false
			}
			b.WriteRune(rune(n))
			i += 4
		default:
			return "", false
		}
	}
	return b.String(), true
}
