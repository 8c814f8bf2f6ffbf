package views

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/jsontree"
)

// cexpr is a compiled expression of a view.
type cexpr struct {
	e    *fhirpath.Expression
	elem string
	// src is the expression as written; quotes are the offsets in the
	// compiled text of the quotes added around getReferenceKey's type
	// argument, to map error positions back.
	src      string
	quotes   []int
	rowIndex bool // uses %rowIndex
	// fast is the direct walk of a simple path (fast.go), or nil.
	fast *fastPath
}

// Variables every expression may use besides the view's constants.
var builtinVars = map[string]bool{"rowIndex": true, "resource": true, "rootResource": true, "context": true, "ucum": true, "sct": true, "loinc": true}

// scope is where an expression is evaluated: on the resource, on the items
// of the enclosing forEach/forEachOrNull expressions (chain, their compiled
// texts, outermost first), or below a repeat, where the checker cannot
// follow the types (opaque).
type scope struct {
	resource string
	chain    []string
	opaque   bool
}

// into is the scope of the items of the forEach e.
func (sc scope) into(e *cexpr) scope {
	if sc.opaque {
		return sc
	}
	chain := append(append([]string(nil), sc.chain...), e.e.String())
	return scope{resource: sc.resource, chain: chain}
}

// expr compiles the FHIRPath at x (the JSON value of elem) and checks it
// against the model: unknown elements are errors. An expression inside
// forEach items is checked as (forEach).select((expr)) on the resource.
func (c *compiler) expr(x any, elem string, sc scope) (*cexpr, error) {
	src, ok := x.(string)
	if !ok {
		if x == nil {
			return nil, c.errf(elem, "missing FHIRPath expression")
		}
		return nil, c.errf(elem, "must be a FHIRPath expression (a string)")
	}
	if strings.TrimSpace(src) == "" {
		return nil, c.errf(elem, "empty FHIRPath expression")
	}
	text, quotes, vars, err := prepare(src)
	if err != nil {
		return nil, c.errf(elem, "%v", err)
	}
	ce := &cexpr{elem: elem, src: src, quotes: quotes}
	for _, v := range vars {
		switch {
		case v.name == "rowIndex":
			ce.rowIndex = true
		case builtinVars[v.name], strings.HasPrefix(v.name, "ext-"), strings.HasPrefix(v.name, "vs-"):
		default:
			if _, ok := c.consts[v.name]; !ok {
				l, col := lineColOf(src, v.pos)
				return nil, &Error{View: c.view, Element: elem, Msg: fmt.Sprintf("%d:%d: undefined constant %%%s", l, col, v.name)}
			}
		}
	}
	opts := []fhirpath.Option{fhirpath.WithModel(c.model), fhirpath.WithFunctions(c.funcs...)}
	direct := !sc.opaque && len(sc.chain) == 0
	if direct {
		opts = append(opts, fhirpath.WithContextType(sc.resource))
	}
	e, err := fhirpath.Compile(text, opts...)
	if err != nil {
		err = ce.fixPos(err)
		return nil, &Error{View: c.view, Element: elem, Msg: err.Error(), Err: err}
	}
	ce.e = e
	ce.fast = compileFast(text, c.model)
	c.noteMembers(text)
	if !direct && !sc.opaque {
		if err := c.checkInChain(ce, sc); err != nil {
			return nil, &Error{View: c.view, Element: elem, Msg: err.Error(), Err: err}
		}
	}
	return ce, nil
}

// checkInChain checks an expression evaluated on forEach items: it
// compiles (f1).select((f2).select((expr))) on the resource, so that the
// checker follows the items' types, and maps a check error inside expr back
// to expr's own position.
func (c *compiler) checkInChain(ce *cexpr, sc scope) error {
	var pre strings.Builder
	for _, f := range sc.chain {
		pre.WriteString("(")
		pre.WriteString(f)
		pre.WriteString("\n).select(")
	}
	pre.WriteString("(")
	text := ce.e.String()
	composed := pre.String() + text + "\n)" + strings.Repeat(")", len(sc.chain))
	_, err := fhirpath.Compile(composed, fhirpath.WithModel(c.model), fhirpath.WithFunctions(c.funcs...), fhirpath.WithContextType(sc.resource))
	var ke *fhirpath.CheckError
	if err == nil || !errors.As(err, &ke) {
		return nil // only type problems are new here; the rest compiled above
	}
	off := offsetOf(composed, ke.Line, ke.Column) - pre.Len()
	if off < 0 || off > len(text) {
		return nil // in an enclosing forEach, which reported it itself
	}
	k := *ke
	k.Line, k.Column = lineColOf(text, off)
	return ce.fixPos(&k)
}

type varRef struct {
	name string
	pos  int
}

// prepare scans a FHIRPath expression: it lists the %variables it uses and
// quotes the type argument of getReferenceKey(Patient), which FHIRPath would
// otherwise read as navigation, into getReferenceKey('Patient'). String
// literals, delimited identifiers and comments are skipped.
func prepare(src string) (text string, quotes []int, vars []varRef, err error) {
	var b strings.Builder
	i := 0
	for i < len(src) {
		ch := src[i]
		switch {
		case ch == '\'' || ch == '`':
			j := skipQuoted(src, i)
			if j < 0 {
				return "", nil, nil, fmt.Errorf("%s: unterminated %s", posText(src, i), map[byte]string{'\'': "string", '`': "identifier"}[ch])
			}
			b.WriteString(src[i:j])
			i = j
		case ch == '/' && i+1 < len(src) && src[i+1] == '/':
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			b.WriteString(src[i : i+j])
			i += j
		case ch == '/' && i+1 < len(src) && src[i+1] == '*':
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return "", nil, nil, fmt.Errorf("%s: unterminated comment", posText(src, i))
			}
			b.WriteString(src[i : i+2+j+2])
			i += 2 + j + 2
		case ch == '%':
			start := i
			i++
			var name string
			if i < len(src) && (src[i] == '`' || src[i] == '\'') {
				j := skipQuoted(src, i)
				if j < 0 {
					return "", nil, nil, fmt.Errorf("%s: unterminated variable name", posText(src, start))
				}
				name = src[i+1 : j-1]
				i = j
			} else {
				j := i
				for j < len(src) && isIdent(src[j], j > i) {
					j++
				}
				name = src[i:j]
				i = j
			}
			vars = append(vars, varRef{name: name, pos: start})
			b.WriteString(src[start:i])
		case isIdent(ch, false):
			j := i
			for j < len(src) && isIdent(src[j], true) {
				j++
			}
			word := src[i:j]
			b.WriteString(word)
			i = j
			if word != "getReferenceKey" {
				continue
			}
			// getReferenceKey ( Type )
			k := skipSpace(src, i)
			if k >= len(src) || src[k] != '(' {
				continue
			}
			a := skipSpace(src, k+1)
			e := a
			for e < len(src) && isIdent(src[e], e > a) {
				e++
			}
			if e == a {
				continue
			}
			r := skipSpace(src, e)
			if r >= len(src) || src[r] != ')' {
				continue
			}
			b.WriteString(src[i:a])
			quotes = append(quotes, b.Len())
			b.WriteByte('\'')
			b.WriteString(src[a:e])
			quotes = append(quotes, b.Len())
			b.WriteByte('\'')
			i = e
		default:
			b.WriteByte(ch)
			i++
		}
	}
	return b.String(), quotes, vars, nil
}

func isIdent(c byte, rest bool) bool {
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (rest && c >= '0' && c <= '9')
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipQuoted returns the offset after the quoted text starting at i, or -1.
func skipQuoted(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return -1
}

func posText(src string, off int) string {
	l, c := lineColOf(src, off)
	return fmt.Sprintf("%d:%d", l, c)
}

// lineColOf converts a byte offset to a 1-based line and column (in runes),
// as fhirpath does.
func lineColOf(src string, off int) (int, int) {
	if off > len(src) {
		off = len(src)
	}
	line, col := 1, 1
	for _, r := range src[:off] {
		if r == '\n' {
			line, col = line+1, 1
			continue
		}
		col++
	}
	return line, col
}

// offsetOf converts a 1-based line and rune column to a byte offset.
func offsetOf(src string, line, col int) int {
	l, c := 1, 1
	for i := 0; i < len(src); {
		if l == line && c == col {
			return i
		}
		r, n := utf8.DecodeRuneInString(src[i:])
		if r == '\n' {
			l, c = l+1, 1
		} else {
			c++
		}
		i += n
	}
	return len(src)
}

// fixPos maps the position of a FHIRPath error in the compiled text back to
// the expression as written.
func (ce *cexpr) fixPos(err error) error {
	if len(ce.quotes) == 0 {
		return err
	}
	fix := func(line, col *int) {
		text := ce.rewritten()
		off := offsetOf(text, *line, *col)
		n := 0
		for _, q := range ce.quotes {
			if q < off {
				n++
			}
		}
		*line, *col = lineColOf(ce.src, off-n)
	}
	var se *fhirpath.SyntaxError
	var ke *fhirpath.CheckError
	var ee *fhirpath.EvalError
	switch {
	case errors.As(err, &se):
		c := *se
		fix(&c.Line, &c.Column)
		return &c
	case errors.As(err, &ke):
		c := *ke
		fix(&c.Line, &c.Column)
		return &c
	case errors.As(err, &ee):
		c := *ee
		fix(&c.Line, &c.Column)
		return &c
	}
	return err
}

func (ce *cexpr) rewritten() string {
	if ce.e != nil {
		return ce.e.String()
	}
	t, _, _, _ := prepare(ce.src)
	return t
}

// viewFunctions returns getResourceKey() and getReferenceKey([type]).
func viewFunctions() []*fhirpath.Function {
	return []*fhirpath.Function{
		{Name: "getResourceKey", MinArgs: 0, MaxArgs: 0,
			ResultTypes: func(*fhirpath.CheckInfo) []string { return []string{"id"} },
			Eval:        getResourceKey},
		{Name: "getReferenceKey", MinArgs: 0, MaxArgs: 1,
			Check: func(info *fhirpath.CheckInfo) error {
				if len(info.Args) == 1 && !typed.IsTypeName(info.Literals[0]) {
					return fmt.Errorf("the argument must be a resource type name")
				}
				return nil
			},
			ResultTypes: func(*fhirpath.CheckInfo) []string { return []string{"id"} },
			Eval:        getReferenceKey},
	}
}

// getResourceKey returns the id of each resource in the focus (of the
// resource containing each focus node).
func getResourceKey(cl *fhirpath.Call, focus []fhirpath.Item) ([]fhirpath.Item, error) {
	var out []fhirpath.Item
	for _, it := range focus {
		n := it.Node()
		if n == nil {
			continue
		}
		if !typed.IsResource(n) {
			n = typed.Resource(n)
			if n == nil {
				continue
			}
		}
		if id := n.Get("id"); id != nil && id.Kind == jsontree.String {
			// The id element itself: no conversion, and it compares
			// equal to getReferenceKey()'s string.
			out = append(out, fhirpath.NodeItem(id))
		}
	}
	return out, nil
}

// getReferenceKey returns, for each Reference in the focus whose reference
// is a literal "Type/id" (relative, or absolute ending so, with or without
// "/_history/version"), the id, when Type is the argument (if given).
func getReferenceKey(cl *fhirpath.Call, focus []fhirpath.Item) ([]fhirpath.Item, error) {
	want := ""
	if cl.NumArgs() == 1 {
		s, ok, err := cl.StringArg(0)
		if err != nil {
			return nil, err
		}
		if ok {
			want = s
		}
	}
	var out []fhirpath.Item
	for _, it := range focus {
		n := it.Node()
		if n == nil || n.Kind != jsontree.Object {
			continue
		}
		ref := n.Get("reference")
		if ref == nil || ref.Kind != jsontree.String {
			continue
		}
		typ, id, ok := splitReference(ref.Value())
		if !ok || (want != "" && typ != want) {
			continue
		}
		out = append(out, fhirpath.ValueItem(id))
	}
	return out, nil
}

// splitReference splits a literal reference into its type and id.
func splitReference(s string) (typ, id string, ok bool) {
	if strings.HasPrefix(s, "#") || strings.HasPrefix(s, "urn:") {
		return "", "", false
	}
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	j := strings.LastIndexByte(s, '/')
	if j <= 0 || j == len(s)-1 {
		return "", "", false
	}
	id = s[j+1:]
	rest := s[:j]
	k := strings.LastIndexByte(rest, '/')
	typ = rest[k+1:]
	if !typed.IsTypeName(typ) || typ[0] < 'A' || typ[0] > 'Z' {
		return "", "", false
	}
	return typ, id, true
}
