package fhirpath

import (
	"errors"

	"fhirdeid/jsontree"
)

// The head call of an expression is the custom function call that begins
// it, the first step of its leftmost chain: nodesByType('Coding') in
// nodesByType('Coding').where(system = 'http://loinc.org').display. A
// caller that already knows what that call returns (the FHIR anonymizer
// indexes a resource's nodes by type once for all its rules) evaluates the
// rest of the expression with EvaluateWithHead, without the walk of the
// resource the call would make.

// headCall returns the call that begins the leftmost chain of e, or nil
// when the chain begins with something else.
func headCall(e expr) *callExpr {
	for {
		switch x := e.(type) {
		case *memberExpr:
			e = x.x
		case *indexExpr:
			e = x.x
		case *callExpr:
			if x.x == nil {
				return x
			}
			e = x.x
		default:
			return nil
		}
	}
}

// HeadCall reports the custom function call that begins the expression
// with a single string literal argument ("nodesByType", "Coding"), and
// ok=false when the expression begins otherwise.
func (e *Expression) HeadCall() (name, arg string, ok bool) {
	return e.headName, e.headArg, e.headName != ""
}

var errNoHead = errors.New("fhirpath: the expression does not begin with a custom function call")

// EvaluateWithHead is Evaluate on the node n, except that the head call
// (see HeadCall) is not evaluated: it returns the nodes head instead. They
// must be what the call would return on n, in the same order, for the
// result to be Evaluate's. It returns an error if the expression has no
// head call.
func (e *Expression) EvaluateWithHead(n *jsontree.Node, head []*jsontree.Node, env *Env) ([]Item, error) {
	if e.headName == "" || n == nil {
		return nil, errNoHead
	}
	c := e.newCtx(env)
	input := c.one(Item{node: n})
	items := c.alloc(len(head))
	for _, h := range head {
		items = append(items, Item{node: h})
	}
	c.headItems, c.headSet = items, true
	return e.run(c, input)
}

// orLeaf is an operand of a chain of "or", and the position of the "or"
// it is an operand of (for the error about a non-boolean operand).
type orLeaf struct {
	e   expr
	pos int
}

// flattenOr appends the operands of the chain of "or" operators e (any
// nesting: "or" is associative) in evaluation order.
func flattenOr(e expr, pos int, out []orLeaf) []orLeaf {
	if b, ok := e.(*binaryExpr); ok && b.op == "or" {
		out = flattenOr(b.l, b.pos, out)
		return flattenOr(b.r, b.pos, out)
	}
	return append(out, orLeaf{e, pos})
}

// pathOnly reports whether e only navigates from the input: a chain of
// member names. Its evaluation can neither fail nor differ from one
// evaluation to the next.
func pathOnly(e expr) bool {
	for {
		switch x := e.(type) {
		case *identExpr:
			return true
		case *memberExpr:
			e = x.x
		default:
			return false
		}
	}
}

// equalsString returns the path and the string of an operand "path =
// 'text'" whose path only navigates (pathOnly), and ok=false for any
// other operand.
func equalsString(e expr) (path expr, text string, ok bool) {
	b, isBin := e.(*binaryExpr)
	if !isBin || b.op != "=" || !pathOnly(b.l) {
		return nil, "", false
	}
	lit, isLit := b.r.(*literalExpr)
	if !isLit || lit.kind != litString {
		return nil, "", false
	}
	return b.l, lit.text, true
}

// orChain compiles a chain of "or" whose operands include consecutive
// comparisons of one path with string literals (system = 'a' or system = 'b'
// or ...): each run of them evaluates the path once and looks its value up
// in a set, instead of navigating and comparing once per literal. The
// result, the order of evaluation and the errors are those of the nested
// "or" operators: "or" is associative in FHIRPath's three-valued logic, the
// operands are evaluated from left to right until one is true, and the
// comparisons of a run cannot fail. ok is false when there is no run of
// two or more such comparisons.
func (cp *compiler) orChain(e *binaryExpr) (fn evalFn, ok bool, err error) {
	leaves := flattenOr(e, e.pos, nil)
	type operand struct {
		fn  evalFn
		pos int
	}
	var ops []operand
	grouped := false
	for i := 0; i < len(leaves); {
		path, _, isEq := equalsString(leaves[i].e)
		j := i + 1
		if isEq {
			key := exprString(path)
			for j < len(leaves) {
				p, _, ok := equalsString(leaves[j].e)
				if !ok || exprString(p) != key {
					break
				}
				j++
			}
		}
		if j-i < 2 {
			f, err := cp.compile(leaves[i].e)
			if err != nil {
				return nil, false, err
			}
			ops = append(ops, operand{f, leaves[i].pos})
			i++
			continue
		}
		f, err := cp.compile(path)
		if err != nil {
			return nil, false, err
		}
		lits := make([][]Item, 0, j-i)
		set := make(map[string]struct{}, j-i)
		for _, l := range leaves[i:j] {
			_, text, _ := equalsString(l.e)
			lits = append(lits, []Item{{val: text}})
			set[text] = struct{}{}
		}
		ops = append(ops, operand{equalsAny(f, lits, set, cp.src), leaves[i].pos})
		grouped = true
		i = j
	}
	if !grouped {
		return nil, false, nil
	}
	src := cp.src
	return func(c *evalCtx, in []Item) ([]Item, error) {
		unknown := false
		for _, o := range ops {
			v, err := o.fn(c, in)
			if err != nil {
				return nil, err
			}
			b, known, ok := boolOf(v)
			if !ok {
				return nil, rtErr(src, o.pos, "operand of %q must be a single boolean", "or")
			}
			if known && b {
				return trueItems, nil
			}
			if !known {
				unknown = true
			}
		}
		if unknown {
			return nil, nil
		}
		return falseItems, nil
	}, true, nil
}

// equalsAny evaluates "path = lits[0] or path = lits[1] or ...", the path
// once. A single string value is looked up in set, the strings of lits;
// anything else is compared with each literal as "=" does.
func equalsAny(path evalFn, lits [][]Item, set map[string]struct{}, src string) evalFn {
	return func(c *evalCtx, in []Item) ([]Item, error) {
		a, err := path(c, in)
		if err != nil {
			return nil, err
		}
		if len(a) == 1 {
			if s, ok := stringOf(a[0]); ok {
				if _, hit := set[s]; hit {
					return trueItems, nil
				}
				return falseItems, nil
			}
		}
		unknown := false
		for _, lit := range lits {
			v, err := binaryOp2(c, src, 0, "=", a, lit)
			if err != nil {
				return nil, err
			}
			b, known, _ := boolOf(v)
			if known && b {
				return trueItems, nil
			}
			if !known {
				unknown = true
			}
		}
		if unknown {
			return nil, nil
		}
		return falseItems, nil
	}
}

// HeadWhere reports, for an expression of the form
// head.where(criteria).name, whose head call is a custom function call (see
// HeadCall) and whose criteria depends on nothing but the elements of one
// member of $this (the criteria memo's condition, see memo.go), that
// member and the name; ok is false for any other expression. Such an
// expression finds, for each item the head call returns, that item's
// children called name when MatchHeadWhere is true for it: a caller that
// walks the head call's result itself can select the items one at a time.
func (e *Expression) HeadWhere() (member, name string, ok bool) {
	if e.where == nil {
		return "", "", false
	}
	return e.where.memo.name, e.whereTail, true
}

// MatchHeadWhere evaluates the criteria of HeadWhere on n, an item of the
// head call's result, as where() would. ok is false when where() would
// fail on it (an error, a result that is not a single boolean), or when
// the expression has no such criteria: the caller then evaluates the whole
// expression instead, which reports the error.
func (e *Expression) MatchHeadWhere(n *jsontree.Node, env *Env) (match, ok bool) {
	if e.where == nil || n == nil {
		return false, false
	}
	c := e.newCtx(env)
	match, ok, err := c.criteria(e.where, Item{node: n}, 0)
	release(c)
	return match, ok && err == nil
}
