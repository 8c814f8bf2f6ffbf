package fhirpath

import "fmt"

// parser is a precedence-climbing parser over the token slice.
type parser struct {
	src   string
	toks  []token
	i     int
	depth int
}

// maxDepth bounds the nesting of expressions, so that a hostile expression
// cannot exhaust the stack of the parser, checker or evaluator.
const maxDepth = 200

// parse parses a complete FHIRPath expression.
func parse(src string) (expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	e, err := p.expression(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errorf(t, "expected an operator or end of expression, found %s", t.describe())
	}
	return e, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) advance() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) error {
	l, c := lineCol(p.src, t.pos)
	return &SyntaxError{Line: l, Column: c, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) expectOp(op string) (token, error) {
	t := p.peek()
	if t.kind != tokOp || t.text != op {
		return t, p.errorf(t, "expected %q, found %s", op, t.describe())
	}
	return p.advance(), nil
}

// Binary operator precedences; higher binds tighter.
const (
	precImplies = 1 + iota
	precOr
	precAnd
	precMembership
	precEquality
	precInequality
	precUnion
	precType
	precAdditive
	precMultiplicative
)

// binaryOp returns the operator a token stands for in binary position.
func binaryOp(t token) (string, int) {
	switch t.kind {
	case tokOp:
		switch t.text {
		case "*", "/":
			return t.text, precMultiplicative
		case "+", "-", "&":
			return t.text, precAdditive
		case "|":
			return t.text, precUnion
		case "<", ">", "<=", ">=":
			return t.text, precInequality
		case "=", "~", "!=", "!~":
			return t.text, precEquality
		}
	case tokIdent:
		switch t.text {
		case "div", "mod":
			return t.text, precMultiplicative
		case "is", "as":
			return t.text, precType
		case "in", "contains":
			return t.text, precMembership
		case "and":
			return t.text, precAnd
		case "or", "xor":
			return t.text, precOr
		case "implies":
			return t.text, precImplies
		}
	}
	return "", 0
}

func (p *parser) expression(minPrec int) (expr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errorf(p.peek(), "expression nested too deeply")
	}
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		op, prec := binaryOp(t)
		if prec == 0 || prec < minPrec {
			return left, nil
		}
		p.advance()
		if prec == precType {
			ts, err := p.typeSpecifier()
			if err != nil {
				return nil, err
			}
			left = &typeExpr{pos: t.pos, op: op, x: left, typ: ts}
			continue
		}
		right, err := p.expression(prec + 1)
		if err != nil {
			return nil, err
		}
		left = &binaryExpr{pos: t.pos, op: op, l: left, r: right}
	}
}

func (p *parser) unary() (expr, error) {
	t := p.peek()
	if t.kind == tokOp && (t.text == "+" || t.text == "-") {
		p.advance()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxDepth {
			return nil, p.errorf(t, "expression nested too deeply")
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{pos: t.pos, op: t.text, x: x}, nil
	}
	x, err := p.term()
	if err != nil {
		return nil, err
	}
	return p.postfix(x)
}

func (p *parser) postfix(x expr) (expr, error) {
	for {
		t := p.peek()
		if t.kind != tokOp {
			return x, nil
		}
		switch t.text {
		case ".":
			p.advance()
			inv, err := p.invocation(x)
			if err != nil {
				return nil, err
			}
			x = inv
		case "[":
			p.advance()
			idx, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			if _, err := p.expectOp("]"); err != nil {
				return nil, err
			}
			x = &indexExpr{pos: t.pos, x: x, index: idx}
		default:
			return x, nil
		}
	}
}

// identifier accepts an identifier token usable as a name.
func (p *parser) identifier() (token, bool) {
	t := p.peek()
	switch t.kind {
	case tokDelimIdent:
		p.advance()
		return t, true
	case tokIdent:
		switch t.text {
		case "and", "or", "xor", "implies", "div", "mod", "true", "false":
			return t, false
		}
		p.advance()
		return t, true
	}
	return t, false
}

// invocation parses what follows a '.' (x is the target) or starts a term
// (x is nil).
func (p *parser) invocation(x expr) (expr, error) {
	t := p.peek()
	if t.kind == tokDollar {
		p.advance()
		if x != nil {
			return nil, p.errorf(t, "expected an identifier or function after \".\", found %s", t.describe())
		}
		return &varExpr{pos: t.pos, name: t.text}, nil
	}
	id, ok := p.identifier()
	if !ok {
		return nil, p.errorf(id, "expected an identifier or function, found %s", id.describe())
	}
	if n := p.peek(); n.kind == tokOp && n.text == "(" {
		p.advance()
		var args []expr
		if c := p.peek(); !(c.kind == tokOp && c.text == ")") {
			for {
				a, err := p.expression(0)
				if err != nil {
					return nil, err
				}
				args = append(args, a)
				c := p.peek()
				if c.kind == tokOp && c.text == "," {
					p.advance()
					continue
				}
				break
			}
		}
		if _, err := p.expectOp(")"); err != nil {
			return nil, err
		}
		return &callExpr{pos: id.pos, x: x, name: id.text, args: args}, nil
	}
	if x == nil {
		return &identExpr{pos: id.pos, name: id.text}, nil
	}
	return &memberExpr{pos: id.pos, x: x, name: id.text}, nil
}

// calendarUnits are the time-valued quantity keywords.
var calendarUnits = map[string]bool{
	"year": true, "month": true, "week": true, "day": true, "hour": true, "minute": true, "second": true, "millisecond": true,
	"years": true, "months": true, "weeks": true, "days": true, "hours": true, "minutes": true, "seconds": true, "milliseconds": true,
}

func (p *parser) term() (expr, error) {
	t := p.peek()
	switch t.kind {
	case tokNumber:
		p.advance()
		n := p.peek()
		if n.kind == tokString {
			p.advance()
			return &literalExpr{pos: t.pos, kind: litQuantity, text: t.text, unit: n.text}, nil
		}
		if n.kind == tokIdent && calendarUnits[n.text] {
			p.advance()
			return &literalExpr{pos: t.pos, kind: litQuantity, text: t.text, unit: n.text, calendar: true}, nil
		}
		return &literalExpr{pos: t.pos, kind: litNumber, text: t.text}, nil
	case tokString:
		p.advance()
		return &literalExpr{pos: t.pos, kind: litString, text: t.text}, nil
	case tokDate:
		p.advance()
		return &literalExpr{pos: t.pos, kind: litDate, text: t.text}, nil
	case tokDateTime:
		p.advance()
		return &literalExpr{pos: t.pos, kind: litDateTime, text: t.text}, nil
	case tokTime:
		p.advance()
		return &literalExpr{pos: t.pos, kind: litTime, text: t.text}, nil
	case tokPercent:
		p.advance()
		n := p.peek()
		if n.kind == tokIdent || n.kind == tokDelimIdent || n.kind == tokString {
			p.advance()
			return &extExpr{pos: t.pos, name: n.text}, nil
		}
		return nil, p.errorf(n, "expected a constant name after \"%%\", found %s", n.describe())
	case tokIdent:
		if t.text == "true" || t.text == "false" {
			p.advance()
			return &literalExpr{pos: t.pos, kind: litBool, text: t.text}, nil
		}
	case tokOp:
		switch t.text {
		case "(":
			p.advance()
			e, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			if _, err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return e, nil
		case "{":
			p.advance()
			if _, err := p.expectOp("}"); err != nil {
				return nil, err
			}
			return &literalExpr{pos: t.pos, kind: litEmpty}, nil
		}
	}
	if t.kind == tokIdent || t.kind == tokDelimIdent || t.kind == tokDollar {
		return p.invocation(nil)
	}
	return nil, p.errorf(t, "expected an expression, found %s", t.describe())
}

func (p *parser) typeSpecifier() (typeSpec, error) {
	first, ok := p.identifier()
	if !ok {
		return typeSpec{}, p.errorf(first, "expected a type name, found %s", first.describe())
	}
	if n := p.peek(); n.kind == tokOp && n.text == "." {
		save := p.i
		p.advance()
		second, ok := p.identifier()
		if ok {
			return typeSpec{namespace: first.text, name: second.text}, nil
		}
		p.i = save
	}
	return typeSpec{name: first.text}, nil
}
