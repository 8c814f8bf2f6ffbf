package views

import (
	"fmt"
	"strconv"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/jsontree"
)

// Runner evaluates a view over resources, one at a time. It is not safe for
// concurrent use: use one Runner per goroutine.
type Runner struct {
	v       *View
	env     fhirpath.Env
	ri      []fhirpath.Item // the %rowIndex variable, changed in place
	row     []Value
	lists   [][]Value       // per slot, reused list storage for collections
	buf     []fhirpath.Item // column results, consumed before the next column
	emit    func([]Value) error
	resName string
	parser  jsontree.Parser
	root    *jsontree.Node
	rows    int64
	resRows int
	// scratch of the fast paths
	fa, fb []*jsontree.Node
	fids   []string
	model  *model.Model
}

// NewRunner returns a Runner for the view.
func (v *View) NewRunner() *Runner {
	r := &Runner{v: v, row: make([]Value, len(v.Columns)), lists: make([][]Value, len(v.Columns)), model: model.Get(model.R4)}
	r.ri = []fhirpath.Item{fhirpath.ValueItem(int64(0))}
	r.env.Vars = make(map[string][]fhirpath.Item, len(v.consts)+1)
	for k, c := range v.consts {
		r.env.Vars[k] = c
	}
	r.env.Vars["rowIndex"] = r.ri
	return r
}

// Rows returns the number of rows the runner has emitted.
func (r *Runner) Rows() int64 { return r.rows }

// ProcessJSON parses one resource (JSON), types it and evaluates the view
// on it (see Eval); members the view cannot read are left out before
// typing (see Members). The rows' strings are valid only during emit
// (they may be slices of data). Resources of other types are skipped before typing.
func (r *Runner) ProcessJSON(data []byte, emit func(row []Value) error) error {
	// Nothing of a tree outlives the call (rows are valid only during
	// emit, errors hold copies): the tree's strings are borrowed from data
	// and the parser reuses its text memory for the escaped ones.
	r.parser.ReuseText, r.parser.Borrow = true, true
	root, err := r.parser.Parse(data)
	if err != nil {
		return err
	}
	rt := root.Get("resourceType")
	if rt == nil || rt.Kind != jsontree.String || rt.Value() != r.v.Resource {
		return nil
	}
	Members(r.v.members).Prune(root)
	if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
		return err
	}
	return r.Eval(root, emit)
}

// Eval evaluates the view on a typed resource (see typed.Annotate) and
// calls emit for each row. The row and its strings are valid only during
// the call. Resources of another type than the view's give no rows.
func (r *Runner) Eval(res *jsontree.Node, emit func(row []Value) error) error {
	if res == nil || res.Type() != r.v.Resource {
		return nil
	}
	r.root = res
	r.resName = ""
	r.resRows = 0
	defer func() { r.root = nil }()
	for _, w := range r.v.where {
		r.ri[0] = fhirpath.ValueItem(int64(0))
		items, err := w.e.Evaluate(res, &r.env)
		if err != nil {
			return r.evalErr(w, err)
		}
		switch len(items) {
		case 0:
			return nil
		case 1:
			v, ok := items[0].Value()
			b, isBool := v.(bool)
			if !ok || !isBool {
				return r.errorf(w, "the where path must give a boolean, got %s", items[0].TypeName())
			}
			if !b {
				return nil
			}
		default:
			return r.errorf(w, "the where path must give a single boolean, got %d items", len(items))
		}
	}
	r.emit = emit
	defer func() { r.emit = nil }()
	return r.sel(r.v.root, fhirpath.NodeItem(res), 0, r.done)
}

// MaxRowsPerResource bounds the rows one resource may produce (nested
// forEach over large arrays multiply): beyond it, evaluation stops with an
// error naming the view.
const MaxRowsPerResource = 1 << 20

func (r *Runner) done() error {
	r.rows++
	r.resRows++
	if r.resRows > MaxRowsPerResource {
		return &Error{View: r.v.Name, Resource: r.resource(), Msg: fmt.Sprintf("more than %d rows from one resource", MaxRowsPerResource)}
	}
	return r.emit(r.row)
}

func (r *Runner) sel(s *selectNode, ctx fhirpath.Item, ri int, k func() error) error {
	switch s.mode {
	case iterNone:
		return r.body(s, ctx, ri, k)
	case iterForEach, iterForEachOrNull:
		items, err := r.evalOn(s.iter, ctx, ri)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			if s.mode == iterForEach {
				return nil
			}
			for _, slot := range s.slots {
				r.setNull(slot)
			}
			// %rowIndex is 0 in the row of nulls too.
			for _, c := range s.cols {
				if c.expr.rowIndex {
					r.ri[0] = fhirpath.ValueItem(int64(0))
					items, err := c.expr.e.EvaluateItems(nil, &r.env)
					if err != nil {
						return r.evalErr(c.expr, err)
					}
					if err := r.fill(c, items); err != nil {
						return err
					}
				}
			}
			return k()
		}
		for i, it := range items {
			if err := r.body(s, it, i, k); err != nil {
				return err
			}
		}
		return nil
	}
	// repeat: every item reachable through the paths, depth first.
	idx := 0
	var walk func(n fhirpath.Item, depth int) error
	walk = func(n fhirpath.Item, depth int) error {
		if depth > maxRepeatDepth {
			return r.errorf(s.repeat[0], "repeat is nested deeper than %d levels", maxRepeatDepth)
		}
		for _, p := range s.repeat {
			items, err := r.evalOn(p, n, ri)
			if err != nil {
				return err
			}
			for _, it := range items {
				if err := r.body(s, it, idx, k); err != nil {
					return err
				}
				idx++
				if err := walk(it, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(ctx, 0)
}

// maxRepeatDepth bounds the recursion of repeat on hostile input.
const maxRepeatDepth = 256

// body fills the select's columns on ctx and cross-joins its nested
// selects and its unionAll.
func (r *Runner) body(s *selectNode, ctx fhirpath.Item, ri int, k func() error) error {
	n := ctx.Node()
	for _, c := range s.cols {
		if c.expr.fast != nil && n != nil && !noFastPaths {
			if err := r.fillFast(c, n); err != nil {
				return err
			}
			continue
		}
		// A column's result is converted before the next evaluation, so
		// one buffer serves every column.
		items, err := r.evalInto(r.buf[:0], c.expr, ctx, ri)
		if err != nil {
			return err
		}
		err = r.fill(c, items)
		clear(items)
		r.buf = items[:0]
		if err != nil {
			return err
		}
	}
	return r.children(s, 0, ctx, ri, k)
}

func (r *Runner) children(s *selectNode, i int, ctx fhirpath.Item, ri int, k func() error) error {
	if i == len(s.children) {
		if len(s.union) == 0 {
			return k()
		}
		for _, u := range s.union {
			if err := r.sel(u, ctx, ri, k); err != nil {
				return err
			}
		}
		return nil
	}
	if i == len(s.children)-1 && len(s.union) == 0 {
		return r.sel(s.children[i], ctx, ri, k)
	}
	return r.sel(s.children[i], ctx, ri, func() error { return r.children(s, i+1, ctx, ri, k) })
}

// evalInto evaluates e on ctx, appending the result to dst.
func (r *Runner) evalInto(dst []fhirpath.Item, e *cexpr, ctx fhirpath.Item, ri int) ([]fhirpath.Item, error) {
	n := ctx.Node()
	if n == nil {
		items, err := r.evalOn(e, ctx, ri)
		return append(dst, items...), err
	}
	if e.rowIndex {
		r.ri[0] = fhirpath.ValueItem(int64(ri))
	}
	items, err := e.e.EvaluateAppend(dst, n, &r.env)
	if err != nil {
		return dst, r.evalErr(e, err)
	}
	return items, nil
}

func (r *Runner) evalOn(e *cexpr, ctx fhirpath.Item, ri int) ([]fhirpath.Item, error) {
	if e.rowIndex {
		r.ri[0] = fhirpath.ValueItem(int64(ri))
	}
	var items []fhirpath.Item
	var err error
	if n := ctx.Node(); n != nil {
		items, err = e.e.Evaluate(n, &r.env)
	} else {
		items, err = e.e.EvaluateItems([]fhirpath.Item{ctx}, &r.env)
	}
	if err != nil {
		return nil, r.evalErr(e, err)
	}
	return items, nil
}

func (r *Runner) setNull(slot int) {
	col := &r.v.Columns[slot]
	if col.Collection {
		r.row[slot] = Value{Kind: col.Kind, List: r.list(slot)}
		return
	}
	r.row[slot] = Value{Kind: col.Kind, Null: true}
}

func (r *Runner) list(slot int) []Value {
	l := r.lists[slot]
	if l == nil {
		l = make([]Value, 0, 4)
		r.lists[slot] = l
	}
	return l[:0]
}

func (r *Runner) fill(c *colNode, items []fhirpath.Item) error {
	col := &c.col
	if col.Collection {
		l := r.list(c.slot)
		for _, it := range items {
			v, err := r.value(c, it)
			if err != nil {
				return err
			}
			if !v.Null { // a primitive with only extensions
				l = append(l, v)
			}
		}
		r.lists[c.slot] = l[:0]
		r.row[c.slot] = Value{Kind: col.Kind, List: l}
		return nil
	}
	switch len(items) {
	case 0:
		r.row[c.slot] = Value{Kind: col.Kind, Null: true}
		return nil
	case 1:
		v, err := r.value(c, items[0])
		if err != nil {
			return err
		}
		r.row[c.slot] = v
		return nil
	}
	return r.errorf(c.expr, "column %s: the path gave %d values; set \"collection\": true to keep them all", col.Name, len(items))
}

// noFastPaths makes every column go through the FHIRPath engine (tests
// compare the two).
var noFastPaths bool

// fillFast fills c's slot with the result of its fast path on n, as fill
// does with the engine's result.
func (r *Runner) fillFast(c *colNode, n *jsontree.Node) error {
	fp := c.expr.fast
	col := &c.col
	if fp.literal {
		if fp.empty {
			if col.Collection {
				r.row[c.slot] = Value{Kind: col.Kind, List: r.list(c.slot)}
			} else {
				r.row[c.slot] = Value{Kind: col.Kind, Null: true}
			}
			return nil
		}
		return r.fillValues(c, 1, func(int) (Value, *jsontree.Node) { return Value{Kind: KindString, Text: fp.text}, nil })
	}
	var nodes []*jsontree.Node
	nodes, r.fb, r.fids = fp.eval(r.model, n, r.fa, r.fb, r.fids)
	var err error
	if len(nodes) == 1 && !col.Collection {
		// The common case, without the copies of fillValues.
		dst := &r.row[c.slot]
		*dst = natural(fhirpath.NodeItem(nodes[0]))
		err = r.convertInPlace(c, dst, nodes[0])
	} else if ids := r.fids; len(ids) > 0 {
		err = r.fillValues(c, len(ids), func(i int) (Value, *jsontree.Node) { return Value{Kind: KindString, Text: ids[i]}, nil })
	} else {
		err = r.fillValues(c, len(nodes), func(i int) (Value, *jsontree.Node) {
			return natural(fhirpath.NodeItem(nodes[i])), nodes[i]
		})
	}
	clear(nodes)
	r.fa = nodes[:0]
	return err
}

// fillValues is fill for n values given by at.
func (r *Runner) fillValues(c *colNode, n int, at func(int) (Value, *jsontree.Node)) error {
	col := &c.col
	if col.Collection {
		l := r.list(c.slot)
		for i := 0; i < n; i++ {
			x, xn := at(i)
			v, err := r.convert(c, x, xn)
			if err != nil {
				return err
			}
			if !v.Null {
				l = append(l, v)
			}
		}
		r.lists[c.slot] = l[:0]
		r.row[c.slot] = Value{Kind: col.Kind, List: l}
		return nil
	}
	switch n {
	case 0:
		r.row[c.slot] = Value{Kind: col.Kind, Null: true}
		return nil
	case 1:
		x, xn := at(0)
		v, err := r.convert(c, x, xn)
		if err != nil {
			return err
		}
		r.row[c.slot] = v
		return nil
	}
	return r.errorf(c.expr, "column %s: the path gave %d values; set \"collection\": true to keep them all", col.Name, n)
}

// value converts an item to the column's kind.
func (r *Runner) value(c *colNode, it fhirpath.Item) (Value, error) {
	return r.convert(c, natural(it), it.Node())
}

// convert converts v, the natural value of node n (nil for a System
// value), to the column's kind and, with an ansi/type date or timestamp,
// its SQL type.
func (r *Runner) convert(c *colNode, v Value, n *jsontree.Node) (Value, error) {
	v, err := r.convertKind(c, v, n)
	if err != nil || c.col.SQLType == "" || v.Null {
		return v, err
	}
	var ok bool
	switch c.col.SQLType {
	case SQLDate:
		v.Int, ok = parseDate(v.Text)
		if ok {
			v.Text = v.Text[:10]
		}
	case SQLTimestamp:
		v.Int, ok = parseTimestamp(v.Text, false)
	case SQLTimestampTZ:
		v.Int, ok = parseTimestamp(v.Text, true)
	}
	if !ok {
		return Value{}, r.errorf(c.expr, "column %s: a %s value without the precision of the column's ansi/type %s (a partial date, no time or no time zone)", c.col.Name, v.Kind, c.col.SQLType)
	}
	return v, nil
}

// convertInPlace is convert on *v; a value of the column's kind and no SQL
// type is left as it is without copying it.
func (r *Runner) convertInPlace(c *colNode, v *Value, n *jsontree.Node) error {
	if c.col.SQLType == "" && (c.col.Kind == KindAny || v.Null || v.Kind == c.col.Kind) {
		return nil
	}
	x, err := r.convert(c, *v, n)
	if err != nil {
		*v = Value{Kind: c.col.Kind, Null: true}
		return err
	}
	*v = x
	return nil
}

// convertKind converts v to the column's kind.
func (r *Runner) convertKind(c *colNode, v Value, n *jsontree.Node) (Value, error) {
	want := c.col.Kind
	if want == KindAny || v.Null || v.Kind == want {
		return v, nil
	}
	switch want {
	case KindString:
		if v.Kind != KindJSON {
			return Value{Kind: KindString, Text: v.String()}, nil
		}
	case KindDecimal:
		if v.Kind == KindInteger {
			return Value{Kind: KindDecimal, Text: v.String()}, nil
		}
	case KindDateTime:
		if v.Kind == KindDate || v.Kind == KindInstant {
			v.Kind = KindDateTime
			return v, nil
		}
	case KindInstant:
		if v.Kind == KindDateTime {
			v.Kind = KindInstant
			return v, nil
		}
	case KindJSON:
		if n != nil {
			return Value{Kind: KindJSON, Text: string(n.AppendJSON(nil))}, nil
		}
		return Value{Kind: KindJSON, Text: string(v.AppendJSON(nil))}, nil
	}
	return Value{}, r.errorf(c.expr, "column %s: a %s value does not fit the column's type %s", c.col.Name, v.Kind, c.col.Type)
}

// natural converts an item to a Value of its own kind.
func natural(it fhirpath.Item) Value {
	n := it.Node()
	if n != nil && n.Kind != jsontree.Object && n.Kind != jsontree.Array {
		// A primitive with a value: read its text without converting it
		// to a System value (which allocates).
		if v, ok := primitive(n); ok {
			return v
		}
	}
	x, ok := it.Value()
	if !ok {
		if n != nil && n.Kind == jsontree.Number && (n.Type() == "decimal" || n.Type() == "") {
			// A JSON number FHIRPath does not read as a decimal (an
			// exponent: 1e3): keep its literal.
			return Value{Kind: KindDecimal, Text: n.Value()}
		}
		if n != nil && n.Kind == jsontree.Object && !typed.IsPrimitive(n) {
			return Value{Kind: KindJSON, Text: string(n.AppendJSON(nil))}
		}
		return Value{Kind: KindAny, Null: true}
	}
	switch x := x.(type) {
	case string:
		return Value{Kind: KindString, Text: x}
	case bool:
		if x {
			return Value{Kind: KindBoolean, Int: 1}
		}
		return Value{Kind: KindBoolean}
	case int64:
		return Value{Kind: KindInteger, Int: x}
	case fhirpath.Decimal:
		if n != nil && n.Kind == jsontree.Number {
			return Value{Kind: KindDecimal, Text: n.Value()}
		}
		return Value{Kind: KindDecimal, Text: x.String()}
	case fhirpath.Date:
		if n != nil && n.Kind == jsontree.String {
			return Value{Kind: KindDate, Text: n.Value()}
		}
		return Value{Kind: KindDate, Text: x.String()}
	case fhirpath.DateTime:
		k := KindDateTime
		if n != nil && n.Type() == "instant" {
			k = KindInstant
		}
		if n != nil && n.Kind == jsontree.String {
			return Value{Kind: k, Text: n.Value()}
		}
		return Value{Kind: k, Text: x.String()}
	case fhirpath.Time:
		if n != nil && n.Kind == jsontree.String {
			return Value{Kind: KindTime, Text: n.Value()}
		}
		return Value{Kind: KindTime, Text: x.String()}
	case fhirpath.Quantity:
		if n != nil {
			return Value{Kind: KindJSON, Text: string(n.AppendJSON(nil))}
		}
		return Value{Kind: KindString, Text: x.String()}
	}
	return Value{Kind: KindAny, Null: true}
}

func (r *Runner) resource() string {
	if r.resName == "" && r.root != nil {
		r.resName = r.root.Type()
		if id := r.root.Get("id"); id != nil && id.Kind == jsontree.String && validID(id.Value()) {
			r.resName += "/" + id.Value()
		}
	}
	return r.resName
}

// validID reports whether s has the syntax of a FHIR id, so that only ids
// (never other data) are quoted in errors.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (r *Runner) errorf(e *cexpr, format string, args ...any) error {
	return &Error{View: r.v.Name, Element: e.elem, Resource: r.resource(), Msg: fmt.Sprintf(format, args...)}
}

func (r *Runner) evalErr(e *cexpr, err error) error {
	err = e.fixPos(err)
	return &Error{View: r.v.Name, Element: e.elem, Resource: r.resource(), Msg: err.Error(), Err: err}
}

// primitive converts a primitive node's JSON value by its FHIR type.
func primitive(n *jsontree.Node) (Value, bool) {
	switch n.Type() {
	case "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml":
		if n.Kind == jsontree.String {
			return Value{Kind: KindString, Text: n.Value()}, true
		}
	case "boolean":
		if n.Kind == jsontree.Bool {
			if n.Value() == "true" {
				return Value{Kind: KindBoolean, Int: 1}, true
			}
			return Value{Kind: KindBoolean}, true
		}
	case "integer", "positiveInt", "unsignedInt":
		if n.Kind == jsontree.Number {
			if i, err := strconv.ParseInt(n.Value(), 10, 64); err == nil {
				return Value{Kind: KindInteger, Int: i}, true
			}
		}
	case "decimal":
		if n.Kind == jsontree.Number {
			return Value{Kind: KindDecimal, Text: n.Value()}, true
		}
	case "date":
		if n.Kind == jsontree.String {
			return Value{Kind: KindDate, Text: n.Value()}, true
		}
	case "dateTime":
		if n.Kind == jsontree.String {
			return Value{Kind: KindDateTime, Text: n.Value()}, true
		}
	case "instant":
		if n.Kind == jsontree.String {
			return Value{Kind: KindInstant, Text: n.Value()}, true
		}
	case "time":
		if n.Kind == jsontree.String {
			return Value{Kind: KindTime, Text: n.Value()}, true
		}
	}
	return Value{}, false
}
