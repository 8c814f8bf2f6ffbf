package anonymize

import (
	"hash/maphash"
	mathbits "math/bits"
	"slices"
	"strings"
	"unsafe"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/jsontree"
)

// Dispatch: the rules of a resource in one walk of its elements.
//
// The rules apply in configuration order, each to its matches and their
// descendants that no earlier rule reached (§2.2). For a node, the rule
// that applies is therefore the first, in configuration order, of the rules
// that match the node itself or one of its ancestors in the resource: its
// effective rule. When every rule of a resource type's plan has a shape
// whose matches can be told from a node's typing, its parent and the
// resource's member paths (nodesByType('T'), nodesByName('n'), either
// followed by a name, a chain of member names, the resource type itself,
// and nodesByType('T').where(criteria).name whose criteria reads one member),
// and no method changes the tree's shape, the engine finds every element's
// effective rule in one pre-order walk of the element list that typing
// made, then applies each rule to its elements in the order the rule loop
// would have: by rule, then by the match that reached the element (in
// match order), then in document order. That order is the rule loop's own,
// so outputs, errors, the encrypt method's random IVs and the scrub
// memo's state are the same as with the rule loop. Nested resources are
// walked in turn, each with its own plan. The rule loop remains the path of
// everything else: "_name" shadows (the element list is then incomplete),
// tracing, other rule shapes and methods, a where() criteria that an
// earlier rule could change the input of, attachments a scrub rule reaches,
// and a container whose rule reaches into a nested resource.

// noRule is the effective rule of an element that no rule reaches.
const noRule = int32(1<<31 - 1)

// dispatchPlan is the part of a typePlan that the walk reads; rule numbers
// are positions in typePlan.rules.
type dispatchPlan struct {
	// slotRule is, by slot, the first rule nodesByType or nodesByName
	// of that type or name with nothing after the call, or noRule.
	slotRule []int32
	// heads lists, by slot, the rules that go on after a head call
	// finding that type or name: a member name, or where() and a name
	// (at most 32 per slot); hasHeads tells which slots have some.
	heads    [][]headRule
	hasHeads []bool
	// plain has, by slot, bit j set when heads[slot][j] has no where().
	plain []uint32
	// paths are the rules that are chains of member names, as a trie
	// whose state 0 is the resource (see pathNext).
	paths []pathState
	// rootRule is the first rule whose path is the resource type itself.
	rootRule int32
	// scrubs tells, by rule, the rules of the scrub method.
	scrubs []bool
	// viaHead are the where() rules, whose head call might find the
	// resource itself (see headMatches): the rule loop then applies.
	viaHead []*engineRule
}

type headRule struct {
	rule  int32
	tail  string
	where *fhirpath.Expression // nil for nodesByType('T').name
	// member is the one member the where() criteria reads.
	member string
}

// pathState is a state of the trie of member paths: the rule ending there
// (or noRule) and the states its member names lead to.
type pathState struct {
	rule  int32
	names []string
	next  []int32
}

// pathNext returns the state that the member name leads to from state s,
// or -1.
func (d *dispatchPlan) pathNext(s int32, name string) int32 {
	st := &d.paths[s]
	for i, n := range st.names {
		if n == name {
			return st.next[i]
		}
	}
	return -1
}

// addPath adds the member path names of rule ri to the trie.
func (d *dispatchPlan) addPath(names []string, ri int32) {
	if len(d.paths) == 0 {
		d.paths = append(d.paths, pathState{rule: noRule})
	}
	s := int32(0)
	for _, name := range names {
		next := d.pathNext(s, name)
		if next < 0 {
			next = int32(len(d.paths))
			d.paths = append(d.paths, pathState{rule: noRule})
			d.paths[s].names = append(d.paths[s].names, name)
			d.paths[s].next = append(d.paths[s].next, next)
		}
		s = next
	}
	d.paths[s].rule = min(d.paths[s].rule, ri)
}

// dispatchable reports whether the rule's method, applied to a node,
// changes at most that node's value (or an attachment's, which the walk
// leaves to the rule loop), so that every rule's matches are known before
// the first rule runs.
func dispatchable(rule *engineRule) bool {
	switch rule.Method {
	case MethodKeep, MethodRedact, MethodDateShift, MethodCryptoHash, MethodEncrypt, MethodGeneralize:
		return true
	case MethodCustom:
		return isScrub(rule.MethodName)
	}
	return false
}

// newDispatchPlan returns the dispatch plan of p, the plan of resource type
// t, or nil when one of its rules is not of a shape the walk knows.
func (e *Engine) newDispatchPlan(t string, p *typePlan) *dispatchPlan {
	if len(p.rules) == 0 || len(p.rules) >= int(noRule) {
		return nil
	}
	d := &dispatchPlan{slotRule: make([]int32, e.nslots), heads: make([][]headRule, e.nslots), hasHeads: make([]bool, e.nslots), rootRule: noRule}
	for i := range d.slotRule {
		d.slotRule[i] = noRule
	}
	for i, rule := range p.rules {
		ri := int32(i)
		if rule.unsupported || !dispatchable(rule) {
			return nil
		}
		switch {
		case rule.IsResourceTypeRule:
			d.rootRule = min(d.rootRule, ri)
		case rule.viaHead:
			member, tail, ok := rule.expr.HeadWhere()
			if !ok || !e.whereSafe(p, i, member) {
				return nil
			}
			if rule.fast == fastType && rule.arg == t {
				return nil // the head call finds the resource itself
			}
			d.heads[rule.slot] = append(d.heads[rule.slot], headRule{rule: ri, tail: tail, where: rule.expr, member: member})
			d.viaHead = append(d.viaHead, rule)
		case rule.fast != fastNone && rule.tail == "":
			d.slotRule[rule.slot] = min(d.slotRule[rule.slot], ri)
		case rule.fast != fastNone:
			d.heads[rule.slot] = append(d.heads[rule.slot], headRule{rule: ri, tail: rule.tail})
		case rule.members != nil:
			d.addPath(rule.members, ri)
		default:
			return nil
		}
	}
	d.scrubs = make([]bool, len(p.rules))
	for i, rule := range p.rules {
		d.scrubs[i] = rule.Method == MethodCustom
	}
	d.plain = make([]uint32, e.nslots)
	for i, hs := range d.heads {
		if len(hs) > 32 {
			return nil
		}
		d.hasHeads[i] = len(hs) > 0
		for j, h := range hs {
			if h.where == nil {
				d.plain[i] |= 1 << j
			}
		}
	}
	return d
}

// whereSafe reports whether the criteria of the where() rule p.rules[w],
// which reads the member called member of the items of its head call, sees
// the same values when evaluated before any rule runs as at its turn: no
// earlier rule that changes values may match that member itself. (An
// earlier rule reaching it through an ancestor reaches the whole item, and
// then the where() rule does not apply to the item's children anyway.)
func (e *Engine) whereSafe(p *typePlan, w int, member string) bool {
	wr := p.rules[w]
	var memberTypes []string
	if wr.fast == fastType {
		if t := e.model.Type(wr.arg); t != nil {
			if el := t.Element(member); el != nil && !el.Choice && !el.Repeats {
				// One JSON member of that name, holding one value.
				memberTypes = el.Types
			}
		}
	}
	if len(memberTypes) == 0 {
		return false
	}
	for _, mt := range memberTypes {
		if t := e.model.Type(mt); t == nil || t.Kind != model.Primitive {
			return false // a complex member: its children could change
		}
	}
	for _, rule := range p.rules[:w] {
		if rule.Method == MethodKeep || rule.IsResourceTypeRule {
			continue
		}
		switch {
		case rule.viaHead:
			if _, tail, _ := rule.expr.HeadWhere(); tail == member {
				return false
			}
		case rule.fast == fastType && rule.tail == "":
			if slices.Contains(memberTypes, rule.arg) {
				return false
			}
		case rule.fast == fastName && rule.tail == "":
			if rule.arg == member {
				return false
			}
		case rule.fast != fastNone:
			if rule.tail == member && (rule.fast != fastType || rule.arg == wr.arg) {
				return false
			}
		case rule.members != nil:
			if rule.members[len(rule.members)-1] == member {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// dispatchState is the per-run memory of the walk, reused from resource
// to resource.
type dispatchState struct {
	stack []dispatchFrame
	// eff and key are, by position in the resource's part of the element
	// list, the effective rule of each element and the position of the
	// match through which that rule reaches it (-1: the resource).
	eff, key []int32
	// order lists the elements to apply rules to, by rule.
	order  []int32
	counts []int32
	// used has bit ri set for each rule ri that has elements.
	used []uint64
	// caches remembers what the rules of a plan make of an Elem.
	caches *ruleCaches
}

// dispatchFrame is an object on the walk's path from the resource.
type dispatchFrame struct {
	node     *jsontree.Node
	eff, key int32
	// idx is the object's position, ts and ns its type and name slots
	// when it is the head of rules with a tail (else -1), and allowT and
	// allowN tell which of heads[ts] and heads[ns] apply to its children:
	// those without where() and those whose criteria it meets.
	idx            int32
	ts, ns         int32
	allowT, allowN uint32
	// path is the object's state in the trie of member paths, -1 off
	// every path.
	path int32
}

// allowed returns the mask of the rules of heads[s] that apply to the
// children of the head c, and ok=false when a where() criteria fails on c.
func (r *run) allowed(d *dispatchPlan, s int32, c *jsontree.Node) (mask uint32, ok bool) {
	mask = d.plain[s]
	for j, h := range d.heads[s] {
		if h.where == nil {
			continue
		}
		match, ok := r.matchWhere(h, c)
		if !ok {
			return 0, false
		}
		if match {
			mask |= 1 << j
		}
	}
	return mask, true
}

// elemRules is what the walk needs of the elements typed e under the
// plan d: the first rule matching them by type or name, and their type
// and name slots when those are the heads of rules with a tail (else -1).
type elemRules struct {
	d      *dispatchPlan
	e      *jsontree.Elem
	direct int32
	ts, ns int32
}

// tailRules is the mask of the rules of d.heads[head] whose tail is the
// name of the elements typed e.
type tailRules struct {
	d    *dispatchPlan
	e    *jsontree.Elem
	head int32
	mask uint32
}

// The caches of elemRules and tailRules, direct-mapped by Elem and plan.
const (
	elemRulesSize = 512
	tailRulesSize = 256
)

type ruleCaches struct {
	elems [elemRulesSize]elemRules
	tails [tailRulesSize]tailRules
}

func cacheIndex(d *dispatchPlan, e *jsontree.Elem, head int32) uintptr {
	p := uintptr(unsafe.Pointer(e)) ^ uintptr(unsafe.Pointer(d))>>5 ^ uintptr(head)*0x9E3779B1
	return p>>4 ^ p>>13
}

func (ds *dispatchState) elemRulesOf(r *run, d *dispatchPlan, e *jsontree.Elem) *elemRules {
	if ds.caches == nil {
		ds.caches = new(ruleCaches)
	}
	x := &ds.caches.elems[cacheIndex(d, e, -1)%elemRulesSize]
	if x.e != e || x.d != d {
		*x = elemRules{d: d, e: e, direct: noRule, ts: -1, ns: -1}
		ts, ns := r.slotsOf(e)
		if ts >= 0 {
			x.direct = min(x.direct, d.slotRule[ts])
			if d.hasHeads[ts] {
				x.ts = ts
			}
		}
		if ns >= 0 {
			x.direct = min(x.direct, d.slotRule[ns])
			if d.hasHeads[ns] {
				x.ns = ns
			}
		}
	}
	return x
}

func (ds *dispatchState) tailMask(d *dispatchPlan, head int32, e *jsontree.Elem) uint32 {
	x := &ds.caches.tails[cacheIndex(d, e, head)%tailRulesSize]
	if x.e != e || x.d != d || x.head != head {
		*x = tailRules{d: d, e: e, head: head}
		for j, h := range d.heads[head] {
			if h.tail == e.Name {
				x.mask |= 1 << j
			}
		}
	}
	return x.mask
}

// dispatch applies the plan's rules to res (the root resource or one
// nested in it) in one walk of its listed elements (see above), and
// appends the resources nested in res to r.nested. It reports ok=false,
// having changed nothing, when the resource needs the rule loop.
func (r *run) dispatch(res *jsontree.Node, plan *typePlan, nstart int) (ops Operations, ok bool, err error) {
	d := plan.dispatch
	for _, rule := range d.viaHead {
		if headMatches(res, rule) {
			return 0, false, nil
		}
	}
	lo, hi, ok := r.span(res)
	if !ok {
		return 0, false, nil
	}
	r.initSlots()
	ds := &r.ds
	nodes := r.elems.Nodes[lo:hi]
	n := len(nodes)
	ds.eff, ds.key = slices.Grow(ds.eff[:0], n)[:n], slices.Grow(ds.key[:0], n)[:n]
	root := int32(-1) // the resource's state in the trie of member paths
	if len(d.paths) > 0 {
		root = 0
	}
	ds.stack = append(ds.stack[:0], dispatchFrame{node: res, eff: d.rootRule, key: -1, idx: -1, ts: -1, ns: -1, path: root})
	spans := r.elems.Nested
	sp := 0 // the next nested resource's span
	for sp < len(spans) && spans[sp].Index < lo {
		sp++
	}
	ok = r.walk(d, nodes, lo, spans, sp)
	clear(ds.stack)
	if !ok {
		clear(r.nested[nstart:])
		r.nested = r.nested[:nstart]
		return 0, false, nil
	}
	r.dispatched++
	ops, err = r.applyByRule(res, plan, nodes)
	if err == nil {
		// The visited marks are needed no longer (on an error the caller
		// clears the tree's).
		for _, i := range ds.order {
			nodes[i].Flags &^= jsontree.FlagMark
		}
		res.Flags &^= jsontree.FlagMark
	}
	return ops, true, err
}

// walk sets the effective rule and key of each of nodes, the elements of
// the resource on the stack's bottom, which start at position lo of the
// element list; spans[sp:] are the nested resources from there on, whose
// elements it skips (their resource is appended to r.nested). It reports
// false when the resource needs the rule loop.
func (r *run) walk(d *dispatchPlan, nodes []*jsontree.Node, lo int, spans []typed.NestedSpan, sp int) bool {
	ds := &r.ds
	ok := true
	for i := 0; i < len(nodes); i++ {
		c := nodes[i]
		pe := c.Parent
		if pe != nil && pe.Kind == jsontree.Array {
			pe = pe.Parent
		}
		for len(ds.stack) > 0 && ds.stack[len(ds.stack)-1].node != pe {
			ds.stack = ds.stack[:len(ds.stack)-1]
		}
		if len(ds.stack) == 0 {
			return false // not the tree the list describes
		}
		top := &ds.stack[len(ds.stack)-1]
		eff, key := top.eff, top.key
		nested := sp < len(spans) && spans[sp].Index == lo+i
		if c.Elem == nil || nested {
			// No rule's walk of an ancestor reaches it: not an element,
			// or a nested resource, which only a match of its own can.
			eff, key = noRule, -1
		}
		direct, dkey := noRule, int32(i)
		ts, ns := int32(-1), int32(-1)
		if c.Elem != nil {
			er := ds.elemRulesOf(r, d, c.Elem)
			direct, ts, ns = er.direct, er.ts, er.ns
			// A child of a head: the first of the rules that name it after
			// the head call (typed.Children matches by element name) and
			// whose where() criteria, if any, the head meets.
			if top.ts >= 0 {
				if m := ds.tailMask(d, top.ts, c.Elem) & top.allowT; m != 0 {
					if rule := d.heads[top.ts][mathbits.TrailingZeros32(m)].rule; rule < direct {
						direct, dkey = rule, top.idx
					}
				}
			}
			if top.ns >= 0 {
				if m := ds.tailMask(d, top.ns, c.Elem) & top.allowN; m != 0 {
					if rule := d.heads[top.ns][mathbits.TrailingZeros32(m)].rule; rule < direct {
						direct, dkey = rule, top.idx
					}
				}
			}
		}
		path := int32(-1) // c's state in the trie of member paths
		if top.path >= 0 && c.Elem != nil {
			// On a member path: typed.Children, which member paths follow,
			// matches by element name.
			if path = d.pathNext(top.path, c.Elem.Name); path >= 0 && d.paths[path].rule < direct {
				direct, dkey = d.paths[path].rule, int32(i)
			}
		}
		if direct < eff {
			eff, key = direct, dkey
		}
		ds.eff[i], ds.key[i] = eff, key
		if nested {
			if eff != noRule {
				return false // a rule of res reaches into the nested resource
			}
			r.nested = append(r.nested, c)
			end := spans[sp].End
			for sp < len(spans) && spans[sp].Index < end {
				sp++
			}
			for j := i + 1; j < end-lo; j++ {
				ds.eff[j] = noRule
			}
			i = end - lo - 1
			continue
		}
		if eff != noRule && d.scrubs[eff] && attachmentPart(c) {
			// Scrubbing an attachment changes its members: the rule loop
			// handles it.
			return false
		}
		if c.Kind != jsontree.Object {
			continue
		}
		f := dispatchFrame{node: c, eff: eff, key: key, idx: int32(i), ts: ts, ns: ns, path: path}
		if ts >= 0 {
			if f.allowT, ok = r.allowed(d, ts, c); !ok {
				return false
			}
		}
		if ns >= 0 {
			if f.allowN, ok = r.allowed(d, ns, c); !ok {
				return false
			}
		}
		ds.stack = append(ds.stack, f)
	}
	return true
}

// attachmentPart reports an Attachment or its data, which the scrub method
// rewrites together with the attachment's size and hash.
func attachmentPart(c *jsontree.Node) bool {
	if c.Type() == "Attachment" {
		return true
	}
	if c.Type() == "base64Binary" && c.Name() == "data" {
		p := typed.Parent(c)
		return p != nil && p.Type() == "Attachment"
	}
	return false
}

// applyByRule applies each rule of the plan to the elements whose
// effective rule it is, in the rule loop's order.
func (r *run) applyByRule(res *jsontree.Node, plan *typePlan, nodes []*jsontree.Node) (Operations, error) {
	ds := &r.ds
	nr := len(plan.rules)
	words := (nr + 63) / 64
	ds.counts = slices.Grow(ds.counts[:0], nr)[:nr]
	ds.used = slices.Grow(ds.used[:0], words)[:words]
	clear(ds.used)
	// Count the elements of each rule that has some; only those rules are
	// visited below (a resource meets a few of its plan's rules).
	total := 0
	for _, e := range ds.eff {
		if e != noRule {
			ds.use(e)
			ds.counts[e]++
			total++
		}
	}
	root := plan.dispatch.rootRule
	if root != noRule {
		ds.use(root)
	}
	// counts[ri] becomes the start of rule ri's elements in order.
	start := int32(0)
	for w, bits := range ds.used {
		for ; bits != 0; bits &= bits - 1 {
			ri := w<<6 + mathbits.TrailingZeros64(bits)
			n := ds.counts[ri]
			ds.counts[ri] = start
			start += n
		}
	}
	ds.order = slices.Grow(ds.order[:0], total)[:total]
	for i, e := range ds.eff {
		if e != noRule {
			ds.order[ds.counts[e]] = int32(i)
			ds.counts[e]++
		}
	}
	// counts[ri] is now the end of rule ri's elements.
	var ops Operations
	start = 0
	for w, bits := range ds.used {
		for ; bits != 0; bits &= bits - 1 {
			ri := w<<6 + mathbits.TrailingZeros64(bits)
			rule := plan.rules[ri]
			// A number per application of a rule to a resource (see
			// ruleSeq), as the rule loop counts them.
			r.ruleSeq++
			end := ds.counts[ri]
			idx := ds.order[start:end]
			start = end
			if int32(ri) == root && !visited(res) {
				if err := r.apply(res, rule, res, &ops); err != nil {
					return ops, err
				}
				visit(res)
			}
			// In document order already, except where a match's key (its
			// head's position) puts it after a later element.
			if !ds.sortedByKey(idx) {
				slices.SortStableFunc(idx, ds.byKey)
			}
			for _, i := range idx {
				node := nodes[i]
				if visited(node) {
					continue
				}
				if err := r.apply(node, rule, res, &ops); err != nil {
					return ops, err
				}
				visit(node)
			}
		}
	}
	return ops, nil
}

// use marks rule ri as having elements, with none counted yet if it had
// none.
func (ds *dispatchState) use(ri int32) {
	if w, b := ri>>6, uint64(1)<<(ri&63); ds.used[w]&b == 0 {
		ds.used[w] |= b
		ds.counts[ri] = 0
	}
}

// byKey orders element positions by their keys.
func (ds *dispatchState) byKey(a, b int32) int { return int(ds.key[a]) - int(ds.key[b]) }

// sortedByKey is slices.IsSortedFunc(idx, ds.byKey) without a call per
// element.
func (ds *dispatchState) sortedByKey(idx []int32) bool {
	for j := 1; j < len(idx); j++ {
		if ds.key[idx[j]] < ds.key[idx[j-1]] {
			return false
		}
	}
	return true
}

// whereMemo remembers the results of the where() criteria of dispatch
// plans for recent values of the member they read, kept from call to
// call: a million Codings hold a few dozen systems. The criteria reads
// nothing else (fhirpath.Expression.HeadWhere), and the member, which
// neither repeats nor is a choice, is one JSON value without extensions
// (the list is complete only without "_name" members): its absence or its
// JSON kind and value decide the result.
type whereMemo struct {
	seed    maphash.Seed
	entries [whereMemoSize]whereMemoEntry
}

const (
	whereMemoSize = 256
	// whereMemoValue is the longest value the memo keeps.
	whereMemoValue = 256
	// absent is the kind of a missing member in the memo.
	absent = jsontree.Kind(255)
)

type whereMemoEntry struct {
	expr  *fhirpath.Expression
	val   string
	kind  jsontree.Kind
	match bool
}

// matchWhere reports whether the where() criteria of h holds for c, and
// ok=false when the criteria fails on c.
func (r *run) matchWhere(h headRule, c *jsontree.Node) (match, ok bool) {
	kind, val := absent, ""
	if m := c.Get(h.member); m != nil {
		switch m.Kind {
		case jsontree.String, jsontree.Number, jsontree.Bool:
			kind, val = m.Kind, m.Value()
		default:
			return h.where.MatchHeadWhere(c, r.env)
		}
	}
	if len(val) > whereMemoValue {
		return h.where.MatchHeadWhere(c, r.env)
	}
	if r.wmemo == nil {
		r.wmemo = &whereMemo{seed: maphash.MakeSeed()}
	}
	e := &r.wmemo.entries[maphash.String(r.wmemo.seed, val)%whereMemoSize]
	if e.expr == h.where && e.kind == kind && e.val == val {
		return e.match, true
	}
	match, ok = h.where.MatchHeadWhere(c, r.env)
	if ok {
		// A copy: the tree's strings may be borrowed from the caller's
		// buffer.
		*e = whereMemoEntry{expr: h.where, val: strings.Clone(val), kind: kind, match: match}
	}
	return match, ok
}
