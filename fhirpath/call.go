package fhirpath

import (
	"regexp"
	"slices"
	"strings"
)

// argMode says how a function argument is passed.
type argMode uint8

const (
	argValue  argMode = iota // evaluated against the enclosing input
	argLambda                // evaluated per focus item ($this)
	argType                  // a type specifier
)

// argument is one compiled argument of a call.
type argument struct {
	fn   evalFn
	typ  typeSpec
	ast  expr
	re   *regexp.Regexp // precompiled literal pattern
	desc bool           // sort(): descending key (-expr)
	// memo is set on the criteria of where(), exists() and all() when
	// its result depends only on one member of $this (see memo.go).
	memo *memoSite
}

// callSite is one compiled call.
type callSite struct {
	src  string
	pos  int
	name string
	args []*argument
}

func (k *callSite) errf(format string, args ...any) error {
	return rtErr(k.src, k.pos, k.name+"(): "+format, args...)
}

// builtinFn implements a built-in function: in is the input of the
// enclosing expression (for value arguments), focus the collection the
// function applies to.
type builtinFn func(c *evalCtx, k *callSite, in, focus []Item) ([]Item, error)

type builtin struct {
	min, max int
	modes    []argMode // per argument; missing entries are argValue
	fn       builtinFn
	// ordered: the function needs an ordered input; unordered: its output
	// has no defined order.
	ordered, unordered bool
	// focusArgs: when called on a focus (x.f()), arguments are evaluated
	// with the focus as input and $this (iif).
	focusArgs   bool
	unsupported string
}

func (b *builtin) mode(i int) argMode {
	if i < len(b.modes) {
		return b.modes[i]
	}
	return argValue
}

// value evaluates value argument i.
func (k *callSite) value(c *evalCtx, i int, in []Item) ([]Item, error) {
	return k.args[i].fn(c, in)
}

// single evaluates argument i to at most one item.
func (k *callSite) single(c *evalCtx, i int, in []Item) (any, bool, error) {
	v, err := k.value(c, i, in)
	if err != nil {
		return nil, false, err
	}
	if len(v) == 0 {
		return nil, false, nil
	}
	if len(v) > 1 {
		return nil, false, k.errf("argument %d must be a single value", i+1)
	}
	x, ok := v[0].Value()
	return x, ok, nil
}

// str evaluates argument i as a string; ok is false when it is empty.
func (k *callSite) str(c *evalCtx, i int, in []Item) (string, bool, error) {
	x, ok, err := k.single(c, i, in)
	if err != nil || !ok {
		return "", false, err
	}
	s, isStr := x.(string)
	if !isStr {
		return "", false, k.errf("argument %d must be a string", i+1)
	}
	return s, true, nil
}

// integer evaluates argument i as an integer; ok is false when empty.
func (k *callSite) integer(c *evalCtx, i int, in []Item) (int64, bool, error) {
	x, ok, err := k.single(c, i, in)
	if err != nil || !ok {
		return 0, false, err
	}
	n, isInt := x.(int64)
	if !isInt {
		return 0, false, k.errf("argument %d must be an integer", i+1)
	}
	return n, true, nil
}

// lambda evaluates arg with $this = it and $index = index.
func (c *evalCtx) lambda(a *argument, it Item, index int) ([]Item, error) {
	saveThis, saveIdx, saveHas, saveVars := c.this, c.index, c.hasIndex, len(c.vars)
	one := c.one(it)
	c.this, c.index, c.hasIndex = one, index, true
	res, err := a.fn(c, one)
	// Variables defined inside the lambda end with it.
	clear(c.vars[saveVars:])
	c.this, c.index, c.hasIndex, c.vars = saveThis, saveIdx, saveHas, c.vars[:saveVars]
	return res, err
}

func (cp *compiler) call(e *callExpr) (evalFn, error) {
	var x evalFn
	if e.x != nil {
		var err error
		if x, err = cp.compile(e.x); err != nil {
			return nil, err
		}
	}
	k := &callSite{src: cp.src, pos: e.pos, name: e.name}
	if b, ok := builtins[e.name]; ok {
		if b.unsupported != "" {
			return nil, cp.errorf(e.pos, "%s() is not supported: %s", e.name, b.unsupported)
		}
		if len(e.args) < b.min || len(e.args) > b.max {
			return nil, cp.arityError(e, b.min, b.max)
		}
		for i, a := range e.args {
			arg := &argument{ast: a}
			switch b.mode(i) {
			case argType:
				ts, ok := typeSpecOf(a)
				if !ok {
					return nil, cp.errorf(a.position(), "%s() expects a type name", e.name)
				}
				arg.typ = ts
			default:
				if e.name == "sort" {
					if u, ok := a.(*unaryExpr); ok && u.op == "-" {
						arg.desc = true
						a = u.x
					}
				}
				fn, err := cp.compile(a)
				if err != nil {
					return nil, err
				}
				arg.fn = fn
				if lit, ok := a.(*literalExpr); ok && lit.kind == litString && (e.name == "matches" || e.name == "replaceMatches" || e.name == "matchesFull") && i == 0 {
					pat := lit.text
					if e.name == "matchesFull" {
						pat = "^(?:" + pat + ")$"
					}
					re, err := compileRegexp(pat)
					if err != nil {
						return nil, cp.errorf(a.position(), "invalid regular expression")
					}
					arg.re = re
				}
			}
			k.args = append(k.args, arg)
		}
		cp.memoize(e, k)
		fn := b.fn
		if x == nil {
			return func(c *evalCtx, in []Item) ([]Item, error) { return fn(c, k, in, in) }, nil
		}
		if b.focusArgs {
			return func(c *evalCtx, in []Item) ([]Item, error) {
				focus, err := x(c, in)
				if err != nil {
					return nil, err
				}
				save := c.this
				c.this = focus
				res, err := fn(c, k, focus, focus)
				c.this = save
				return res, err
			}, nil
		}
		return func(c *evalCtx, in []Item) ([]Item, error) {
			focus, err := x(c, in)
			if err != nil {
				return nil, err
			}
			return fn(c, k, in, focus)
		}, nil
	}
	f, ok := cp.cfg.funcs[e.name]
	if !ok {
		return nil, cp.errorf(e.pos, "unknown function %s()", e.name)
	}
	if len(e.args) < f.MinArgs || len(e.args) > f.MaxArgs {
		return nil, cp.arityError(e, f.MinArgs, f.MaxArgs)
	}
	if f.Check != nil {
		if err := f.Check(cp.checkInfo(e, cp.focusTypes[e])); err != nil {
			return nil, cp.errorf(e.pos, "%s(): %v", e.name, err)
		}
	}
	for _, a := range e.args {
		fn, err := cp.compile(a)
		if err != nil {
			return nil, err
		}
		k.args = append(k.args, &argument{ast: a, fn: fn})
	}
	eval := f.Eval
	fn := func(c *evalCtx, in []Item) ([]Item, error) {
		focus := in
		if x != nil {
			var err error
			if focus, err = x(c, in); err != nil {
				return nil, err
			}
		}
		var cl *Call
		if n := len(c.calls); n > 0 {
			cl, c.calls = c.calls[n-1], c.calls[:n-1]
		} else {
			cl = new(Call)
		}
		*cl = Call{c: c, k: k, in: in}
		res, err := eval(cl, focus)
		*cl = Call{}
		c.calls = append(c.calls, cl)
		return res, err
	}
	if e == cp.head && len(e.args) == 1 {
		if lit, ok := e.args[0].(*literalExpr); ok && lit.kind == litString {
			// The head call: EvaluateWithHead gives its result.
			cp.headUsed = true
			return func(c *evalCtx, in []Item) ([]Item, error) {
				if c.headSet {
					c.headSet = false
					return c.headItems, nil
				}
				return fn(c, in)
			}, nil
		}
	}
	return fn, nil
}

// checkInfo describes a call of a custom function.
func (cp *compiler) checkInfo(e *callExpr, focus typeSet) *CheckInfo {
	info := &CheckInfo{FocusTypes: focus}
	for _, a := range e.args {
		info.Args = append(info.Args, exprString(a))
		lit := ""
		if l, ok := a.(*literalExpr); ok && l.kind == litString {
			lit = l.text
		}
		info.Literals = append(info.Literals, lit)
	}
	return info
}

func (cp *compiler) arityError(e *callExpr, lo, hi int) error {
	switch {
	case lo == hi:
		return cp.errorf(e.pos, "%s() takes %d argument(s), got %d", e.name, lo, len(e.args))
	default:
		return cp.errorf(e.pos, "%s() takes %d to %d arguments, got %d", e.name, lo, hi, len(e.args))
	}
}

// typeSpecOf reads a type specifier written as an expression argument.
func typeSpecOf(e expr) (typeSpec, bool) {
	switch e := e.(type) {
	case *identExpr:
		return typeSpec{name: e.name}, true
	case *memberExpr:
		if id, ok := e.x.(*identExpr); ok {
			return typeSpec{namespace: id.name, name: e.name}, true
		}
	}
	return typeSpec{}, false
}

var namedGroup = regexp.MustCompile(`\(\?<([A-Za-z_][A-Za-z0-9_]*)>`)

// compileRegexp compiles a pattern, accepting the .NET named group form
// (?<name>...).
func compileRegexp(p string) (*regexp.Regexp, error) {
	p = namedGroup.ReplaceAllString(p, "(?P<$1>")
	return regexp.Compile("(?s)" + p)
}

// regexpArg returns the compiled pattern of argument i.
func (k *callSite) regexpArg(c *evalCtx, i int, in []Item, full bool) (*regexp.Regexp, bool, error) {
	if re := k.args[i].re; re != nil {
		return re, true, nil
	}
	s, ok, err := k.str(c, i, in)
	if err != nil || !ok {
		return nil, false, err
	}
	if full {
		s = "^(?:" + s + ")$"
	}
	re, err := compileRegexp(s)
	if err != nil {
		return nil, false, k.errf("invalid regular expression")
	}
	return re, true, nil
}

// dotNetReplacement converts a .NET replacement string to Go's
// regexp.Expand syntax: $1 and $12 become ${1} and ${12} (Go would read
// "$1abc" as a group named "1abc"), ${name} and $$ stay, and any other
// dollar is literal (Go would read "$name" as a group).
func dotNetReplacement(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '$':
			b.WriteString("$$")
			i++
		case i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				b.WriteString("$$")
				continue
			}
			b.WriteString(s[i : i+end+1])
			i += end
		case i+1 < len(s) && isDigit(s[i+1]):
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			b.WriteString("${" + s[i+1:j] + "}")
			i = j - 1
		default:
			b.WriteString("$$")
		}
	}
	return b.String()
}

// distinct removes duplicates keeping the first occurrence.
func distinctItems(c *evalCtx, v []Item) []Item {
	out := c.alloc(len(v))
	for _, it := range v {
		if !contains(out, it) {
			out = append(out, it)
		}
	}
	return out
}

func sortItems(c *evalCtx, k *callSite, focus []Item) ([]Item, error) {
	out := c.keep(focus)
	type keyed struct {
		it   Item
		keys []any
	}
	ks := make([]keyed, len(out))
	for i, it := range out {
		ks[i].it = it
		if len(k.args) == 0 {
			v, _ := it.Value()
			ks[i].keys = []any{v}
			continue
		}
		for _, a := range k.args {
			r, err := c.lambda(a, it, i)
			if err != nil {
				return nil, err
			}
			var v any
			if len(r) == 1 {
				v, _ = r[0].Value()
			}
			ks[i].keys = append(ks[i].keys, v)
		}
	}
	var sortErr error
	slices.SortStableFunc(ks, func(x, y keyed) int {
		for j := range x.keys {
			a, b := x.keys[j], y.keys[j]
			var cmp int
			switch {
			case a == nil && b == nil:
				continue
			case a == nil:
				return -1
			case b == nil:
				return 1
			default:
				r, known, err := compareValues(a, b)
				if err != nil {
					sortErr = k.errf("cannot compare sort keys")
				}
				if known {
					cmp = r
				}
			}
			if len(k.args) > 0 && k.args[j].desc {
				cmp = -cmp
			}
			if cmp != 0 {
				return cmp
			}
		}
		return 0
	})
	if sortErr != nil {
		return nil, sortErr
	}
	for i := range ks {
		out[i] = ks[i].it
	}
	return out, nil
}
