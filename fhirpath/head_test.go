package fhirpath

import (
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

func typedJSON(t *testing.T, s string) *jsontree.Node {
	t.Helper()
	root, err := jsontree.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
		t.Fatal(err)
	}
	return root
}

// A chain of "or" over comparisons of one path with strings gives what the
// same comparisons written the other way round give ('a' = system is not
// grouped), on every kind of input: one value, none, several, values that
// are not strings, and with an operand that fails between them.
func TestOrChainOfEquals(t *testing.T) {
	m := model.Get(model.R4)
	resources := []string{
		`{"resourceType":"Patient","gender":"male","name":[{"given":["a","b"]}],"birthDate":"2001-02"}`,
		`{"resourceType":"Patient","gender":"female","name":[{"given":["x"]}],"active":true}`,
		`{"resourceType":"Patient","name":[{"family":"f"}],"multipleBirthInteger":2}`,
		`{"resourceType":"Patient","gender":"other","_gender":{"extension":[{"url":"http://x","valueString":"s"}]}}`,
	}
	exprs := [][2]string{
		{`gender = 'male' or gender = 'female' or gender = 'unknown'`, `'male' = gender or 'female' = gender or 'unknown' = gender`},
		{`(gender = 'other' or gender = 'x') or active`, `('other' = gender or 'x' = gender) or active`},
		{`active or gender = 'other' or gender = 'female'`, `active or 'other' = gender or 'female' = gender`},
		{`name.given = 'a' or name.given = 'x'`, `'a' = name.given or 'x' = name.given`},
		{`name.family = 'f' or name.family = 'g' or gender = 'male' or gender = 'female'`, `'f' = name.family or 'g' = name.family or 'male' = gender or 'female' = gender`},
		{`birthDate = '2001-02' or birthDate = '2001'`, `'2001-02' = birthDate or '2001' = birthDate`},
		{`multipleBirth = '2' or multipleBirth = 'x'`, `'2' = multipleBirth or 'x' = multipleBirth`},
		{`active = 'true' or active = 'x'`, `'true' = active or 'x' = active`},
		{`gender = 'x' or gender = 'y' or name.given or gender = 'male'`, `'x' = gender or 'y' = gender or name.given or 'male' = gender`},
		{`gender = 'x' or gender = 'male' or name.given`, `'x' = gender or 'male' = gender or name.given`},
		{`gender = 'x' or (gender = 'y' or gender = 'male')`, `'x' = gender or ('y' = gender or 'male' = gender)`},
	}
	grouped := 0
	for _, e := range exprs {
		a, err := Compile(e[0], WithModel(m))
		if err != nil {
			t.Fatalf("%s: %v", e[0], err)
		}
		b, err := Compile(e[1], WithModel(m))
		if err != nil {
			t.Fatalf("%s: %v", e[1], err)
		}
		ast, _ := parse(e[0])
		if bin, ok := ast.(*binaryExpr); ok {
			cp := &compiler{src: e[0], cfg: &config{model: m}}
			if _, ok, _ := cp.orChain(bin); ok {
				grouped++
			}
		}
		for _, res := range resources {
			root := typedJSON(t, res)
			for _, env := range []*Env{nil, {PartialDatesAsRanges: true}} {
				ra, erra := a.Evaluate(root, env)
				rb, errb := b.Evaluate(root, env)
				if show(ra) != show(rb) || (erra == nil) != (errb == nil) || (erra != nil && erra.Error() != errb.Error()) {
					t.Errorf("%s on %s: %q %v, the same ungrouped: %q %v", e[0], res, show(ra), erra, show(rb), errb)
				}
			}
		}
	}
	if grouped != len(exprs) {
		t.Errorf("%d of %d chains grouped", grouped, len(exprs))
	}
	// A single comparison, or comparisons of different paths, are not grouped.
	for _, src := range []string{`gender = 'a' or active`, `gender = 'a' or name.family = 'b'`, `gender = 'a' or 'b' = gender`, `gender = 'a' or gender = 1`} {
		ast, err := parse(src)
		if err != nil {
			t.Fatal(err)
		}
		cp := &compiler{src: src, cfg: &config{model: m}}
		if _, ok, _ := cp.orChain(ast.(*binaryExpr)); ok {
			t.Errorf("%s: grouped", src)
		}
	}
}

func TestEvaluateWithHead(t *testing.T) {
	m := model.Get(model.R4)
	opts := []Option{WithModel(m), WithFunctions(AnonymizerFunctions()...)}
	root := typedJSON(t, `{"resourceType":"Observation","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"1","display":"one"},{"system":"urn:x","code":"2","display":"two"}]},
		"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"3","display":"three"}]}}`)
	e := MustCompile(`nodesByType('Coding').where(system = 'http://loinc.org' or system = 'http://snomed.info/sct').display`, opts...)
	name, arg, ok := e.HeadCall()
	if !ok || name != "nodesByType" || arg != "Coding" {
		t.Fatalf("HeadCall: %q %q %v", name, arg, ok)
	}
	want, err := e.Evaluate(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if show(want) != "Observation.code.coding[0].display string one; Observation.valueCodeableConcept.coding[0].display string three" {
		t.Fatalf("Evaluate: %s", show(want))
	}
	codings, err := MustCompile(`nodesByType('Coding')`, opts...).Evaluate(root, nil)
	if err != nil || len(codings) != 3 {
		t.Fatalf("codings: %v %v", codings, err)
	}
	var nodes []*jsontree.Node
	for _, it := range codings {
		nodes = append(nodes, it.Node())
	}
	got, err := e.EvaluateWithHead(root, nodes, nil)
	if err != nil || show(got) != show(want) {
		t.Errorf("EvaluateWithHead: %s %v, want %s", show(got), err, show(want))
	}
	// The head items are used as given, not computed.
	got, err = e.EvaluateWithHead(root, nodes[2:], nil)
	if err != nil || show(got) != "Observation.valueCodeableConcept.coding[0].display string three" {
		t.Errorf("EvaluateWithHead on one Coding: %s %v", show(got), err)
	}
	if got, err := e.EvaluateWithHead(root, nil, nil); err != nil || len(got) != 0 {
		t.Errorf("EvaluateWithHead on none: %s %v", show(got), err)
	}
	// $index counts in the head's items.
	ix := MustCompile(`nodesByType('Coding').where($index = 1).code`, opts...)
	if got, err := ix.EvaluateWithHead(root, nodes, nil); err != nil || show(got) != "Observation.code.coding[1].code code 2" {
		t.Errorf("$index: %s %v", show(got), err)
	}
	// Only a custom call with a literal that begins the expression is a
	// head.
	for _, src := range []string{`Observation.code`, `nodesByType('Coding') | nodesByType('Quantity')`, `code.coding.where(nodesByType('Coding').exists())`} {
		x := MustCompile(src, opts...)
		if _, _, ok := x.HeadCall(); ok {
			t.Errorf("%s: has a head call", src)
		}
		if _, err := x.EvaluateWithHead(root, nodes, nil); err == nil || !strings.Contains(err.Error(), "does not begin") {
			t.Errorf("%s: EvaluateWithHead: %v", src, err)
		}
	}
	// A nested nodesByType is evaluated, not replaced by the head.
	nested := MustCompile(`nodesByType('CodeableConcept').where(nodesByType('Coding').code = '3').text | nodesByType('Coding').code`, opts...)
	if _, _, ok := nested.HeadCall(); ok {
		t.Errorf("union has a head call")
	}
	inner := MustCompile(`nodesByType('CodeableConcept').where(nodesByType('Coding').code = '3')`, opts...)
	var ccs []*jsontree.Node
	for _, it := range MustCompile(`nodesByType('CodeableConcept')`, opts...).mustEval(t, root) {
		ccs = append(ccs, it.Node())
	}
	if got, err := inner.EvaluateWithHead(root, ccs, nil); err != nil || show(got) != "Observation.valueCodeableConcept CodeableConcept" {
		t.Errorf("nested nodesByType: %s %v", show(got), err)
	}
}

func (e *Expression) mustEval(t *testing.T, n *jsontree.Node) []Item {
	t.Helper()
	items, err := e.Evaluate(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// TestHeadWhere checks that the items MatchHeadWhere selects, with their
// children of HeadWhere's name, are what the expression finds, on the
// memo tests' resources; that an item where() fails on reports ok=false;
// and which shapes HeadWhere recognises.
func TestHeadWhere(t *testing.T) {
	m := model.Get(model.R4)
	funcs := WithFunctions(AnonymizerFunctions()...)
	roots := memoResources(t)
	checked, failed := 0, 0
	for _, tc := range memoCriteria {
		// A child each head type has.
		tails := map[string]string{"Coding": "display", "Extension": "url", "HumanName": "family",
			"Period": "start", "Quantity": "unit", "ContactPoint": "value"}
		src := tc.src
		if !strings.HasPrefix(src, "nodesByType('") {
			continue
		}
		if !strings.HasSuffix(src, ".display") {
			head := src[len("nodesByType('"):strings.Index(src, "')")]
			src += "." + tails[head]
		}
		e, err := Compile(src, WithModel(m), funcs)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		member, name, ok := e.HeadWhere()
		if !ok {
			continue
		}
		if !strings.HasSuffix(src, "."+name) || member == "" {
			t.Fatalf("%s: HeadWhere gives member %q, name %q", src, member, name)
		}
		checked++
		_, arg, _ := e.HeadCall()
		for _, root := range roots {
			want, werr := e.Evaluate(root, nil)
			var got []*jsontree.Node
			allOK := true
			typed.Walk(root, func(n *jsontree.Node) bool {
				if n.Type() != arg {
					return true
				}
				match, ok := e.MatchHeadWhere(n, nil)
				if !ok {
					allOK = false
				} else if match {
					got = typed.Children(n, name, got)
				}
				return true
			})
			if werr != nil {
				if allOK {
					t.Fatalf("%s on %s: the expression fails (%v) but every item matched", src, root.Get("id").Value(), werr)
				}
				failed++
				continue
			}
			if !allOK {
				t.Fatalf("%s on %s: an item failed, the expression did not", src, root.Get("id").Value())
			}
			if len(got) != len(want) {
				t.Fatalf("%s on %s: %d nodes selected, the expression finds %d", src, root.Get("id").Value(), len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i].Node() {
					t.Fatalf("%s on %s: node %d differs", src, root.Get("id").Value(), i)
				}
			}
		}
	}
	if checked < 10 || failed == 0 {
		t.Errorf("%d criteria checked, %d failing evaluations: the test covers too little", checked, failed)
	}
	for _, src := range []string{
		`nodesByType('Coding').where(system = 'a' and code = 'b').display`, // two members
		`nodesByType('Coding').where(system = 'a')`,                        // no name after it
		`nodesByType('Coding').where(system = 'a').display.first()`,
		`nodesByType('Coding').first().where(system = 'a').display`,
		`Observation.code.coding.where(system = 'a').display`, // no head call
		`nodesByType('Coding').where($this.system = 'a').display`,
	} {
		e, err := Compile(src, WithModel(m), funcs)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if member, name, ok := e.HeadWhere(); ok {
			t.Errorf("%s: HeadWhere gives %q, %q; want none", src, member, name)
		}
		if _, ok := e.MatchHeadWhere(roots[0], nil); ok {
			t.Errorf("%s: MatchHeadWhere ok", src)
		}
	}
}
