package fhirpath

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"fhirdeid/fhir/model"
	"fhirdeid/jsontree"
)

// Expression is a compiled FHIRPath expression. It is immutable and safe for
// concurrent use; each evaluation keeps its state in its own context.
type Expression struct {
	src  string
	ast  expr
	root evalFn
	cfg  *config
	// headName and headArg are the head call's (see HeadCall).
	headName, headArg string
	// where and whereTail describe an expression head.where(criteria).name
	// whose criteria is memoized (see HeadWhere).
	where     *argument
	whereTail string
	// memoized are the member names of the memoized criteria, in the
	// order they were compiled (for tests).
	memoized []string
}

// config is the compile-time configuration built from Options.
type config struct {
	model        *model.Model
	contextType  string
	funcs        map[string]*Function
	orderedCheck bool
	jsonNames    bool
	warn         func(*CheckError)
	// noMemo turns the criteria memo off (tests compare with it).
	noMemo bool
}

// Option configures Compile.
type Option func(*config)

// WithModel sets the FHIR model used for type checking and for is/as/ofType
// subtype tests. Without it, types match by name only and no check is done.
func WithModel(m *model.Model) Option { return func(c *config) { c.model = m } }

// WithContextType checks the expression at compile time against the given
// context type ("Patient"): unknown elements and navigation from a wrong
// resource type are compile errors. It needs WithModel.
func WithContextType(typ string) Option { return func(c *config) { c.contextType = typ } }

// WithFunctions adds custom functions; they may not replace built-in ones.
func WithFunctions(fs ...*Function) Option {
	return func(c *config) {
		if c.funcs == nil {
			c.funcs = map[string]*Function{}
		}
		for _, f := range fs {
			c.funcs[f.Name] = f
		}
	}
}

// WithOrderedFunctionsCheck makes it a compile error to apply a function
// that needs an ordered input (first, skip, [n] ...) to the result of an
// unordered one (children, descendants).
func WithOrderedFunctionsCheck() Option { return func(c *config) { c.orderedCheck = true } }

// WithJSONNames allows navigating by JSON member name as well as by element
// name, so Observation.valueQuantity finds the valueQuantity member. Plain
// FHIRPath only knows Observation.value.
func WithJSONNames() Option { return func(c *config) { c.jsonNames = true } }

// WithWarnings makes the problems of the check phase (unknown elements and
// types, a wrong context type) warnings: they are passed to fn and the
// expression compiles, the unknown step evaluating to an empty collection.
// FHIR anonymizer configurations in the field contain such steps
// ("HealthcareService.notAvaliable"), which other engines silently accept.
func WithWarnings(fn func(*CheckError)) Option { return func(c *config) { c.warn = fn } }

// Compile parses and checks expr. The result can be evaluated many times,
// concurrently.
func Compile(src string, opts ...Option) (*Expression, error) {
	cfg := &config{}
	for _, o := range opts {
		o(cfg)
	}
	ast, err := parse(src)
	if err != nil {
		return nil, err
	}
	cp := &compiler{src: src, cfg: cfg, head: headCall(ast)}
	if err := cp.check(ast); err != nil {
		return nil, err
	}
	fn, err := cp.compile(ast)
	if err != nil {
		return nil, err
	}
	x := &Expression{src: src, ast: ast, root: fn, cfg: cfg, memoized: cp.memoized}
	if cp.headUsed {
		x.headName, x.headArg = cp.head.name, cp.head.args[0].(*literalExpr).text
		if m, ok := ast.(*memberExpr); ok && cp.headWhere != nil && m.x == expr(cp.headWhereCall) {
			x.where, x.whereTail = cp.headWhere, m.name
		}
	}
	return x, nil
}

// MustCompile is like Compile but panics on an error. It is meant for
// expressions that are constants of the program.
func MustCompile(src string, opts ...Option) *Expression {
	e, err := Compile(src, opts...)
	if err != nil {
		panic(err)
	}
	return e
}

// String returns the expression's source text.
func (e *Expression) String() string { return e.src }

// Tree returns the parsed expression in a canonical, fully parenthesized
// form.
func (e *Expression) Tree() string { return exprString(e.ast) }

// Env is the per-evaluation environment. A nil *Env is valid and means
// defaults.
type Env struct {
	// Now is the instant now(), today() and timeOfDay() return; the zero
	// value means the time of the evaluation.
	Now time.Time
	// Vars are external constants, %name.
	Vars map[string][]Item
	// Trace receives the output of trace(); nil discards it.
	Trace func(name string, items []Item)
	// Resource and RootResource set %resource and %rootResource; by default
	// they are the nearest resource containing the input and the top one.
	Resource, RootResource *jsontree.Node
	// PartialDatesAsRanges makes =, <, <=, > and >= between dates, dateTimes
	// or times of different precisions answer as the Firely engine does (the
	// one Microsoft's FHIR anonymizer runs generalize cases with), instead
	// of returning empty as the FHIRPath specification says: each value
	// stands for the range of instants it covers (without a time zone it is
	// taken as UTC); = is true when the ranges overlap, a < b (and a <= b)
	// when some instant of a precedes some instant of b, a > b (and a >= b)
	// when some instant of a follows some instant of b.
	PartialDatesAsRanges bool
}

// EvalError is an error raised while evaluating an expression. It names the
// position in the expression, never a value of the resource.
type EvalError struct {
	Line, Column int
	Msg          string
}

// Error formats the error as "fhirpath: line:column: message".
func (e *EvalError) Error() string {
	return fmt.Sprintf("fhirpath: %d:%d: %s", e.Line, e.Column, e.Msg)
}

// evalFn evaluates a compiled node with the input collection in.
type evalFn func(c *evalCtx, in []Item) ([]Item, error)

// evalCtx is the state of one evaluation.
type evalCtx struct {
	env      *Env
	cfg      *config
	this     []Item
	index    int
	hasIndex bool
	total    []Item
	hasTotal bool
	context  []Item
	now      time.Time
	nowSet   bool
	slab     []Item
	scratch  []Item
	nodes    []*jsontree.Node
	col      collector                 // state of nodesByType/nodesByName
	visit    func(*jsontree.Node) bool // col.visit, bound once
	calls    []*Call                   // free Call values for custom functions
	vars     []variable
	// headItems, when headSet, is the result of the head call (see
	// EvaluateWithHead).
	headItems []Item
	headSet   bool
	// memo keeps criteria results (see memo.go); it is allocated on first
	// use and kept when the context is pooled.
	memo *memoTable
}

// variable is a variable set by defineVariable().
type variable struct {
	name  string
	items []Item
}

var ctxPool = sync.Pool{New: func() any { return new(evalCtx) }}

// alloc returns an empty slice with capacity n carved from the context's
// slab; appending past n reallocates, so slices never overlap.
func (c *evalCtx) alloc(n int) []Item {
	if n == 0 {
		return nil
	}
	if len(c.slab)+n > cap(c.slab) {
		size := 256
		if n > size {
			size = n
		}
		c.slab = make([]Item, 0, size)
	}
	s := c.slab[len(c.slab) : len(c.slab) : len(c.slab)+n]
	c.slab = c.slab[:len(c.slab)+n]
	return s
}

// keep copies items into the slab.
func (c *evalCtx) keep(items []Item) []Item {
	out := c.alloc(len(items))
	return append(out, items...)
}

func (c *evalCtx) one(it Item) []Item {
	out := c.alloc(1)
	return append(out, it)
}

func (c *evalCtx) timeNow() time.Time {
	if !c.nowSet {
		if c.env != nil && !c.env.Now.IsZero() {
			c.now = c.env.Now
		} else {
			c.now = time.Now()
		}
		c.nowSet = true
	}
	return c.now
}

// Evaluate evaluates the expression with the node n as input (and as
// %context). The returned slice is the caller's.
func (e *Expression) Evaluate(n *jsontree.Node, env *Env) ([]Item, error) {
	c := e.newCtx(env)
	var input []Item
	if n != nil {
		input = c.one(Item{node: n})
	}
	return e.run(c, input)
}

// EvaluateItems evaluates the expression on an input collection (which is
// also %context and $this). The input is not modified; the returned slice
// is the caller's.
func (e *Expression) EvaluateItems(input []Item, env *Env) ([]Item, error) {
	return e.run(e.newCtx(env), input)
}

func (e *Expression) newCtx(env *Env) *evalCtx {
	c := ctxPool.Get().(*evalCtx)
	// The bound method value c.visit points at c.col, which stays valid.
	*c = evalCtx{env: env, cfg: e.cfg, slab: c.slab[:0], scratch: c.scratch[:0], nodes: c.nodes[:0], calls: c.calls, vars: c.vars[:0], visit: c.visit, memo: c.memo}
	return c
}

func (e *Expression) run(c *evalCtx, input []Item) ([]Item, error) {
	c.this, c.context = input, input
	res, err := e.root(c, input)
	var out []Item
	if err == nil && len(res) > 0 {
		out = make([]Item, len(res))
		copy(out, res)
	}
	release(c)
	return out, err
}

// release returns an evaluation context to the pool.
func release(c *evalCtx) {
	// Drop references into the resource before pooling.
	clear(c.slab)
	clear(c.scratch[:cap(c.scratch)])
	clear(c.nodes[:cap(c.nodes)])
	c.env, c.this, c.context, c.total, c.headItems = nil, nil, nil, nil, nil
	clear(c.vars)
	c.vars = c.vars[:0]
	if cap(c.slab) > 1<<16 {
		c.slab = nil // do not keep a huge arena in the pool
	}
	ctxPool.Put(c)
}

// EvaluateBool evaluates the expression on the node n as a condition, by
// the singleton evaluation of collections: an empty result is false, a
// single boolean is its value, any other single item is true, and a
// collection of several items is an error. It does not allocate for the
// result.
func (e *Expression) EvaluateBool(n *jsontree.Node, env *Env) (bool, error) {
	c := e.newCtx(env)
	var input []Item
	if n != nil {
		input = c.one(Item{node: n})
	}
	c.this, c.context = input, input
	res, err := e.root(c, input)
	var b bool
	if err == nil {
		var ok bool
		b, _, ok = boolOf(res)
		if !ok {
			err = errors.New("fhirpath: expected a single boolean, got a collection")
		}
	}
	release(c)
	return b, err
}

// compiler turns the syntax tree into closures.
type compiler struct {
	src string
	cfg *config
	// focusTypes records the focus types of custom function calls found by
	// the check phase.
	focusTypes map[*callExpr]typeSet
	// head is the call that begins the expression's leftmost chain, or
	// nil; headUsed reports that it is a custom function call with a
	// string literal argument, compiled to return the given head items.
	head     *callExpr
	headUsed bool
	// headWhere is the memoized criteria of a where() call applied to the
	// head call's result, and headWhereCall that call (see HeadWhere).
	headWhere     *argument
	headWhereCall *callExpr
	// memoized are the member names of the memo sites made.
	memoized []string
}

func (cp *compiler) errorf(pos int, format string, args ...any) error {
	l, c := lineCol(cp.src, pos)
	return &EvalError{Line: l, Column: c, Msg: fmt.Sprintf(format, args...)}
}

// rtErr builds a runtime error at a position.
func rtErr(src string, pos int, format string, args ...any) error {
	l, c := lineCol(src, pos)
	return &EvalError{Line: l, Column: c, Msg: fmt.Sprintf(format, args...)}
}

func (cp *compiler) compile(e expr) (evalFn, error) {
	switch e := e.(type) {
	case *literalExpr:
		return cp.literal(e)
	case *identExpr:
		name := e.name
		typeLike := name != "" && name[0] >= 'A' && name[0] <= 'Z'
		jsonNames := cp.cfg.jsonNames
		m := cp.cfg.model
		return func(c *evalCtx, in []Item) ([]Item, error) {
			if typeLike {
				var out []Item
				for _, it := range in {
					if it.node != nil && nodeIsType(m, it.node, name) {
						out = append(out, it)
					}
				}
				if out != nil {
					return c.keep(out), nil
				}
			}
			return navigate(c, in, name, jsonNames), nil
		}, nil
	case *memberExpr:
		x, err := cp.compile(e.x)
		if err != nil {
			return nil, err
		}
		name, jsonNames := e.name, cp.cfg.jsonNames
		return func(c *evalCtx, in []Item) ([]Item, error) {
			focus, err := x(c, in)
			if err != nil || len(focus) == 0 {
				return nil, err
			}
			return navigate(c, focus, name, jsonNames), nil
		}, nil
	case *varExpr:
		switch e.name {
		case "this":
			return func(c *evalCtx, in []Item) ([]Item, error) { return c.this, nil }, nil
		case "index":
			return func(c *evalCtx, in []Item) ([]Item, error) {
				if !c.hasIndex {
					return nil, nil
				}
				return c.one(Item{val: int64(c.index)}), nil
			}, nil
		case "total":
			return func(c *evalCtx, in []Item) ([]Item, error) {
				if !c.hasTotal {
					return nil, nil
				}
				return c.total, nil
			}, nil
		}
		return nil, cp.errorf(e.pos, "unknown variable $%s", e.name)
	case *extExpr:
		return cp.external(e)
	case *indexExpr:
		x, err := cp.compile(e.x)
		if err != nil {
			return nil, err
		}
		idx, err := cp.compile(e.index)
		if err != nil {
			return nil, err
		}
		src, pos := cp.src, e.pos
		return func(c *evalCtx, in []Item) ([]Item, error) {
			focus, err := x(c, in)
			if err != nil {
				return nil, err
			}
			iv, err := idx(c, in)
			if err != nil {
				return nil, err
			}
			if len(iv) == 0 {
				return nil, nil
			}
			n, ok := singletonInt(iv)
			if !ok {
				return nil, rtErr(src, pos, "index must be a single integer")
			}
			if n < 0 || n >= int64(len(focus)) {
				return nil, nil
			}
			return focus[n : n+1 : n+1], nil
		}, nil
	case *unaryExpr:
		x, err := cp.compile(e.x)
		if err != nil {
			return nil, err
		}
		if e.op == "+" {
			return x, nil
		}
		src, pos := cp.src, e.pos
		return func(c *evalCtx, in []Item) ([]Item, error) {
			v, err := x(c, in)
			if err != nil || len(v) == 0 {
				return nil, err
			}
			if len(v) > 1 {
				return nil, rtErr(src, pos, "unary minus needs a single value")
			}
			val, _ := v[0].Value()
			switch n := val.(type) {
			case int64:
				return c.one(Item{val: -n}), nil
			case Decimal:
				return c.one(Item{val: n.Neg()}), nil
			case Quantity:
				return c.one(Item{val: Quantity{Value: n.Value.Neg(), Unit: n.Unit}}), nil
			}
			return nil, rtErr(src, pos, "unary minus needs a number or a quantity")
		}, nil
	case *binaryExpr:
		return cp.binary(e)
	case *typeExpr:
		x, err := cp.compile(e.x)
		if err != nil {
			return nil, err
		}
		ts := e.typ
		m := cp.cfg.model
		src, pos := cp.src, e.pos
		if e.op == "is" {
			return func(c *evalCtx, in []Item) ([]Item, error) {
				v, err := x(c, in)
				if err != nil || len(v) == 0 {
					return nil, err
				}
				if len(v) > 1 {
					return nil, rtErr(src, pos, "\"is\" needs a single item")
				}
				return c.one(Item{val: isType(m, v[0], ts, false)}), nil
			}, nil
		}
		return func(c *evalCtx, in []Item) ([]Item, error) {
			v, err := x(c, in)
			if err != nil || len(v) == 0 {
				return nil, err
			}
			if len(v) > 1 {
				return nil, rtErr(src, pos, "\"as\" needs a single item")
			}
			if isType(m, v[0], ts, true) {
				return v, nil
			}
			return nil, nil
		}, nil
	case *callExpr:
		return cp.call(e)
	}
	return nil, fmt.Errorf("fhirpath: unexpected syntax node %T", e)
}

// navigate returns the children named name of every node in focus.
func navigate(c *evalCtx, focus []Item, name string, jsonNames bool) []Item {
	buf := c.scratch[:0]
	for _, it := range focus {
		if it.node == nil {
			// A System Quantity has the properties value and unit.
			if q, ok := it.val.(Quantity); ok {
				switch name {
				case "value":
					buf = append(buf, Item{val: q.Value})
				case "unit":
					buf = append(buf, Item{val: q.Unit})
				}
			}
			continue
		}
		n := len(buf)
		buf = c.childrenNamed(it.node, name, buf)
		if jsonNames && len(buf) == n {
			buf = jsonMember(it.node, name, buf)
		}
	}
	c.scratch = buf[:0]
	if len(buf) == 0 {
		return nil
	}
	return c.keep(buf)
}

func singletonInt(v []Item) (int64, bool) {
	if len(v) != 1 {
		return 0, false
	}
	x, ok := v[0].Value()
	n, isInt := x.(int64)
	return n, ok && isInt
}

func (cp *compiler) literal(e *literalExpr) (evalFn, error) {
	var v any
	switch e.kind {
	case litEmpty:
		return func(c *evalCtx, in []Item) ([]Item, error) { return nil, nil }, nil
	case litBool:
		v = e.text == "true"
	case litString:
		v = e.text
	case litNumber:
		if !strings.Contains(e.text, ".") {
			var n int64
			ok := true
			for _, d := range e.text {
				if n > (1<<31-1-int64(d-'0'))/10 {
					ok = false
					break
				}
				n = n*10 + int64(d-'0')
			}
			if ok {
				v = n
				break
			}
		}
		d, err := ParseDecimal(e.text)
		if err != nil {
			return nil, cp.errorf(e.pos, "invalid number")
		}
		v = d
	case litDate:
		d, err := ParseDate(e.text)
		if err != nil {
			return nil, cp.errorf(e.pos, "invalid date literal")
		}
		v = d
	case litDateTime:
		d, err := ParseDateTime(strings.TrimSuffix(e.text, "T"))
		if err != nil {
			return nil, cp.errorf(e.pos, "invalid dateTime literal")
		}
		v = d
	case litTime:
		d, err := ParseTime(e.text[1:])
		if err != nil {
			return nil, cp.errorf(e.pos, "invalid time literal")
		}
		v = d
	case litQuantity:
		d, err := ParseDecimal(e.text)
		if err != nil {
			return nil, cp.errorf(e.pos, "invalid quantity")
		}
		v = Quantity{Value: d, Unit: e.unit}
	}
	items := []Item{{val: v}}
	return func(c *evalCtx, in []Item) ([]Item, error) { return items, nil }, nil
}

var constants = map[string]string{
	"ucum":  "http://unitsofmeasure.org",
	"sct":   "http://snomed.info/sct",
	"loinc": "http://loinc.org",
}

func (cp *compiler) external(e *extExpr) (evalFn, error) {
	name := e.name
	if s, ok := constants[name]; ok {
		items := []Item{{val: s}}
		return func(c *evalCtx, in []Item) ([]Item, error) { return items, nil }, nil
	}
	src, pos := cp.src, e.pos
	switch name {
	case "context":
		return func(c *evalCtx, in []Item) ([]Item, error) { return c.context, nil }, nil
	case "resource", "rootResource":
		root := name == "rootResource"
		return func(c *evalCtx, in []Item) ([]Item, error) {
			if c.env != nil {
				if !root && c.env.Resource != nil {
					return c.one(Item{node: c.env.Resource}), nil
				}
				if root && c.env.RootResource != nil {
					return c.one(Item{node: c.env.RootResource}), nil
				}
			}
			if len(c.context) != 1 || c.context[0].node == nil {
				return c.context, nil
			}
			var res *jsontree.Node
			for n := c.context[0].node; n != nil; n = n.Parent {
				if n.Flags&jsontree.FlagResource != 0 || n.Parent == nil {
					res = n
					if !root {
						break
					}
				}
			}
			return c.one(Item{node: res}), nil
		}, nil
	}
	if rest, ok := strings.CutPrefix(name, "ext-"); ok {
		items := []Item{{val: "http://hl7.org/fhir/StructureDefinition/" + rest}}
		return func(c *evalCtx, in []Item) ([]Item, error) { return items, nil }, nil
	}
	if rest, ok := strings.CutPrefix(name, "vs-"); ok {
		items := []Item{{val: "http://hl7.org/fhir/ValueSet/" + rest}}
		return func(c *evalCtx, in []Item) ([]Item, error) { return items, nil }, nil
	}
	return func(c *evalCtx, in []Item) ([]Item, error) {
		for i := len(c.vars) - 1; i >= 0; i-- {
			if c.vars[i].name == name {
				return c.vars[i].items, nil
			}
		}
		if c.env != nil {
			if v, ok := c.env.Vars[name]; ok {
				return v, nil
			}
		}
		return nil, rtErr(src, pos, "undefined external constant %%%s", name)
	}, nil
}

// isSubtype reports whether FHIR type typ is base or derives from it.
func isSubtype(m *model.Model, typ, base string) bool {
	if typ == base {
		return true
	}
	if m != nil {
		return m.IsSubtype(typ, base)
	}
	return false
}

// nodeIsType reports whether node n is of FHIR type base or a subtype.
// Without a model, only the names and the resource flag are known.
func nodeIsType(m *model.Model, n *jsontree.Node, base string) bool {
	if m == nil && (base == "Resource" || base == "DomainResource") {
		return n.Flags&jsontree.FlagResource != 0
	}
	return isSubtype(m, n.Type(), base)
}

// isType implements "is" (and, with exact, "as" and ofType()): FHIR types
// for nodes, System types for values. Complex and resource types match
// their subtypes; with exact, a primitive matches only its own type (a code
// is a string, but as(string) does not convert it).
func isType(m *model.Model, it Item, ts typeSpec, exact bool) bool {
	if it.node != nil {
		if ts.namespace == "System" {
			return false
		}
		if exact && isPrimitiveType(it.node.Type()) {
			return it.node.Type() == ts.name
		}
		return nodeIsType(m, it.node, ts.name)
	}
	if ts.namespace == "FHIR" {
		return false
	}
	st := systemType(it.val)
	return st == ts.name || (ts.name == "Decimal" && st == "Integer" && false)
}
