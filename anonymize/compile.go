package anonymize

import (
	"errors"

	"fhirdeid/fhirpath"
)

// compileError carries the column of a FHIRPath compile error.
type compileError struct {
	column int
	err    error
}

func (e *compileError) Error() string { return e.err.Error() }
func (e *compileError) Unwrap() error { return e.err }

// Column returns the 1-based column of the error in the expression.
func (e *compileError) Column() int { return e.column }

// FHIRPathCompiler returns a PathCompiler backed by package fhirpath, with
// the anonymizer functions nodesByType and nodesByName added to opts. The
// Compiled values it returns are *fhirpath.Expression.
func FHIRPathCompiler(opts ...fhirpath.Option) PathCompiler {
	opts = append(append([]fhirpath.Option(nil), opts...), fhirpath.WithFunctions(fhirpath.AnonymizerFunctions()...))
	return func(resourceType, expr string) (Compiled, error) {
		e, err := fhirpath.Compile(expr, opts...)
		if err != nil {
			var se *fhirpath.SyntaxError
			var ee *fhirpath.EvalError
			switch {
			case errors.As(err, &se) && se.Line <= 1:
				return nil, &compileError{column: se.Column, err: err}
			case errors.As(err, &ee) && ee.Line <= 1:
				return nil, &compileError{column: ee.Column, err: err}
			}
			return nil, err
		}
		return e, nil
	}
}
