package anonymize

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// cacheContents returns the caches' lists, by slot.
func cacheContents(r *run) [][]*jsontree.Node {
	out := make([][]*jsontree.Node, len(r.cache))
	for i, l := range r.cache {
		for _, p := range l.parts {
			out[i] = append(out[i], p...)
		}
	}
	return out
}

// TestCachesFromElementList builds the caches of every resource of
// synthea-100 (and of resources with nested resources and "_name" members)
// from typing's element list and by walking the tree, for the longitudinal
// profile's rules: the same nodes in the same order, by slot.
func TestCachesFromElementList(t *testing.T) {
	e := newTestEngine(t, string(defaultconfig.Longitudinal()))
	lines := [][]byte{
		[]byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"s","code":"c","display":"d"}],"text":"t"},"subject":{"reference":"Patient/p","display":"P"}}`),
		[]byte(`{"resourceType":"Observation","status":"final","code":{"text":"t"},"contained":[{"resourceType":"Patient","id":"p","name":[{"family":"F"}]},
		  {"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"q","name":[{"family":"G"}]}}]}]}`),
		[]byte(`{"resourceType":"Patient","birthDate":"2000-01-01","_birthDate":{"extension":[{"url":"u","valueString":"x"}]},"name":{"family":"F"}}`),
	}
	if testshared.Path() != "" {
		lines = append(lines, datasetLines(t, "synthea-100", 400)...)
	}
	listed, nonEmpty, nestedChecked := 0, 0, 0
	for i, line := range lines {
		root, err := jsontree.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		r := e.getRun()
		if err := typed.AnnotateWith(root, e.model, typed.Options{WrapRepeating: true, TrimSpace: true, Elements: &r.elems}); err != nil {
			t.Fatalf("resource %d: %v", i, err)
		}
		r.root = root
		if !e.plan(root.Type()).fast {
			t.Fatalf("resource %d: the longitudinal profile has no fast-path rule for %s", i, root.Type())
		}
		complete := r.elems.Complete
		if complete {
			listed++
		}
		// compare builds res's caches from the list and by the walk, and
		// returns the nested resources the walk found and the number of
		// slots it filled.
		compare := func(what string, res *jsontree.Node) ([]*jsontree.Node, int) {
			t.Helper()
			plan := e.plan(res.Type())
			r.elems.Complete = complete
			r.nested = r.nested[:0]
			r.buildCaches(res, plan)
			fromList, nestedFromList := cacheContents(r), slices.Clone(r.nested)
			r.elems.Complete = false
			r.nested = r.nested[:0]
			r.buildCaches(res, plan)
			walked := cacheContents(r)
			if !slices.Equal(nestedFromList, r.nested) {
				t.Fatalf("%s: %d nested resources from the list, %d from the walk", what, len(nestedFromList), len(r.nested))
			}
			filled := 0
			for s := range walked {
				if !slices.Equal(fromList[s], walked[s]) {
					t.Fatalf("%s (%s, listed %v), slot %d: %d nodes from the list, %d from the walk (or in another order)",
						what, res.Type(), complete, s, len(fromList[s]), len(walked[s]))
				}
				if len(walked[s]) > 0 {
					filled++
				}
			}
			return slices.Clone(r.nested), filled
		}
		nested, filled := compare(fmt.Sprintf("resource %d", i), root)
		nonEmpty += filled
		// The nested resources' caches, as the engine builds them after
		// the root's rules.
		for k, n := range nested {
			compare(fmt.Sprintf("resource %d, nested %d", i, k), n)
			nestedChecked++
		}
		clear(r.nested)
		r.nested = r.nested[:0]
		e.putRun(r)
	}
	if listed == 0 || nonEmpty == 0 || nestedChecked == 0 {
		t.Fatalf("%d resources listed, %d caches filled, %d nested resources: the test compares nothing", listed, nonEmpty, nestedChecked)
	}
	t.Logf("%d of %d resources built from the list, %d nested resources", listed, len(lines), nestedChecked)
}

// TestTailListsSameOutput de-identifies resources with the matches of
// rules like nodesByType('Coding').system found once per resource
// (findTails) and found by each rule in turn: the same output, also when a
// rule adds nodes (an attachment's size, a substitute) before such a rule.
func TestTailListsSameOutput(t *testing.T) {
	configs := map[string][]byte{"longitudinal": defaultconfig.Longitudinal(), "reshaping": []byte(`{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"nodesByType('Attachment')","method":"scrub"},
	  {"path":"nodesByType('Attachment').size","method":"keep"},
	  {"path":"nodesByType('Coding').code","method":"keep"},
	  {"path":"nodesByType('CodeableConcept')","method":"substitute","replaceWith":{"coding":[{"system":"s","code":"c","display":"Smith"}],"text":"x"}},
	  {"path":"nodesByType('Coding').display","method":"keep"},
	  {"path":"nodesByType('Coding').system","method":"cryptoHash"},
	  {"path":"nodesByType('string')","method":"redact"},
	  {"path":"nodesByType('unsignedInt')","method":"redact"}],"parameters":{"cryptoHashKey":"k"}}`)}
	lines := [][]byte{
		[]byte(`{"resourceType":"DocumentReference","id":"d","status":"current","content":[{"attachment":{"contentType":"text/plain","data":"U2VlbiBieSBEci4gU21pdGg=","title":"t"}}],"type":{"coding":[{"system":"s","code":"c","display":"Note"}]}}`),
		[]byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1","display":"Body Height"},{"system":"l","code":"2","display":"D"}],"text":"Body Height"}}`),
	}
	if testshared.Path() != "" {
		lines = append(lines, datasetLines(t, "synthea-100", 300)...)
	}
	for name, data := range configs {
		with, without := newTestEngine(t, string(data)), newTestEngine(t, string(data))
		without.noTailLists = true
		if p := with.plan("Observation"); p.ntails == 0 {
			t.Fatalf("%s: no rule with a tail applies to Observation", name)
		}
		ctx := WithNow(context.Background(), today)
		compared, failed := 0, 0
		for i, line := range lines {
			a, _, errA := with.AnonymizeJSON(ctx, line, FileContext{})
			b, _, errB := without.AnonymizeJSON(ctx, line, FileContext{})
			if (errA == nil) != (errB == nil) || errA != nil && errA.Error() != errB.Error() {
				t.Fatalf("%s, resource %d: error %v with the tail lists, %v without", name, i, errA, errB)
			}
			if errA != nil {
				failed++
				continue
			}
			compared++
			if !bytes.Equal(a, b) {
				t.Fatalf("%s, resource %d: with the tail lists %s\nwithout %s", name, i, a, b)
			}
		}
		if compared < len(lines)/2 {
			t.Fatalf("%s: %d resources compared, %d failed in both", name, compared, failed)
		}
	}
}
