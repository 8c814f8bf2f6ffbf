package anonymize

import (
	"context"
	"strings"
	"testing"
)

// withoutHead turns e's viaHead rules back into rules the FHIRPath
// evaluator runs on the whole resource.
func withoutHead(e *Engine) {
	for i := range e.rules {
		if r := &e.rules[i]; r.viaHead {
			r.viaHead, r.fast = false, fastNone
		}
	}
	for t := range e.plans {
		e.plans[t] = e.newPlan(t)
	}
}

// Rules that begin with nodesByType or nodesByName and go on take that
// call's nodes from the caches; the output is what the evaluator gives,
// with contained and bundled resources, $index, a resource that is itself
// of the type, and after a substitute changed the tree.
func TestViaHeadRules(t *testing.T) {
	rules := []string{
		`{"path":"nodesByType('Coding').where(system = 'http://loinc.org' or system = 'http://snomed.info/sct').display","method":"keep"}`,
		`{"path":"nodesByName('display').where($index = 1)","method":"cryptoHash"}`,
		`{"path":"nodesByType('Coding').where(code.startsWith('9')).code","method":"redact"}`,
		`{"path":"nodesByType('Patient').where(gender = 'male').birthDate","method":"redact"}`,
		`{"path":"nodesByName('contained').where(id = 'p2').gender","method":"redact"}`,
		`{"path":"nodesByType('Coding').display","method":"redact"}`,
		`{"path":"nodesByType('string')","method":"redact"}`,
	}
	resources := []string{
		`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1","display":"one"},{"system":"urn:x","code":"92","display":"two"}]},
		 "valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"3","display":"three"}],"text":"t"},
		 "contained":[{"resourceType":"Patient","id":"p2","gender":"male","birthDate":"1990-01-01","maritalStatus":{"coding":[{"system":"http://loinc.org","code":"9","display":"m"}]}}]}`,
		`{"resourceType":"Patient","id":"p","gender":"male","birthDate":"1980-05-06","maritalStatus":{"coding":[{"system":"http://loinc.org","code":"4","display":"married"}]}}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p3","gender":"male","birthDate":"1970-01-01"}},
		 {"resource":{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p3"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"95","display":"d"}]}}}]}`,
	}
	substitute := `{"path":"nodesByType('CodeableConcept')","method":"substitute","replaceWith":{"coding":[{"system":"http://loinc.org","code":"7","display":"new"}],"text":"x"}}`
	for _, sub := range []bool{false, true} {
		rs := rules
		if sub {
			rs = append([]string{substitute}, rules...)
		}
		cfg := `{"fhirVersion":"R4","fhirPathRules":[` + strings.Join(rs, ",") + `],"parameters":{"cryptoHashKey":"k","dateShiftKey":"d"}}`
		fast := newTestEngine(t, cfg)
		n := 0
		for _, r := range fast.rules {
			if r.viaHead {
				n++
			}
		}
		if n != 5 {
			t.Fatalf("%d rules via their head call, want 5", n)
		}
		slow := newTestEngine(t, cfg)
		withoutHead(slow)
		for _, res := range resources {
			ctx := WithNow(context.Background(), today)
			a, _, errA := fast.AnonymizeJSON(ctx, []byte(res), FileContext{})
			b, _, errB := slow.AnonymizeJSON(ctx, []byte(res), FileContext{})
			if string(a) != string(b) || (errA == nil) != (errB == nil) {
				t.Errorf("substitute %v: via head:\n%s %v\nevaluator:\n%s %v", sub, a, errA, b, errB)
			}
		}
	}
}
