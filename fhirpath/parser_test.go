package fhirpath

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePrint(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"Patient.name.given", "Patient.name.given"},
		{"Patient.name.where(use='official').given", "Patient.name.where((use = 'official')).given"},
		{"1 + 2 * 3", "(1 + (2 * 3))"},
		{"(1 + 2) * 3", "((1 + 2) * 3)"},
		{"1 - 2 - 3", "(1 - 2 - 3)"},
		{"1 - (2 - 3)", "(1 - (2 - 3))"},
		{"(1 - 2) - 3", "(1 - 2 - 3)"},
		{"a as X as Y", "(a as X as Y)"},
		{"a and b or c implies d", "(((a and b) or c) implies d)"},
		{"a or b and c", "(a or (b and c))"},
		{"a xor b", "(a xor b)"},
		{"a | b = c", "((a | b) = c)"},
		{"a = b and c != d", "((a = b) and (c != d))"},
		{"a < b = true", "((a < b) = true)"},
		{"x in y and y contains x", "((x in y) and (y contains x))"},
		{"-1.abs()", "(-1.abs())"},
		{"-x.y", "(-x.y)"},
		{"2 - -1", "(2 - (-1))"},
		{"- + -x", "(-+-x)"},
		{"-(-x)", "(--x)"},
		{"a is FHIR.Patient", "(a is FHIR.Patient)"},
		{"(a as String).length()", "(a as String).length()"},
		{"(a as Quantity).value", "(a as Quantity).value"},
		{"x.is(System.String)", "x.is(System.String)"},
		{"x.ofType(Quantity)", "x.ofType(Quantity)"},
		{"a[0].b[1 + 1]", "a[0].b[(1 + 1)]"},
		{"$this.a + $index + $total", "($this.a + $index + $total)"},
		{"%resource.id", "%resource.id"},
		{"%`vs-x`", "%`vs-x`"},
		{"%'str'", "%str"},
		{"%'a b'", "%`a b`"},
		{"x.contains('a') and y.as(Quantity).exists()", "(x.contains('a') and y.as(Quantity).exists())"},
		{"`given name`.`div`", "`given name`.`div`"},
		{"Patient.`contains`", "Patient.`contains`"},
		{"contains.is", "`contains`.`is`"},
		{"'it''s'", "'it'"},
		{`'a\'b\\c\nd\u0041'`, `'a\'b\\c\ndA'`},
		{"{}", "{}"},
		{"true and false", "(true and false)"},
		{"@2019-01-01", "@2019-01-01"},
		{"@2019-01-01T10:00:00.000+01:00", "@2019-01-01T10:00:00.000+01:00"},
		{"@2015T", "@2015T"},
		{"@2014-01-01T08", "@2014-01-01T08"},
		{"@T12:00", "@T12:00"},
		{"@T14:34:28.123", "@T14:34:28.123"},
		{"@2012-04-15T15:00:00Z", "@2012-04-15T15:00:00Z"},
		{"4 'mg'", "4 'mg'"},
		{"4.5 days", "4.5 days"},
		{"1 year + 2 'a'", "(1 year + 2 'a')"},
		{"a & b", "(a & b)"},
		{"10 div 3 mod 2", "(10 div 3 mod 2)"},
		{"2 + 2 // comment", "(2 + 2)"},
		{"2 /* c */ + /* d */ 2", "(2 + 2)"},
		{"x.where(a).select(b).repeat(c)", "x.where(a).select(b).repeat(c)"},
		{"iif(a, b, c)", "iif(a, b, c)"},
		{"sort(-$this)", "sort((-$this))"},
	}
	for _, tt := range tests {
		e, err := parse(tt.src)
		if err != nil {
			// 'it''s' is not valid: two adjacent strings.
			if tt.src == "'it''s'" {
				continue
			}
			t.Errorf("parse(%q): %v", tt.src, err)
			continue
		}
		if tt.src == "'it''s'" {
			t.Errorf("parse(%q) succeeded, want an error", tt.src)
			continue
		}
		got := exprString(e)
		if got != tt.want {
			t.Errorf("parse(%q) printed %q, want %q", tt.src, got, tt.want)
			continue
		}
		// Printing is stable.
		e2, err := parse(got)
		if err != nil {
			t.Errorf("reparse(%q): %v", got, err)
			continue
		}
		if again := exprString(e2); again != got {
			t.Errorf("reparse(%q) printed %q", got, again)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src       string
		line, col int
		msg       string
	}{
		{"Patient.name.where(use = 'x'", 1, 29, `expected ")", found end of expression`},
		{"2 + 2 /", 1, 8, "expected an expression, found end of expression"},
		{"2 + 2 /* not finished", 1, 7, "unterminated comment"},
		{"'abc", 1, 1, "unterminated string"},
		{"`abc", 1, 1, "unterminated delimited identifier"},
		{"a.", 1, 3, "expected an identifier or function, found end of expression"},
		{"a b", 1, 3, "expected an operator or end of expression, found identifier b"},
		{"$foo", 1, 1, "unknown special variable $foo"},
		{"1 +\n  #", 2, 3, `unexpected character '#'`},
		{"a is 1", 1, 6, "expected a type name, found number"},
		{"@20", 1, 1, "invalid date literal"},
		{"'\\q'", 1, 2, `invalid escape sequence \q`},
		{"{", 1, 2, `expected "}", found end of expression`},
		{"a[1", 1, 4, `expected "]", found end of expression`},
		{"f(1,)", 1, 5, `expected an expression, found ")"`},
		{strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300), 1, 201, "expression nested too deeply"},
		{strings.Repeat("-", 300) + "1", 1, 200, "expression nested too deeply"},
	}
	for _, tt := range tests {
		_, err := parse(tt.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("parse(%q) error = %v, want a *SyntaxError", tt.src, err)
			continue
		}
		if se.Line != tt.line || se.Column != tt.col || se.Msg != tt.msg {
			t.Errorf("parse(%q) = %d:%d %q, want %d:%d %q", tt.src, se.Line, se.Column, se.Msg, tt.line, tt.col, tt.msg)
		}
	}
}

func TestSyntaxErrorFormat(t *testing.T) {
	_, err := Compile("Patient.name.where(")
	if err == nil {
		t.Fatal("want an error")
	}
	want := "fhirpath: 1:20: expected an expression, found end of expression"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err.Error(), want)
	}
}

// TestPrintNotDeeper checks that the printed form of long chains that the
// parser reads without nesting (operators of one precedence, signs) parses
// back: a pair of parentheses per operation would pass the parser's bound
// on nesting.
func TestPrintNotDeeper(t *testing.T) {
	for _, src := range []string{
		strings.Repeat("1 + ", 3*maxDepth) + "1",
		strings.Repeat("a or ", 3*maxDepth) + "b",
		strings.Repeat("a as X ", 1) + strings.Repeat("as Y ", 3*maxDepth),
		"0 & " + strings.Repeat("+", maxDepth-10) + "A(0 & '')",
		strings.Repeat("-", maxDepth-10) + "x.y",
	} {
		e, err := parse(src)
		if err != nil {
			t.Fatalf("parse(%.30q...): %v", src, err)
		}
		printed := exprString(e)
		e2, err := parse(printed)
		if err != nil {
			t.Fatalf("the print of %.30q... does not parse: %v", src, err)
		}
		if again := exprString(e2); again != printed {
			t.Fatalf("unstable print of %.30q...", src)
		}
	}
}
