package anonymize

import (
	"context"
	"encoding/base64"
	"hash/maphash"
	"strconv"
	"strings"

	"fhirdeid/anonymize/scrub"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// ScrubMethod is the name of the free-text scrubbing method, an extension
// of the Microsoft format (see COMPATIBILITY.md): on string, markdown and
// xhtml values it replaces the PHI spans that package scrub finds by typed
// placeholders; on an Attachment with a text/* content type it scrubs the
// decoded data, re-encodes it, drops the hash and fixes the size; other
// attachments are redacted. A value it changes records the REDACT
// operation. The rule setting "dates": "shift" shifts full
// dates in the text by the resource's date-shift offset instead of
// replacing them by [DATE].
const ScrubMethod = "scrub"

// isScrub reports a rule of the scrub method.
func isScrub(name string) bool { return strings.EqualFold(name, ScrubMethod) }

// ScrubInput is the per-call input of the scrub method, passed with
// WithScrubInput: the engine itself holds no identifiers.
type ScrubInput struct {
	// Identifiers are the contextual layer's sets: the patient's own
	// identifiers and those shared by every note (practitioners,
	// organisations), collected by the caller in a first pass.
	Identifiers []*scrub.Identifiers
	// Patients, when non-nil, returns the identifier set of the patient
	// with the given id (as written in the resource, or as the engine's
	// cryptoHash rewrote it), or nil; the engine finds the id of the
	// resource's patient (its own id, or its subject, patient or
	// beneficiary reference). IdentifierCollector provides it.
	Patients func(patientID string) *scrub.Identifiers
	// Safe, when non-nil, holds words the vocabulary layer keeps as clinical
	// (the drug and vaccine names of the export's codes; IdentifierCollector
	// gathers them).
	Safe *scrub.Words
	// DateShiftDays, when non-nil, is the offset for dates in text under
	// "dates": "shift" (for example the patient's offset); nil means the
	// offset the dateShift method uses for this resource.
	DateShiftDays *int
}

type scrubInputKey struct{}

// WithScrubInput returns a context carrying in for the scrub method.
func WithScrubInput(ctx context.Context, in ScrubInput) context.Context {
	return context.WithValue(ctx, scrubInputKey{}, in)
}

// ScrubEvent describes one scrubbed text, for "fhirdeid explain". Text is
// the text before scrubbing: PHI, for the authorised user's eyes only.
type ScrubEvent struct {
	Rule     int
	Location string
	Spans    []scrub.Span
	Text     string
}

type scrubTraceKey struct{}

// WithScrubTrace returns a context under which the scrub method calls fn
// for every text it scrubs.
func WithScrubTrace(ctx context.Context, fn func(ScrubEvent)) context.Context {
	return context.WithValue(ctx, scrubTraceKey{}, fn)
}

// scrubOptions builds the scrubber's options for the rule on resource res.
func (r *run) scrubOptions(rule *engineRule, res *jsontree.Node) scrub.Options {
	// One application of a rule to a resource scrubs many nodes with the
	// same options: the patient (and so its identifiers and date shift)
	// changes only when a later rule rewrites the references.
	if r.scrub.seq == r.ruleSeq && r.ruleSeq != 0 {
		return r.scrub.opts
	}
	opts := r.newScrubOptions(rule, res)
	r.scrub.seq, r.scrub.opts = r.ruleSeq, opts
	return opts
}

// newScrubOptions makes the options of scrubOptions, and sets
// r.scrub.key.
func (r *run) newScrubOptions(rule *engineRule, res *jsontree.Node) scrub.Options {
	in, _ := r.ctx.Value(scrubInputKey{}).(ScrubInput)
	opts := scrub.Options{Identifiers: in.Identifiers, Safe: in.Safe}
	key := scrubOptionsKey{input: scrubInputOf(in)}
	if in.Patients != nil {
		// The rules of one resource, and the next resources of the file,
		// ask for the same patient in turn (the memo is kept from call to
		// call, with a copy of the id: the tree's may be reused).
		id := r.scrubPatient(res)
		if m := &r.smemo; !m.patientSet || id != m.patientID || key.input != m.patientInput {
			m.patient, m.patientID, m.patientSet, m.patientInput = in.Patients(id), strings.Clone(id), true, key.input
		}
		if set := r.smemo.patient; set != nil {
			// The options live until the next rule application: the
			// list of sets can reuse the run's buffer.
			r.scrub.ids = append(append(r.scrub.ids[:0], in.Identifiers...), set)
			opts.Identifiers = r.scrub.ids
			key.patient = set
		}
	}
	if rule.shiftDates {
		days := 0
		if in.DateShiftDays != nil {
			days = *in.DateShiftDays
		} else {
			days = r.scrubShiftOffset()
		}
		if r.scrub.daysFn == nil {
			r.scrub.daysFn = func() int { return r.scrub.key.days }
		}
		opts.ShiftDays = r.scrub.daysFn
		key.shift, key.days = true, days
	}
	r.scrub.key = key
	return opts
}

// scrubInputID identifies a ScrubInput's identifier sets and words (by
// identity: they are not changed while they are in use).
type scrubInputID struct {
	first *scrub.Identifiers
	n     int
	safe  *scrub.Words
}

func scrubInputOf(in ScrubInput) scrubInputID {
	id := scrubInputID{n: len(in.Identifiers), safe: in.Safe}
	if len(in.Identifiers) > 0 {
		id.first = in.Identifiers[0]
	}
	return id
}

// scrubOptionsKey is what decides the scrubber's result beside the text:
// the call's ScrubInput, the patient's identifier set and the date shift.
type scrubOptionsKey struct {
	input   scrubInputID
	patient *scrub.Identifiers
	shift   bool
	days    int
}

// scrubMemo remembers the scrubber's results of recent texts, from call to
// call: code displays, CodeableConcept texts and reference displays repeat
// throughout an export (in synthea-1000-clone, 1.45 million texts scrubbed
// are 1,227 distinct ones), and scrubbing one again would give the same
// result. A result holds for every patient whose identifier set marks
// nothing in the text, which the memo tells from the text's context hashes
// (scrub.ContextHashes) without scrubbing it again; only a text that names
// the patient is scrubbed per patient. It holds at most scrubMemoMax texts
// (copies: the tree's strings may borrow the caller's input) and forgets
// them all when the call's ScrubInput changes, so that it keeps no
// identifier set of an earlier run alive for long.
type scrubMemo struct {
	input   scrubInputID
	seed    maphash.Seed
	entries *[scrubMemoMax]scrubMemoEntry
	// patient is the identifier set of the last patient looked up
	// (patientID, under ScrubInput patientInput), if patientSet.
	patient      *scrub.Identifiers
	patientID    string
	patientSet   bool
	patientInput scrubInputID
}

type scrubMemoEntry struct {
	text   string
	format scrub.Format
	shift  bool
	// days is the date shift of the result, which only a text with a
	// shifted date depends on (daysUsed).
	days     int
	daysUsed bool
	// patient is the patient's identifier set the result was scrubbed
	// with, when that set marked something in the text; nil when the
	// result holds for every set that matches none of hashes, the text's
	// context hashes. checked is the last set found to match none.
	patient *scrub.Identifiers
	checked *scrub.Identifiers
	hashes  []uint64
	out     scrub.Result
}

const (
	// scrubMemoMax is the number of entries of a scrubMemo, which is
	// direct-mapped: a text displaces the one in its entry.
	scrubMemoMax = 2048
	// scrubMemoText is the longest text a scrubMemo holds: longer texts
	// (notes, narratives) seldom repeat.
	scrubMemoText = 256
)

// scrubText scrubs text in format f under the options of the current rule
// application (scrubOptions), from the memo when it holds the text.
func (r *run) scrubText(text string, f scrub.Format, rule *engineRule, res *jsontree.Node) scrub.Result {
	opts := r.scrubOptions(rule, res)
	if len(text) == 0 || len(text) > scrubMemoText || r.e.noScrubMemo {
		return scrub.ScrubMarkup(text, f, opts)
	}
	m := &r.smemo
	if m.entries == nil {
		m.entries, m.seed = new([scrubMemoMax]scrubMemoEntry), maphash.MakeSeed()
	}
	k := &r.scrub.key
	if m.input != k.input {
		// Another run's identifiers: forget the texts scrubbed for them.
		clear(m.entries[:])
		m.input = k.input
	}
	h := maphash.String(m.seed, text) + uint64(f)
	if k.shift {
		h += 0x9e3779b97f4a7c15
	}
	e := &m.entries[h%scrubMemoMax]
	if e.text == text && e.format == f && e.shift == k.shift && (!e.daysUsed || e.days == k.days) {
		switch {
		case e.patient == k.patient:
			return e.out
		case e.patient == nil && (e.checked == k.patient || !k.patient.MatchesAny(e.hashes)):
			e.checked = k.patient
			return e.out
		}
	}
	out := scrub.ScrubMarkup(text, f, opts)
	e.text, e.format, e.shift, e.days, e.daysUsed = strings.Clone(text), f, k.shift, k.days, false
	for _, sp := range out.Spans {
		e.daysUsed = e.daysUsed || sp.Shifted
	}
	e.hashes = scrub.ContextHashes(text, f, e.hashes[:0])
	e.patient, e.checked = nil, k.patient
	if k.patient != nil && k.patient.MatchesAny(e.hashes) {
		e.patient, e.checked = k.patient, nil
	}
	if out.Text == text {
		out.Text = e.text
	} else {
		out.Text = strings.Clone(out.Text)
	}
	e.out = out
	return out
}

// scrubPatient returns the id of res's patient: in date-shift scope
// "patient" the one found before the rules ran, else the one its
// compartment references give now (perhaps already hashed, which
// IdentifierCollector also knows).
func (r *run) scrubPatient(res *jsontree.Node) string {
	if r.e.params.DateShiftScope == ScopePatient && r.pshift.ok {
		return r.pshift.patient
	}
	id, _ := compartmentPatient(r.planOf(res), res)
	return id
}

// scrubShiftOffset is the offset the dateShift method uses for the current
// resource: the patient scope's, fixed, or keyed on the scope's prefix.
func (r *run) scrubShiftOffset() int {
	p := &r.e.params
	if p.DateShiftScope == ScopePatient {
		return r.pshift.offset
	}
	if p.HasFixedOffset {
		return p.DateShiftFixedOffsetInDays
	}
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
	return r.dateShiftOffset(prefix, p.DateShiftKey)
}

// scrubNode applies the scrub method to one node.
func (r *run) scrubNode(node *jsontree.Node, rule *engineRule, res *jsontree.Node, ops *Operations) error {
	switch {
	case node.Type() == "Attachment":
		return r.scrubAttachment(node, rule, res, ops)
	case node.Type() == "base64Binary" && node.Name() == "data" && typed.Parent(node) != nil && typed.Parent(node).Type() == "Attachment":
		// A rule on Attachment.data itself: the attachment decides.
		return r.scrubAttachment(typed.Parent(node), rule, res, ops)
	case node.Type() == "string" || node.Type() == "markdown" || node.Type() == "xhtml":
		if !typed.HasValue(node) || node.Kind != jsontree.String || node.Value() == "" {
			return nil
		}
		f := scrub.Plain
		if node.Type() == "xhtml" {
			f = scrub.HTML
		}
		if node.Name() == "text" && keptDisplay(typed.Parent(node), node.Value()) {
			// A concept's text that one of its codings already shows
			// (synthea writes "Body Height" as both) adds nothing to the
			// output; the vocabulary layer could take it for a name.
			return nil
		}
		out := r.scrubText(node.Value(), f, rule, res)
		r.traceScrub(rule, node, node.Value(), out.Spans)
		if out.Text != node.Value() {
			r.setString(node, out.Text, true)
			*ops = ops.Add(OpRedact)
		}
	case scrubKeeps[node.Type()]:
		// Codes, numbers and booleans are not free text.
	default:
		// Values that are neither text nor codes (dates, URIs, ids,
		// binary data) cannot be scrubbed: they go, as with redact. A
		// configuration that shifts or hashes them names them in rules
		// before the scrub rule.
		if typed.HasValue(node) {
			r.setString(node, "", false)
			*ops = ops.Add(OpRedact)
		}
	}
	return nil
}

// keptDisplay reports whether concept is a CodeableConcept one of whose
// codings has the display text, already processed by a rule and left as
// it is: the output shows that string anyway.
func keptDisplay(concept *jsontree.Node, text string) bool {
	if concept == nil || concept.Type() != "CodeableConcept" {
		return false
	}
	var buf [4]*jsontree.Node
	for _, c := range typed.Children(concept, "coding", buf[:0]) {
		if d := c.Get("display"); d != nil && d.Kind == jsontree.String && visited(d) && d.Value() == text {
			return true
		}
	}
	return false
}

// scrubKeeps are the primitive types the scrub method leaves as they are.
var scrubKeeps = map[string]bool{"code": true, "boolean": true, "integer": true, "integer64": true,
	"unsignedInt": true, "positiveInt": true, "decimal": true}

func (r *run) traceScrub(rule *engineRule, node *jsontree.Node, before string, spans []scrub.Span) {
	if fn, ok := r.ctx.Value(scrubTraceKey{}).(func(ScrubEvent)); ok {
		fn(ScrubEvent{Rule: rule.Index, Location: typed.Location(node), Spans: spans, Text: before})
	}
}

// scrubAttachment scrubs an attachment's text data, or redacts an
// attachment that is not text.
func (r *run) scrubAttachment(node *jsontree.Node, rule *engineRule, resource *jsontree.Node, ops *Operations) error {
	ct := node.Get("contentType")
	f, isText := scrub.Format(0), false
	if ct != nil && ct.Kind == jsontree.String {
		f, isText = scrub.FormatOf(ct.Value())
	}
	if !isText {
		// Redacted as by the redact method: every value goes.
		r.redactAll(node)
		*ops = ops.Add(OpRedact)
		return nil
	}
	data := node.Get("data")
	if data == nil || data.Kind != jsontree.String {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data.Value()))
	if err != nil {
		// Undecodable data cannot be scrubbed: it goes.
		r.setString(data, "", false)
		r.dropAttachmentDigest(node, -1)
		*ops = ops.Add(OpRedact)
		return nil
	}
	res := scrub.ScrubMarkup(string(raw), f, r.scrubOptions(rule, resource))
	r.traceScrub(rule, data, string(raw), res.Spans)
	r.setString(data, base64.StdEncoding.EncodeToString([]byte(res.Text)), true)
	r.dropAttachmentDigest(node, len(res.Text))
	// The data and size are done: the rule's walk of the attachment's
	// children must not redact them.
	visit(data)
	if sz := node.Get("size"); sz != nil {
		visit(sz)
	}
	*ops = ops.Add(OpRedact)
	return nil
}

// unsignedIntElem types the size that dropAttachmentDigest adds.
var unsignedIntElem = &jsontree.Elem{Type: "unsignedInt"}

// dropAttachmentDigest removes the hash and sets the size (or removes it
// when size < 0).
func (r *run) dropAttachmentDigest(node *jsontree.Node, size int) {
	if h := node.Get("hash"); h != nil {
		r.setString(h, "", false)
	}
	if sz := node.Get("size"); sz != nil || size >= 0 {
		if size < 0 {
			if sz != nil {
				r.setString(sz, "", false)
			}
			return
		}
		if sz != nil {
			if sz.SetNumber(strconv.Itoa(size)) == nil {
				r.changed++
			}
		} else if n, err := jsontree.NewNumber(strconv.Itoa(size)); err == nil {
			n.Elem = unsignedIntElem
			node.Set("size", n)
			r.reshaped = true
			r.changed++
		}
	}
}

// redactAll removes every primitive value under node.
func (r *run) redactAll(node *jsontree.Node) {
	for _, c := range typed.AllChildren(node, nil) {
		if typed.IsResource(c) {
			continue
		}
		if typed.HasValue(c) {
			r.setString(c, "", false)
		}
		r.redactAll(c)
	}
}

// UsesScrub reports whether a rule of the configuration uses the scrub
// method, so that a program runs the identifier-collecting first pass only
// when it serves.
func (c *Config) UsesScrub() bool {
	for _, r := range c.Rules() {
		if isScrub(r.MethodName) {
			return true
		}
	}
	return false
}
