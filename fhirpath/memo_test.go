package fhirpath

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// withoutMemo turns the criteria memo off.
func withoutMemo() Option { return func(c *config) { c.noMemo = true } }

// longitudinalCodings is the criteria of the longitudinal profile's rule
// on Codings (anonymize/defaultconfig/longitudinal.json).
const longitudinalCodings = `nodesByType('Coding').where((system = 'http://loinc.org' or system = 'http://snomed.info/sct' or system = 'http://www.nlm.nih.gov/research/umls/rxnorm' or system = 'http://hl7.org/fhir/sid/icd-9-cm' or system = 'http://hl7.org/fhir/sid/icd-9' or system = 'http://hl7.org/fhir/sid/icd-10' or system = 'http://hl7.org/fhir/sid/icd-10-cm' or system = 'http://www.cms.gov/Medicare/Coding/ICD10' or system = 'http://www.ama-assn.org/go/cpt' or system = 'http://hl7.org/fhir/sid/cvx' or system = 'http://hl7.org/fhir/sid/ndc' or system = 'http://unitsofmeasure.org') or system.startsWith('http://terminology.hl7.org/CodeSystem/') or system.startsWith('https://bluebutton.cms.gov/resources/codesystem/') or (system.startsWith('http://hl7.org/fhir/') and system.startsWith('http://hl7.org/fhir/sid/').not())).display`

// memoCodings are Codings of every shape the memo must tell apart: known
// and unknown systems, one differing only in case, an empty string, no
// system, a system with only extensions, a system with a value and an id,
// and the same systems again (so that the memo is hit within a resource).
var memoCodings = []string{
	`{"system":"http://loinc.org","code":"1-8","display":"a"}`,
	`{"system":"http://snomed.info/sct","code":"123","display":"b"}`,
	`{"system":"HTTP://LOINC.ORG","code":"1-8","display":"c"}`,
	`{"system":"http://loinc.org ","code":"1-8","display":"c2"}`,
	`{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"d"}`,
	`{"system":"http://hl7.org/fhir/sid/us-npi","code":"1","display":"e"}`,
	`{"system":"http://hl7.org/fhir/v2/0203","code":"MR","display":"f"}`,
	`{"system":"http://example.org/local","code":"x","display":"g"}`,
	`{"system":"","code":"empty","display":"h"}`,
	`{"code":"nosystem","display":"i"}`,
	`{"_system":{"extension":[{"url":"http://example.org/x","valueString":"s"}]},"code":"extonly","display":"j"}`,
	`{"system":"http://loinc.org","_system":{"id":"s1"},"code":"withid","display":"k"}`,
	`{"system":"http://hl7.org/fhir/sid/icd-10","code":"A00","display":"l"}`,
	`{"system":"http://unitsofmeasure.org","code":"mg","display":"m"}`,
	`{"system":"urn:oid:2.16.840.1.113883.6.1","code":"1-8","display":"n"}`,
	`{"system":"http://loinc.org","code":"2-6","display":"o"}`,
	`{"system":"http://snomed.info/sct","code":"","display":"p"}`,
	`{"system":"http://example.org/local","code":"y","display":"q"}`,
}

// memoResources builds resources whose Codings, extensions, names,
// quantities, periods and contact points cover the shapes memoCodings
// lists and members of other types (boolean, integer, decimal, code,
// dateTime, repeating strings).
func memoResources(t *testing.T) []*jsontree.Node {
	t.Helper()
	var out []*jsontree.Node
	for shift := 0; shift < 3; shift++ {
		var codings []string
		for i := range memoCodings {
			codings = append(codings, memoCodings[(i+shift*5)%len(memoCodings)])
		}
		obs := `{"resourceType":"Observation","id":"o` + fmt.Sprint(shift) + `","status":"final",` +
			`"category":[{"coding":[` + strings.Join(codings[:4], ",") + `]}],` +
			`"code":{"coding":[` + strings.Join(codings[4:], ",") + `]},` +
			`"valueQuantity":{"value":` + fmt.Sprint(3+shift) + `.5,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"},` +
			`"effectivePeriod":{"start":"2001","end":"2001-03-04T10:00:00Z"},` +
			`"component":[{"code":{"coding":[` + codings[shift] + `]},"valueInteger":` + fmt.Sprint(shift) + `},` +
			`{"code":{"coding":[` + codings[shift+1] + `]},"valueBoolean":true},` +
			`{"code":{"coding":[` + codings[shift+2] + `]},"valueString":"true"},` +
			`{"code":{"coding":[` + codings[shift+3] + `]},"valueQuantity":{"value":10}}]}`
		out = append(out, typedJSON(t, obs))
	}
	pat := `{"resourceType":"Patient","id":"p","active":true,"gender":"female","birthDate":"1970",` +
		`"name":[{"use":"official","given":["Ann","Bea"]},{"use":"usual","given":["ann"]},{"family":"X"},{"given":["Bea"]}],` +
		`"telecom":[{"system":"phone","value":"1","rank":1},{"system":"email","value":"e","rank":2},{"system":"phone","value":"2"}],` +
		`"multipleBirthInteger":2,` +
		`"extension":[{"url":"http://e/a","valueBoolean":true},{"url":"http://e/b","valueString":"true"},{"url":"http://e/c","valueCode":"true"},` +
		`{"url":"http://e/d","valueInteger":1},{"url":"http://e/e","valueDecimal":1.0},{"url":"http://e/f","valueDateTime":"2001-02"},{"url":"http://e/a","valueBoolean":false},` +
		// Same kind and value, another type.
		`{"url":"http://e/g","valueString":"2001-02"},{"url":"http://e/h","valueDecimal":1},{"url":"http://e/i","valueDate":"2001-02"},{"url":"http://e/j","valueInteger":1}],` +
		`"contact":[{"period":{"start":"2001-03"}},{"period":{"start":"2001-03-04"}},{"period":{"end":"1999"}}]}`
	out = append(out, typedJSON(t, pat))
	// One Coding with a system among Codings without: a criteria that is
	// an error on it only must stay an error.
	out = append(out, typedJSON(t, `{"resourceType":"Observation","id":"one","status":"final","code":{"coding":[{"code":"a"},{"system":"http://loinc.org","code":"b"},{"code":"c"}]}}`))
	return out
}

// memoCriteria are expressions whose criteria the memo applies to, with
// the number of memo sites each must have.
var memoCriteria = []struct {
	src   string
	sites int
}{
	{longitudinalCodings, 1},
	{`nodesByType('Coding').where(system = 'http://loinc.org')`, 1},
	{`nodesByType('Coding').where(system = %loinc or system = %sct)`, 1},
	{`nodesByType('Coding').where(system ~ 'http://loinc.org')`, 1},
	{`nodesByType('Coding').where(system.lower() = 'http://loinc.org')`, 1},
	{`nodesByType('Coding').where(system.upper().startsWith('HTTP://'))`, 1},
	{`nodesByType('Coding').where(system.empty())`, 1},
	{`nodesByType('Coding').where(system.exists().not())`, 1},
	{`nodesByType('Coding').where(system.hasValue())`, 1},
	{`nodesByType('Coding').where(system.count() = 1)`, 1},
	{`nodesByType('Coding').where(system.length() > 20)`, 1},
	{`nodesByType('Coding').where(system.substring(0, 4) = 'http')`, 1},
	{`nodesByType('Coding').where(system.indexOf('hl7') > 0)`, 1},
	{`nodesByType('Coding').where(system.replace('http://', '') = 'loinc.org')`, 1},
	{`nodesByType('Coding').where(system.matches('^http://[a-z.]+$'))`, 1},
	{`nodesByType('Coding').where(system.contains('hl7') xor system.endsWith('sct'))`, 1},
	{`nodesByType('Coding').where(system.startsWith('http') implies system.contains('org'))`, 1},
	{`nodesByType('Coding').where(system != '')`, 1},
	{`nodesByType('Coding').where(system in ('http://loinc.org' | 'http://snomed.info/sct'))`, 1},
	{`nodesByType('Coding').where(system & '/x' = 'http://loinc.org/x')`, 1},
	{`nodesByType('Coding').where(system.toString() = system)`, 1},
	{`nodesByType('Coding').where(system.startsWith(system.substring(0, 5)))`, 1},
	// Not a single boolean: a string is true, two items an error.
	{`nodesByType('Coding').where(system)`, 1},
	{`nodesByType('Coding').where(system | 'x')`, 1},
	{`nodesByType('Coding').where(system.single())`, 1},
	{`nodesByType('Coding').where(system.startsWith(1))`, 1},
	{`nodesByType('Coding').exists(system = 'http://example.org/local')`, 1},
	{`nodesByType('Coding').all(system.startsWith('http'))`, 1},
	{`nodesByType('Coding').where(code = '1-8').where(system = 'http://loinc.org')`, 2},
	{`nodesByType('Coding').where(code.matches('^[0-9]+-[0-9]$')).display`, 1},
	// Members of other types and repeating members.
	{`nodesByType('Extension').where(value = true)`, 1},
	{`nodesByType('Extension').where(value = 'true')`, 1},
	{`nodesByType('Extension').where(value ~ 'TRUE')`, 1},
	{`nodesByType('Extension').where(value = 1)`, 1},
	{`nodesByType('Extension').where(value > 0)`, 1},
	{`nodesByType('Extension').where(value.toString() = 'true')`, 1},
	{`nodesByType('Extension').where(value.convertsToInteger())`, 1},
	{`nodesByType('Extension').where(value = @2001-02)`, 1},
	{`nodesByType('Extension').where(value = '2001-02')`, 1},
	{`nodesByType('Extension').where(value = @2001-02-01T00:00:00Z)`, 1},
	{`nodesByType('Extension').where(value.convertsToInteger() and value = 1)`, 1},
	{`nodesByType('Extension').where(url = 'http://e/a')`, 1},
	{`nodesByType('HumanName').where(given = 'Bea')`, 1},
	{`nodesByType('HumanName').where(given.startsWith('B'))`, 1},
	{`nodesByType('HumanName').where(use = 'official' or use.empty())`, 1},
	{`nodesByType('ContactPoint').where(rank = 1)`, 1},
	{`nodesByType('ContactPoint').where(rank + 1 > 2)`, 1},
	{`nodesByType('ContactPoint').where(system = 'phone')`, 1},
	{`nodesByType('Quantity').where(value > 4)`, 1},
	{`nodesByType('Quantity').where(value * 2 = 9)`, 1},
	{`nodesByType('Period').where(start > @2001-02)`, 1},
	{`nodesByType('Period').where(start = @2001-03-04)`, 1},
	{`Observation.component.where(value = true)`, 1},
	{`Observation.component.where(value > 1)`, 1},
	{`Patient.where(active = true).gender`, 1},
	{`Patient.where(multipleBirth = 2).gender`, 1},
	{`Patient.where(gender = 'female').birthDate`, 1},
	{`Patient.name.all(given.exists())`, 1},
}

// sameResult reports whether two results of an evaluation are the same:
// the same nodes, equal values, the same error.
func sameResult(a []Item, aerr error, b []Item, berr error) bool {
	if (aerr == nil) != (berr == nil) {
		return false
	}
	if aerr != nil {
		return aerr.Error() == berr.Error()
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].node != b[i].node {
			return false
		}
		if a[i].node == nil && fmt.Sprint(a[i].val) != fmt.Sprint(b[i].val) {
			return false
		}
	}
	return true
}

// The memo gives what evaluating every criteria gives, on every shape of
// member, in both date semantics, the memo hit (each resource is
// evaluated several times, and the same values occur in one resource),
// with EvaluateWithHead as the anonymizer calls it and with Evaluate.
func TestMemoSameResults(t *testing.T) {
	m := model.Get(model.R4)
	roots := memoResources(t)
	funcs := WithFunctions(AnonymizerFunctions()...)
	envs := []*Env{nil, {PartialDatesAsRanges: true}}
	totalErrs := 0
	for _, tc := range memoCriteria {
		with, err := Compile(tc.src, WithModel(m), funcs)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		without, err := Compile(tc.src, WithModel(m), funcs, withoutMemo())
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if len(with.memoized) != tc.sites || len(without.memoized) != 0 {
			t.Errorf("%s: %d memo sites (without: %d), want %d", tc.src, len(with.memoized), len(without.memoized), tc.sites)
		}
		errs, nonEmpty := 0, 0
		for round := 0; round < 3; round++ {
			for _, root := range roots {
				for _, env := range envs {
					got, gerr := with.Evaluate(root, env)
					want, werr := without.Evaluate(root, env)
					if !sameResult(got, gerr, want, werr) {
						t.Fatalf("%s on %s (env %v, round %d): memo gives %v, %v; without %v, %v", tc.src, root.Get("id").Value(), env, round, got, gerr, want, werr)
					}
					if werr != nil {
						errs++
					} else if len(want) > 0 {
						nonEmpty++
					}
					if name, arg, ok := with.HeadCall(); ok && name == "nodesByType" {
						var head []*jsontree.Node
						typed.Walk(root, func(n *jsontree.Node) bool {
							if n.Type() == arg {
								head = append(head, n)
							}
							return true
						})
						got, gerr = with.EvaluateWithHead(root, head, env)
						if !sameResult(got, gerr, want, werr) {
							t.Fatalf("%s on %s with head (env %v): memo gives %v, %v; without %v, %v", tc.src, root.Get("id").Value(), env, got, gerr, want, werr)
						}
					}
				}
			}
		}
		if errs+nonEmpty == 0 {
			t.Errorf("%s: empty on every resource; the case tests nothing", tc.src)
		}
		totalErrs += errs
	}
	if totalErrs == 0 {
		t.Error("no criteria failed: errors are not tested")
	}
}

// The memo is used: a result stored for a key is what the criteria gives
// for it afterwards. A poisoned entry (the opposite result) changes the
// result of the next evaluation on the same context, and only for the
// site it was stored for.
func TestMemoIsConsulted(t *testing.T) {
	m := model.Get(model.R4)
	root := typedJSON(t, `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1"},{"system":"http://x","code":"2"}]}}`)
	e := MustCompile(`nodesByType('Coding').where(system = 'http://loinc.org').code`, WithModel(m), WithFunctions(AnonymizerFunctions()...))
	other := MustCompile(`nodesByType('Coding').where(system = 'http://loinc.org').code`, WithModel(m), WithFunctions(AnonymizerFunctions()...))
	eval := func(x *Expression, c *evalCtx) []string {
		input := c.one(Item{node: root})
		c.this, c.context = input, input
		res, err := x.root(c, input)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range res {
			out = append(out, it.node.Value())
		}
		c.slab = c.slab[:0]
		return out
	}
	c := e.newCtx(nil)
	defer release(c)
	c.memo = nil // a pooled context may have entries of other tests
	if got := eval(e, c); fmt.Sprint(got) != "[1]" {
		t.Fatalf("first evaluation: %v, want [1]", got)
	}
	if c.memo == nil {
		t.Fatal("no memo after evaluating a memoized criteria")
	}
	stored := 0
	for i := range c.memo.entries {
		en := &c.memo.entries[i]
		if en.site == nil {
			continue
		}
		stored++
		en.match = !en.match
	}
	if stored != 2 {
		t.Fatalf("%d memo entries, want 2", stored)
	}
	if got := eval(e, c); fmt.Sprint(got) != "[2]" {
		t.Errorf("after poisoning the memo: %v, want [2] (the stored results)", got)
	}
	// Another expression on the same context has sites of its own.
	if got := eval(other, c); fmt.Sprint(got) != "[1]" {
		t.Errorf("another expression on the poisoned context: %v, want [1]", got)
	}
}

// Values in the memo are copies: after evaluating on a tree whose values
// borrow a buffer, overwriting the buffer leaves the memo's values as they
// were; and a tree of other systems read into the same buffer gets its own
// results.
func TestMemoCopiesValues(t *testing.T) {
	m := model.Get(model.R4)
	e := MustCompile(`nodesByType('Coding').where(system = 'http://aaa').code`, WithModel(m), WithFunctions(AnonymizerFunctions()...))
	buf := []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://aaa","code":"1"}]}}`)
	at := bytesIndex(buf, "http://")
	p := jsontree.Parser{Borrow: true}
	c := e.newCtx(nil)
	defer release(c)
	c.memo = nil
	for i, sys := range []string{"http://aaa", "http://bbb", "http://aaa", "http://ccc"} {
		copy(buf[at:], sys)
		root, err := p.Parse(buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := typed.Annotate(root, m); err != nil {
			t.Fatal(err)
		}
		input := c.one(Item{node: root})
		c.this, c.context = input, input
		got, err := e.root(c, input)
		if err != nil {
			t.Fatal(err)
		}
		if want := sys == "http://aaa"; (len(got) == 1) != want {
			t.Errorf("step %d, system %s: %d results, want match=%v", i, sys, len(got), want)
		}
		copy(buf[at:], "http://zzz")
		var vals []string
		for j := range c.memo.entries {
			if en := &c.memo.entries[j]; en.site != nil {
				vals = append(vals, en.key[en.typLen:])
			}
		}
		slices.Sort(vals)
		want := []string{"http://aaa", "http://bbb", "http://ccc"}[:min(i+1, 3)]
		if i == 2 {
			want = want[:2]
		}
		if !slices.Equal(vals, want) {
			t.Errorf("step %d: memo values %q after the buffer changed, want %q", i, vals, want)
		}
	}
}

func bytesIndex(b []byte, s string) int { return strings.Index(string(b), s) }

// Criteria outside the recognised form are not memoized.
func TestMemoNotApplied(t *testing.T) {
	m := model.Get(model.R4)
	for _, src := range []string{
		`nodesByType('Coding').where($this.system = 'x')`,
		`nodesByType('Coding').where(system = 'x' and $index > 0)`,
		`nodesByType('Coding').where(system = %v)`,
		`nodesByType('Coding').where(system = %resource.id)`,
		`nodesByType('Coding').where(system = 'a' or code = 'b')`,
		`nodesByType('Coding').where(system.extension.exists())`,
		`nodesByType('Coding').where(system.extension('http://x').exists())`,
		`nodesByType('Coding').where(startsWith('x'))`,
		`nodesByType('Coding').where(exists())`,
		`nodesByType('Coding').where(system is uri)`,
		`nodesByType('Coding').where((system as uri) = 'x')`,
		`nodesByType('Coding').where(system.where($this = 'a').exists())`,
		`nodesByType('Coding').where(system.exists($this = 'a'))`,
		`nodesByType('Coding').where(system.select($this = 'a'))`,
		`nodesByType('Coding').where(now() > @2000 and system = 'a')`,
		`nodesByType('Coding').where(system.trace('t') = 'a')`,
		`nodesByType('Coding').where(Coding.system = 'x')`,
		`nodesByType('Coding').where(iif(system = 'a', true, false))`,
		`nodesByType('Coding').where(system[0] = 'a')`,
		`nodesByType('Coding').where(system.children().exists())`,
		`nodesByType('Coding').where(system.type().name = 'uri')`,
		`nodesByType('Coding').where(system.defineVariable('v').exists())`,
		`nodesByType('Coding').where(system = %context.id)`,
		`nodesByType('Coding').where(true)`,
		`nodesByType('Coding').where(nodesByName('system').exists())`,
		`nodesByType('Coding').select(system = 'x')`,
	} {
		e, err := Compile(src, WithModel(m), WithFunctions(AnonymizerFunctions()...))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if len(e.memoized) != 0 {
			t.Errorf("%s: memoized on %v", src, e.memoized)
		}
	}
}

// A hit allocates nothing.
func TestMemoHitAllocs(t *testing.T) {
	m := model.Get(model.R4)
	root := typedJSON(t, `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1"},{"system":"http://x","code":"2"},{"code":"3"}]}}`)
	e := MustCompile(longitudinalCodings, WithModel(m), WithFunctions(AnonymizerFunctions()...))
	c := e.newCtx(nil)
	defer release(c)
	var items []Item
	typed.Walk(root, func(n *jsontree.Node) bool {
		if n.Type() == "Coding" {
			items = append(items, Item{node: n})
		}
		return true
	})
	where := e.ast.(*memberExpr).x.(*callExpr)
	arg := &argument{ast: where.args[0], memo: newMemoSite("system", false)}
	arg.fn, _ = (&compiler{src: e.src, cfg: e.cfg}).compile(where.args[0])
	for i, it := range items {
		if _, _, err := c.criteria(arg, it, i); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i, it := range items {
			_, _, _ = c.criteria(arg, it, i)
		}
		c.slab = c.slab[:0]
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run of memo hits, want 0", allocs)
	}
}

// Entries are keyed by call site: two sites whose keys hash alike (the
// same mix here) on one context keep results of their own.
func TestMemoKeyedBySite(t *testing.T) {
	m := model.Get(model.R4)
	root := typedJSON(t, `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://x","code":"1"}]}}`)
	coding := Item{node: root.Get("code").Get("coding").Children()[0]}
	cp := &compiler{src: "", cfg: &config{model: m}}
	site := func(src string) *argument {
		ast, err := parse(src)
		if err != nil {
			t.Fatal(err)
		}
		a := &argument{ast: ast, memo: &memoSite{name: "system"}}
		if a.fn, err = cp.compile(ast); err != nil {
			t.Fatal(err)
		}
		return a
	}
	eq, ne := site(`system = 'http://x'`), site(`system != 'http://x'`)
	c := (&Expression{cfg: cp.cfg}).newCtx(nil)
	defer release(c)
	c.memo = nil
	for round := 0; round < 2; round++ {
		for _, tc := range []struct {
			a    *argument
			want bool
		}{{eq, true}, {ne, false}} {
			match, ok, err := c.criteria(tc.a, coding, 0)
			if err != nil || !ok || match != tc.want {
				t.Errorf("round %d, %s: %v, %v, %v; want %v", round, exprString(tc.a.ast), match, ok, err, tc.want)
			}
		}
	}
}

// Goroutines evaluating memoized expressions at once (each with contexts
// of its own from the pool) get the results of evaluating without memo;
// go test -race checks that they share no memo.
func TestMemoConcurrent(t *testing.T) {
	m := model.Get(model.R4)
	roots := memoResources(t)
	funcs := WithFunctions(AnonymizerFunctions()...)
	type pair struct{ with, without *Expression }
	var exprs []pair
	for _, tc := range memoCriteria[:12] {
		exprs = append(exprs, pair{MustCompile(tc.src, WithModel(m), funcs), MustCompile(tc.src, WithModel(m), funcs, withoutMemo())})
	}
	type result struct {
		items []Item
		err   error
	}
	want := make([][]result, len(exprs))
	for i, p := range exprs {
		for _, r := range roots {
			items, err := p.without.Evaluate(r, nil)
			want[i] = append(want[i], result{items, err})
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 30; round++ {
				for i := range exprs {
					// Each goroutine takes the expressions in another order.
					i = (i + g*3) % len(exprs)
					for j, r := range roots {
						items, err := exprs[i].with.Evaluate(r, nil)
						if w := want[i][j]; !sameResult(items, err, w.items, w.err) {
							t.Errorf("%s on resource %d: %v, %v; want %v, %v", exprs[i].with, j, items, err, w.items, w.err)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}

// A site whose values rarely repeat stops using the memo after a probe of
// memoProbe lookups for memoSkip items, then probes again; a site whose
// values repeat keeps it. Either way the results are the criteria's.
func TestMemoAdapts(t *testing.T) {
	m := model.Get(model.R4)
	const n = memoProbe + memoSkip + memoProbe/2
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Observation","status":"final","code":{"coding":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"system":"http://example.org/%d","code":"c"}`, i)
	}
	sb.WriteString(`]}}`)
	root := typedJSON(t, sb.String())
	var items []Item
	for _, n := range root.Get("code").Get("coding").Children() {
		items = append(items, Item{node: n})
	}
	cp := &compiler{src: "", cfg: &config{model: m}}
	ast, err := parse(`system.startsWith('http://example.org/1')`)
	if err != nil {
		t.Fatal(err)
	}
	a := &argument{ast: ast, memo: newMemoSite("system", false)}
	if a.fn, err = cp.compile(ast); err != nil {
		t.Fatal(err)
	}
	c := (&Expression{cfg: cp.cfg}).newCtx(nil)
	defer release(c)
	c.memo = nil
	stored := func() int {
		k := 0
		for i := range c.memo.entries {
			if c.memo.entries[i].site == a.memo {
				k++
			}
		}
		return k
	}
	check := func(it Item, i int) {
		t.Helper()
		match, ok, err := c.criteria(a, it, i)
		want, wok, werr := c.evalCriteria(a, it, i)
		if match != want || ok != wok || err != werr {
			t.Fatalf("item %d: %v, %v, %v; want %v, %v, %v", i, match, ok, err, want, wok, werr)
		}
	}
	for i, it := range items {
		check(it, i)
		switch i + 1 {
		case memoProbe - 1:
			// Some may have been pushed out of their pair.
			if got := stored(); got < memoProbe*7/8 || got > memoProbe-1 {
				t.Fatalf("%d entries during the probe, want about %d", got, memoProbe-1)
			}
		case memoProbe + memoSkip:
			// The whole skip: nothing more stored.
			if got := stored(); got > memoProbe {
				t.Fatalf("%d entries after the skip, want at most %d", got, memoProbe)
			}
		}
	}
	if got := stored(); got <= memoProbe {
		t.Errorf("%d entries after the second probe began, want more than %d", got, memoProbe)
	}
	// Repeating values keep the memo: 3 entries, hit from then on.
	c.memo = nil
	for round := 0; round < 8; round++ {
		for i := 0; i < 3*memoProbe; i++ {
			check(items[i%3], i)
		}
	}
	if got := stored(); got != 3 {
		t.Errorf("%d entries for 3 repeating values, want 3", got)
	}
	if st := c.memo.stats[a.memo.mix>>60&(memoStatSlots-1)]; st.site != a.memo || st.skip != 0 {
		t.Errorf("stats of a site whose values repeat: %+v, want no skip", st)
	}
}
