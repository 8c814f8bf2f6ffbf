package fhirpath

import "fhirdeid/jsontree"

// EvaluateAppend is Evaluate that appends the result to dst instead of
// returning a new slice, so that a caller evaluating many expressions per
// resource (package views) can reuse one buffer per expression.
func (e *Expression) EvaluateAppend(dst []Item, n *jsontree.Node, env *Env) ([]Item, error) {
	c := e.newCtx(env)
	var input []Item
	if n != nil {
		input = c.one(Item{node: n})
	}
	c.this, c.context = input, input
	res, err := e.root(c, input)
	if err == nil {
		dst = append(dst, res...)
	}
	release(c)
	return dst, err
}
