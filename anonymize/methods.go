package anonymize

import (
	"errors"
	"fmt"
)

// ProcessingError is a failure while applying a rule to one resource that
// processingErrors "skip" may skip (§2.10): the whole top-level resource is
// then replaced by an empty one labelled REDACTED. It says where (rule,
// resource type and id, element location) and never quotes a value.
type ProcessingError struct {
	// Rule is the 1-based rule number.
	Rule int
	// Method is the rule's method as written.
	Method string
	// ResourceType and Location locate the element ("Patient",
	// "name[0].family").
	ResourceType string
	Location     string
	// Err is the cause.
	Err error
}

// Error implements the error interface.
func (e *ProcessingError) Error() string {
	msg := fmt.Sprintf("anonymizing: rule %d (%s)", e.Rule, e.Method)
	if e.ResourceType != "" {
		msg += " on " + e.ResourceType
		if e.Location != "" {
			msg += "." + e.Location
		}
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *ProcessingError) Unwrap() error { return e.Err }

// SubstitutePrimitive returns the new value of a primitive element under a
// substitute rule (§2.7): the replaceWith value's .NET ToString() text
// (strings as written, numbers as their literal, booleans "True"/"False"),
// always written as a JSON string. keep is false for a null replaceWith, which
// removes the value (still labelled SUBSTITUTED).
func SubstitutePrimitive(replaceWith Value) (value string, keep bool) {
	return replaceWith.CSharpString()
}

// SubstituteComplex returns the replacement fragment for a complex element
// under a substitute rule (§2.7): the replaceWith object, or an empty object
// for null, with empty strings removed as the reference implementation's
// parser drops them. An error means the fragment cannot be a value of a
// complex type (a string, a number, an array); in the reference
// implementation it fails the run even with processingErrors "skip". Checking
// the fragment's members against the element's type is the engine's job,
// since it needs the FHIR model.
func SubstituteComplex(replaceWith Value) (Value, error) {
	switch replaceWith.Kind {
	case NullValue:
		return Value{Kind: ObjectValue, Members: []Member{}}, nil
	case ObjectValue:
		return dropEmptyStrings(replaceWith.clone()), nil
	}
	return Value{}, fmt.Errorf("substituting: replaceWith is a %s, not an object, for a complex element", replaceWith.Kind)
}

func dropEmptyStrings(v Value) Value {
	switch v.Kind {
	case ObjectValue:
		out := v.Members[:0]
		for _, m := range v.Members {
			if m.Value.Kind == StringValue && m.Value.Text == "" {
				continue
			}
			m.Value = dropEmptyStrings(m.Value)
			out = append(out, m)
		}
		v.Members = out
	case ArrayValue:
		for i := range v.Items {
			v.Items[i] = dropEmptyStrings(v.Items[i])
		}
	}
	return v
}

// Generalized is the result of a generalize case's value expression: a
// single primitive, or nothing.
type Generalized struct {
	// Kind is the JSON kind to write: StringValue (strings, dates, times,
	// codes), NumberValue or BoolValue; NullValue removes the element.
	Kind ValueKind
	// Text is the value's text.
	Text string
}

// CaseEvaluator evaluates the compiled expressions of generalize cases with
// one element as their focus ($this). The engine implements it with the
// FHIRPath evaluator.
type CaseEvaluator interface {
	// Match evaluates a condition: true only when the result is the single
	// boolean true; an empty result is false.
	Match(condition Compiled) (bool, error)
	// Value evaluates a case's value expression to a single primitive; an
	// empty result is a NullValue.
	Value(expr Compiled) (Generalized, error)
}

// ErrGeneralize is wrapped by the errors of Generalize.
var ErrGeneralize = errors.New("generalize failed")

// Generalize applies a generalize rule to one primitive element with a value
// (§2.9): the cases are tried in file order and the first whose condition
// holds gives the new value; when none holds, otherValues redact removes the
// value and keep leaves it (changed=false). Both outcomes record
// OpGeneralize. An evaluation error names the case number and is meant to be
// wrapped in a ProcessingError, which "skip" may skip.
func Generalize(cases []GeneralizeCase, other OtherValues, ev CaseEvaluator) (out Generalized, changed bool, err error) {
	for i, c := range cases {
		ok, err := ev.Match(c.CompiledCondition)
		if err != nil {
			return Generalized{}, false, fmt.Errorf("%w when processing case %d condition: %w", ErrGeneralize, i+1, err)
		}
		if !ok {
			continue
		}
		v, err := ev.Value(c.CompiledValue)
		if err != nil {
			return Generalized{}, false, fmt.Errorf("%w when processing case %d value: %w", ErrGeneralize, i+1, err)
		}
		return v, true, nil
	}
	if other == OtherKeep {
		return Generalized{}, false, nil
	}
	return Generalized{Kind: NullValue}, true, nil
}
