// Package views runs SQL on FHIR v2 ViewDefinitions: it turns FHIR resources
// into rows of typed columns, the tables researchers load into DuckDB, Spark,
// R or pandas.
//
// A ViewDefinition (JSON, as in the SQL on FHIR v2 implementation guide) is
// parsed, validated and compiled once with Parse:
//
//	v, err := views.Parse(data, "patients.json")
//	r := v.NewRunner()
//	err = r.Rows(resource, func(row []views.Value) error { ... })
//
// # Validation
//
// Parse rejects, naming the view, the element ("select[1].column[0].path")
// and the reason: unknown keys, wrong JSON types, a missing resource or
// select, an unknown resource type, a column name that is not a SQL name or
// is used twice, a select with more than one of forEach, forEachOrNull and
// repeat, unionAll branches whose columns differ in name, order or type, a
// constant without a value, a reference to an undefined %constant, and
// FHIRPath that does not compile (syntax, unknown functions, unknown
// elements: an expression on forEach items is checked as
// (forEach).select((expression)) on the resource, so that the checker
// knows the items' types; below a repeat, elements are not checked).
// FHIRPath errors carry the line and column in the expression.
//
// # Evaluation
//
// Expressions are compiled once with package fhirpath and the FHIR R4 model.
// Besides FHIRPath, views can use getResourceKey() (the resource's id),
// getReferenceKey([type]) (the id of a relative or absolute literal
// reference "Type/id", empty when the type differs), the view's constants as
// %name, and %rowIndex, the 0-based index of the current forEach,
// forEachOrNull or repeat item (0 outside them). lowBoundary() and
// highBoundary() are built into fhirpath.
//
// The semantics follow the specification's functional model: a select's
// columns, nested selects and unionAll are cross-joined in that order;
// forEach yields a row per item, forEachOrNull also a row of nulls when
// there is none, repeat walks its paths recursively (depth first, pre-order);
// unionAll concatenates its branches. Rows are produced one by one to a
// callback, so a view never holds a resource's rows in memory.
//
// Runtime errors (several values in a column that is not a collection, a
// where clause that is not boolean, a value that does not fit the column's
// type) name the view, the column and the expression position, never a value
// of the resource.
//
// # Values and types
//
// A Value has the Kind of its column: string (also code, id, uri, ...),
// integer, decimal (exact text), boolean, date, dateTime, instant and time
// (FHIR text, partial precision kept). A column with collection: true holds
// a list. A column without a type takes each value as it comes; typed
// writers store such a column as text.
//
// A column tagged "ansi/type" DATE (on date or dateTime), TIMESTAMP or
// TIMESTAMP WITH TIME ZONE (on dateTime or instant) has Column.SQLType set:
// its values must have that precision (a full date; a time to the second,
// and a zone for the latter), else the resource gives an error, and
// Value.Int holds the days or microseconds since the epoch, which the
// Parquet writer stores natively. Other ansi/type values are accepted and
// change nothing.
//
// # Fast paths
//
// Columns whose path is a chain of element names, first(), ofType(T),
// getReferenceKey([T]) or getResourceKey() (most columns of real views)
// are evaluated by a direct walk of the typed tree rather than by the
// FHIRPath engine; tests hold the two to the same rows.
//
// # Writers
//
// NDJSONWriter and CSVWriter (RFC 4180, header row) are in this package;
// Parquet is in views/parquet, so that only programs that write Parquet link
// its library.
package views
