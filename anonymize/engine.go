package anonymize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

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
	cfg     *Config
	params  Parameters
	release string
	model   *model.Model
	rules   []engineRule
	hasher  *Hasher
	enc     *Encryptor
	// fastTypes and fastNames are the types and names the fast-path rules
	// look up, the only ones the per-resource caches need.
	fastTypes, fastNames map[string]bool
	parsers              sync.Pool
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

type engineRule struct {
	Rule
	expr  *fhirpath.Expression
	fast  fastKind
	arg   string // the type or name of the fast path
	tail  string // the identifier after it, or ""
	cases []GeneralizeCase
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
	e := &Engine{cfg: cfg, params: cfg.Parameters(), release: cfg.Release(), model: m, fastTypes: map[string]bool{}, fastNames: map[string]bool{}, preserveWhitespace: opts.PreserveWhitespace}
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
		if sm := fastPathRegexp.FindStringSubmatch(r.Path); sm != nil {
			er.fast, er.arg, er.tail = fastType, sm[2], sm[4]
			if sm[1] == "Name" {
				er.fast = fastName
				e.fastNames[sm[2]] = true
			} else {
				e.fastTypes[sm[2]] = true
			}
		}
		c, err := compile(r.ResourceType, r.Expression)
		if err != nil {
			ce := &ConfigError{Rule: r.Index, Method: r.MethodName, Path: r.Path, Msg: "invalid FHIR path", Err: err, ExprColumn: exprColumn(err)}
			return nil, ce
		}
		er.expr = c.(*fhirpath.Expression)
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
		e.rules = append(e.rules, er)
	}
	return e, nil
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
	p, _ := e.parsers.Get().(*jsontree.Parser)
	if p == nil {
		p = new(jsontree.Parser)
	}
	defer e.parsers.Put(p)
	root, err := p.Parse(data)
	if err != nil {
		return dst, Stats{}, &InputError{Err: err}
	}
	st, err := e.Anonymize(ctx, root, fc)
	if err != nil {
		return dst, st, err
	}
	return root.AppendJSON(dst), st, nil
}

// Anonymize de-identifies the resource rooted at root in place, following
// §2.2: see the package documentation. The tree is typed first if it is not
// yet.
func (e *Engine) Anonymize(ctx context.Context, root *jsontree.Node, fc FileContext) (Stats, error) {
	if root == nil || root.Kind != jsontree.Object {
		return Stats{}, &InputError{Err: errors.New("the resource is not a JSON object")}
	}
	if root.Flags&jsontree.FlagResource == 0 || root.Type == "" {
		if err := typed.Annotate(root, e.model); err != nil {
			return Stats{}, &InputError{Err: err}
		}
	}
	if e.normalize(root) {
		// Elements were wrapped in arrays: type the new containers.
		if err := typed.Annotate(root, e.model); err != nil {
			return Stats{}, &InputError{Err: err}
		}
	}
	now := nowFrom(ctx)
	r := e.getRun()
	defer e.putRun(r)
	r.ctx, r.fc, r.root, r.today = ctx, fc, root, now
	*r.env = fhirpath.Env{Now: now}
	if fn, ok := ctx.Value(traceKey{}).(func(TraceEvent)); ok {
		r.trace = fn
	}
	ops, err := r.resource(root)
	st := Stats{Operations: ops, Resources: r.resources, Changed: r.changed}
	if err != nil {
		var pe *ProcessingError
		if errors.As(err, &pe) && e.cfg.ProcessingErrors() == Skip {
			emptyResource(root)
			return Stats{Operations: Operations(0).Add(OpRedact), Resources: 1, Skipped: true}, nil
		}
		return st, err
	}
	r.pr.prune(root)
	return st, nil
}

// getRun returns a clean per-call state.
func (e *Engine) getRun() *run {
	if r, ok := e.runs.Get().(*run); ok {
		return r
	}
	return &run{e: e, env: &fhirpath.Env{}, visited: map[*jsontree.Node]bool{}}
}

// maxPooledVisited bounds the visited set kept for reuse, so that one huge
// resource does not pin its memory.
const maxPooledVisited = 1 << 15

// putRun clears r and keeps it for reuse.
func (e *Engine) putRun(r *run) {
	if len(r.visited) > maxPooledVisited {
		return
	}
	clear(r.visited)
	clear(r.scratch)
	clear(r.pr.nodes[:cap(r.pr.nodes)])
	for _, m := range []map[string][]*jsontree.Node{r.byType, r.byName} {
		for k, v := range m {
			clear(v)
			m[k] = v[:0]
		}
	}
	*r = run{e: e, env: r.env, visited: r.visited, scratch: r.scratch[:0],
		pr:     pruner{nodes: r.pr.nodes[:0], empty: r.pr.empty[:0]},
		byType: r.byType, byName: r.byName, matches: r.matches[:0]}
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
			if !e.preserveWhitespace && n.Value != "" {
				if t := strings.TrimFunc(n.Value, unicode.IsSpace); len(t) != len(n.Value) {
					n.SetString(t)
				}
			}
		case jsontree.Object:
			if n.Type == "" || typed.IsPrimitive(n) {
				return true
			}
			t := e.model.Type(n.Type)
			if t == nil {
				return true
			}
			wrap = wrap[:0]
			for _, c := range n.Children {
				if c.Kind == jsontree.Array || c.Key == "resourceType" {
					continue
				}
				if el, _, ok := t.Property(strings.TrimPrefix(c.Key, "_")); ok && el.Repeats {
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
	for i := len(root.Children) - 1; i >= 0; i-- {
		if c := root.Children[i]; c.Key != "resourceType" {
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
	obj.Children = make([]*jsontree.Node, 0, 3)
	add := func(m *jsontree.Node, key, value string) {
		m.Kind, m.Key, m.Value, m.Parent = jsontree.String, key, value, obj
		obj.Children = append(obj.Children, m)
	}
	if c.System != "" {
		add(&nodes[1], "system", c.System)
	}
	add(&nodes[2], "code", c.Code)
	add(&nodes[3], "display", c.Display)
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
	visited   map[*jsontree.Node]bool
	resources int
	changed   int
	// scratch holds the children lists of the nodes being walked, as a
	// stack: each level appends its children and truncates them on return.
	scratch []*jsontree.Node
	// trace, when set (WithTrace), receives every element a rule processes.
	trace func(TraceEvent)
	// pr prunes the emptied elements at the end.
	pr pruner
	// byType and byName are the fast-path caches of the resource being
	// processed; matches collects a rule's matches.
	byType, byName map[string][]*jsontree.Node
	matches        []*jsontree.Node
	// genEnv is the FHIRPath environment of generalize cases.
	genEnv fhirpath.Env
	// pshift is the state of dateShiftScope "patient".
	pshift patientShiftState
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
	var typeCache, nameCache map[string][]*jsontree.Node
	for i := range r.e.rules {
		if rule := &r.e.rules[i]; rule.fast != fastNone && rule.AppliesTo(res.Type) {
			typeCache, nameCache = r.buildCaches(res)
			break
		}
	}
	for i := range r.e.rules {
		rule := &r.e.rules[i]
		if !rule.AppliesTo(res.Type) {
			continue
		}
		if _, ok := r.e.custom[strings.ToLower(rule.MethodName)]; rule.Method == MethodCustom && !ok && !isScrub(rule.MethodName) {
			return ops, &ConfigError{Rule: rule.Index, Method: rule.MethodName, Path: rule.Path,
				Msg: fmt.Sprintf("anonymization method %s not supported (on %s)", strings.ToUpper(rule.MethodName), res.Type)}
		}
		matches := r.matches[:0]
		switch {
		case rule.fast != fastNone:
			cache := typeCache
			if rule.fast == fastName {
				cache = nameCache
			}
			for _, n := range cache[rule.arg] {
				if rule.tail == "" {
					matches = append(matches, n)
				} else {
					matches = typed.Children(n, rule.tail, matches)
				}
			}
		case rule.IsResourceTypeRule:
			matches = append(matches, res)
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
	for _, nested := range nestedResources(res) {
		nops, err := r.resource(nested)
		if err != nil {
			return ops, err
		}
		ops |= nops
	}
	if res.Name != "contained" {
		addSecurityLabels(res, ops)
	}
	return ops, nil
}

// buildCaches indexes the descendant elements of res by type and by name, in
// pre-order, not entering nested resources but including them (§3.3). Only
// the types and names of the engine's fast-path rules are kept.
func (r *run) buildCaches(res *jsontree.Node) (byType, byName map[string][]*jsontree.Node) {
	// The maps and their slices are reused from resource to resource (a
	// nested resource is processed only after its container's rules ran,
	// when the container's caches are no longer needed).
	if r.byType == nil {
		r.byType, r.byName = map[string][]*jsontree.Node{}, map[string][]*jsontree.Node{}
	}
	for _, m := range []map[string][]*jsontree.Node{r.byType, r.byName} {
		for k, v := range m {
			clear(v)
			m[k] = v[:0]
		}
	}
	r.cacheWalk(res)
	return r.byType, r.byName
}

// cacheWalk adds the descendant elements of n, not entering nested
// resources, to the caches.
func (r *run) cacheWalk(n *jsontree.Node) {
	types, names := r.e.fastTypes, r.e.fastNames
	start := len(r.scratch)
	r.scratch = typed.AllChildren(n, r.scratch)
	end := len(r.scratch)
	for i := start; i < end; i++ {
		c := r.scratch[i]
		if types[c.Type] {
			r.byType[c.Type] = append(r.byType[c.Type], c)
		}
		if names[c.Name] {
			r.byName[c.Name] = append(r.byName[c.Name], c)
		}
		if !typed.IsResource(c) {
			r.cacheWalk(c)
		}
	}
	r.scratch = r.scratch[:start]
}

// nestedResources returns the resources directly nested in res (not in one
// of them), in document order.
func nestedResources(res *jsontree.Node) []*jsontree.Node {
	var out []*jsontree.Node
	for _, c := range res.Children {
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
	if r.visited[node] {
		return nil
	}
	if r.trace != nil {
		ev := TraceEvent{Rule: rule.Index, Method: rule.MethodName, Location: typed.Location(node), Type: node.Type,
			HasValue: typed.HasValue(node)}
		if ev.HasValue {
			ev.Before = node.Value
		}
		if err := r.apply(node, rule, res, ops); err != nil {
			return err
		}
		if ev.HasValue {
			ev.Removed = node.Kind == jsontree.Null || (node.Parent == nil && node != r.root)
			if !ev.Removed {
				ev.After = node.Value
			}
		}
		r.trace(ev)
	} else if err := r.apply(node, rule, res, ops); err != nil {
		return err
	}
	r.visited[node] = true
	start := len(r.scratch)
	r.scratch = typed.AllChildren(node, r.scratch)
	end := len(r.scratch)
	defer func() { r.scratch = r.scratch[:start] }()
	for i := start; i < end; i++ {
		c := r.scratch[i]
		if typed.IsResource(c) {
			continue
		}
		if err := r.process(c, rule, res, ops); err != nil {
			return err
		}
	}
	return nil
}

// markVisited marks node's descendants (nested resources excluded) visited.
func (r *run) markVisited(node *jsontree.Node) {
	for _, c := range typed.AllChildren(node, nil) {
		if typed.IsResource(c) {
			continue
		}
		r.visited[c] = true
		r.markVisited(c)
	}
}

func (r *run) processingError(rule *engineRule, node *jsontree.Node, err error) error {
	return &ProcessingError{Rule: rule.Index, Method: rule.MethodName, ResourceType: typed.Resource(node).Type, Location: typed.Location(node), Err: err}
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
		case isDateType(node.Type):
			dt, _ := ParseDateType(node.Type)
			out, keep = RedactDate(node.Value, dt, p.EnablePartialDatesForRedact, r.today)
		case isAgeValue(node):
			var err error
			out, keep, err = RedactAge(node.Value, p.EnablePartialAgesForRedact)
			if err != nil {
				return r.processingError(rule, node, err)
			}
			if keep {
				*ops = ops.Add(OpRedact)
				return nil
			}
		case strings.EqualFold(node.Name, "postalCode"):
			out, keep, op = RedactPostalCode(node.Value, p.EnablePartialZipCodesForRedact, p.RestrictedZipCodeTabulationAreas)
		}
		r.setString(node, out, keep)
		*ops = ops.Add(op)
	case MethodDateShift:
		dt, ok := ParseDateType(node.Type)
		if !ok || !typed.HasValue(node) || node.Value == "" {
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
					prefix = id.Value
				}
			}
			offset = DateShiftOffset(prefix, p.DateShiftKey)
		}
		out, keep, op, err := ShiftDate(node.Value, dt, offset, p.EnablePartialDatesForRedact, r.today)
		if err != nil {
			return r.processingError(rule, node, err)
		}
		r.setString(node, out, keep)
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
			if isReference(node) {
				out = r.e.hasher.HashReference(s)
			} else {
				out = r.e.hasher.Hash(s)
			}
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
		r.setString(node, out, true)
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
		v, keep, err := m.Apply(CustomCall{Value: old, Type: node.Type, Location: typed.Location(node),
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
				Msg: fmt.Sprintf("generalization is not applicable on the node with type %s at %s: only FHIR primitive nodes are applicable", node.Type, typed.Location(node))}
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

// setString sets a primitive's value to a string, or removes the value.
func (r *run) setString(node *jsontree.Node, s string, keep bool) {
	r.changed++
	if !keep {
		node.SetNull()
		return
	}
	node.SetString(s)
}

func isDateType(t string) bool {
	_, ok := ParseDateType(t)
	return ok
}

// isAgeValue reports a decimal node whose parent is an Age (§2.4.2).
func isAgeValue(n *jsontree.Node) bool {
	if !strings.EqualFold(n.Type, "decimal") {
		return false
	}
	p := typed.Parent(n)
	return p != nil && p.Type == "Age"
}

// isReference reports the reference element of a Reference (§2.5).
func isReference(n *jsontree.Node) bool {
	if !strings.EqualFold(n.Name, "reference") {
		return false
	}
	p := typed.Parent(n)
	return p != nil && p.Type == "Reference"
}

// csharpText returns the text the reference implementation hashes or
// encrypts for a primitive: booleans as "True"/"False", numbers as their
// literal, strings as they are.
func csharpText(n *jsontree.Node) string {
	if n.Kind == jsontree.Bool {
		if n.Value == "true" {
			return "True"
		}
		return "False"
	}
	if n.Kind == jsontree.Number && strings.ContainsAny(n.Value, "eE") {
		// .NET decimals have no exponent form: 1.5e2 is 150.
		if r, scale, err := parseDecimal(n.Value); err == nil {
			return r.FloatString(scale)
		}
	}
	return n.Value
}

func (r *run) perturb(node *jsontree.Node, rule *engineRule, res *jsontree.Node, ops *Operations) error {
	target := PerturbTargetOf(node.Type, r.e.release)
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
		target = PerturbTargetOf(valNode.Type, r.e.release)
		if target == PerturbNone || target == PerturbQuantity {
			return nil
		}
	}
	if !typed.HasValue(valNode) || r.visited[valNode] {
		return nil
	}
	id := ""
	if n := res.Get("id"); n != nil {
		id = n.Value
	}
	u := PerturbNoise(r.e.params.CryptoHashKey, res.Type, id, typed.Location(valNode))
	out, err := Perturb(valNode.Value, target, rule.Span, rule.RangeType, rule.RoundTo, u)
	if err != nil {
		return r.processingError(rule, valNode, err)
	}
	if err := valNode.SetNumber(out); err != nil {
		return r.processingError(rule, valNode, errors.New("perturbed value is not a JSON number"))
	}
	r.changed++
	*ops = ops.Add(OpPerturb)
	r.visited[valNode] = true
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
// creating meta (as the last member) and security when needed.
func addSecurityLabels(res *jsontree.Node, ops Operations) {
	if ops == 0 {
		return
	}
	meta := res.Get("meta")
	var sec *jsontree.Node
	var codes []string
	if meta != nil && meta.Kind == jsontree.Object {
		if sec = meta.Get("security"); sec != nil && sec.Kind == jsontree.Array {
			for _, c := range sec.Children {
				if code := c.Get("code"); code != nil && code.Kind == jsontree.String {
					codes = append(codes, code.Value)
				}
			}
		} else {
			sec = nil
		}
	}
	labels := SecurityLabels(ops, codes)
	if len(labels) == 0 {
		return
	}
	if meta == nil || meta.Kind != jsontree.Object {
		meta = jsontree.NewObject()
		res.Set("meta", meta)
	}
	if sec == nil {
		sec = jsontree.NewArray()
		meta.Set("security", sec)
	}
	for _, l := range labels {
		sec.Append(codingNode(l))
	}
}

// pruner holds the scratch stacks of prune, so that pruning a resource
// allocates nothing once they have grown.
type pruner struct {
	nodes []*jsontree.Node
	empty []bool
}

// prune removes, bottom-up, every null value and every object or array left
// empty, except resources, keeping a primitive array and its "_name" array
// aligned (§2.2 RemoveEmptyNodes). It reports whether n itself is empty.
func (p *pruner) prune(n *jsontree.Node) bool {
	switch n.Kind {
	case jsontree.Null:
		return true
	case jsontree.Object:
	default:
		return false
	}
	// Work on a copy of the members, since pruning removes some.
	start := len(p.nodes)
	p.nodes = append(p.nodes, n.Children...)
	end := len(p.nodes)
	defer func() { p.nodes = p.nodes[:start] }()
	for i := start; i < end; i++ {
		c := p.nodes[i]
		if c == nil {
			continue // the partner of an array pruned before
		}
		if c.Kind != jsontree.Array {
			if p.prune(c) && c.Flags&jsontree.FlagResource == 0 {
				n.Remove(c)
			}
			continue
		}
		// An array, with its partner: "x" and "_x".
		var partner *jsontree.Node
		if k, ok := strings.CutPrefix(c.Key, "_"); ok {
			partner = n.Get(k)
		} else {
			partner = n.Get("_" + c.Key)
		}
		if partner != nil && partner.Kind != jsontree.Array {
			partner = nil
		}
		if partner != nil {
			for j := i + 1; j < end; j++ {
				if p.nodes[j] == partner {
					p.nodes[j] = nil
				}
			}
		}
		p.pruneArrays(n, c, partner)
	}
	return len(n.Children) == 0 && n.Flags&jsontree.FlagResource == 0
}

// pruneArrays prunes the items of the array a and of its "_name" partner b
// (or nil) together, keeping them aligned: an item goes only when both sides
// are empty, and an empty side of a kept item becomes null. An array left
// with no item is removed from parent.
func (p *pruner) pruneArrays(parent, a, b *jsontree.Node) {
	n := len(a.Children)
	if b != nil && len(b.Children) > n {
		n = len(b.Children)
	}
	start := len(p.empty)
	p.empty = append(p.empty, make([]bool, 2*n)...)
	defer func() { p.empty = p.empty[:start] }()
	ea, eb := p.empty[start:start+n], p.empty[start+n:start+2*n]
	for i := range n {
		ea[i] = p.emptyAt(a, i)
		eb[i] = p.emptyAt(b, i)
	}
	p.fix(parent, a, ea, eb)
	p.fix(parent, b, eb, ea)
}

func (p *pruner) emptyAt(arr *jsontree.Node, i int) bool {
	if arr == nil || i >= len(arr.Children) {
		return true
	}
	it := arr.Children[i]
	return p.prune(it) && it.Flags&jsontree.FlagResource == 0
}

// fix removes the items of arr that are empty on both sides, nulls those
// empty on its side only, and removes arr when nothing is left.
func (p *pruner) fix(parent, arr *jsontree.Node, empty, other []bool) {
	if arr == nil {
		return
	}
	start := len(p.nodes)
	p.nodes = append(p.nodes, arr.Children...)
	defer func() { p.nodes = p.nodes[:start] }()
	all := true
	for i, it := range p.nodes[start:] {
		switch {
		case empty[i] && other[i]:
			arr.Remove(it)
		case empty[i]:
			if it.Kind != jsontree.Null {
				it.SetNull()
			}
		default:
			all = false
		}
	}
	if all {
		parent.Remove(arr)
	}
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
