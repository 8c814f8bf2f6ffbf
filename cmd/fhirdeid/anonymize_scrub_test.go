package main

import "testing"

// The first pass's line filter keeps every line whose top-level resource is
// of a first-pass type (anonymize.FirstPassTypes), whatever its layout, and skips lines that only
// mention one.
func TestMayBeIdentifierType(t *testing.T) {
	for _, c := range []struct {
		line string
		want bool
	}{
		{`{"resourceType":"Patient","id":"1"}`, true},
		{`{"id":"1", "resourceType" : "Practitioner"}`, true},
		{`{"meta":{"tag":[{"code":"Patient"}]},"resourceType":"Location"}`, true},
		{`{"resourceType":"\u0050atient","id":"1"}`, true},
		{`{"resource\u0054ype":"Organization","id":"1"}`, true},
		{`{"resourceType":"Observation","subject":{"reference":"Patient/1","type":"Patient"}}`, false},
		{`{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p"}]}`, false},
		{`{"resourceType":"Observation","id":"1"}`, false},
		{`{"resourceType":"MedicationRequest","id":"m"}`, true},
		{`{"resourceType":"Observation","note":[{"text":"\"resourceType\":\"Patient\""}]}`, false},
		{`{"resourceType":"PatientX"}`, false},
		{`not json "RelatedPerson"`, true},
		{`not json`, false},
	} {
		if got := mayBeIdentifierType([]byte(c.line)); got != c.want {
			t.Errorf("mayBeIdentifierType(%s) = %v, want %v", c.line, got, c.want)
		}
	}
}
