package fhirpath

import (
	"fmt"
	"slices"
	"strings"
)

// The check phase resolves navigation steps against the FHIR model when a
// context type is configured. A type set is a list of FHIR type names
// (element types, resource types, backbone paths); nil means unknown, and
// nothing is checked below an unknown set.

type typeSet []string

// CheckError is a problem found by the check phase: an unknown element or
// type, or navigation from a type that does not apply to the context. Line
// and Column are 1-based positions in the expression.
type CheckError struct {
	Line, Column int
	Msg          string
}

// Error formats the error as "fhirpath: line:column: message".
func (e *CheckError) Error() string {
	return fmt.Sprintf("fhirpath: %d:%d: %s", e.Line, e.Column, e.Msg)
}

// checkErrorf reports a check problem: as an error, or to the warning hook
// (and then checking goes on with an unknown type).
func (cp *compiler) checkErrorf(pos int, format string, args ...any) error {
	l, c := lineCol(cp.src, pos)
	err := &CheckError{Line: l, Column: c, Msg: fmt.Sprintf(format, args...)}
	if cp.cfg.warn != nil {
		cp.cfg.warn(err)
		return nil
	}
	return err
}

// check validates e against the model.
func (cp *compiler) check(e expr) error {
	m := cp.cfg.model
	if m == nil {
		return nil
	}
	var ctx typeSet
	if cp.cfg.contextType != "" {
		if m.Type(cp.cfg.contextType) == nil {
			return cp.checkErrorf(0, "unknown context type %s", cp.cfg.contextType)
		}
		ctx = typeSet{cp.cfg.contextType}
	}
	_, err := cp.checkExpr(e, ctx, ctx)
	return err
}

// known reports whether every type of s can be checked: abstract resource
// types stand for any resource, so they are not.
func (cp *compiler) known(s typeSet) bool {
	if s == nil {
		return false
	}
	for _, t := range s {
		mt := cp.cfg.model.Type(t)
		if mt == nil || mt.Abstract {
			return false
		}
	}
	return true
}

// element resolves name on every type of in.
func (cp *compiler) element(pos int, in typeSet, name string) (typeSet, error) {
	if !cp.known(in) {
		return nil, nil
	}
	var out typeSet
	found := false
	for _, t := range in {
		mt := cp.cfg.model.Type(t)
		if el := mt.Element(name); el != nil {
			found = true
			for _, ty := range el.Types {
				if !slices.Contains(out, ty) {
					out = append(out, ty)
				}
			}
			continue
		}
		if cp.cfg.jsonNames {
			if _, ty, ok := mt.Property(name); ok {
				found = true
				if !slices.Contains(out, ty) {
					out = append(out, ty)
				}
			}
		}
	}
	if !found {
		return nil, cp.checkErrorf(pos, "unknown element %s on %s", name, strings.Join(in, " | "))
	}
	return out, nil
}

// validType reports whether a type specifier names a known type.
func (cp *compiler) validType(ts typeSpec) bool {
	switch ts.namespace {
	case "System":
		return true // an unknown System type matches nothing
	case "FHIR":
		return cp.cfg.model.Type(ts.name) != nil
	case "":
		return systemTypeNames[ts.name] || cp.cfg.model.Type(ts.name) != nil
	}
	return false
}

var systemTypeNames = map[string]bool{
	"Boolean": true, "String": true, "Integer": true, "Decimal": true, "Date": true,
	"DateTime": true, "Time": true, "Quantity": true, "Any": true,
}

func (cp *compiler) typeOf(ts typeSpec) typeSet {
	if ts.namespace == "System" || cp.cfg.model.Type(ts.name) == nil {
		return nil
	}
	return typeSet{ts.name}
}

// sameFunctions preserve the focus type.
var sameFunctions = map[string]bool{
	"where": true, "first": true, "last": true, "single": true, "tail": true, "skip": true,
	"take": true, "distinct": true, "intersect": true, "exclude": true, "trace": true, "sort": true,
}

func (cp *compiler) checkExpr(e expr, in, this typeSet) (typeSet, error) {
	switch e := e.(type) {
	case *identExpr:
		if e.name != "" && e.name[0] >= 'A' && e.name[0] <= 'Z' && !cp.cfg.model.IsResource(e.name) && cp.cfg.model.Type(e.name) != nil {
			// A data type name as the first step: the input, if it is of
			// that type.
			var out typeSet
			for _, t := range in {
				if isSubtype(cp.cfg.model, t, e.name) {
					out = append(out, t)
				}
			}
			if out != nil {
				return out, nil
			}
		}
		if e.name != "" && e.name[0] >= 'A' && e.name[0] <= 'Z' && cp.cfg.model.IsResource(e.name) {
			if in == nil {
				return typeSet{e.name}, nil
			}
			var out typeSet
			for _, t := range in {
				if isSubtype(cp.cfg.model, t, e.name) {
					out = append(out, t)
				}
			}
			if out != nil {
				return out, nil
			}
			if cp.known(in) {
				return nil, cp.checkErrorf(e.pos, "%s does not apply to the context type %s", e.name, strings.Join(in, " | "))
			}
			return nil, nil
		}
		return cp.element(e.pos, in, e.name)
	case *memberExpr:
		x, err := cp.checkExpr(e.x, in, this)
		if err != nil {
			return nil, err
		}
		return cp.element(e.pos, x, e.name)
	case *varExpr:
		if e.name == "this" {
			return this, nil
		}
		return nil, nil
	case *extExpr:
		switch e.name {
		case "context":
			return cp.contextSet(), nil
		case "resource":
			// %rootResource may be a Bundle holding the context: unknown.
			if ctx := cp.contextSet(); ctx != nil && cp.cfg.model.IsResource(ctx[0]) {
				return ctx, nil
			}
		}
		return nil, nil
	case *indexExpr:
		if _, err := cp.checkExpr(e.index, in, this); err != nil {
			return nil, err
		}
		if err := cp.checkOrdered(e.x, e.pos, "an indexer"); err != nil {
			return nil, err
		}
		return cp.checkExpr(e.x, in, this)
	case *unaryExpr:
		return cp.checkExpr(e.x, in, this)
	case *binaryExpr:
		l, err := cp.checkExpr(e.l, in, this)
		if err != nil {
			return nil, err
		}
		r, err := cp.checkExpr(e.r, in, this)
		if err != nil {
			return nil, err
		}
		if e.op == "|" && l != nil && r != nil {
			return union2(l, r), nil
		}
		return nil, nil
	case *typeExpr:
		if _, err := cp.checkExpr(e.x, in, this); err != nil {
			return nil, err
		}
		if !cp.validType(e.typ) {
			return nil, cp.checkErrorf(e.pos, "unknown type %s", e.typ)
		}
		if e.op == "as" {
			return cp.typeOf(e.typ), nil
		}
		return nil, nil
	case *callExpr:
		return cp.checkCall(e, in, this)
	}
	return nil, nil
}

// contextSet is the type set of the context, or nil.
func (cp *compiler) contextSet() typeSet {
	if cp.cfg.contextType == "" || cp.cfg.model.Type(cp.cfg.contextType) == nil {
		return nil
	}
	return typeSet{cp.cfg.contextType}
}

func union2(a, b typeSet) typeSet {
	out := slices.Clone(a)
	for _, t := range b {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// checkOrdered reports an error when x is an unordered function's result
// and the ordered-functions check is on.
func (cp *compiler) checkOrdered(x expr, pos int, what string) error {
	if !cp.cfg.orderedCheck {
		return nil
	}
	if c, ok := x.(*callExpr); ok {
		if b := builtins[c.name]; b != nil && b.unordered {
			return cp.checkErrorf(pos, "%s needs an ordered input, but %s() returns an unordered collection", what, c.name)
		}
	}
	return nil
}

func (cp *compiler) checkCall(e *callExpr, in, this typeSet) (typeSet, error) {
	focus := in
	if e.x != nil {
		var err error
		if focus, err = cp.checkExpr(e.x, in, this); err != nil {
			return nil, err
		}
	}
	b := builtins[e.name]
	if b != nil && (len(e.args) < b.min || len(e.args) > b.max) {
		return nil, nil // the compiler reports the arity
	}
	if b != nil && b.ordered && e.x != nil {
		if err := cp.checkOrdered(e.x, e.pos, e.name+"()"); err != nil {
			return nil, err
		}
	}
	argIn, argThis := in, this
	if b != nil && b.focusArgs && e.x != nil {
		argIn, argThis = focus, focus
	}
	var lambdaTypes typeSet
	var argTypes []typeSet
	for i, a := range e.args {
		mode := argValue
		if b != nil {
			mode = b.mode(i)
		}
		switch mode {
		case argType:
			ts, ok := typeSpecOf(a)
			if ok && !cp.validType(ts) {
				return nil, cp.checkErrorf(a.position(), "unknown type %s", ts)
			}
			argTypes = append(argTypes, nil)
		case argLambda:
			if u, ok := a.(*unaryExpr); ok && e.name == "sort" {
				a = u.x
			}
			t, err := cp.checkExpr(a, focus, focus)
			if err != nil {
				return nil, err
			}
			lambdaTypes = t
			argTypes = append(argTypes, t)
		default:
			t, err := cp.checkExpr(a, argIn, argThis)
			if err != nil {
				return nil, err
			}
			argTypes = append(argTypes, t)
		}
	}
	if b == nil {
		f := cp.cfg.funcs[e.name]
		if f == nil {
			return nil, nil
		}
		if cp.focusTypes == nil {
			cp.focusTypes = map[*callExpr]typeSet{}
		}
		cp.focusTypes[e] = focus
		if f.ResultTypes == nil || len(e.args) < f.MinArgs || len(e.args) > f.MaxArgs {
			return nil, nil
		}
		return typeSet(f.ResultTypes(cp.checkInfo(e, focus))), nil
	}
	switch {
	case sameFunctions[e.name]:
		return focus, nil
	case e.name == "select":
		return lambdaTypes, nil
	case e.name == "union" || e.name == "combine":
		if focus != nil && len(argTypes) == 1 && argTypes[0] != nil {
			return union2(focus, argTypes[0]), nil
		}
	case e.name == "ofType" || e.name == "as":
		if ts, ok := typeSpecOf(e.args[0]); ok {
			return cp.typeOf(ts), nil
		}
	case e.name == "extension":
		if cp.cfg.model.Type("Extension") != nil {
			return typeSet{"Extension"}, nil
		}
	}
	return nil, nil
}
