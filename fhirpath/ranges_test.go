package fhirpath_test

import (
	"testing"

	"fhirdeid/fhirpath"
)

func TestPartialDatesAsRanges(t *testing.T) {
	tests := []struct {
		expr         string
		spec, ranges string // "true", "false" or "empty"
	}{
		{"@2000 < @2000-01-01", "empty", "true"},
		{"@1990 >= @1990-01-01", "empty", "true"},
		{"@2010 < @2000-01-01", "false", "false"},
		{"@2010-01-02 = @2010", "empty", "true"},
		{"@2010-01-02 = @2011", "false", "false"},
		{"@2010-01-01 = @2010-01-01T00:00:00+08:00", "empty", "false"},
		{"@2010-01-01 = @2010-01-01T10:00:00Z", "empty", "true"},
		{"@2010-01-01 = @2010-01-01", "true", "true"},
		{"@2020-01-01 ~ @2020", "false", "false"},
		{"@T10 < @T10:30", "empty", "true"},
		{"@T10 > @T10:30", "empty", "true"},
		{"@T11 < @T10:30", "false", "false"},
	}
	show := func(items []fhirpath.Item) string {
		if len(items) == 0 {
			return "empty"
		}
		v, _ := items[0].Value()
		if b, ok := v.(bool); ok && b {
			return "true"
		}
		return "false"
	}
	for _, tt := range tests {
		e, err := fhirpath.Compile(tt.expr)
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		got, err := e.Evaluate(nil, &fhirpath.Env{})
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		if show(got) != tt.spec {
			t.Errorf("%s = %s, want %s (specification)", tt.expr, show(got), tt.spec)
		}
		got, err = e.Evaluate(nil, &fhirpath.Env{PartialDatesAsRanges: true})
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		if show(got) != tt.ranges {
			t.Errorf("%s = %s with ranges, want %s", tt.expr, show(got), tt.ranges)
		}
	}
}
