package typed_test

import (
	"fmt"
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

// checkList checks a complete element list against Walk: the list without
// the nested resources' spans is Walk's order from the root, and each
// nested resource's span, without the spans inside it, is Walk's order from
// that resource.
func checkList(els *typed.Elements, root *jsontree.Node) error {
	// own returns the listed elements of [lo, hi) outside nested spans,
	// nested resources excluded (Walk does not visit them).
	own := func(lo, hi int) []*jsontree.Node {
		var out []*jsontree.Node
		for i := lo; i < hi; i++ {
			skipped := false
			for _, sp := range els.Nested {
				if sp.Index == i {
					i, skipped = sp.End-1, true
					break
				}
			}
			if !skipped {
				out = append(out, els.Nodes[i])
			}
		}
		return out
	}
	if got, want := own(0, len(els.Nodes)), walkOrder(root); !slices.Equal(got, want) {
		return fmt.Errorf("root: %d elements listed, Walk visits %d (or in another order)", len(got), len(want))
	}
	for k, sp := range els.Nested {
		n := els.Nodes[sp.Index]
		if !typed.IsResource(n) || sp.End < sp.Index+1 || sp.End > len(els.Nodes) {
			return fmt.Errorf("nested span %d [%d, %d) does not start at a resource", k, sp.Index, sp.End)
		}
		if got, want := own(sp.Index+1, sp.End), walkOrder(n); !slices.Equal(got, want) {
			return fmt.Errorf("nested resource %d: %d elements listed, Walk visits %d (or in another order)", k, len(got), len(want))
		}
	}
	return nil
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
		if err := checkList(&els, root); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	check("observation", []byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"s","code":"c"},{"code":"d"}],"text":"t"},
	  "component":[{"code":{"text":"a"},"valueQuantity":{"value":1}},{"code":{"text":"b"},"valueString":"x"}],"subject":{"reference":"Patient/p"}}`), true)
	// A single value of a repeating element is wrapped in an array.
	check("wrapped", []byte(`{"resourceType":"Patient","id":"p","name":{"family":"F","given":"G"},"telecom":{"value":"1"}}`), true)
	check("contained", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"t"},"contained":[{"resourceType":"Patient","id":"p","name":[{"family":"F"}]},
	  {"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"q"}}]}],"subject":{"reference":"#p"}}`), true)
	if len(els.Nested) != 3 {
		t.Fatalf("contained: %d nested resources listed, want 3", len(els.Nested))
	}
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
	complete, nested := 0, 0
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
			if err := checkList(&els, root); err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			nested += len(els.Nested)
		}
	}
	if complete == 0 {
		t.Fatal("no complete list on synthea-100")
	}
	if nested == 0 {
		t.Fatal("no nested resource listed on synthea-100")
	}
	t.Logf("%d resources of synthea-100 listed completely, with %d nested resources", complete, nested)
}

// TestChildrenNamed checks ChildrenNamed against Children, name by name,
// on every element of a resource with shadows, arrays and choice elements.
func TestChildrenNamed(t *testing.T) {
	root, err := jsontree.Parse([]byte(`{"resourceType":"Patient","id":"p","name":[{"family":"F","given":["a","b"],"_given":[null,{"id":"x"}]}],
	  "birthDate":"2000-01-01","_birthDate":{"extension":[{"url":"u","valueString":"v"}]},"deceasedBoolean":false,
	  "telecom":[{"system":"phone","value":"1"},{"system":"email","value":"e"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
		t.Fatal(err)
	}
	names := []string{"given", "family", "extension", "deceased", "system", "value", "name", "telecom", "url", "nosuch"}
	checked := 0
	typed.Walk(root, func(n *jsontree.Node) bool {
		dsts := make([][]*jsontree.Node, len(names))
		typed.ChildrenNamed(n, names, dsts)
		for i, name := range names {
			want := typed.Children(n, name, nil)
			if !slices.Equal(dsts[i], want) {
				t.Errorf("%s: ChildrenNamed gives %d %q children, Children %d", typed.Location(n), len(dsts[i]), name, len(want))
			}
			checked += len(want)
		}
		return true
	})
	if checked < 10 {
		t.Fatalf("only %d children compared", checked)
	}
}

// TestElementsEmpty checks that the element list tells whether the resource
// holds an empty object or array, nested resources included.
func TestElementsEmpty(t *testing.T) {
	m := model.Get(model.R4)
	for _, tc := range []struct {
		in    string
		empty bool
	}{
		{`{"resourceType":"Patient","id":"a","name":[{"family":"F","given":["G"]}]}`, false},
		{`{"resourceType":"Patient","id":"a","name":[]}`, true},
		{`{"resourceType":"Patient","id":"a","maritalStatus":{}}`, true},
		{`{"resourceType":"Patient","id":"a","contact":[{"name":{"given":[]}}]}`, true},
		{`{"resourceType":"Patient","id":"a","contained":[{"resourceType":"Practitioner","id":"b","name":[{}]}]}`, true},
		{`{"resourceType":"Patient","id":"a","contained":[{"resourceType":"Practitioner","id":"b","name":[{"text":"x"}]}]}`, false},
	} {
		root, err := jsontree.Parse([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		var els typed.Elements
		els.Empty = !tc.empty // AnnotateWith must reset it
		if err := typed.AnnotateWith(root, m, typed.Options{WrapRepeating: true, Elements: &els}); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !els.Complete || els.Empty != tc.empty {
			t.Errorf("%s: Complete %v, Empty %v; want true, %v", tc.in, els.Complete, els.Empty, tc.empty)
		}
	}
}
