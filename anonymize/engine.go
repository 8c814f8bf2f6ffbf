package anonymize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unsafe"

	"fhirdeid/anonymize/scrub"
	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/jsontree"
)

type nowKey struct{}

// WithNow returns a context whose "today", for the age-over-89 checks and
// FHIRPath's now() and today(), is t. Tests pin it; without it the engine
// uses the local time, as the reference implementation does.
func WithNow(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, nowKey{}, t)
}

func nowFrom(ctx context.Context) time.Time {
	if t, ok := ctx.Value(nowKey{}).(time.Time); ok {
		return t
	}
	return time.Now()
}

// FileContext describes where a resource comes from, for the file and
// folder date-shift scopes (§2.3).
type FileContext struct {
	// FileName is the input file's name with its extension
	// ("Patient.ndjson"), the prefix of scope "file".
	FileName string
	// FolderName is the last path segment of the input folder, the prefix
	// of scope "folder".
	FolderName string
	// Inspector, if set, is shown the tree of the resource that
	// AppendAnonymizedJSON parsed, before and after de-identification (the
	// pipeline's leak audit reads them instead of the JSON text).
	Inspector Inspector
}

// Inspector reads a resource's tree around its de-identification. It must
// not change the tree, nor keep any of it (the memory is reused).
type Inspector interface {
	// Raw is called with the parsed input, before it is de-identified.
	Raw(root *jsontree.Node)
	// Output is called with the de-identified resource, as it is about to
	// be written.
	Output(root *jsontree.Node)
}

// Stats describes what one Anonymize call did. It holds no values.
type Stats struct {
	// Operations are those applied to the resource and its nested
	// resources.
	Operations Operations
	// Resources is the number of resources processed, nested ones included.
	Resources int
	// Changed is the number of element values changed or removed.
	Changed int
	// Skipped reports that a processing error replaced the resource by an
	// empty one (processingErrors "skip").
	Skipped bool
	// dispatched counts the resources whose rules were applied in one walk
	// (see dispatch.go), for tests.
	dispatched int
}

// InputError is a resource that cannot be processed because it is not valid
// JSON or not a valid FHIR resource of the configuration's release. It is
// never skipped.
type InputError struct {
	Err error
}

// Error implements the error interface.
func (e *InputError) Error() string { return "invalid input resource: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *InputError) Unwrap() error { return e.Err }

// EngineOptions are the options of NewEngine.
type EngineOptions struct {
	// Rand supplies the IVs of the encrypt method; nil means crypto/rand.
	Rand io.Reader
	// PreserveWhitespace keeps leading and trailing white space of string
	// values. By default it is trimmed before the rules run, as the
	// reference implementation's parser (Firely SDK 5) does, so hashes and
	// outputs match it.
	PreserveWhitespace bool
	// CustomMethods are methods added by the program (§2.11), by name; rules
	// name them case-insensitively. A name may not be a built-in method's.
	CustomMethods map[string]CustomMethod
}

// CustomMethod is an anonymization method added by a program. Like the
// built-in methods it is applied to every element of a matched subtree that
// no earlier rule visited; Apply is called for each primitive with a value.
type CustomMethod struct {
	// Apply returns the element's new value, written as a JSON string when
	// it differs from the old one, or keep=false to remove the value. An
	// error is a processing error (processingErrors "skip" may skip it); it
	// must not contain the value.
	Apply func(CustomCall) (value string, keep bool, err error)
	// Records, when true, makes every application record Operation, whose
	// security label the resource then gets.
	Records   bool
	Operation Operation
}

// CustomCall is the input of a CustomMethod for one element.
type CustomCall struct {
	// Value is the element's value as the reference implementation reads
	// it: strings as they are, numbers as their literal, booleans
	// "True"/"False".
	Value string
	// Type is the element's FHIR type; Location its FHIRPath-style location
	// (no values).
	Type, Location string
	// Settings is the whole rule object; CustomSettings the parameters'
	// customSettings (a null Value when absent). They must not be changed.
	Settings, CustomSettings *Value
}

// Engine applies a configuration to resources. It is immutable and safe for
// concurrent use.
type Engine struct {
	// noScrubMemo turns the scrub method's memo off, noElementList the
	// element list of typing, noTailLists findTails, noDispatch the
	// one-walk dispatch of rules (tests compare).
	noScrubMemo, noElementList, noTailLists, noDispatch bool

	cfg     *Config
	params  Parameters
	release string
	model   *model.Model
	rules   []engineRule
	hasher  *Hasher
	enc     *Encryptor
	// plans are the rules that apply to each resource type of the model,
	// selected once here rather than for every resource.
	plans map[string]*typePlan
	// slots numbers the types and then the names that fast-path rules look
	// up: the per-resource caches are slices indexed by slot.
	typeSlots, nameSlots map[string]int32
	nslots               int
	// canonTypes and canonNames are the model's strings (see symbols).
	canonTypes, canonNames map[string]symbol
	parsers                sync.Pool
	// runs recycles the per-call state (visited set, scratch stacks), so
	// that its maps and slices keep their capacity from one resource to
	// the next.
	runs               sync.Pool
	preserveWhitespace bool
	custom             map[string]CustomMethod // by lower-case name
}

type fastKind uint8

const (
	fastNone fastKind = iota
	fastType
	fastName
)

// typePlan is what the engine does to a resource of one type: the rules
// that apply to it in configuration order, and the types and names that the
// fast-path ones among them look up.
type typePlan struct {
	rules []*engineRule
	fast  bool
	// want tells, by slot, which types and names the caches keep; slots
	// lists them.
	want  []bool
	slots []int32
	// types and names report whether any slot is a type, or a name: the
	// cache walk looks up only those.
	types, names bool
	// compartment holds the paths of the type's patient compartment
	// parameters, split into element names (see compartmentPatient).
	compartment [][]string
	// tails groups the element names after the head call of the fast
	// rules that have one ("nodesByType('Coding').system"), by head
	// slot, so that the matches of all of them are found in one pass over
	// the cached nodes of that slot; ruleTail[i] is the index of the
	// matches of rules[i] among them (ntails), or -1.
	tails    []tailGroup
	ruleTail []int32
	ntails   int
	// dispatch, when not nil, lets the rules of a resource be applied in
	// one walk of its elements (see dispatch.go).
	dispatch *dispatchPlan
}

// tailGroup is the names looked up under the cached nodes of one slot;
// their matches are the lists first, first+1, ... of run.tailLists.
type tailGroup struct {
	slot  int32
	names []string
	first int
}

type engineRule struct {
	Rule
	// unsupported is a custom method that the engine does not have: an
	// error when the rule applies.
	unsupported bool
	expr        *fhirpath.Expression
	fast        fastKind
	arg         string // the type or name of the fast path
	slot        int32  // its cache slot
	tail        string // the identifier after it, or ""
	// viaHead is set for an expression that begins with nodesByType or
	// nodesByName and goes on (nodesByType('Coding').where(...).display):
	// fast and arg describe that call, whose result comes from the caches
	// (fhirpath.Expression.EvaluateWithHead) rather than a walk of the
	// resource per rule.
	viaHead bool
	// members is, for an expression that only navigates element names
	// ("name.given"), those names: its matches are found without the
	// FHIRPath evaluator, as it would find them (package typed's
	// Children).
	members []string
	cases   []GeneralizeCase
	// shiftDates is the scrub setting "dates": "shift".
	shiftDates bool
}

var memberPathRegexp = regexp.MustCompile(`^[a-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)*$`)

// memberPath returns the element names of an expression that is only a
// chain of them, or nil. Names that FHIRPath reads as keywords are left to
// the evaluator.
func memberPath(expr string) []string {
	if !memberPathRegexp.MatchString(expr) {
		return nil
	}
	names := strings.Split(expr, ".")
	for _, n := range names {
		switch n {
		case "div", "mod", "and", "or", "xor", "implies", "is", "as", "in", "contains", "true", "false":
			return nil
		}
	}
	return names
}

// memberMatches appends to dst the elements that the member path names
// reaches from res, as FHIRPath navigates: each name's children of every
// element found so far, in order. step is a second buffer; both are
// returned for reuse.
func memberMatches(res *jsontree.Node, names []string, dst, step []*jsontree.Node) (matches, step2 []*jsontree.Node) {
	matches = typed.Children(res, names[0], dst)
	for _, name := range names[1:] {
		next := step[:0]
		for _, n := range matches {
			next = typed.Children(n, name, next)
		}
		matches, step = next, matches[:0]
	}
	return matches, step
}

var fastPathRegexp = regexp.MustCompile(`^nodesBy(Type|Name)\(['|"]([A-Za-z0-9]+)['|"]\)(\.([A-Za-z0-9]+))?$`)

// NewEngine prepares an engine for cfg: it compiles every rule path and
// generalize case with package fhirpath and the FHIR model of the release
// cfg was loaded for.
func NewEngine(cfg *Config, opts EngineOptions) (*Engine, error) {
	v, ok := model.ParseVersion(cfg.Release())
	if !ok {
		return nil, fmt.Errorf("creating engine: unsupported FHIR release %q", cfg.Release())
	}
	m := model.Get(v)
	if m == nil {
		return nil, fmt.Errorf("creating engine: no FHIR model for %s", cfg.Release())
	}
	e := &Engine{cfg: cfg, params: cfg.Parameters(), release: cfg.Release(), model: m, preserveWhitespace: opts.PreserveWhitespace}
	e.custom = map[string]CustomMethod{}
	for name, m := range opts.CustomMethods {
		if parseMethod(name) != MethodCustom || isScrub(name) {
			return nil, fmt.Errorf("creating engine: custom method %q has the name of a built-in method", name)
		}
		if m.Apply == nil {
			return nil, fmt.Errorf("creating engine: custom method %q has no Apply function", name)
		}
		e.custom[strings.ToLower(name)] = m
	}
	e.hasher = NewHasher(e.params.CryptoHashKey, e.release)
	if k := e.params.EncryptKey; k != "" {
		enc, err := NewEncryptor(k, opts.Rand)
		if err != nil {
			return nil, fmt.Errorf("creating engine: %w", err)
		}
		e.enc = enc
	}
	// The engine compiles without a context type: the configuration was
	// validated at load time, and a step the model does not know matches
	// nothing, as in the reference implementation.
	compile := func(resourceType, expr string) (Compiled, error) {
		return fhirpath.Compile(expr, fhirpath.WithModel(m), fhirpath.WithFunctions(fhirpath.AnonymizerFunctions()...))
	}
	for _, r := range cfg.Rules() {
		er := engineRule{Rule: r}
		if v, ok := r.settings.Get("dates"); ok && v.Kind == StringValue && strings.EqualFold(v.Text, "shift") {
			er.shiftDates = true
		}
		if sm := fastPathRegexp.FindStringSubmatch(r.Path); sm != nil {
			er.fast, er.arg, er.tail = fastType, sm[2], sm[4]
			if sm[1] == "Name" {
				er.fast = fastName
			}
		} else if !r.IsResourceTypeRule {
			er.members = memberPath(r.Expression)
		}
		c, err := compile(r.ResourceType, r.Expression)
		if err != nil {
			ce := &ConfigError{Rule: r.Index, Method: r.MethodName, Path: r.Path, Msg: "invalid FHIR path", Err: err, ExprColumn: exprColumn(err)}
			return nil, ce
		}
		er.expr = c.(*fhirpath.Expression)
		if name, arg, ok := er.expr.HeadCall(); ok && er.fast == fastNone && er.members == nil && !r.IsResourceTypeRule {
			switch name {
			case "nodesByType":
				er.viaHead, er.fast, er.arg = true, fastType, arg
			case "nodesByName":
				er.viaHead, er.fast, er.arg = true, fastName, arg
			}
		}
		for i, gc := range r.Cases() {
			cc, err := compile("", gc.Condition)
			if err != nil {
				return nil, &ConfigError{Rule: r.Index, Method: r.MethodName, Path: r.Path, Msg: fmt.Sprintf("invalid cases expression (case %d condition)", i+1), Err: err}
			}
			cv, err := compile("", gc.Value)
			if err != nil {
				return nil, &ConfigError{Rule: r.Index, Method: r.MethodName, Path: r.Path, Msg: fmt.Sprintf("invalid cases expression (case %d value)", i+1), Err: err}
			}
			gc.CompiledCondition, gc.CompiledValue = cc, cv
			er.cases = append(er.cases, gc)
		}
		if _, ok := e.custom[strings.ToLower(r.MethodName)]; r.Method == MethodCustom && !ok && !isScrub(r.MethodName) {
			er.unsupported = true
		}
		e.rules = append(e.rules, er)
	}
	e.typeSlots, e.nameSlots = map[string]int32{}, map[string]int32{}
	for i := range e.rules {
		if rule := &e.rules[i]; rule.fast == fastType {
			if _, ok := e.typeSlots[rule.arg]; !ok {
				e.typeSlots[rule.arg] = int32(len(e.typeSlots))
			}
		}
	}
	for i := range e.rules {
		if rule := &e.rules[i]; rule.fast == fastName {
			if _, ok := e.nameSlots[rule.arg]; !ok {
				e.nameSlots[rule.arg] = int32(len(e.typeSlots) + len(e.nameSlots))
			}
		}
	}
	e.nslots = len(e.typeSlots) + len(e.nameSlots)
	e.canonTypes, e.canonNames = canonSymbols(m, e.typeSlots, e.nameSlots)
	for i := range e.rules {
		switch rule := &e.rules[i]; rule.fast {
		case fastType:
			rule.slot = e.typeSlots[rule.arg]
		case fastName:
			rule.slot = e.nameSlots[rule.arg]
		}
	}
	e.plans = map[string]*typePlan{}
	for _, t := range m.ResourceTypes() {
		e.plans[t] = e.newPlan(t)
	}
	return e, nil
}

// newPlan selects the rules that apply to resources of type t.
func (e *Engine) newPlan(t string) *typePlan {
	p := &typePlan{want: make([]bool, e.nslots)}
	for _, param := range e.model.PatientCompartment(t) {
		for _, path := range param.Paths {
			p.compartment = append(p.compartment, strings.Split(path, "."))
		}
	}
	defer func() {
		p.groupTails()
		p.dispatch = e.newDispatchPlan(t, p)
	}()
	for i := range e.rules {
		rule := &e.rules[i]
		if !rule.AppliesTo(t) {
			continue
		}
		p.rules = append(p.rules, rule)
		if rule.fast != fastNone {
			p.fast = true
			if !p.want[rule.slot] {
				p.want[rule.slot] = true
				p.slots = append(p.slots, rule.slot)
			}
			if rule.fast == fastType {
				p.types = true
			} else {
				p.names = true
			}
		}
	}
	return p
}

// groupTails sets the plan's tails and ruleTail.
func (p *typePlan) groupTails() {
	type pair struct {
		slot int32
		name string
	}
	var pairs []pair
	for _, rule := range p.rules {
		if rule.fast != fastNone && rule.tail != "" && !rule.viaHead {
			pairs = append(pairs, pair{rule.slot, rule.tail})
		}
	}
	for _, pr := range pairs {
		i := slices.IndexFunc(p.tails, func(g tailGroup) bool { return g.slot == pr.slot })
		if i < 0 {
			p.tails = append(p.tails, tailGroup{slot: pr.slot})
			i = len(p.tails) - 1
		}
		if !slices.Contains(p.tails[i].names, pr.name) {
			p.tails[i].names = append(p.tails[i].names, pr.name)
		}
	}
	for i := range p.tails {
		p.tails[i].first = p.ntails
		p.ntails += len(p.tails[i].names)
	}
	p.ruleTail = make([]int32, len(p.rules))
	for i, rule := range p.rules {
		p.ruleTail[i] = -1
		if rule.fast != fastNone && rule.tail != "" && !rule.viaHead {
			for _, g := range p.tails {
				if g.slot == rule.slot {
					p.ruleTail[i] = int32(g.first + slices.Index(g.names, rule.tail))
				}
			}
		}
	}
}

// plan returns the plan of resource type t.
func (e *Engine) plan(t string) *typePlan {
	if p := e.plans[t]; p != nil {
		return p
	}
	// Typing accepts only the model's resource types; this is for safety.
	return e.newPlan(t)
}

// planOf returns the plan of res's type, remembering the last one: the
// resources of a file are of one type, and the plans are found by name.
func (r *run) planOf(res *jsontree.Node) *typePlan {
	if t := res.Type(); r.lastPlan == nil || t != r.lastType {
		r.lastType, r.lastPlan = t, r.e.plan(t)
	}
	return r.lastPlan
}

// Config returns the engine's configuration.
func (e *Engine) Config() *Config { return e.cfg }

// AnonymizeJSON de-identifies one resource given as JSON and returns it as
// compact JSON. See Anonymize.
func (e *Engine) AnonymizeJSON(ctx context.Context, data []byte, fc FileContext) ([]byte, Stats, error) {
	return e.AppendAnonymizedJSON(ctx, make([]byte, 0, len(data)), data, fc)
}

// AppendAnonymizedJSON is like AnonymizeJSON but appends the output to dst,
// so that a caller can reuse its buffer. On error dst is returned
// unchanged.
func (e *Engine) AppendAnonymizedJSON(ctx context.Context, dst, data []byte, fc FileContext) ([]byte, Stats, error) {
	js, _ := e.parsers.Get().(*jsonState)
	if js == nil {
		js = new(jsonState)
	}
	defer func() {
		if len(data) > maxPooledDoc {
			// The parser's arenas hold the large tree, which borrows data:
			// keep neither alive.
			return
		}
		js.labels.reset()
		e.parsers.Put(js)
	}()
	// Neither the engine nor its errors keep a string of the tree once the
	// output is written, so the parser may reuse the text memory too, and
	// take the strings from data itself rather than from a copy of it (the
	// caller's data outlives the call); custom methods and traces receive
	// values, which they might keep. Built-in methods must not keep a
	// string of the tree (or a substring) beyond the call: copy it
	// (strings.Clone) to keep it.
	js.p.ReuseText = len(e.custom) == 0 && ctx.Value(traceKey{}) == nil
	js.p.Borrow = js.p.ReuseText
	js.labels.reuseText = js.p.ReuseText
	root, err := js.p.Parse(data)
	if err != nil {
		return dst, Stats{}, &InputError{Err: err}
	}
	if fc.Inspector != nil {
		fc.Inspector.Raw(root)
	}
	// The tree is written before this call returns, so the nodes it gets
	// (security labels) can come from memory reused from call to call.
	st, err := e.anonymize(ctx, root, fc, &js.labels, len(data) <= maxListedDoc)
	if err != nil {
		return dst, st, err
	}
	if fc.Inspector != nil {
		fc.Inspector.Output(root)
	}
	return root.AppendJSON(dst), st, nil
}

// maxPooledDoc is the size of input above which AppendAnonymizedJSON does
// not keep its parser for the next call, so that a large document's tree
// (and the caller's input, which the tree borrows) is not kept alive.
const maxPooledDoc = 4 << 20

// jsonState is the per-call memory of AppendAnonymizedJSON, reused from
// call to call.
type jsonState struct {
	p      jsontree.Parser
	labels nodeArena
}

// nodeArena hands out nodes and pointer slices that live until reset, for
// the nodes the engine adds to a tree that is written before the call
// returns. A nil *nodeArena allocates them afresh.
type nodeArena struct {
	nodes []jsontree.Node
	ptrs  []*jsontree.Node
	nused int
	pused int
	// buf holds the text of the values the methods make (shifted dates,
	// hashes) when reuseText is set: nothing keeps them beyond the call
	// (no custom method or trace sees them).
	buf       []byte
	reuseText bool
}

// textChunk is the size of the parts of a nodeArena's text; maxArenaText
// bounds the text an arena keeps for the next call.
const (
	textChunk    = 16 << 10
	maxArenaText = 256 << 10
)

// text returns b as a string in the arena's memory, or in fresh memory if a
// is nil or does not reuse text.
func (a *nodeArena) text(b []byte) string {
	if a == nil || !a.reuseText || len(b) == 0 {
		return string(b)
	}
	if len(a.buf)+len(b) > cap(a.buf) {
		// A new part; the strings in the old one stay valid.
		a.buf = make([]byte, 0, max(textChunk, len(b)))
	}
	n := len(a.buf)
	a.buf = append(a.buf, b...)
	return unsafe.String(&a.buf[n], len(b))
}

// maxArenaNodes bounds the nodes an arena keeps for the next call.
const maxArenaNodes = 4096

func (a *nodeArena) newNodes(n int) []jsontree.Node {
	if a == nil {
		return make([]jsontree.Node, n)
	}
	if a.nused+n > len(a.nodes) {
		a.nodes, a.nused = make([]jsontree.Node, max(2*len(a.nodes), n, 256)), 0
	}
	s := a.nodes[a.nused : a.nused+n : a.nused+n]
	a.nused += n
	return s
}

func (a *nodeArena) newPtrs(n int) []*jsontree.Node {
	if a == nil {
		return make([]*jsontree.Node, n)
	}
	if a.pused+n > len(a.ptrs) {
		a.ptrs, a.pused = make([]*jsontree.Node, max(2*len(a.ptrs), n, 512)), 0
	}
	s := a.ptrs[a.pused : a.pused+n : a.pused+n]
	a.pused += n
	return s
}

// reset makes the arena's memory available again; the nodes handed out
// must no longer be used.
func (a *nodeArena) reset() {
	clear(a.nodes[:a.nused])
	clear(a.ptrs[:a.pused])
	a.nused, a.pused = 0, 0
	a.buf = a.buf[:0]
	if cap(a.buf) > maxArenaText {
		a.buf = nil
	}
	if len(a.nodes) > maxArenaNodes {
		a.nodes, a.ptrs = nil, nil
	}
}

// Anonymize de-identifies the resource rooted at root in place, following
// §2.2: see the package documentation. The tree is typed first if it is not
// yet.
func (e *Engine) Anonymize(ctx context.Context, root *jsontree.Node, fc FileContext) (Stats, error) {
	return e.anonymize(ctx, root, fc, nil, false)
}

// maxListedDoc is the largest resource (in bytes of JSON) whose elements
// typing lists for the caches (typed.Options.Elements): the list costs a
// pointer per element, more than the resource's size for one made of many
// small elements, and saves only a walk of the tree.
const maxListedDoc = 1 << 20

// anonymize is Anonymize, taking the nodes it adds from arena (nil: fresh
// memory); list asks typing for the list of elements.
func (e *Engine) anonymize(ctx context.Context, root *jsontree.Node, fc FileContext, arena *nodeArena, list bool) (Stats, error) {
	if root == nil || root.Kind != jsontree.Object {
		return Stats{}, &InputError{Err: errors.New("the resource is not a JSON object")}
	}
	r := e.getRun()
	defer e.putRun(r)
	if root.Flags&jsontree.FlagResource == 0 || root.Type() == "" {
		// Typing normalizes as it goes (§2.12): it wraps single values of
		// repeating elements in arrays and trims strings. It also lists
		// the elements, which the caches take instead of walking the tree
		// again.
		opts := typed.Options{WrapRepeating: true, TrimSpace: !e.preserveWhitespace}
		if list && !e.noElementList {
			opts.Elements = &r.elems
		}
		if err := typed.AnnotateWith(root, e.model, opts); err != nil {
			return Stats{}, &InputError{Err: err}
		}
	} else if e.normalize(root) {
		// Elements were wrapped in arrays: type the new containers.
		if err := typed.Annotate(root, e.model); err != nil {
			return Stats{}, &InputError{Err: err}
		}
	}
	now := nowFrom(ctx)
	r.ctx, r.fc, r.root, r.today, r.arena = ctx, fc, root, now, arena
	*r.env = fhirpath.Env{Now: now}
	if fn, ok := ctx.Value(traceKey{}).(func(TraceEvent)); ok {
		r.trace = fn
	}
	ops, err := r.resource(root)
	st := Stats{Operations: ops, Resources: r.resources, Changed: r.changed, dispatched: r.dispatched}
	if err != nil {
		var pe *ProcessingError
		clearMarks(root)
		if errors.As(err, &pe) && e.cfg.ProcessingErrors() == Skip {
			emptyResource(root)
			return Stats{Operations: Operations(0).Add(OpRedact), Resources: 1, Skipped: true}, nil
		}
		return st, err
	}
	// prune also clears the visited marks. When every resource was
	// dispatched (which clears its marks) and the input holds no null and
	// no empty object or array, what there is to prune lies on the paths
	// from the root to the values the rules removed: only those are walked.
	switch {
	case r.looped || !r.elems.Complete || r.elems.Empty || r.manyNulls:
		r.pr.prune(root)
	case len(r.nulls) > 0:
		for _, n := range r.nulls {
			for a := n; a != nil && a.Flags&jsontree.FlagMark == 0; a = a.Parent {
				a.Flags |= jsontree.FlagMark
			}
		}
		r.pr.partial = true
		r.pr.prune(root)
		r.pr.partial = false
	}
	return st, nil
}

// visited reports whether a rule has processed n in this call. The mark is
// a flag on the node rather than a set, which would cost a map entry per
// element of the resource; Anonymize clears the marks before it returns.
func visited(n *jsontree.Node) bool { return n.Flags&jsontree.FlagMark != 0 }

// visit marks n visited.
func visit(n *jsontree.Node) { n.Flags |= jsontree.FlagMark }

// clearMarks clears the visited marks of the tree at n.
func clearMarks(n *jsontree.Node) {
	n.Walk(func(c *jsontree.Node) bool {
		c.Flags &^= jsontree.FlagMark
		return true
	})
}

// getRun returns a clean per-call state.
func (e *Engine) getRun() *run {
	if r, ok := e.runs.Get().(*run); ok {
		return r
	}
	return &run{e: e, env: &fhirpath.Env{}}
}

// maxPooledScratch bounds the scratch stacks kept for reuse, so that one
// huge resource does not pin their memory.
const maxPooledScratch = 1 << 15

// putRun clears r and keeps it for reuse.
func (e *Engine) putRun(r *run) {
	if cap(r.scratch) > maxPooledScratch || cap(r.elems.Nodes) > maxPooledScratch || cap(r.nulls) > maxPooledScratch || cap(r.pr.state) > maxPooledScratch || cap(r.matches) > maxPooledScratch || cap(r.nested) > maxPooledScratch || cap(r.step) > maxPooledScratch || cap(r.head) > maxPooledScratch {
		return
	}
	clear(r.scratch)
	clear(r.nested[:cap(r.nested)])
	clear(r.step[:cap(r.step)])
	clear(r.matches[:cap(r.matches)])
	for i := range r.cache {
		r.cache[i].reset()
	}
	ids, daysFn := r.scrub.ids, r.scrub.daysFn
	tails := r.tailLists
	for i := range tails {
		if cap(tails[i]) > maxPooledScratch {
			tails[i] = nil
		}
		clear(tails[i])
		tails[i] = tails[i][:0]
	}
	clear(r.elems.Nodes)
	clear(r.nulls)
	*r = run{e: e, env: r.env, scratch: r.scratch[:0], elems: typed.Elements{Nodes: r.elems.Nodes[:0], Nested: r.elems.Nested[:0]},
		pr:     pruner{state: r.pr.state[:0], empty: r.pr.empty[:0]},
		nested: r.nested[:0], cache: r.cache, typeSym: r.typeSym, nameSym: r.nameSym, elemSlots: r.elemSlots, matches: r.matches[:0], step: r.step[:0],
		head: r.head[:0], pmemo: r.pmemo, smemo: r.smemo, hmemo: r.hmemo, tailLists: tails, ds: r.ds, wmemo: r.wmemo, lastType: r.lastType, lastPlan: r.lastPlan, nulls: r.nulls[:0]}
	if cap(r.ds.eff) > maxPooledScratch || cap(r.ds.order) > maxPooledScratch {
		r.ds = dispatchState{}
	}
	clear(ids)
	r.scrub.ids, r.scrub.daysFn = ids[:0], daysFn
	*r.env = fhirpath.Env{}
	e.runs.Put(r)
}

// normalize makes the tree look as the reference implementation reads it
// (§2.12): string values are trimmed of leading and trailing white space, as
// .NET's String.Trim does (unless PreserveWhitespace), and a repeating
// element given as a single value is wrapped in an array. It reports whether
// it wrapped anything.
func (e *Engine) normalize(root *jsontree.Node) bool {
	wrapped := false
	var wrap []*jsontree.Node
	root.Walk(func(n *jsontree.Node) bool {
		switch n.Kind {
		case jsontree.String:
			if !e.preserveWhitespace && n.Value() != "" {
				if t := strings.TrimFunc(n.Value(), unicode.IsSpace); len(t) != len(n.Value()) {
					n.SetString(t)
				}
			}
		case jsontree.Object:
			if n.Type() == "" || typed.IsPrimitive(n) {
				return true
			}
			t := e.model.Type(n.Type())
			if t == nil {
				return true
			}
			wrap = wrap[:0]
			for _, c := range n.Children() {
				if c.Kind == jsontree.Array || c.Key() == "resourceType" {
					continue
				}
				if el, _, ok := t.Property(strings.TrimPrefix(c.Key(), "_")); ok && el.Repeats {
					wrap = append(wrap, c)
				}
			}
			for _, c := range wrap {
				arr := jsontree.NewArray()
				c.ReplaceWith(arr)
				arr.Append(c)
				wrapped = true
			}
		}
		return true
	})
	return wrapped
}

// emptyResource replaces the content of a resource by the EmptyElement of
// §2.10: its resourceType and a REDACTED security label.
func emptyResource(root *jsontree.Node) {
	for i := len(root.Children()) - 1; i >= 0; i-- {
		if c := root.Children()[i]; c.Key() != "resourceType" {
			root.Remove(c)
		}
	}
	meta := jsontree.NewObject()
	sec := jsontree.NewArray()
	sec.Append(codingNode(OpRedact.Label()))
	meta.Set("security", sec)
	root.Set("meta", meta)
}

func codingNode(c Coding) *jsontree.Node {
	// One allocation for the object and its members, one for the member
	// list: a label is added to nearly every resource.
	nodes := new([4]jsontree.Node)
	obj := &nodes[0]
	obj.Kind = jsontree.Object
	kids := make([]*jsontree.Node, 0, 3)
	add := func(m *jsontree.Node, key, value string) {
		m.Kind, m.Parent = jsontree.String, obj
		m.SetKey(key)
		m.SetValue(value)
		kids = append(kids, m)
	}
	if c.System != "" {
		add(&nodes[1], "system", c.System)
	}
	add(&nodes[2], "code", c.Code)
	add(&nodes[3], "display", c.Display)
	obj.SetChildren(kids)
	return obj
}

// run is the state of one Anonymize call.
type run struct {
	e         *Engine
	ctx       context.Context
	fc        FileContext
	root      *jsontree.Node
	today     time.Time
	env       *fhirpath.Env
	resources int
	changed   int
	// dispatched counts the resources dispatch handled; looped reports
	// that the rule loop handled one (and left visited marks); nulls are
	// the values the rules removed.
	dispatched int
	looped     bool
	nulls      []*jsontree.Node
	manyNulls  bool
	// scratch holds the children lists of the nodes being walked, as a
	// stack: each level appends its children and truncates them on return.
	scratch []*jsontree.Node
	// trace, when set (WithTrace), receives every element a rule processes.
	trace func(TraceEvent)
	// pr prunes the emptied elements at the end.
	pr pruner
	// cache holds the fast-path caches of the resource being processed by
	// slot (see Engine.typeSlots); typeSym and nameSym find the slots of
	// node types and names, elemSlots both at once by a node's Elem;
	// matches collects a rule's matches.
	cache            []nodeList
	typeSym, nameSym *symbols
	elemSlots        *elemSlots
	matches          []*jsontree.Node
	step             []*jsontree.Node // the other buffer of member paths
	head             []*jsontree.Node // the head items of viaHead rules
	// genEnv is the FHIRPath environment of generalize cases.
	genEnv fhirpath.Env
	// offset is the date-shift offset of offsetPrefix and offsetKey.
	offset                  int
	offsetPrefix, offsetKey string
	offsetSet               bool
	// nested is a stack of the resources nested in those being processed,
	// collected by the cache walk; restructured reports that a rule
	// changed the shape of the tree (substitute) since the walk.
	nested       []*jsontree.Node
	restructured bool
	// reshaped reports that a rule added or moved nodes in the current
	// resource (a substitute, an attachment's new size): the children
	// findTails found may no longer be the tree's.
	reshaped bool
	// tailLists are the matches findTails found, by the plan's tail
	// index, for the current resource if tailsFound.
	tailLists  [][]*jsontree.Node
	tailsFound bool
	// ruleSeq counts the rules applied in this run (to resources, nested
	// ones included), so that what one application of a rule to a resource
	// computes once (scrub options) can be told from the next's.
	ruleSeq uint64
	// scrub holds the scrub options of application scrub.seq.
	scrub struct {
		seq  uint64
		opts scrub.Options
		// key is what, beside a text, decides the scrubber's result under
		// opts (see scrubMemo).
		key scrubOptionsKey
		// ids is the buffer of opts.Identifiers, daysFn the
		// opts.ShiftDays function (it returns key.days).
		ids    []*scrub.Identifiers
		daysFn func() int
	}
	// elems lists the resource's elements, when typing in this call
	// listed them all and no rule has changed the tree's shape since;
	// nestedAt finds its nested resources' spans (see span).
	elems    typed.Elements
	nestedAt map[*jsontree.Node]int32
	// lastType and lastPlan, kept from call to call, are the type and
	// plan planOf found last.
	lastType string
	lastPlan *typePlan
	// ds is the memory of dispatch; wmemo, kept from call to call, its
	// where() results.
	ds    dispatchState
	wmemo *whereMemo
	// smemo, kept from call to call, remembers recent scrubber results,
	// hmemo recent cryptoHash results.
	smemo scrubMemo
	hmemo *hashMemo
	// arena provides the nodes of security labels.
	arena *nodeArena
	// pshift is the state of dateShiftScope "patient"; pmemo, kept from
	// call to call, the last patient's offset.
	pshift patientShiftState
	pmemo  *patientMemo
}

// resource processes one resource and its nested resources, and returns the
// operations applied to them.
func (r *run) resource(res *jsontree.Node) (Operations, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.resources++
	if r.e.params.DateShiftScope == ScopePatient {
		defer func(prev patientShiftState) { r.pshift = prev }(r.enterPatientScope(res))
	}
	var ops Operations
	// The caches are built before any rule runs, as in the reference
	// implementation: nodes that a substitute adds later are not in them.
	plan := r.planOf(res)
	nstart := len(r.nested)
	dispatched := false
	if plan.dispatch != nil && r.elems.Complete && r.trace == nil && !r.e.noDispatch {
		var err error
		if ops, dispatched, err = r.dispatch(res, plan, nstart); err != nil {
			return ops, err
		}
	}
	if !dispatched {
		var err error
		if ops, err = r.ruleLoop(res, plan, nstart); err != nil {
			return ops, err
		}
	}
	for i, end := nstart, len(r.nested); i < end; i++ {
		nops, err := r.resource(r.nested[i])
		if err != nil {
			return ops, err
		}
		ops |= nops
	}
	clear(r.nested[nstart:])
	r.nested = r.nested[:nstart]
	if res.Name() != "contained" {
		addSecurityLabels(res, ops, r.arena)
	}
	return ops, nil
}

// ruleLoop applies the plan's rules to res one after the other, each to
// its matches, and appends the resources nested in res to r.nested.
func (r *run) ruleLoop(res *jsontree.Node, plan *typePlan, nstart int) (Operations, error) {
	r.looped = true
	var ops Operations
	if plan.fast {
		r.buildCaches(res, plan)
	}
	r.restructured, r.reshaped = false, false
	// The tails are found at once only for a resource whose elements
	// typing listed (up to maxListedDoc): their lists together would hold
	// several times the nodes of a rule's matches in a huge one.
	r.tailsFound = plan.fast && plan.ntails > 0 && !r.e.noTailLists && r.elems.Complete
	if r.tailsFound {
		r.findTails(plan)
	}
	for ri, rule := range plan.rules {
		r.ruleSeq++
		if rule.unsupported {
			return ops, &ConfigError{Rule: rule.Index, Method: rule.MethodName, Path: rule.Path,
				Msg: fmt.Sprintf("anonymization method %s not supported (on %s)", strings.ToUpper(rule.MethodName), res.Type())}
		}
		if rule.fast != fastNone && !rule.viaHead && r.cache[rule.slot].empty() {
			// No element of the rule's type or name: nothing to do. (A
			// rule that goes on after its head call may find nodes
			// elsewhere, as with combine(): it is evaluated.)
			continue
		}
		matches := r.matches[:0]
		switch {
		case rule.viaHead && !r.restructured:
			// What the head call would find: res itself if it matches,
			// then the cached descendants, not the nested resources (the
			// call does not return them). A substitute that changed the
			// tree since the caches were built sends the rule to the
			// evaluator instead.
			head := r.head[:0]
			if headMatches(res, rule) {
				head = append(head, res)
			}
			for _, part := range r.cache[rule.slot].parts {
				for _, n := range part {
					if n.Flags&jsontree.FlagResource == 0 {
						head = append(head, n)
					}
				}
			}
			items, err := rule.expr.EvaluateWithHead(res, head, r.env)
			clear(head)
			r.head = head[:0]
			if err != nil {
				return ops, fmt.Errorf("anonymizing: rule %d (%s) on %s: evaluating the path: %w", rule.Index, rule.MethodName, typed.Location(res), err)
			}
			for _, it := range items {
				if n := it.Node(); n != nil {
					matches = append(matches, n)
				}
			}
		case rule.fast != fastNone && rule.tail == "" && !rule.viaHead:
			// The cache is the list of matches: no copy of it (on a large
			// resource it holds most of its nodes). The rules do not change
			// the caches, and r.matches does not take this slice, so that
			// the next rule does not append over the cache.
			for _, part := range r.cache[rule.slot].parts {
				for _, n := range part {
					if err := r.process(n, rule, res, &ops); err != nil {
						return ops, err
					}
				}
			}
			continue
		case rule.fast != fastNone && !rule.viaHead && r.tailsFound && !r.reshaped && plan.ruleTail[ri] >= 0:
			// The matches found before the rules ran: the tree has kept
			// its shape since.
			matches = append(matches, r.tailLists[plan.ruleTail[ri]]...)
		case rule.fast != fastNone && !rule.viaHead:
			for _, part := range r.cache[rule.slot].parts {
				for _, n := range part {
					if rule.tail == "" {
						matches = append(matches, n)
					} else {
						matches = typed.Children(n, rule.tail, matches)
					}
				}
			}
		case rule.IsResourceTypeRule:
			matches = append(matches, res)
		case rule.members != nil:
			matches, r.step = memberMatches(res, rule.members, matches, r.step)
		default:
			items, err := rule.expr.Evaluate(res, r.env)
			if err != nil {
				return ops, fmt.Errorf("anonymizing: rule %d (%s) on %s: evaluating the path: %w", rule.Index, rule.MethodName, typed.Location(res), err)
			}
			for _, it := range items {
				if n := it.Node(); n != nil {
					matches = append(matches, n)
				}
			}
		}
		r.matches = matches
		for _, n := range matches {
			if err := r.process(n, rule, res, &ops); err != nil {
				return ops, err
			}
		}
	}
	clear(r.matches)
	if !plan.fast || r.restructured {
		clear(r.nested[nstart:])
		r.nested = append(r.nested[:nstart], nestedResources(res)...)
	}
	return ops, nil
}

// buildCaches indexes the descendant elements of res by type and by name, in
// pre-order, not entering nested resources but including them (§3.3). Only
// the types and names of the engine's fast-path rules are kept.
func (r *run) buildCaches(res *jsontree.Node, plan *typePlan) {
	// The slices are reused from resource to resource (a nested resource
	// is processed only after its container's rules ran, when the
	// container's caches are no longer needed).
	r.initSlots()
	for _, s := range plan.slots {
		r.cache[s].reset()
	}
	if r.elems.Complete {
		// The elements typing listed, in the walk's order.
		if lo, hi, ok := r.span(res); ok {
			r.cachesFromList(lo, hi, plan)
			return
		}
	}
	r.cacheWalk(res, plan)
}

// initSlots makes the run's caches by slot and its tables of the slots of
// types, names and Elems, on first use.
func (r *run) initSlots() {
	if r.cache == nil {
		r.cache = make([]nodeList, r.e.nslots)
		r.typeSym, r.nameSym = newSymbols(r.e.canonTypes, r.e.typeSlots), newSymbols(r.e.canonNames, r.e.nameSlots)
		r.elemSlots = new(elemSlots)
	}
}

// span returns the positions in the element list of the elements of res,
// the root resource or a nested one, when the list is complete. With many
// nested resources they are found through a map, so that finding each one's
// span does not cost a scan of them all.
func (r *run) span(res *jsontree.Node) (lo, hi int, ok bool) {
	if res == r.root {
		return 0, len(r.elems.Nodes), true
	}
	nested := r.elems.Nested
	if len(nested) <= maxNestedScan {
		for _, sp := range nested {
			if r.elems.Nodes[sp.Index] == res {
				return sp.Index + 1, sp.End, true
			}
		}
		return 0, 0, false
	}
	if r.nestedAt == nil {
		r.nestedAt = make(map[*jsontree.Node]int32, len(nested))
		for k, sp := range nested {
			r.nestedAt[r.elems.Nodes[sp.Index]] = int32(k)
		}
	}
	k, ok := r.nestedAt[res]
	if !ok {
		return 0, 0, false
	}
	return nested[k].Index + 1, nested[k].End, true
}

// maxNestedScan is the number of nested resources up to which span scans
// them rather than build its map.
const maxNestedScan = 16

// cachesFromList adds the listed elements r.elems.Nodes[lo:hi] to the
// caches as cacheWalk would: a nested resource, but not its elements.
func (r *run) cachesFromList(lo, hi int, plan *typePlan) {
	nodes, spans := r.elems.Nodes, r.elems.Nested
	j := 0
	for j < len(spans) && spans[j].Index < lo {
		j++
	}
	for i := lo; i < hi; i++ {
		c := nodes[i]
		if c.Elem != nil {
			r.cacheAdd(c, plan)
		}
		if j < len(spans) && spans[j].Index == i {
			r.nested = append(r.nested, c)
			end := spans[j].End
			for j < len(spans) && spans[j].Index < end {
				j++
			}
			i = end - 1
		}
	}
}

// headMatches reports whether the head call of a fast-path rule finds the
// resource res itself.
func headMatches(res *jsontree.Node, rule *engineRule) bool {
	return rule.fast == fastType && res.Type() == rule.arg || rule.fast == fastName && res.Name() == rule.arg
}

// findTails finds the matches of the plan's rules with a tail among the
// children of the cached nodes (typed.Children of each, as the rule would at
// its turn), one pass per slot.
func (r *run) findTails(plan *typePlan) {
	if len(r.tailLists) < plan.ntails {
		r.tailLists = append(r.tailLists, make([][]*jsontree.Node, plan.ntails-len(r.tailLists))...)
	}
	for i := range plan.ntails {
		clear(r.tailLists[i])
		r.tailLists[i] = r.tailLists[i][:0]
	}
	for _, g := range plan.tails {
		dsts := r.tailLists[g.first : g.first+len(g.names)]
		for _, part := range r.cache[g.slot].parts {
			for _, n := range part {
				typed.ChildrenNamed(n, g.names, dsts)
			}
		}
	}
}

// cacheAdd adds the element c to the caches of its type and name.
func (r *run) cacheAdd(c *jsontree.Node, plan *typePlan) {
	ts, ns := r.slotsOf(c.Elem)
	if plan.types && ts >= 0 && plan.want[ts] {
		r.cache[ts].add(c)
	}
	if plan.names && ns >= 0 && plan.want[ns] {
		r.cache[ns].add(c)
	}
}

// cacheWalk adds the descendant elements of n, not entering nested
// resources, to the caches.
func (r *run) cacheWalk(n *jsontree.Node, plan *typePlan) {
	start := len(r.scratch)
	r.scratch = typed.AllChildren(n, r.scratch)
	end := len(r.scratch)
	for i := start; i < end; i++ {
		c := r.scratch[i]
		if c.Elem != nil {
			r.cacheAdd(c, plan)
		}
		switch {
		case typed.IsResource(c):
			r.nested = append(r.nested, c)
		case c.Kind == jsontree.Object || c.Shadow() != nil:
			r.cacheWalk(c, plan)
		}
	}
	r.scratch = r.scratch[:start]
}

// nestedResources returns the resources directly nested in res (not in one
// of them), in document order.
func nestedResources(res *jsontree.Node) []*jsontree.Node {
	var out []*jsontree.Node
	for _, c := range res.Children() {
		c.Walk(func(n *jsontree.Node) bool {
			if n.Flags&jsontree.FlagResource != 0 {
				out = append(out, n)
				return false
			}
			return true
		})
	}
	return out
}

// process applies a rule to node and its descendants (ProcessNodeRecursive
// of §2.2).
func (r *run) process(node *jsontree.Node, rule *engineRule, res *jsontree.Node, ops *Operations) error {
	if visited(node) {
		return nil
	}
	if r.trace != nil {
		ev := TraceEvent{Rule: rule.Index, Method: rule.MethodName, Location: typed.Location(node), Type: node.Type(),
			HasValue: typed.HasValue(node)}
		if ev.HasValue {
			ev.Before = node.Value()
		}
		if err := r.apply(node, rule, res, ops); err != nil {
			return err
		}
		if ev.HasValue {
			ev.Removed = node.Kind == jsontree.Null || (node.Parent == nil && node != r.root)
			if !ev.Removed {
				ev.After = node.Value()
			}
		}
		r.trace(ev)
	} else if err := r.apply(node, rule, res, ops); err != nil {
		return err
	}
	visit(node)
	if node.Kind != jsontree.Object && node.Shadow() == nil {
		return nil // a value without extensions: no child elements
	}
	start := len(r.scratch)
	r.scratch = typed.AllChildren(node, r.scratch)
	end := len(r.scratch)
	for i := start; i < end; i++ {
		c := r.scratch[i]
		if typed.IsResource(c) {
			continue
		}
		if err := r.process(c, rule, res, ops); err != nil {
			r.scratch = r.scratch[:start]
			return err
		}
	}
	r.scratch = r.scratch[:start]
	return nil
}

// markVisited marks node's descendants (nested resources excluded) visited.
func (r *run) markVisited(node *jsontree.Node) {
	for _, c := range typed.AllChildren(node, nil) {
		if typed.IsResource(c) {
			continue
		}
		visit(c)
		r.markVisited(c)
	}
}

func (r *run) processingError(rule *engineRule, node *jsontree.Node, err error) error {
	return &ProcessingError{Rule: rule.Index, Method: rule.MethodName, ResourceType: typed.Resource(node).Type(), Location: typed.Location(node), Err: err}
}

// apply applies the rule's method to one node.
func (r *run) apply(node *jsontree.Node, rule *engineRule, res *jsontree.Node, ops *Operations) error {
	p := &r.e.params
	switch rule.Method {
	case MethodKeep:
		return nil
	case MethodRedact:
		if !typed.HasValue(node) {
			return nil
		}
		op := OpRedact
		out, keep := "", false
		switch {
		case isDateType(node.Type()):
			dt, _ := ParseDateType(node.Type())
			out, keep = RedactDate(node.Value(), dt, p.EnablePartialDatesForRedact, r.today)
		case isAgeValue(node):
			var err error
			out, keep, err = RedactAge(node.Value(), p.EnablePartialAgesForRedact)
			if err != nil {
				return r.processingError(rule, node, err)
			}
			if keep {
				*ops = ops.Add(OpRedact)
				return nil
			}
		case len(node.Name()) == len("postalCode") && strings.EqualFold(node.Name(), "postalCode"):
			out, keep, op = RedactPostalCode(node.Value(), p.EnablePartialZipCodesForRedact, p.RestrictedZipCodeTabulationAreas)
		}
		r.setString(node, out, keep)
		*ops = ops.Add(op)
	case MethodDateShift:
		dt, ok := ParseDateType(node.Type())
		if !ok || !typed.HasValue(node) || node.Value() == "" {
			return nil
		}
		if p.DateShiftScope == ScopePatient {
			return r.shiftPatientDate(node, dt, rule, res, ops)
		}
		offset := p.DateShiftFixedOffsetInDays
		if !p.HasFixedOffset {
			prefix := ""
			switch p.DateShiftScope {
			case ScopeFile:
				prefix = r.fc.FileName
			case ScopeFolder:
				prefix = r.fc.FolderName
			}
			if prefix == "" {
				if id := r.root.Get("id"); id != nil && id.Kind == jsontree.String {
					prefix = id.Value()
				}
			}
			offset = r.dateShiftOffset(prefix, p.DateShiftKey)
		}
		var stack [64]byte
		b, out, keep, op, err := appendShiftDate(stack[:0], node.Value(), dt, offset, p.EnablePartialDatesForRedact, r.today)
		if err != nil {
			return r.processingError(rule, node, err)
		}
		if b != nil {
			out = r.text(b)
		}
		r.setDerived(node, out, keep)
		*ops = ops.Add(op)
	case MethodCryptoHash, MethodEncrypt:
		if !typed.HasValue(node) {
			return nil
		}
		s := csharpText(node)
		if s == "" {
			return nil
		}
		var out string
		if rule.Method == MethodCryptoHash {
			if r.hmemo == nil {
				r.hmemo = new(hashMemo)
			}
			var stack [160]byte
			out = r.text(r.hmemo.appendHash(stack[:0], r.e.hasher, s, isReference(node)))
			*ops = ops.Add(OpCryptoHash)
		} else {
			if r.e.enc == nil {
				return &ConfigError{Rule: rule.Index, Method: rule.MethodName, Msg: "no encryptKey"}
			}
			var err error
			if out, err = r.e.enc.Encrypt(s); err != nil {
				return err
			}
			*ops = ops.Add(OpEncrypt)
		}
		// Hex or base64, after the input reference's own prefix.
		r.setDerived(node, out, true)
	case MethodSubstitute:
		return r.substitute(node, rule, ops)
	case MethodPerturb:
		return r.perturb(node, rule, res, ops)
	case MethodCustom:
		if isScrub(rule.MethodName) {
			return r.scrubNode(node, rule, res, ops)
		}
		m := r.e.custom[strings.ToLower(rule.MethodName)]
		if !typed.HasValue(node) {
			return nil
		}
		old := csharpText(node)
		v, keep, err := m.Apply(CustomCall{Value: old, Type: node.Type(), Location: typed.Location(node),
			Settings: &rule.settings, CustomSettings: &r.e.params.CustomSettings})
		if err != nil {
			return r.processingError(rule, node, err)
		}
		if !keep || v != old {
			r.setString(node, v, keep)
		}
		if m.Records {
			*ops = ops.Add(m.Operation)
		}
	case MethodGeneralize:
		if !typed.IsPrimitive(node) {
			return &ConfigError{Rule: rule.Index, Method: rule.MethodName, Path: rule.Path,
				Msg: fmt.Sprintf("generalization is not applicable on the node with type %s at %s: only FHIR primitive nodes are applicable", node.Type(), typed.Location(node))}
		}
		if !typed.HasValue(node) {
			return nil
		}
		// Generalize cases compare dates of different precisions as the
		// reference implementation's FHIRPath engine does.
		r.genEnv = *r.env
		r.genEnv.PartialDatesAsRanges = true
		g, changed, err := Generalize(rule.cases, rule.OtherValues, caseEvaluator{node: node, env: &r.genEnv})
		if err != nil {
			return r.processingError(rule, node, err)
		}
		*ops = ops.Add(OpGeneralize)
		if changed {
			r.changed++
			switch g.Kind {
			case NullValue:
				r.nulled(node)
				node.SetNull()
			case NumberValue:
				if node.SetNumber(g.Text) != nil {
					node.SetString(g.Text)
				}
			case BoolValue:
				node.SetBool(g.Text == "true")
			default:
				node.SetString(g.Text)
			}
		}
	}
	return nil
}

// dateShiftOffset is DateShiftOffset, remembered for the last prefix: the
// dates of a resource share it.
func (r *run) dateShiftOffset(prefix, key string) int {
	if !r.offsetSet || prefix != r.offsetPrefix || key != r.offsetKey {
		r.offset, r.offsetPrefix, r.offsetKey, r.offsetSet = DateShiftOffset(prefix, key), prefix, key, true
	}
	return r.offset
}

// text returns the bytes a method made as a string, in memory reused from
// call to call when the tree is written before the call returns.
func (r *run) text(b []byte) string { return r.arena.text(b) }

// setString sets a primitive's value to a string, or removes the value.
func (r *run) setString(node *jsontree.Node, s string, keep bool) {
	r.changed++
	if !keep {
		r.nulled(node)
		node.SetNull()
		return
	}
	node.SetString(s)
}

// setDerived is setString for a value made of plain text (digits, hex
// digits, base64, date punctuation) and parts of node's own value, as a
// hash, a shifted date or an encrypted value is: when node's value was
// plain (jsontree.FlagRaw), so is s, and writing it needs no scan for
// characters to escape.
func (r *run) setDerived(node *jsontree.Node, s string, keep bool) {
	if keep && node.Kind == jsontree.String && node.Flags&jsontree.FlagRaw != 0 {
		r.changed++
		node.SetPlainString(s)
		return
	}
	r.setString(node, s, keep)
}

// nulled records that a rule removed the value of node, for the partial
// pruning of a resource all of whose rules were dispatched: up to
// maxNulls of them, beyond which the whole tree is pruned (so that the
// list does not grow with a huge resource's removed elements).
func (r *run) nulled(node *jsontree.Node) {
	switch {
	case r.manyNulls:
	case len(r.nulls) < maxNulls:
		r.nulls = append(r.nulls, node)
	default:
		r.manyNulls = true
	}
}

// maxNulls bounds the removed values run.nulls records.
const maxNulls = 4096

func isDateType(t string) bool {
	_, ok := ParseDateType(t)
	return ok
}

// isAgeValue reports a decimal node whose parent is an Age (§2.4.2).
func isAgeValue(n *jsontree.Node) bool {
	if len(n.Type()) != len("decimal") || !strings.EqualFold(n.Type(), "decimal") {
		return false
	}
	p := typed.Parent(n)
	return p != nil && p.Type() == "Age"
}

// isReference reports the reference element of a Reference (§2.5).
func isReference(n *jsontree.Node) bool {
	if name := n.Name(); name != "reference" && (len(name) != len("reference") || !strings.EqualFold(name, "reference")) {
		return false
	}
	p := typed.Parent(n)
	return p != nil && p.Type() == "Reference"
}

// csharpText returns the text the reference implementation hashes or
// encrypts for a primitive: booleans as "True"/"False", numbers as their
// literal, strings as they are.
func csharpText(n *jsontree.Node) string {
	if n.Kind == jsontree.Bool {
		if n.Value() == "true" {
			return "True"
		}
		return "False"
	}
	if n.Kind == jsontree.Number && strings.ContainsAny(n.Value(), "eE") {
		// .NET decimals have no exponent form: 1.5e2 is 150.
		if r, scale, err := parseDecimal(n.Value()); err == nil {
			return r.FloatString(scale)
		}
	}
	return n.Value()
}

func (r *run) perturb(node *jsontree.Node, rule *engineRule, res *jsontree.Node, ops *Operations) error {
	target := PerturbTargetOf(node.Type(), r.e.release)
	valNode := node
	switch target {
	case PerturbNone:
		return nil
	case PerturbQuantity:
		vs := typed.Children(node, "value", nil)
		if len(vs) == 0 {
			return nil
		}
		valNode = vs[0]
		target = PerturbTargetOf(valNode.Type(), r.e.release)
		if target == PerturbNone || target == PerturbQuantity {
			return nil
		}
	}
	if !typed.HasValue(valNode) || visited(valNode) {
		return nil
	}
	id := ""
	if n := res.Get("id"); n != nil {
		id = n.Value()
	}
	u := PerturbNoise(r.e.params.CryptoHashKey, res.Type(), id, typed.Location(valNode))
	out, err := Perturb(valNode.Value(), target, rule.Span, rule.RangeType, rule.RoundTo, u)
	if err != nil {
		return r.processingError(rule, valNode, err)
	}
	if err := valNode.SetNumber(out); err != nil {
		return r.processingError(rule, valNode, errors.New("perturbed value is not a JSON number"))
	}
	r.changed++
	*ops = ops.Add(OpPerturb)
	visit(valNode)
	r.markVisited(node)
	return nil
}

// caseEvaluator evaluates generalize cases with package fhirpath.
type caseEvaluator struct {
	node *jsontree.Node
	env  *fhirpath.Env
}

func (c caseEvaluator) Match(cond Compiled) (bool, error) {
	return cond.(*fhirpath.Expression).EvaluateBool(c.node, c.env)
}

func (c caseEvaluator) Value(expr Compiled) (Generalized, error) {
	items, err := expr.(*fhirpath.Expression).Evaluate(c.node, c.env)
	if err != nil {
		return Generalized{}, err
	}
	if len(items) == 0 {
		return Generalized{Kind: NullValue}, nil
	}
	if len(items) > 1 {
		return Generalized{}, errors.New("the value expression returned several items")
	}
	v, ok := items[0].Value()
	if !ok {
		return Generalized{}, errors.New("the value expression did not return a primitive")
	}
	switch x := v.(type) {
	case string:
		return Generalized{Kind: StringValue, Text: x}, nil
	case bool:
		return Generalized{Kind: BoolValue, Text: strconv.FormatBool(x)}, nil
	case int64:
		return Generalized{Kind: NumberValue, Text: strconv.FormatInt(x, 10)}, nil
	case int:
		return Generalized{Kind: NumberValue, Text: strconv.Itoa(x)}, nil
	case fhirpath.Decimal:
		return Generalized{Kind: NumberValue, Text: x.String()}, nil
	case fmt.Stringer:
		return Generalized{Kind: StringValue, Text: x.String()}, nil
	}
	return Generalized{}, errors.New("the value expression returned an unsupported type")
}

// addSecurityLabels appends to res's meta.security the labels of ops (§4),
// creating meta (as the last member) and security when needed. The labels
// are those of SecurityLabels; their nodes are made in two allocations,
// since nearly every resource gets some.
func addSecurityLabels(res *jsontree.Node, ops Operations, arena *nodeArena) {
	if ops == 0 {
		return
	}
	meta := res.Get("meta")
	var sec *jsontree.Node
	if meta != nil && meta.Kind == jsontree.Object {
		if sec = meta.Get("security"); sec != nil && sec.Kind != jsontree.Array {
			sec = nil
		}
	}
	var labels [numOps]Coding
	k := 0
	for op := range numOps {
		if ops.Has(op) && !hasSecurityCode(sec, securityLabels[op].Code) {
			labels[k] = securityLabels[op]
			k++
		}
	}
	if k == 0 {
		return
	}
	nodes := arena.newNodes(2 + 4*k)
	ptrs := arena.newPtrs(1 + 4*k)
	if meta == nil || meta.Kind != jsontree.Object {
		absent := meta == nil
		meta = &nodes[0]
		meta.Kind = jsontree.Object
		meta.SetChildren(ptrs[0:0:1])
		if arena != nil && absent {
			// Room for the new member, from the arena too (without room,
			// Set would grow the array from the heap).
			grown := arena.newPtrs(res.Len() + 1)
			copy(grown, res.Children())
			res.SetChildren(grown[:res.Len()])
		}
		res.Set("meta", meta)
	}
	if sec == nil {
		sec = &nodes[1]
		sec.Kind = jsontree.Array
		sec.SetChildren(ptrs[1 : 1 : 1+k])
		meta.Set("security", sec)
	}
	nodes, ptrs = nodes[2:], ptrs[1+k:]
	for _, l := range labels[:k] {
		obj := &nodes[0]
		obj.Kind = jsontree.Object
		kids := ptrs[0:0:3]
		add := func(m *jsontree.Node, key, value string) {
			m.Kind, m.Parent = jsontree.String, obj
			// Constants, all plain (TestSecurityLabelsPlain).
			m.SetPlainKey(key)
			m.SetPlainValue(value)
			kids = append(kids, m)
		}
		if l.System != "" {
			add(&nodes[1], "system", l.System)
		}
		add(&nodes[2], "code", l.Code)
		add(&nodes[3], "display", l.Display)
		obj.SetChildren(kids)
		sec.Append(obj)
		nodes, ptrs = nodes[4:], ptrs[3:]
	}
}

// hasSecurityCode reports whether the security array sec (or nil) has a
// Coding whose code is code, compared case-insensitively.
func hasSecurityCode(sec *jsontree.Node, code string) bool {
	if sec == nil {
		return false
	}
	for _, c := range sec.Children() {
		if v := c.Get("code"); v != nil && v.Kind == jsontree.String && strings.EqualFold(v.Value(), code) {
			return true
		}
	}
	return false
}

// pruner holds the scratch stacks of prune, so that pruning a resource
// allocates nothing once they have grown.
type pruner struct {
	// state is a stack of the members of the objects being pruned: each
	// level pushes one entry per member (pruneDrop, pruneDone).
	state []uint8
	empty []bool
	// partial prunes only the marked nodes: the caller marked the paths
	// from the root to every null, and the tree holds no null and no
	// empty object or array elsewhere, nor a "_name" member.
	partial bool
}

const (
	pruneDrop uint8 = 1 << iota // the member is to be removed
	pruneDone                   // the member was pruned with its partner
)

// prune removes, bottom-up, every null value and every object or array left
// empty, except resources, keeping a primitive array and its "_name" array
// aligned (§2.2 RemoveEmptyNodes). It reports whether n itself is empty.
// Its cost is linear in the size of the tree: each object and array is
// compacted once, never one removal at a time. It clears the visited marks
// of the nodes it keeps.
func (p *pruner) prune(n *jsontree.Node) bool {
	n.Flags &^= jsontree.FlagMark
	switch n.Kind {
	case jsontree.Null:
		return true
	case jsontree.Object:
	default:
		return false
	}
	// n's members are removed only at the end: meanwhile member i of n has
	// the state p.state[start+i].
	start := len(p.state)
	p.state = append(p.state, make([]uint8, len(n.Children()))...)
	defer func() { p.state = p.state[:start] }()
	anyDrop := false
	under := 0 // whether a member's name starts with "_": 0 not known yet, 1 none, 2 one
	for i, c := range n.Children() {
		if p.partial && c.Flags&jsontree.FlagMark == 0 {
			continue // neither a null nor holding one
		}
		if p.state[start+i]&pruneDone != 0 {
			continue // the partner of an array pruned before
		}
		if c.Kind != jsontree.Array {
			if isValue(c) {
				// Most members: a value stays, only its mark goes.
				c.Flags &^= jsontree.FlagMark
				continue
			}
			if p.prune(c) && c.Flags&jsontree.FlagResource == 0 {
				p.state[start+i] |= pruneDrop
				anyDrop = true
			}
			continue
		}
		// An array, with its partner: "x" and "_x". Most objects have no
		// "_" member at all: one look at the names says so.
		pj := -1
		if under == 0 {
			under = 1
			for _, m := range n.Children() {
				if k := m.Key(); k != "" && k[0] == '_' {
					under = 2
					break
				}
			}
		}
		if under == 2 {
			if k, ok := strings.CutPrefix(c.Key(), "_"); ok {
				pj = memberIndex(n, k, "")
			} else {
				pj = memberIndex(n, "_", c.Key())
			}
		}
		var partner *jsontree.Node
		if pj >= 0 && n.Children()[pj].Kind == jsontree.Array {
			partner = n.Children()[pj]
			p.state[start+pj] |= pruneDone
		} else {
			pj = -1
		}
		dropA, dropB := p.pruneArrays(c, partner)
		if dropA {
			p.state[start+i] |= pruneDrop
			anyDrop = true
		}
		if dropB && pj >= 0 {
			p.state[start+pj] |= pruneDrop
			anyDrop = true
		}
	}
	if anyDrop {
		k := start
		n.RemoveFunc(func(*jsontree.Node) bool {
			d := p.state[k]&pruneDrop != 0
			k++
			return d
		})
	}
	return len(n.Children()) == 0 && n.Flags&jsontree.FlagResource == 0
}

// memberIndex returns the index of the member of object n named
// prefix+name, or -1.
func memberIndex(n *jsontree.Node, prefix, name string) int {
	for i, c := range n.Children() {
		if len(c.Key()) == len(prefix)+len(name) && strings.HasPrefix(c.Key(), prefix) && c.Key()[len(prefix):] == name {
			return i
		}
	}
	return -1
}

// pruneArrays prunes the items of the array a and of its "_name" partner b
// (or nil) together, keeping them aligned: an item goes only when both sides
// are empty, and an empty side of a kept item becomes null. It reports
// whether a and b are left with no item, to be removed from their object.
func (p *pruner) pruneArrays(a, b *jsontree.Node) (dropA, dropB bool) {
	a.Flags &^= jsontree.FlagMark // set on the paths to nulls (partial)
	n := len(a.Children())
	if b != nil && len(b.Children()) > n {
		n = len(b.Children())
	}
	start := len(p.empty)
	p.empty = append(p.empty, make([]bool, 2*n)...)
	defer func() { p.empty = p.empty[:start] }()
	ea, eb := p.empty[start:start+n], p.empty[start+n:start+2*n]
	anyEmpty := false
	for i := range n {
		ea[i] = p.emptyAt(a, i)
		eb[i] = p.emptyAt(b, i)
		anyEmpty = anyEmpty || ea[i] || eb[i]
	}
	if n > 0 && !anyEmpty {
		return false, false // nothing to remove or null on either side
	}
	return p.fix(a, ea, eb), b != nil && p.fix(b, eb, ea)
}

func (p *pruner) emptyAt(arr *jsontree.Node, i int) bool {
	if arr == nil || i >= len(arr.Children()) {
		return true
	}
	it := arr.Children()[i]
	if p.partial && it.Flags&jsontree.FlagMark == 0 {
		return false // neither a null nor holding one
	}
	if isValue(it) {
		it.Flags &^= jsontree.FlagMark
		return false
	}
	return p.prune(it) && it.Flags&jsontree.FlagResource == 0
}

// isValue reports a string, number or boolean: what prune keeps as it is.
func isValue(n *jsontree.Node) bool {
	return n.Kind == jsontree.String || n.Kind == jsontree.Number || n.Kind == jsontree.Bool
}

// fix removes the items of arr that are empty on both sides, nulls those
// empty on its side only, and reports whether every item was empty on its
// side, when arr is to be removed from its object.
func (p *pruner) fix(arr *jsontree.Node, empty, other []bool) bool {
	i, all := 0, true
	arr.RemoveFunc(func(it *jsontree.Node) bool {
		e, o := empty[i], other[i]
		i++
		switch {
		case e && o:
			return true
		case e:
			if it.Kind != jsontree.Null {
				it.SetNull()
			}
		default:
			all = false
		}
		return false
	})
	return all
}

// TraceEvent describes one element that a rule processed, for explaining a
// configuration ("fhirdeid explain"). Before and After hold resource values:
// they are for the authorised user's eyes, never for logs.
type TraceEvent struct {
	// Rule is the 1-based rule number and Method its method as written.
	Rule   int
	Method string
	// Location is the element's FHIRPath location ("Patient.name[0].family")
	// and Type its FHIR type.
	Location string
	Type     string
	// HasValue reports whether the element is a primitive with a value;
	// Before and After are then its value before and after the rule, and
	// Removed reports that the rule removed it.
	HasValue      bool
	Before, After string
	Removed       bool
}

type traceKey struct{}

// WithTrace returns a context under which Anonymize calls fn for every
// element a rule processes, in processing order (the first rule to reach an
// element is the one that applies to it). Tracing costs time: use it to
// explain a configuration, not in production runs.
func WithTrace(ctx context.Context, fn func(TraceEvent)) context.Context {
	return context.WithValue(ctx, traceKey{}, fn)
}

// symbols finds the cache slot of a type or element name. Nodes' types and
// names are the FHIR model's strings, so a small table keyed by the
// string's address answers most lookups with one comparison of equal
// pointers instead of hashing the string. The table holds only the model's
// own strings (canon), which live as long as the program: a string that is
// not one of them is looked up in the map every time, so the table never
// holds memory that a parser may reuse (jsontree.Parser.ReuseText).
type symbols struct {
	canon map[string]symbol
	slots map[string]int32
	tab   [symbolsSize]symbol
}

const symbolsSize = 1024

type symbol struct {
	s    string
	slot int32
}

func newSymbols(canon map[string]symbol, slots map[string]int32) *symbols {
	return &symbols{canon: canon, slots: slots}
}

// slot returns the slot of s, or -1.
func (t *symbols) slot(s string) int32 {
	if s == "" {
		return -1
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	e := &t.tab[(p>>3^p>>13)%symbolsSize]
	if e.s == s {
		return e.slot
	}
	if c, ok := t.canon[s]; ok {
		*e = c
		return c.slot
	}
	if slot, ok := t.slots[s]; ok {
		return slot
	}
	return -1
}

// nodeList is a cache's list of nodes, in parts: the first grows by
// doubling up to nodeListPart nodes, and beyond it the list takes new
// parts of that size instead of moving what it holds. A list of k nodes
// thus allocates about k pointers (doubling, 2k; append's growth by a
// quarter, 5k), and leaves no copies behind as garbage: the caches of a
// resource of 64 MB hold millions of nodes.
type nodeList struct {
	parts [][]*jsontree.Node
}

// nodeListPart is the size of a nodeList's parts after the first.
const nodeListPart = 1 << 12

// add appends n.
func (l *nodeList) add(n *jsontree.Node) {
	k := len(l.parts)
	if k == 0 {
		l.parts = append(l.parts, make([]*jsontree.Node, 0, 16))
		k = 1
	}
	last := l.parts[k-1]
	if len(last) == cap(last) {
		if cap(last) < nodeListPart {
			last = slices.Grow(last, cap(last))
		} else {
			l.parts = append(l.parts, make([]*jsontree.Node, 0, nodeListPart))
			k++
			last = l.parts[k-1]
		}
	}
	l.parts[k-1] = append(last, n)
}

// empty reports whether l holds no node.
func (l *nodeList) empty() bool { return len(l.parts) == 0 || len(l.parts[0]) == 0 }

// reset empties l, keeping its first part's memory for reuse.
func (l *nodeList) reset() {
	if l.empty() && len(l.parts) <= 1 {
		return
	}
	for _, p := range l.parts {
		clear(p)
	}
	if len(l.parts) == 0 {
		return
	}
	first := l.parts[0][:0]
	clear(l.parts[1:])
	l.parts = append(l.parts[:0], first)
}

// elemSlots caches the type and name slots of typed nodes by the address of
// their jsontree.Elem, which typing shares between all the nodes of one
// element and type and never changes: one comparison of pointers answers
// both lookups of most nodes. It is direct-mapped; an entry keeps its Elem
// alive, which holds only the model's strings, never a document's.
type elemSlots [elemSlotsSize]elemSlot

const elemSlotsSize = 512

type elemSlot struct {
	e                  *jsontree.Elem
	typeSlot, nameSlot int32
}

// slotsOf returns the type slot and the name slot of the nodes typed e
// (-1 for none).
func (r *run) slotsOf(e *jsontree.Elem) (typeSlot, nameSlot int32) {
	p := uintptr(unsafe.Pointer(e))
	s := &r.elemSlots[(p>>4^p>>13)%elemSlotsSize]
	if s.e != e {
		*s = elemSlot{e, r.typeSym.slot(e.Type), r.nameSym.slot(e.Name)}
	}
	return s.typeSlot, s.nameSlot
}

// canonSymbols returns the model's type names and element types (types),
// and its element names (names), each with its slot or -1.
func canonSymbols(m *model.Model, typeSlots, nameSlots map[string]int32) (types, names map[string]symbol) {
	types, names = map[string]symbol{}, map[string]symbol{}
	add := func(dst map[string]symbol, slots map[string]int32, s string) {
		if _, ok := dst[s]; ok {
			return
		}
		slot, ok := slots[s]
		if !ok {
			slot = -1
		}
		dst[s] = symbol{s, slot}
	}
	for _, tn := range m.TypeNames() {
		t := m.Type(tn)
		add(types, typeSlots, t.Name)
		for _, el := range t.Elements {
			add(names, nameSlots, el.Name)
			for _, typ := range el.Types {
				add(types, typeSlots, typ)
			}
		}
	}
	return types, names
}
