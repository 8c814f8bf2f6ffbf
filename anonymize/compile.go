package anonymize

import (
	"errors"
	"strings"

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

// PathWarnings is returned by a PathCompiler together with a usable compiled
// expression when the expression compiles but has problems that do not stop
// it from being evaluated, such as an unknown element (which then matches
// nothing, as in the reference implementation). The loader reports each as a
// warning and keeps the rule.
type PathWarnings struct {
	// Warnings describe the problems, with their column in the expression.
	Warnings []string
}

// Error implements the error interface.
func (w *PathWarnings) Error() string { return strings.Join(w.Warnings, "; ") }

// FHIRPathCompiler returns a PathCompiler backed by package fhirpath, with
// the anonymizer functions nodesByType and nodesByName added to opts. The
// Compiled values it returns are *fhirpath.Expression.
//
// When opts include fhirpath.WithModel, a rule path with a resource type
// prefix is checked against that type: a misspelt element is an error at
// load time. The Microsoft anonymizer accepts such paths (its own sample
// configuration has "HealthcareService.notAvaliable"); use
// FHIRPathCompilerWithWarnings to accept them with a warning.
func FHIRPathCompiler(opts ...fhirpath.Option) PathCompiler {
	return newFHIRPathCompiler(false, opts)
}

// FHIRPathCompilerWithWarnings is like FHIRPathCompiler, but the problems
// of the check phase (unknown elements and types, a wrong context type) are
// returned as *PathWarnings with a usable expression, so that the
// configuration loads with warnings, as the reference implementation loads
// it silently.
func FHIRPathCompilerWithWarnings(opts ...fhirpath.Option) PathCompiler {
	return newFHIRPathCompiler(true, opts)
}

func newFHIRPathCompiler(lenient bool, opts []fhirpath.Option) PathCompiler {
	opts = append(append([]fhirpath.Option(nil), opts...), fhirpath.WithFunctions(fhirpath.AnonymizerFunctions()...))
	return func(resourceType, expr string) (Compiled, error) {
		o := opts
		if resourceType != "" {
			// With a model, the expression is checked against the rule's
			// resource type.
			o = append(o[:len(o):len(o)], fhirpath.WithContextType(resourceType))
		}
		var warnings []string
		if lenient {
			o = append(o[:len(o):len(o)], fhirpath.WithWarnings(func(ce *fhirpath.CheckError) {
				warnings = append(warnings, ce.Error())
			}))
		}
		e, err := fhirpath.Compile(expr, o...)
		if err != nil {
			var se *fhirpath.SyntaxError
			var ee *fhirpath.EvalError
			var ce *fhirpath.CheckError
			switch {
			case errors.As(err, &se) && se.Line <= 1:
				return nil, &compileError{column: se.Column, err: err}
			case errors.As(err, &ee) && ee.Line <= 1:
				return nil, &compileError{column: ee.Column, err: err}
			case errors.As(err, &ce) && ce.Line <= 1:
				return nil, &compileError{column: ce.Column, err: err}
			}
			return nil, err
		}
		if len(warnings) > 0 {
			return e, &PathWarnings{Warnings: warnings}
		}
		return e, nil
	}
}
