// Package fhirpath is a FHIRPath 2.0.0 (N1) engine over typed FHIR JSON
// trees.
//
// An expression is compiled once into an immutable *Expression that is safe
// for concurrent use and evaluated many times:
//
//	m := model.Get(model.R4)
//	e, err := fhirpath.Compile("Patient.name.where(use = 'official').given",
//		fhirpath.WithModel(m), fhirpath.WithContextType("Patient"))
//	...
//	root, _ := jsontree.Parse(data)
//	_ = typed.Annotate(root, m)
//	items, err := e.Evaluate(root, nil)
//
// # Compilation
//
// Compile parses the expression with a hand-written lexer and a
// precedence-climbing parser; syntax errors are *SyntaxError values that name
// the line and column ("fhirpath: 1:12: expected \")\", found end of
// expression"). With WithModel and WithContextType, a check phase resolves
// every navigation step to FHIR types, so Patient.nmae or
// Observation.valueQuantity (not FHIRPath: the element is value) fail at
// compile time. Unknown functions, wrong arities, unknown type names and
// invalid literal regular expressions are compile errors too. Literal
// patterns of matches() and replaceMatches() are compiled once.
//
// # Evaluation
//
// A collection is a []Item. An Item is either a node of the resource
// (Item.Node, whose FHIR type is Node.Type, and which the caller may change,
// remove or replace) or a System value (Item.Value): bool, string, int64,
// Decimal (exact), Date, DateTime and Time (with precision and timezone), or
// Quantity. FHIR primitives convert to System values for comparison and
// arithmetic. Equality, equivalence and ordering follow the specification:
// comparing date/times of different precision gives an empty result, ~
// ignores case and whitespace for strings and precision for decimals.
//
// Per-evaluation state (the clock of now() and today(), external constants
// %name, trace output, %resource) lives in an *Env; the engine keeps
// intermediate collections in a per-evaluation arena, so the hot path does
// not allocate per resource.
//
// # Extensions and limits
//
// Custom functions are added with WithFunctions; AnonymizerFunctions returns
// nodesByType(T) and nodesByName(N) as the FHIR anonymizer defines them. A
// caller that already has the result of the custom call that begins an
// expression (HeadCall) gives it to EvaluateWithHead instead of having it
// computed again. A chain of "or" over comparisons of one path with string
// literals (system = 'a' or system = 'b' ...) evaluates the path once.
// The criteria of where(), exists() and all() is evaluated once per
// distinct value when it depends only on one member of $this: when it is
// made only of literals, operators, the member's name and pure functions
// applied to them (startsWith, lower, exists, matches ...; not $this,
// %variables, further navigation, type operators or other members), its
// result for an item whose member is absent, or is one primitive without
// id or extensions, is kept per call site, FHIR type and value in a small
// bounded table of the evaluation context, which the pool of contexts
// keeps from one evaluation to the next (see memo.go).
// Terminology functions (memberOf, subsumes, subsumedBy), resolve(),
// conformsTo() and htmlChecks() are compile errors ("not supported"). Unit
// conversion of quantities covers a subset of UCUM: metric units with
// prefixes (g, m, s, mol, L), time units, %, a few customary units
// ([in_i], [lb_av], ...), combined with "." and "/" and exponents (mg/dL,
// m2); other units compare only when written the same. The .NET named group syntax (?<name>...) of anonymizer
// configurations is accepted in regular expressions, which otherwise use
// Go's RE2 syntax, with "." matching newlines.
package fhirpath
