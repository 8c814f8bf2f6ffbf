package fhirpath

import (
	"fmt"
	"time"

	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// Function is a custom function that can be added with WithFunctions.
type Function struct {
	// Name is the function's name as written in expressions.
	Name string
	// MinArgs and MaxArgs bound the number of arguments; a call with another
	// number is a compile error.
	MinArgs, MaxArgs int
	// Check, if set, is called at compile time; an error makes compilation
	// fail.
	Check func(info *CheckInfo) error
	// ResultTypes, if set, gives the FHIR types of the result for the check
	// phase (nil: unknown, nothing is checked after the call).
	ResultTypes func(info *CheckInfo) []string
	// Eval computes the result from the focus (the collection the function
	// is called on). Arguments are evaluated on demand through call. Eval
	// must not modify the focus slice (it may be shared) but may return it.
	Eval func(call *Call, focus []Item) ([]Item, error)
}

// CheckInfo describes a call of a custom function at compile time.
type CheckInfo struct {
	// Args holds the source text of each argument, in canonical form
	// ('date' for a string literal).
	Args []string
	// Literals holds the value of each argument that is a string literal,
	// "" otherwise.
	Literals []string
	// FocusTypes are the FHIR types the function may be called on; nil when
	// unknown (no model or no context type).
	FocusTypes []string
}

// Call gives a custom function access to its arguments and to the
// evaluation context. It is valid only during the Eval call.
type Call struct {
	c  *evalCtx
	k  *callSite
	in []Item
}

// NumArgs returns the number of arguments of the call.
func (cl *Call) NumArgs() int { return len(cl.k.args) }

// Arg evaluates argument i against the input of the enclosing expression.
func (cl *Call) Arg(i int) ([]Item, error) { return cl.k.args[i].fn(cl.c, cl.in) }

// ArgFor evaluates argument i with $this set to it and $index to index, as
// where() and select() do for their criteria.
func (cl *Call) ArgFor(i int, it Item, index int) ([]Item, error) {
	return cl.c.lambda(cl.k.args[i], it, index)
}

// StringArg evaluates argument i and returns it as a single string.
func (cl *Call) StringArg(i int) (string, bool, error) {
	return cl.k.str(cl.c, i, cl.in)
}

// Now returns the evaluation's pinned current time.
func (cl *Call) Now() time.Time { return cl.c.timeNow() }

// Errorf returns an error located at the call in the expression. Do not put
// values of the resource in it.
func (cl *Call) Errorf(format string, args ...any) error {
	return rtErr(cl.k.src, cl.k.pos, "%s(): %s", cl.k.name, fmt.Sprintf(format, args...))
}

// AnonymizerFunctions returns nodesByType(T) and nodesByName(N), the
// functions the FHIR anonymizer configurations use: the focus and its
// descendants in pre-order, not entering nested resources, whose FHIR type
// (the concrete type for choice elements) resp. element name equals the
// argument exactly.
func AnonymizerFunctions() []*Function {
	return []*Function{
		{Name: "nodesByType", MinArgs: 1, MaxArgs: 1, Check: checkStringLiteral,
			ResultTypes: func(info *CheckInfo) []string {
				if info.Literals[0] == "" {
					return nil
				}
				return []string{info.Literals[0]}
			},
			Eval: func(cl *Call, focus []Item) ([]Item, error) {
				return nodesBy(cl, focus, false)
			}},
		{Name: "nodesByName", MinArgs: 1, MaxArgs: 1, Check: checkStringLiteral,
			Eval: func(cl *Call, focus []Item) ([]Item, error) {
				return nodesBy(cl, focus, true)
			}},
	}
}

// checkStringLiteral requires the single argument to be a string literal,
// as the anonymizer's functions are always written.
func checkStringLiteral(info *CheckInfo) error {
	if info.Literals[0] == "" {
		return fmt.Errorf("argument must be a non-empty string literal")
	}
	return nil
}

func nodesBy(cl *Call, focus []Item, byName bool) ([]Item, error) {
	want, ok, err := cl.StringArg(0)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, cl.Errorf("argument must be a string")
	}
	c := cl.c
	col := &c.col
	col.want, col.byName, col.out = want, byName, c.scratch[:0]
	if c.visit == nil {
		c.visit = col.visit // bound once per pooled context
	}
	for _, it := range focus {
		if it.node != nil {
			typed.Walk(it.node, c.visit)
		}
	}
	out := col.out
	col.out = nil
	c.scratch = out[:0]
	if len(out) == 0 {
		return nil, nil
	}
	return c.keep(out), nil
}

// collector gathers the nodes of nodesByType and nodesByName during
// typed.Walk (which yields the focus and its descendants in pre-order, not
// entering nested resources).
type collector struct {
	want   string
	byName bool
	out    []Item
}

func (k *collector) visit(n *jsontree.Node) bool {
	key := n.Type()
	if k.byName {
		key = n.Name()
	}
	if key == k.want {
		k.out = append(k.out, Item{node: n})
	}
	return true
}
