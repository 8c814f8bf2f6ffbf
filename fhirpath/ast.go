package fhirpath

import (
	"strings"
)

// expr is a node of the syntax tree. pos is the 0-based byte offset of the
// node's first token (for a binary operator: of the operator).
type expr interface {
	position() int
	write(b *strings.Builder)
}

// litKind is the kind of a literal.
type litKind uint8

const (
	litEmpty litKind = iota // {}
	litBool
	litString
	litNumber
	litDate
	litDateTime
	litTime
	litQuantity
)

type literalExpr struct {
	pos  int
	kind litKind
	text string // the literal's text: number digits, decoded string, date text without '@'
	unit string // for quantities: the unit (a calendar keyword or UCUM text)
	// calendar is true when unit was written as a calendar keyword (4 days)
	// rather than a string ('d').
	calendar bool
}

// identExpr is an identifier used as a term: a member of the input (or a
// type name such as Patient).
type identExpr struct {
	pos  int
	name string
}

// memberExpr is x.name.
type memberExpr struct {
	pos  int
	x    expr
	name string
}

// callExpr is a function call, x.name(args) or name(args) when x is nil.
type callExpr struct {
	pos  int
	x    expr
	name string
	args []expr
}

// varExpr is $this, $index or $total.
type varExpr struct {
	pos  int
	name string
}

// extExpr is an external constant %name.
type extExpr struct {
	pos  int
	name string
}

// indexExpr is x[index].
type indexExpr struct {
	pos      int
	x, index expr
}

// unaryExpr is +x or -x.
type unaryExpr struct {
	pos int
	op  string
	x   expr
}

// binaryExpr is l op r.
type binaryExpr struct {
	pos  int
	op   string
	l, r expr
}

// typeExpr is x is T or x as T.
type typeExpr struct {
	pos int
	op  string
	x   expr
	typ typeSpec
}

// typeSpec is a (possibly qualified) type name: Patient, FHIR.Patient,
// System.String.
type typeSpec struct {
	namespace string
	name      string
}

func (t typeSpec) String() string {
	if t.namespace == "" {
		return quoteIdent(t.name)
	}
	return quoteIdent(t.namespace) + "." + quoteIdent(t.name)
}

func (e *literalExpr) position() int { return e.pos }
func (e *identExpr) position() int   { return e.pos }
func (e *memberExpr) position() int  { return e.pos }
func (e *callExpr) position() int    { return e.pos }
func (e *varExpr) position() int     { return e.pos }
func (e *extExpr) position() int     { return e.pos }
func (e *indexExpr) position() int   { return e.pos }
func (e *unaryExpr) position() int   { return e.pos }
func (e *binaryExpr) position() int  { return e.pos }
func (e *typeExpr) position() int    { return e.pos }

// keywords cannot be plain identifiers (or are printed delimited to stay
// unambiguous).
var keywords = map[string]bool{
	"and": true, "or": true, "xor": true, "implies": true, "div": true, "mod": true,
	"is": true, "as": true, "in": true, "contains": true, "true": true, "false": true,
}

// quoteIdent prints an identifier, delimiting it with backticks when it is
// not a plain identifier.
func quoteIdent(s string) string {
	plain := s != "" && isIdentStart(s[0]) && !keywords[s]
	for i := 1; plain && i < len(s); i++ {
		plain = isIdentPart(s[i])
	}
	if plain {
		return s
	}
	return quote(s, '`')
}

// quote prints s between q quotes with FHIRPath escapes.
func quote(s string, q byte) string {
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch r {
		case rune(q), '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				const hex = "0123456789abcdef"
				b.WriteString(`\u00`)
				b.WriteByte(hex[r>>4])
				b.WriteByte(hex[r&15])
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

func (e *literalExpr) write(b *strings.Builder) {
	switch e.kind {
	case litEmpty:
		b.WriteString("{}")
	case litBool, litNumber:
		b.WriteString(e.text)
	case litString:
		b.WriteString(quote(e.text, '\''))
	case litDate, litDateTime, litTime:
		b.WriteByte('@')
		b.WriteString(e.text)
	case litQuantity:
		b.WriteString(e.text)
		b.WriteByte(' ')
		if e.calendar {
			b.WriteString(e.unit)
		} else {
			b.WriteString(quote(e.unit, '\''))
		}
	}
}

func (e *identExpr) write(b *strings.Builder) { b.WriteString(quoteIdent(e.name)) }

func (e *memberExpr) write(b *strings.Builder) {
	e.x.write(b)
	b.WriteByte('.')
	b.WriteString(quoteIdent(e.name))
}

func (e *callExpr) write(b *strings.Builder) {
	if e.x != nil {
		e.x.write(b)
		b.WriteByte('.')
	}
	switch e.name {
	case "is", "as", "contains", "in":
		b.WriteString(e.name) // usable as function names without quotes
	default:
		b.WriteString(quoteIdent(e.name))
	}
	b.WriteByte('(')
	for i, a := range e.args {
		if i > 0 {
			b.WriteString(", ")
		}
		a.write(b)
	}
	b.WriteByte(')')
}

func (e *varExpr) write(b *strings.Builder) {
	b.WriteByte('$')
	b.WriteString(e.name)
}

func (e *extExpr) write(b *strings.Builder) {
	b.WriteByte('%')
	b.WriteString(quoteIdent(e.name))
}

func (e *indexExpr) write(b *strings.Builder) {
	e.x.write(b)
	b.WriteByte('[')
	e.index.write(b)
	b.WriteByte(']')
}

func (e *unaryExpr) write(b *strings.Builder) {
	// A chain of signs is parenthesized once, "(+-x)": a pair of
	// parentheses per sign would nest the text twice as deep as the
	// expression, past the parser's bound for a chain within it.
	b.WriteByte('(')
	b.WriteString(e.op)
	x := e.x
	for {
		u, ok := x.(*unaryExpr)
		if !ok {
			break
		}
		b.WriteString(u.op)
		x = u.x
	}
	x.write(b)
	b.WriteByte(')')
}

func (e *binaryExpr) write(b *strings.Builder) { writeChain(b, e) }

func (e *typeExpr) write(b *strings.Builder) { writeChain(b, e) }

// writeChain writes a binary or type expression in one pair of
// parentheses together with the operations of the same precedence on its
// left, "(a - b - c)", as the parser reads such a chain left to right:
// parentheses for each operation would nest the text as deep as the chain
// is long, past the parser's bound on nesting.
func writeChain(b *strings.Builder, e expr) {
	prec := chainPrec(e)
	var spine []expr // e, then the operations on its left, outermost first
	for x := e; chainPrec(x) == prec; {
		spine = append(spine, x)
		switch v := x.(type) {
		case *binaryExpr:
			x = v.l
		case *typeExpr:
			x = v.x
		}
		if chainPrec(x) != prec {
			b.WriteByte('(')
			x.write(b)
			break
		}
	}
	for i := len(spine) - 1; i >= 0; i-- {
		b.WriteByte(' ')
		switch v := spine[i].(type) {
		case *binaryExpr:
			b.WriteString(v.op)
			b.WriteByte(' ')
			v.r.write(b)
		case *typeExpr:
			b.WriteString(v.op)
			b.WriteByte(' ')
			b.WriteString(v.typ.String())
		}
	}
	b.WriteByte(')')
}

// chainPrec returns the precedence of a binary or type expression's
// operator, or 0 for any other expression.
func chainPrec(e expr) int {
	switch v := e.(type) {
	case *binaryExpr:
		if _, p := binaryOp(token{kind: tokOp, text: v.op}); p != 0 {
			return p
		}
		_, p := binaryOp(token{kind: tokIdent, text: v.op})
		return p
	case *typeExpr:
		return precType
	}
	return 0
}

// exprString prints e in a canonical, fully parenthesized form that parses
// back to the same tree.
func exprString(e expr) string {
	var b strings.Builder
	e.write(&b)
	return b.String()
}
