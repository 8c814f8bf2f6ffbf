package views

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"fhirdeid/fhir/model"
	"fhirdeid/fhirpath"
)

// View is a compiled ViewDefinition. It is immutable and safe for
// concurrent use; each goroutine evaluates it with its own Runner.
type View struct {
	// Name is the view's name: its "name", or the name given to Parse when
	// it has none.
	Name string
	// Resource is the FHIR resource type the view applies to.
	Resource string
	// Columns are the output columns, in the specification's order.
	Columns []Column

	where  []*cexpr
	root   *selectNode
	consts map[string][]fhirpath.Item
	// members are the names an expression of the view may read at the
	// resource's top level (see Members); nil when it cannot be told.
	members map[string]bool
}

// Column is one output column.
type Column struct {
	Name string
	// Type is the column's declared FHIR type ("string", "dateTime",
	// "Coding"...), "" when the view does not set one.
	Type        string
	Kind        Kind
	Collection  bool
	Description string
	// SQLType is the column's "ansi/type" tag when it asks for a native
	// date or timestamp: SQLDate, SQLTimestamp or SQLTimestampTZ ("" for
	// none or another SQL type, which writers do not act on). Values then
	// must have the precision of that type (see Value).
	SQLType string
}

// The SQL types of an "ansi/type" tag that typed writers (Parquet) store
// natively. Without one, dates, dateTimes and instants are text, as the
// SQL on FHIR default type mapping says for date and dateTime: FHIR allows
// partial precision ("2020", "2020-02"), and de-identification
// generalizes dates, dateTimes and even instants to a year.
const (
	SQLDate        = "DATE"
	SQLTimestamp   = "TIMESTAMP"
	SQLTimestampTZ = "TIMESTAMP WITH TIME ZONE"
)

// Error is a problem in a view: invalid at Parse, or raised while
// evaluating it. It names the view, the element of the ViewDefinition
// ("select[0].column[2].path") and, for FHIRPath problems, the line and
// column in the expression; never a value of a resource.
type Error struct {
	View    string
	Element string
	// Resource is "Type/id" of the resource being evaluated, for runtime
	// errors.
	Resource string
	Msg      string
	// Err is the underlying FHIRPath error, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("view ")
	b.WriteString(e.View)
	if e.Element != "" {
		b.WriteString(": ")
		b.WriteString(e.Element)
	}
	if e.Resource != "" {
		b.WriteString(" (on ")
		b.WriteString(e.Resource)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

type iterMode uint8

const (
	iterNone iterMode = iota
	iterForEach
	iterForEachOrNull
	iterRepeat
)

type selectNode struct {
	mode     iterMode
	iter     *cexpr
	repeat   []*cexpr
	cols     []*colNode
	children []*selectNode
	union    []*selectNode
	slots    []int // every output slot of this subtree
}

type colNode struct {
	slot int
	expr *cexpr
	col  Column
}

// MaxViewSize bounds the size of a ViewDefinition file.
const MaxViewSize = 4 << 20

// Load reads and parses a ViewDefinition; name names it in errors when it
// has no name of its own.
func Load(r io.Reader, name string) (*View, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxViewSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxViewSize {
		return nil, &Error{View: name, Msg: fmt.Sprintf("larger than %d bytes", MaxViewSize)}
	}
	return Parse(data, name)
}

var sqlName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// Keys allowed in a ViewDefinition (CanonicalResource and its own).
var viewKeys = keySet("resourceType id meta implicitRules language text contained extension modifierExtension " +
	"url identifier version versionAlgorithmString versionAlgorithmCoding name title status experimental date " +
	"publisher contact description useContext jurisdiction purpose copyright copyrightLabel approvalDate " +
	"lastReviewDate effectivePeriod topic author editor reviewer endorser relatedArtifact " +
	"resource profile fhirVersion constant select where")
var selectKeys = keySet("id extension modifierExtension column select forEach forEachOrNull repeat unionAll")
var columnKeys = keySet("id extension modifierExtension path name description collection type tag")
var whereKeys = keySet("id extension modifierExtension path description")
var constantKeys = keySet("id extension modifierExtension name")
var tagKeys = keySet("id extension modifierExtension name value")

// The value[x] types a constant may have.
var constantTypes = keySet("Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Integer64 Oid String PositiveInt Time UnsignedInt Uri Url Uuid")

func keySet(s string) map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(s) {
		m[k] = true
	}
	return m
}

// compiler holds the state of Parse.
type compiler struct {
	view   string
	model  *model.Model
	consts map[string][]fhirpath.Item
	funcs  []*fhirpath.Function
	// members collects the identifiers of the expressions; allMembers is
	// set by one that may read members it does not name.
	members    map[string]bool
	allMembers bool
}

func (c *compiler) errf(elem, format string, args ...any) error {
	return &Error{View: c.view, Element: elem, Msg: fmt.Sprintf(format, args...)}
}

// Parse parses, validates and compiles a ViewDefinition. name names the
// view in errors and is its Name when the definition has none.
func Parse(data []byte, name string) (*View, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, &Error{View: name, Msg: "not valid JSON: " + jsonErrMsg(err)}
	}
	if dec.More() {
		return nil, &Error{View: name, Msg: "not valid JSON: data after the ViewDefinition"}
	}
	return Compile(doc, name)
}

// jsonErrMsg keeps the position of a JSON error but not the text around
// it.
func jsonErrMsg(err error) string {
	if se, ok := err.(*json.SyntaxError); ok {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if _, ok := err.(*json.UnmarshalTypeError); ok {
		return "unexpected JSON type"
	}
	return "malformed"
}

// Compile compiles a ViewDefinition already decoded from JSON (with
// json.Decoder.UseNumber, so that decimals keep their text).
func Compile(doc any, name string) (*View, error) {
	c := &compiler{view: name, model: model.Get(model.R4)}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, c.errf("", "a ViewDefinition must be a JSON object")
	}
	if err := checkKeys(c, m, viewKeys, ""); err != nil {
		return nil, err
	}
	if vn, ok := m["name"]; ok {
		s, ok := vn.(string)
		if !ok || !sqlName.MatchString(s) {
			return nil, c.errf("name", "must be a string of letters, digits and underscores starting with a letter")
		}
		c.view = s
	}
	v := &View{Name: c.view}
	if rt, ok := m["resourceType"]; ok && rt != "ViewDefinition" {
		return nil, c.errf("resourceType", `must be "ViewDefinition"`)
	}
	res, ok := m["resource"].(string)
	if !ok {
		if _, present := m["resource"]; present {
			return nil, c.errf("resource", "must be a string")
		}
		return nil, c.errf("resource", "missing: a view must name the resource type it applies to")
	}
	if !c.model.IsResource(res) {
		return nil, c.errf("resource", "%q is not an R4 resource type", res)
	}
	v.Resource = res
	if err := c.constants(m["constant"]); err != nil {
		return nil, err
	}
	v.consts = c.consts
	c.funcs = viewFunctions()

	// where
	if w, ok := m["where"]; ok {
		list, ok := w.([]any)
		if !ok {
			return nil, c.errf("where", "must be an array")
		}
		for i, x := range list {
			elem := fmt.Sprintf("where[%d]", i)
			wm, ok := x.(map[string]any)
			if !ok {
				return nil, c.errf(elem, "must be an object")
			}
			if err := checkKeys(c, wm, whereKeys, elem); err != nil {
				return nil, err
			}
			if d, ok := wm["description"]; ok {
				if _, ok := d.(string); !ok {
					return nil, c.errf(elem+".description", "must be a string")
				}
			}
			e, err := c.expr(wm["path"], elem+".path", scope{resource: res})
			if err != nil {
				return nil, err
			}
			v.where = append(v.where, e)
		}
	}

	// select: the view is an implicit select whose children are the
	// listed selects.
	sel, ok := m["select"]
	if !ok {
		return nil, c.errf("select", "missing: a view needs at least one select")
	}
	list, ok := sel.([]any)
	if !ok || len(list) == 0 {
		return nil, c.errf("select", "must be a non-empty array")
	}
	root := &selectNode{}
	var groups []*colGroup
	for i, x := range list {
		child, g, err := c.selectNode(x, fmt.Sprintf("select[%d]", i), scope{resource: res})
		if err != nil {
			return nil, err
		}
		root.children = append(root.children, child)
		groups = append(groups, g...)
	}
	seen := map[string]bool{}
	for i, g := range groups {
		if seen[g.col.Name] {
			return nil, c.errf(g.elem+".name", "column name %q is used twice", g.col.Name)
		}
		seen[g.col.Name] = true
		for _, r := range g.refs {
			*r = i
		}
		v.Columns = append(v.Columns, g.col)
	}
	finishSlots(root)
	v.root = root
	v.members = c.members
	for _, col := range v.Columns {
		// A complex or untyped column may hold the resource itself as
		// JSON, which must not lose members.
		if col.Kind == KindJSON || col.Kind == KindAny {
			c.allMembers = true
		}
	}
	if c.allMembers {
		v.members = nil
	}
	return v, nil
}

// finishSlots records each select's subtree slots.
func finishSlots(s *selectNode) []int {
	var slots []int
	for _, c := range s.cols {
		slots = append(slots, c.slot)
	}
	for _, ch := range s.children {
		slots = append(slots, finishSlots(ch)...)
	}
	for _, u := range s.union {
		slots = append(slots, finishSlots(u)...)
	}
	sort.Ints(slots)
	s.slots = compactInts(slots)
	return s.slots
}

func compactInts(s []int) []int {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func checkKeys(c *compiler, m map[string]any, allowed map[string]bool, elem string) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !allowed[k] {
			if elem == "" {
				return c.errf(k, "unknown key")
			}
			return c.errf(elem+"."+k, "unknown key")
		}
	}
	return nil
}

// colGroup is an output column with the slot references of every column
// node that fills it (unionAll branches share their columns).
type colGroup struct {
	col  Column
	elem string
	refs []*int
}

func (c *compiler) selectNode(x any, elem string, sc scope) (*selectNode, []*colGroup, error) {
	m, ok := x.(map[string]any)
	if !ok {
		return nil, nil, c.errf(elem, "must be an object")
	}
	if err := checkKeys(c, m, selectKeys, elem); err != nil {
		return nil, nil, err
	}
	s := &selectNode{}
	n := 0
	for _, k := range []string{"forEach", "forEachOrNull", "repeat"} {
		if _, ok := m[k]; ok {
			n++
		}
	}
	if n > 1 {
		return nil, nil, c.errf(elem, "forEach, forEachOrNull and repeat cannot be used together")
	}
	inner := sc
	switch {
	case hasKey(m, "forEach"):
		s.mode = iterForEach
		e, err := c.expr(m["forEach"], elem+".forEach", sc)
		if err != nil {
			return nil, nil, err
		}
		s.iter, inner = e, sc.into(e)
	case hasKey(m, "forEachOrNull"):
		s.mode = iterForEachOrNull
		e, err := c.expr(m["forEachOrNull"], elem+".forEachOrNull", sc)
		if err != nil {
			return nil, nil, err
		}
		s.iter, inner = e, sc.into(e)
	case hasKey(m, "repeat"):
		s.mode = iterRepeat
		list, ok := m["repeat"].([]any)
		if !ok || len(list) == 0 {
			return nil, nil, c.errf(elem+".repeat", "must be a non-empty array of FHIRPath expressions")
		}
		for i, p := range list {
			// Later levels are evaluated on the results: not checked.
			e, err := c.expr(p, fmt.Sprintf("%s.repeat[%d]", elem, i), scope{resource: sc.resource, opaque: true})
			if err != nil {
				return nil, nil, err
			}
			s.repeat = append(s.repeat, e)
		}
		inner = scope{resource: sc.resource, opaque: true}
	}
	var groups []*colGroup
	if cols, ok := m["column"]; ok {
		list, ok := cols.([]any)
		if !ok {
			return nil, nil, c.errf(elem+".column", "must be an array")
		}
		for i, x := range list {
			ce := fmt.Sprintf("%s.column[%d]", elem, i)
			cn, err := c.column(x, ce, inner)
			if err != nil {
				return nil, nil, err
			}
			s.cols = append(s.cols, cn)
			groups = append(groups, &colGroup{col: cn.col, elem: ce, refs: []*int{&cn.slot}})
		}
	}
	if sub, ok := m["select"]; ok {
		list, ok := sub.([]any)
		if !ok {
			return nil, nil, c.errf(elem+".select", "must be an array")
		}
		for i, x := range list {
			child, g, err := c.selectNode(x, fmt.Sprintf("%s.select[%d]", elem, i), inner)
			if err != nil {
				return nil, nil, err
			}
			s.children = append(s.children, child)
			groups = append(groups, g...)
		}
	}
	if un, ok := m["unionAll"]; ok {
		list, ok := un.([]any)
		if !ok || len(list) == 0 {
			return nil, nil, c.errf(elem+".unionAll", "must be a non-empty array")
		}
		var first []*colGroup
		for i, x := range list {
			ue := fmt.Sprintf("%s.unionAll[%d]", elem, i)
			branch, g, err := c.selectNode(x, ue, inner)
			if err != nil {
				return nil, nil, err
			}
			s.union = append(s.union, branch)
			if i == 0 {
				first = g
				continue
			}
			if len(g) != len(first) {
				return nil, nil, c.errf(ue, "has %d columns, unionAll[0] has %d: the branches of a unionAll must have the same columns", len(g), len(first))
			}
			for j := range g {
				a, b := first[j].col, g[j].col
				if a.Name != b.Name {
					return nil, nil, c.errf(g[j].elem, "column %q where unionAll[0] has %q: the branches of a unionAll must have the same columns in the same order", b.Name, a.Name)
				}
				if a.Kind != b.Kind || a.Collection != b.Collection {
					return nil, nil, c.errf(g[j].elem, "column %q has another type than in unionAll[0]", b.Name)
				}
				first[j].refs = append(first[j].refs, g[j].refs...)
			}
		}
		groups = append(groups, first...)
	}
	return s, groups, nil
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

func (c *compiler) column(x any, elem string, sc scope) (*colNode, error) {
	m, ok := x.(map[string]any)
	if !ok {
		return nil, c.errf(elem, "must be an object")
	}
	if err := checkKeys(c, m, columnKeys, elem); err != nil {
		return nil, err
	}
	name, ok := m["name"].(string)
	if !ok {
		return nil, c.errf(elem+".name", "missing or not a string")
	}
	if !sqlName.MatchString(name) {
		return nil, c.errf(elem+".name", "%q is not a valid column name (letters, digits and underscores, starting with a letter)", name)
	}
	col := Column{Name: name}
	if t, ok := m["type"]; ok {
		s, ok := t.(string)
		if !ok || s == "" {
			return nil, c.errf(elem+".type", "must be a non-empty string")
		}
		col.Type = strings.TrimPrefix(s, "http://hl7.org/fhir/StructureDefinition/")
		col.Kind = kindOfType(col.Type)
		if col.Kind == KindJSON && c.model.Type(col.Type) == nil {
			return nil, c.errf(elem+".type", "unknown FHIR type %q", col.Type)
		}
	}
	if cl, ok := m["collection"]; ok {
		b, ok := cl.(bool)
		if !ok {
			return nil, c.errf(elem+".collection", "must be true or false")
		}
		col.Collection = b
	}
	if d, ok := m["description"]; ok {
		s, ok := d.(string)
		if !ok {
			return nil, c.errf(elem+".description", "must be a string")
		}
		col.Description = s
	}
	if tags, ok := m["tag"]; ok {
		list, ok := tags.([]any)
		if !ok {
			return nil, c.errf(elem+".tag", "must be an array")
		}
		for i, t := range list {
			te := fmt.Sprintf("%s.tag[%d]", elem, i)
			tm, ok := t.(map[string]any)
			if !ok {
				return nil, c.errf(te, "must be an object")
			}
			if err := checkKeys(c, tm, tagKeys, te); err != nil {
				return nil, err
			}
			name, ok1 := tm["name"].(string)
			value, ok2 := tm["value"].(string)
			if !ok1 || !ok2 {
				return nil, c.errf(te, "must have a name and a value (strings)")
			}
			if name != "ansi/type" {
				continue
			}
			sqlType, err := ansiTemporal(value, col)
			if err != nil {
				return nil, c.errf(te+".value", "%v", err)
			}
			col.SQLType = sqlType
		}
	}
	e, err := c.expr(m["path"], elem+".path", sc)
	if err != nil {
		return nil, err
	}
	return &colNode{expr: e, col: col}, nil
}

// ansiTemporal returns the SQLType of an ansi/type tag value for col: a
// date or timestamp type (checked against the column's FHIR type), or ""
// for another SQL type.
func ansiTemporal(value string, col Column) (string, error) {
	t := strings.ToUpper(strings.Join(strings.Fields(value), " "))
	switch t {
	case "DATE":
		t = SQLDate
	case "TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE":
		t = SQLTimestamp
	case "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ":
		t = SQLTimestampTZ
	default:
		return "", nil
	}
	switch {
	case t == SQLDate && (col.Kind == KindDate || col.Kind == KindDateTime):
		return t, nil
	case t != SQLDate && (col.Kind == KindDateTime || col.Kind == KindInstant):
		return t, nil
	}
	return "", fmt.Errorf("ansi/type %s needs a column of type %s", t, map[bool]string{true: "date or dateTime", false: "dateTime or instant"}[t == SQLDate])
}

// constants compiles the constant list into FHIRPath values.
func (c *compiler) constants(x any) error {
	c.consts = map[string][]fhirpath.Item{}
	if x == nil {
		return nil
	}
	list, ok := x.([]any)
	if !ok {
		return c.errf("constant", "must be an array")
	}
	for i, it := range list {
		elem := fmt.Sprintf("constant[%d]", i)
		m, ok := it.(map[string]any)
		if !ok {
			return c.errf(elem, "must be an object")
		}
		name, ok := m["name"].(string)
		if !ok || !sqlName.MatchString(name) {
			return c.errf(elem+".name", "missing or not a valid name (letters, digits and underscores, starting with a letter)")
		}
		if _, dup := c.consts[name]; dup || name == "rowIndex" {
			return c.errf(elem+".name", "constant %q is defined twice or shadows %%rowIndex", name)
		}
		var typ string
		var val any
		for k, v := range m {
			if constantKeys[k] {
				continue
			}
			t, ok := strings.CutPrefix(k, "value")
			if !ok || !constantTypes[t] {
				return c.errf(elem+"."+k, "unknown key")
			}
			if typ != "" {
				return c.errf(elem, "has more than one value[x]")
			}
			typ, val = t, v
		}
		if typ == "" {
			return c.errf(elem, "constant %q has no value[x]", name)
		}
		item, err := constantItem(typ, val)
		if err != nil {
			return c.errf(elem+".value"+typ, "%v", err)
		}
		c.consts[name] = []fhirpath.Item{item}
	}
	return nil
}

func constantItem(typ string, v any) (fhirpath.Item, error) {
	switch typ {
	case "Boolean":
		b, ok := v.(bool)
		if !ok {
			return fhirpath.Item{}, fmt.Errorf("must be true or false")
		}
		return fhirpath.ValueItem(b), nil
	case "Integer", "PositiveInt", "UnsignedInt", "Integer64":
		var s string
		switch x := v.(type) {
		case json.Number:
			s = string(x)
		case string:
			if typ != "Integer64" {
				return fhirpath.Item{}, fmt.Errorf("must be a JSON number")
			}
			s = x
		default:
			return fhirpath.Item{}, fmt.Errorf("must be an integer")
		}
		d, err := fhirpath.ParseDecimal(s)
		if err != nil {
			return fhirpath.Item{}, fmt.Errorf("must be an integer")
		}
		n, ok := d.Int64()
		if !ok || d.Scale() > 0 || strings.ContainsAny(s, ".eE") {
			return fhirpath.Item{}, fmt.Errorf("must be an integer")
		}
		if (typ == "PositiveInt" && n < 1) || (typ == "UnsignedInt" && n < 0) {
			return fhirpath.Item{}, fmt.Errorf("out of range")
		}
		return fhirpath.ValueItem(n), nil
	case "Decimal":
		num, ok := v.(json.Number)
		if !ok {
			return fhirpath.Item{}, fmt.Errorf("must be a JSON number")
		}
		d, err := fhirpath.ParseDecimal(string(num))
		if err != nil {
			return fhirpath.Item{}, fmt.Errorf("not a decimal")
		}
		return fhirpath.ValueItem(d), nil
	}
	s, ok := v.(string)
	if !ok {
		return fhirpath.Item{}, fmt.Errorf("must be a string")
	}
	switch typ {
	case "Date":
		d, err := fhirpath.ParseDate(s)
		if err != nil {
			return fhirpath.Item{}, fmt.Errorf("not a valid date")
		}
		return fhirpath.ValueItem(d), nil
	case "DateTime", "Instant":
		d, err := fhirpath.ParseDateTime(s)
		if err != nil {
			return fhirpath.Item{}, fmt.Errorf("not a valid dateTime")
		}
		return fhirpath.ValueItem(d), nil
	case "Time":
		t, err := fhirpath.ParseTime(s)
		if err != nil {
			return fhirpath.Item{}, fmt.Errorf("not a valid time")
		}
		return fhirpath.ValueItem(t), nil
	}
	return fhirpath.ValueItem(s), nil
}
