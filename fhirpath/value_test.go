package fhirpath

import (
	"testing"

	"fhirdeid/jsontree"
)

func dec(t *testing.T, s string) Decimal {
	t.Helper()
	d, err := ParseDecimal(s)
	if err != nil {
		t.Fatalf("ParseDecimal(%q): %v", s, err)
	}
	return d
}

func TestDecimal(t *testing.T) {
	tests := []struct {
		op, a, b, want string
	}{
		{"+", "1.50", "2.5", "4.00"},
		{"-", "1", "2.25", "-1.25"},
		{"*", "1.5", "-2.0", "-3.00"},
		{"/", "1", "3", "0.33333333"},
		{"/", "2", "3", "0.66666667"},
		{"/", "-2", "3", "-0.66666667"},
		{"/", "4.0", "2.0", "2"},
		{"/", "1.2", "1.8", "0.66666667"},
		{"mod", "5.5", "0.7", "0.6"},
		{"div", "-7", "2", "-3"},
		{"round", "2.345", "2", "2.35"},
		{"round", "-2.345", "2", "-2.35"},
		{"round", "2.5", "0", "3"},
		{"floor", "-1.5", "", "-2"},
		{"ceiling", "-1.5", "", "-1"},
		{"ceiling", "1.1", "", "2"},
		{"truncate", "-1.9", "", "-1"},
	}
	for _, tt := range tests {
		a := dec(t, tt.a)
		var got Decimal
		var ok = true
		switch tt.op {
		case "+":
			got = a.Add(dec(t, tt.b))
		case "-":
			got = a.Sub(dec(t, tt.b))
		case "*":
			got = a.Mul(dec(t, tt.b))
		case "/":
			got, ok = a.Div(dec(t, tt.b))
		case "mod":
			got, ok = a.Mod(dec(t, tt.b))
		case "div":
			got, ok = a.DivTrunc(dec(t, tt.b))
		case "round":
			n, _ := dec(t, tt.b).Int64()
			got = a.Round(int(n))
		case "floor":
			got = a.Floor()
		case "ceiling":
			got = a.Ceiling()
		case "truncate":
			got = a.Truncate()
		}
		if !ok || got.String() != tt.want {
			t.Errorf("%s %s %s = %s (ok %v), want %s", tt.a, tt.op, tt.b, got, ok, tt.want)
		}
	}
	if _, ok := dec(t, "1").Div(Decimal{}); ok {
		t.Error("division by zero succeeded")
	}
	for _, bad := range []string{"", "1.", ".5", "1e5", "--1", "a"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("ParseDecimal(%q) succeeded", bad)
		}
	}
	if c := dec(t, "1.0").Cmp(dec(t, "1")); c != 0 {
		t.Errorf("1.0 cmp 1 = %d", c)
	}
}

func TestDateTimeParseFormat(t *testing.T) {
	tests := []struct {
		in, want string
		prec     Precision
		bad      bool
	}{
		{in: "2019", want: "2019", prec: PrecYear},
		{in: "2019-02", want: "2019-02", prec: PrecMonth},
		{in: "2019-02-28", want: "2019-02-28", prec: PrecDay},
		{in: "2019-02-28T10", want: "2019-02-28T10", prec: PrecHour},
		{in: "2019-02-28T10:11", want: "2019-02-28T10:11", prec: PrecMinute},
		{in: "2019-02-28T10:11:12Z", want: "2019-02-28T10:11:12Z", prec: PrecSecond},
		{in: "2019-02-28T10:11:12.5+05:30", want: "2019-02-28T10:11:12.500+05:30", prec: PrecMillisecond},
		{in: "2019-02-28T10:11:12.123456-03:00", want: "2019-02-28T10:11:12.123-03:00", prec: PrecMillisecond},
		{in: "2019-02-29", bad: true},
		{in: "2019-13", bad: true},
		{in: "2019-02-28T25", bad: true},
		{in: "2019-02-28T10:11:12+15:00", bad: true},
		{in: "19", bad: true},
	}
	for _, tt := range tests {
		d, err := ParseDateTime(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseDateTime(%q) succeeded", tt.in)
			}
			continue
		}
		if err != nil || d.String() != tt.want || d.Prec != tt.prec {
			t.Errorf("ParseDateTime(%q) = %s prec %d, %v; want %s prec %d", tt.in, d, d.Prec, err, tt.want, tt.prec)
		}
	}
}

func TestCompareTemporal(t *testing.T) {
	tests := []struct {
		a, b  string
		cmp   int
		known bool
	}{
		{"2019-01-01", "2019-01-02", -1, true},
		{"2019-01", "2019-01-15", 0, false},
		{"2019-01", "2019-02-15", -1, true},
		{"2019-01-01T10:00:00Z", "2019-01-01T12:00:00+02:00", 0, true},
		{"2019-01-01T10:00:00Z", "2019-01-01T10:00:00", 0, false},
		{"2019-01-01T10:00:00", "2019-01-01T10:00:00.000", 0, true},
		{"2019-01-01T10:00:00.001", "2019-01-01T10:00:00", 1, true},
		{"2019-01-01T10:30", "2019-01-01T10", 0, false},
	}
	for _, tt := range tests {
		a, _ := ParseDateTime(tt.a)
		b, _ := ParseDateTime(tt.b)
		cmp, known := compareTemporal(a, b, PrecYear)
		if cmp != tt.cmp || known != tt.known {
			t.Errorf("compare(%s, %s) = %d, %v; want %d, %v", tt.a, tt.b, cmp, known, tt.cmp, tt.known)
		}
	}
}

func TestAddDuration(t *testing.T) {
	tests := []struct {
		d, n, unit, want string
		isTime           bool
	}{
		{"2019-01-31", "1", "month", "2019-02-28", false},
		{"2020-02-29", "1", "year", "2021-02-28", false},
		{"2019-12-31", "1", "day", "2020-01-01", false},
		{"2019-12-31", "2", "weeks", "2020-01-14", false},
		{"2019-12-31", "25", "hours", "2020-01-01", false},
		{"2019", "13", "months", "2020", false},
		{"2019-01-01T23:30:00Z", "45", "minutes", "2019-01-02T00:15:00Z", false},
		{"2019-01-01T00:00:00.000+10:00", "10", "ms", "2019-01-01T00:00:00.010+10:00", false},
		{"2019-01-01T00:00:00.000+10:00", "-1", "s", "2018-12-31T23:59:59.000+10:00", false},
	}
	for _, tt := range tests {
		d, err := ParseDateTime(tt.d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := addDuration(d, dec(t, tt.n), tt.unit, tt.isTime)
		if err != nil || got.String() != tt.want {
			t.Errorf("%s + %s %s = %s, %v; want %s", tt.d, tt.n, tt.unit, got, err, tt.want)
		}
	}
	if _, err := addDuration(DateTime{Year: 2019, Prec: PrecYear}, dec(t, "1"), "mo", false); err == nil {
		t.Error("adding 1 'mo' succeeded")
	}
}

func TestQuantityCompare(t *testing.T) {
	tests := []struct {
		a, b  Quantity
		cmp   int
		known bool
	}{
		{Quantity{dec(t, "1"), "g"}, Quantity{dec(t, "1000"), "mg"}, 0, true},
		{Quantity{dec(t, "1"), "kg"}, Quantity{dec(t, "999"), "g"}, 1, true},
		{Quantity{dec(t, "7"), "days"}, Quantity{dec(t, "1"), "week"}, 0, true},
		{Quantity{dec(t, "1"), "cm"}, Quantity{dec(t, "1"), "s"}, 0, false},
		{Quantity{dec(t, "1"), "year"}, Quantity{dec(t, "1"), "a"}, 0, false},
		{Quantity{dec(t, "1"), "[in_i]"}, Quantity{dec(t, "2.54"), "cm"}, 0, true},
		{Quantity{dec(t, "100"), "mg/dL"}, Quantity{dec(t, "1"), "g/L"}, 0, true},
		{Quantity{dec(t, "1"), "m2"}, Quantity{dec(t, "10000"), "cm2"}, 0, true},
		{Quantity{dec(t, "1"), "km/h"}, Quantity{dec(t, "1"), "m/s"}, -1, true},
		{Quantity{dec(t, "1"), "mmol/L"}, Quantity{dec(t, "1"), "mg/dL"}, 0, false},
		{Quantity{dec(t, "5"), "{cells}/uL"}, Quantity{dec(t, "5000"), "/mL"}, 0, true},
		{Quantity{dec(t, "1"), "[foo]"}, Quantity{dec(t, "1"), "[bar]"}, 0, false},
	}
	for _, tt := range tests {
		cmp, known := quantityCompare(tt.a, tt.b, true)
		if cmp != tt.cmp || known != tt.known {
			t.Errorf("compare(%v, %v) = %d, %v; want %d, %v", tt.a, tt.b, cmp, known, tt.cmp, tt.known)
		}
	}
}

func TestDotNetReplacement(t *testing.T) {
	tests := []struct{ pattern, repl, in, want string }{
		{`(\d)(\d)`, "$2$1", "12", "21"},
		{`(\d)`, "$1abc", "5", "5abc"},
		{`(?<y>\d{4})-(?<m>\d{2})`, "${m}/${y}", "2019-05", "05/2019"},
		{`x`, "$$", "axb", "a$b"},
		{`x`, "$name", "axb", "a$nameb"},
		{`x`, "cost: $", "x", "cost: $"},
	}
	for _, tt := range tests {
		re, err := compileRegexp(tt.pattern)
		if err != nil {
			t.Fatalf("compileRegexp(%q): %v", tt.pattern, err)
		}
		if got := re.ReplaceAllString(tt.in, dotNetReplacement(tt.repl)); got != tt.want {
			t.Errorf("replace %q with %q in %q = %q, want %q", tt.pattern, tt.repl, tt.in, got, tt.want)
		}
	}
}

func TestNodesMatch(t *testing.T) {
	tests := []struct {
		a, b         string
		equal, equiv bool
	}{
		{`{"system":"s","value":"V"}`, `{"value":"V","system":"s"}`, true, true},
		{`{"id":"x","value":"V"}`, `{"value":"V"}`, true, true},
		{`{"value":"Hello  World"}`, `{"value":"hello world"}`, false, true},
		{`{"value":1.50}`, `{"value":1.5}`, true, true},
		{`{"value":1.55}`, `{"value":1.5}`, false, false},
		{`{"value":1.5}`, `{"value":1.54}`, false, true},
		{`{"a":[1,2]}`, `{"a":[2,1]}`, false, false},
		{`{"a":1}`, `{"a":1,"b":2}`, false, false},
		{`{"a":"1"}`, `{"a":1}`, false, false},
	}
	for _, tt := range tests {
		a, err := jsontree.ParseString(tt.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jsontree.ParseString(tt.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := nodesMatch(a, b, false); got != tt.equal {
			t.Errorf("equal(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.equal)
		}
		if got := nodesMatch(a, b, true); got != tt.equiv {
			t.Errorf("equivalent(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.equiv)
		}
	}
}
