package typed_test

import (
	"slices"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// walkOrder returns the elements below root in Walk's order.
func walkOrder(root *jsontree.Node) []*jsontree.Node {
	var out []*jsontree.Node
	typed.Walk(root, func(n *jsontree.Node) bool {
		if n != root {
			out = append(out, n)
		}
		return true
	})
	return out
}

// TestElementsListWalkOrder checks Options.Elements against Walk: on every
// complete list, the same elements in the same order; resources with a
// nested resource or a "_name" member, and invalid ones, give no list.
func TestElementsListWalkOrder(t *testing.T) {
	m := model.Get(model.R4)
	var els typed.Elements
	check := func(name string, data []byte, wantComplete bool) {
		t.Helper()
		root, err := jsontree.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		err = typed.AnnotateWith(root, m, typed.Options{WrapRepeating: true, TrimSpace: true, Elements: &els})
		if els.Complete != wantComplete {
			t.Fatalf("%s: complete = %v, want %v (error %v)", name, els.Complete, wantComplete, err)
		}
		if !els.Complete {
			if len(els.Nodes) != 0 {
				t.Fatalf("%s: an incomplete list keeps %d nodes", name, len(els.Nodes))
			}
			return
		}
		if want := walkOrder(root); !slices.Equal(els.Nodes, want) {
			t.Fatalf("%s: %d elements listed, Walk visits %d (or in another order)", name, len(els.Nodes), len(want))
		}
	}
	check("observation", []byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"s","code":"c"},{"code":"d"}],"text":"t"},
	  "component":[{"code":{"text":"a"},"valueQuantity":{"value":1}},{"code":{"text":"b"},"valueString":"x"}],"subject":{"reference":"Patient/p"}}`), true)
	// A single value of a repeating element is wrapped in an array.
	check("wrapped", []byte(`{"resourceType":"Patient","id":"p","name":{"family":"F","given":"G"},"telecom":{"value":"1"}}`), true)
	check("contained", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"t"},"contained":[{"resourceType":"Patient","id":"p"}]}`), false)
	check("shadow", []byte(`{"resourceType":"Patient","birthDate":"2000-01-01","_birthDate":{"extension":[{"url":"u","valueString":"x"}]}}`), false)
	check("invalid", []byte(`{"resourceType":"Patient","nosuch":1}`), false)
	// The list is refilled, not appended to, by the next call.
	check("again", []byte(`{"resourceType":"Patient","id":"p","active":true}`), true)
	if len(els.Nodes) != 2 {
		t.Fatalf("the last list holds %d nodes, want 2 (id, active)", len(els.Nodes))
	}
}

// TestElementsListSynthea checks Options.Elements against Walk on every
// resource of synthea-100.
func TestElementsListSynthea(t *testing.T) {
	m := model.Get(model.R4)
	var els typed.Elements
	complete := 0
	for i, line := range readLines(t, testshared.Dir(t, "data", "synthea-100")) {
		root, err := jsontree.Parse(line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if err := typed.AnnotateWith(root, m, typed.Options{WrapRepeating: true, TrimSpace: true, Elements: &els}); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if els.Complete {
			complete++
			if want := walkOrder(root); !slices.Equal(els.Nodes, want) {
				t.Fatalf("line %d: %d elements listed, Walk visits %d (or in another order)", i+1, len(els.Nodes), len(want))
			}
		}
	}
	if complete == 0 {
		t.Fatal("no complete list on synthea-100")
	}
	t.Logf("%d resources of synthea-100 listed completely", complete)
}
