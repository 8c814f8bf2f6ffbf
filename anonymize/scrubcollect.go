package anonymize

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"strings"
	"sync"

	"fhirdeid/anonymize/scrub"
	"fhirdeid/jsontree"
)

// IdentifierCollector gathers, in a first pass over an export, the
// identifiers that the scrub method's contextual layer looks for: each
// Patient's names, addresses, telecom values, identifier values and
// contacts, with its RelatedPersons'; and, shared by every note, the names,
// addresses, telecom and identifiers of Practitioners, PractitionerRoles,
// Organizations and Locations (whose common words, "General", "Will",
// count only within the whole name: see scrub.NewSharedIdentifiers). It
// keeps only keyed hashes (package scrub's Identifiers), in memory. It also
// gathers the drug and vaccine names of the export's codes (VocabularyTypes)
// as safe words, so that the vocabulary layer does not take an unusual drug
// name for a person's. Add is safe for concurrent use; a goroutine that
// adds many resources does better with a CollectorReader of its own
// (NewReader). Call Input only after the first pass.
type IdentifierCollector struct {
	hasher   *Hasher
	mu       sync.Mutex
	patients map[string]*scrub.Identifiers // by patient id, raw and as the engine hashes it
	shared   *scrub.Identifiers
	safe     *scrub.Words
	readers  sync.Pool // *CollectorReader, for Add
}

// IdentifierTypes are the resource types whose identifiers the first pass
// collects.
var IdentifierTypes = []string{"Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization", "Location"}

// VocabularyTypes are the resource types whose coded drug and vaccine names
// the first pass collects as safe words (scrub.Words): the displays of the
// codings (with a system) of Medication.code, Medication*.medication[x]
// and Immunization.vaccineCode. Unlike the identifier types, they are read
// from the run's own files only.
var VocabularyTypes = []string{"Medication", "MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense", "Immunization"}

// FirstPassTypes are the resource types the first pass reads:
// IdentifierTypes and VocabularyTypes.
var FirstPassTypes = append(append([]string(nil), IdentifierTypes...), VocabularyTypes...)

// vocabularyPaths are the CodeableConcepts (or CodeableReferences, whose
// concept is read) of the vocabulary types that name drugs and vaccines.
var vocabularyPaths = map[string][]string{
	"Medication":               {"code"},
	"MedicationRequest":        {"medicationCodeableConcept", "medication"},
	"MedicationStatement":      {"medicationCodeableConcept", "medication"},
	"MedicationAdministration": {"medicationCodeableConcept", "medication"},
	"MedicationDispense":       {"medicationCodeableConcept", "medication"},
	"Immunization":             {"vaccineCode"},
}

// NewIdentifierCollector returns a collector for resources that e will
// de-identify: patients are also found by their ids as e's cryptoHash
// rewrites them, so that a resource whose references a rule already hashed
// still finds its patient.
func (e *Engine) NewIdentifierCollector() *IdentifierCollector {
	return &IdentifierCollector{hasher: e.hasher, patients: map[string]*scrub.Identifiers{}, shared: scrub.NewSharedIdentifiers(), safe: scrub.NewWords()}
}

// Add reads one resource of the first pass (other types are ignored), as a
// CollectorReader does; it is safe for concurrent use.
func (c *IdentifierCollector) Add(resource []byte) error {
	r, _ := c.readers.Get().(*CollectorReader)
	if r == nil {
		r = c.NewReader()
	}
	err := r.Add(resource)
	c.readers.Put(r)
	return err
}

// AddNode is Add for a parsed resource; it does not change it. Unlike Add,
// it reads every resource of a first-pass type in full.
func (c *IdentifierCollector) AddNode(root *jsontree.Node) {
	c.addNode(root, nil)
}

// addNode reads root; with r, the drug names already in r's cache are not
// added again, and the new ones are put there.
func (c *IdentifierCollector) addNode(root *jsontree.Node, r *CollectorReader) {
	rt := str(root.Get("resourceType"))
	if vocabularyDisplays(root, rt, func(d string) {
		if r == nil || !r.seen(d) {
			c.safe.AddText(d)
		}
	}) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var set *scrub.Identifiers
	switch rt {
	case "Patient":
		set = c.patientSet(str(root.Get("id")))
		for _, ct := range arr(root.Get("contact")) {
			addPerson(set, ct)
		}
		for _, l := range arr(root.Get("link")) {
			if o := l.Get("other"); o != nil {
				set.AddName(str(o.Get("display")))
			}
		}
	case "RelatedPerson":
		set = c.patientSet(refID(str(getPath(root, "patient", "reference"))))
	case "Practitioner", "PractitionerRole", "Organization", "Location":
		set = c.shared
		if rt == "Organization" || rt == "Location" {
			set.AddName(str(root.Get("name")))
			for _, a := range arr(root.Get("alias")) {
				set.AddName(str(a))
			}
		}
	default:
		return
	}
	if set == nil {
		return
	}
	addPerson(set, root)
	for _, id := range arr(root.Get("identifier")) {
		set.AddIdentifier(str(id.Get("value")))
	}
}

// vocabularyDisplays calls add with the display of each coding (with a
// system) of the drug or vaccine codes of root, of resource type rt, and
// reports whether rt is a vocabulary type.
func vocabularyDisplays(root *jsontree.Node, rt string, add func(display string)) bool {
	paths, ok := vocabularyPaths[rt]
	for _, p := range paths {
		cc := root.Get(p)
		if cc != nil && cc.Kind == jsontree.Object && cc.Get("concept") != nil {
			cc = cc.Get("concept") // R5 CodeableReference
		}
		if cc == nil || cc.Kind != jsontree.Object {
			continue
		}
		for _, cd := range arr(cc.Get("coding")) {
			// Only a terminology's display: the text of a coding without
			// a system, or the concept's text, may be anything.
			if str(cd.Get("system")) != "" {
				add(str(cd.Get("display")))
			}
		}
	}
	return ok
}

// addPerson adds the name(s), telecom and address(es) of a resource or a
// Patient.contact.
func addPerson(set *scrub.Identifiers, n *jsontree.Node) {
	for _, key := range []string{"name"} {
		for _, hn := range arr(n.Get(key)) {
			if hn.Kind == jsontree.String {
				set.AddName(hn.Value())
				continue
			}
			set.AddName(str(hn.Get("text")))
			family := str(hn.Get("family"))
			set.AddName(family)
			var given []string
			for _, g := range arr(hn.Get("given")) {
				set.AddName(str(g))
				given = append(given, str(g))
			}
			// The whole name, both ways round ("Cliff Major", "Major,
			// Cliff"), and the first given name with the family name.
			if family != "" && len(given) > 0 {
				set.AddName(strings.Join(given, " ") + " " + family)
				set.AddName(given[0] + " " + family)
				set.AddName(family + " " + strings.Join(given, " "))
			}
			for _, p := range arr(hn.Get("prefix")) {
				if family != "" {
					set.AddName(str(p) + " " + family)
				}
			}
		}
	}
	for _, tc := range arr(n.Get("telecom")) {
		v := str(tc.Get("value"))
		switch str(tc.Get("system")) {
		case "phone", "fax", "pager", "sms":
			set.AddPhone(v)
		default:
			set.AddIdentifier(v)
		}
	}
	for _, a := range arr(n.Get("address")) {
		for _, l := range arr(a.Get("line")) {
			set.AddAddress(str(l))
		}
		set.AddAddress(str(a.Get("text")))
		set.AddAddress(str(a.Get("city")))
		set.AddAddress(str(a.Get("district")))
		set.AddIdentifier(str(a.Get("postalCode")))
	}
}

func (c *IdentifierCollector) patientSet(id string) *scrub.Identifiers {
	if id == "" {
		return nil
	}
	if s, ok := c.patients[id]; ok {
		return s
	}
	s := scrub.NewIdentifiers()
	// A copy: id lies in the text memory of a parser, which it would keep
	// alive for as long as the collector.
	c.patients[strings.Clone(id)] = s
	if c.hasher != nil {
		c.patients[c.hasher.Hash(id)] = s
	}
	return s
}

// Input returns the scrub method's input for the resources of an export:
// the shared set, and each resource's patient's set, found through the
// resource's patient compartment (its own id for a Patient).
func (c *IdentifierCollector) Input() ScrubInput {
	return ScrubInput{Identifiers: []*scrub.Identifiers{c.shared}, Patients: c.lookup, Safe: c.safe}
}

func (c *IdentifierCollector) lookup(patientID string) *scrub.Identifiers {
	return c.patients[patientID]
}

// Patients returns the number of patients with identifiers.
func (c *IdentifierCollector) Patients() int {
	n := 0
	seen := map[*scrub.Identifiers]bool{}
	for _, s := range c.patients {
		if !seen[s] {
			seen[s] = true
			n++
		}
	}
	return n
}

// refID returns the id part of a reference ("Patient/1/_history/2" -> "1").
func refID(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	if strings.HasPrefix(ref, "urn:uuid:") {
		return ref[len("urn:uuid:"):]
	}
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

func str(n *jsontree.Node) string {
	if n == nil || n.Kind != jsontree.String {
		return ""
	}
	return n.Value()
}

// arr returns the items of an array node, or the node itself.
func arr(n *jsontree.Node) []*jsontree.Node {
	if n == nil {
		return nil
	}
	if n.Kind == jsontree.Array {
		return n.Children()
	}
	return []*jsontree.Node{n}
}

func getPath(n *jsontree.Node, keys ...string) *jsontree.Node {
	for _, k := range keys {
		if n == nil || n.Kind != jsontree.Object {
			return nil
		}
		n = n.Get(k)
	}
	return n
}

// A CollectorReader adds resources to an IdentifierCollector from one
// goroutine at a time, reusing its parser's memory from one resource to the
// next. It also skips, after a quick scan and without parsing, the lines
// that cannot add anything new: a resource of a type the first pass does
// not read, and a medication or immunization whose coded drug and vaccine
// names (the displays it would add as safe words) this reader has already
// added, as most of them are in an export, where a few hundred names repeat
// in hundreds of thousands of resources. What the collector holds at the
// end is the same as with AddNode on every resource.
type CollectorReader struct {
	c      *IdentifierCollector
	parser jsontree.Parser
	// known holds copies of the displays this reader has added to c.safe,
	// up to knownLimit of them or knownMaxBytes bytes; it is emptied when
	// full.
	known      map[string]struct{}
	knownBytes int
	knownLimit int
}

const (
	knownMax      = 4096
	knownMaxBytes = 256 << 10
)

// NewReader returns a reader that adds to c.
func (c *IdentifierCollector) NewReader() *CollectorReader {
	return &CollectorReader{c: c, known: map[string]struct{}{}, knownLimit: knownMax}
}

// Add reads one resource of the first pass (other types are ignored). It
// returns an *InputError for a resource it parses and finds invalid; a
// line it skips after the quick scan is not checked (it could add nothing
// even if it were valid), so that an invalid line may also give nil.
func (r *CollectorReader) Add(resource []byte) error {
	if r.skip(resource) {
		return nil
	}
	root, err := r.parser.Parse(resource)
	if err != nil {
		return &InputError{Err: err}
	}
	r.c.addNode(root, r)
	return nil
}

// seen reports whether the reader has already added display to the safe
// words, and remembers it if not.
func (r *CollectorReader) seen(display string) bool {
	if display == "" {
		return true // AddText ignores it
	}
	if _, ok := r.known[display]; ok {
		return true
	}
	if len(r.known) >= r.knownLimit || r.knownBytes+len(display) > knownMaxBytes {
		clear(r.known)
		r.knownBytes = 0
	}
	r.known[strings.Clone(display)] = struct{}{}
	r.knownBytes += len(display)
	return false
}

// The quick scan of a line. It decides, without building a tree, that a
// line adds nothing new; when in doubt it says no, and the line is parsed.
// It must never skip a valid resource that AddNode would take something
// new from. A line that is not valid JSON adds nothing (Add parses it and
// fails), so it may be skipped whatever the scan finds in it: the scan
// needs to read valid JSON exactly, and anything else only safely (within
// bounds). It reads the top-level members it needs (quickMembers), and
// stops once the rest of the line cannot hold another of them
// (restHasNone); a member name with an escape sequence, which the parser
// would decode, makes it give up, as does a display with one.

// quickMembers are the top-level members the quick scan records:
// resourceType and the members of vocabularyPaths.
var quickMembers = [...]string{"resourceType", "code", "medicationCodeableConcept", "medication", "vaccineCode"}

// quickPaths are vocabularyPaths as indexes into quickMembers.
var quickPaths = func() map[string][]int {
	m := map[string][]int{}
	for rt, paths := range vocabularyPaths {
		for _, p := range paths {
			i := slices.Index(quickMembers[:], p)
			if i < 1 {
				panic("anonymize: vocabulary path " + p + " is not among quickMembers")
			}
			m[rt] = append(m[rt], i)
		}
	}
	return m
}()

// skip reports whether line certainly adds nothing new to the collector.
func (r *CollectorReader) skip(line []byte) bool {
	var rt []byte // the resource type, when read
	var paths []int
	// found and known say, for each member of quickMembers read, that it
	// was and that it holds no display the reader does not know.
	var found, known [len(quickMembers)]bool
	done := false // the members that matter have all been read
	end, ok := scanObject(line, skipSpaces(line, 0), func(key []byte, vs int) int {
		i := quickMember(key)
		if i < 0 {
			return skipValue(line, vs)
		}
		found[i] = true
		var ve int
		if i == 0 {
			// The resource type decides at once, unless it is a
			// vocabulary type, whose members may come in any order.
			if ve = skipValue(line, vs); ve < 0 || line[vs] != '"' || bytes.IndexByte(line[vs:ve], '\\') >= 0 {
				return -1 // not a string (nothing to add), or escaped: parse
			}
			rt = line[vs+1 : ve-1]
			if paths = quickPaths[string(rt)]; paths == nil {
				return -1
			}
		} else if ve, known[i] = r.knownConcept(line, vs, true); ve < 0 {
			return -1
		}
		if paths != nil && restHasNone(line[ve:], paths, &found) {
			done = true
			return -1
		}
		return ve
	})
	switch {
	case done:
	case !ok:
		// The scan stopped: at the resource type of a type that is not a
		// vocabulary type (skip it unless the first pass reads it), or at
		// something it does not read (parse).
		if rt == nil || paths != nil {
			return false
		}
		for _, t := range IdentifierTypes {
			if string(rt) == t {
				return false
			}
		}
		return true
	case skipSpaces(line, end) != len(line):
		return false // trailing bytes: let the parser report them
	case !found[0]:
		return true // no resourceType: AddNode reads nothing
	}
	for _, i := range paths {
		if found[i] && !known[i] {
			return false
		}
	}
	return true
}

// quickEnds are quickMembers followed by the quote that ends them: a line
// without "x" has no x" either, and bytes.Index looks for the first two
// bytes, which are rarer than a quote.
var quickEnds = func() (q [len(quickMembers)][]byte) {
	for i, m := range quickMembers {
		q[i] = []byte(m + `"`)
	}
	return q
}()

// restHasNone reports whether rest, what follows a member of the top-level
// object, cannot hold any member of paths that is not found yet, so that
// the scan can stop there: it has no backslash (a member name written with
// escapes has one) and does not contain any of their names as a JSON
// string. A valid resource has no second member of the same name, and the
// scan may skip an invalid one whatever it holds.
func restHasNone(rest []byte, paths []int, found *[len(quickMembers)]bool) bool {
	// The names first: a member still to come is usually near.
	for _, i := range paths {
		if !found[i] && bytes.Contains(rest, quickEnds[i]) {
			return false
		}
	}
	return bytes.IndexByte(rest, '\\') < 0
}

// knownConcept reads the value at line[vs], a member of vocabularyPaths (a
// CodeableConcept, or a CodeableReference when concept is set), and
// returns the offset after it, or -1, and whether it adds no display that
// the reader does not know, as AddNode reads it.
func (r *CollectorReader) knownConcept(line []byte, vs int, concept bool) (int, bool) {
	if line[vs] != '{' {
		return skipValue(line, vs), true // AddNode reads only an object
	}
	var hasConcept, conceptKnown, codingKnown = false, true, true
	end, ok := scanObject(line, vs, func(key []byte, vs int) int {
		var ve int
		switch {
		case concept && string(key) == "concept":
			// A CodeableReference: only its concept counts.
			hasConcept = true
			ve, conceptKnown = r.knownConcept(line, vs, false)
		case string(key) == "coding":
			if line[vs] != '[' {
				return r.knownCoding(line, vs, &codingKnown) // one coding, not in an array
			}
			end, ok := scanArray(line, vs, func(vs int) int {
				return r.knownCoding(line, vs, &codingKnown)
			})
			if !ok {
				return -1
			}
			ve = end
		default:
			ve = skipValue(line, vs)
		}
		return ve
	})
	if !ok {
		return -1, false
	}
	if hasConcept {
		return end, conceptKnown
	}
	return end, codingKnown
}

// knownCoding reads the coding at line[vs] and returns the offset after
// it, or -1; it clears *known if the coding has a system and a display the
// reader does not know (or one with escape sequences).
func (r *CollectorReader) knownCoding(line []byte, vs int, known *bool) int {
	if line[vs] != '{' {
		return skipValue(line, vs) // AddNode reads only an object
	}
	var system, display span
	end, ok := scanObject(line, vs, func(key []byte, vs int) int {
		ve := skipValue(line, vs)
		switch string(key) {
		case "system":
			system = span{vs, ve}
		case "display":
			display = span{vs, ve}
		}
		return ve
	})
	if !ok {
		return -1
	}
	// An escape sequence decodes to at least one character, so a string
	// system is empty exactly when its JSON is "".
	if system.end == 0 || line[system.start] != '"' || system.end-system.start == 2 {
		return end
	}
	if display.end == 0 || line[display.start] != '"' || display.end-display.start == 2 {
		return end
	}
	d := line[display.start+1 : display.end-1]
	if _, ok := r.known[string(d)]; !ok || bytes.IndexByte(d, '\\') >= 0 {
		*known = false
	}
	return end
}

// span is a value, line[start:end]; end is 0 if absent.
type span struct{ start, end int }

func quickMember(key []byte) int {
	for i, m := range quickMembers {
		if string(key) == m {
			return i
		}
	}
	return -1
}

// scanObject reads the object that starts at b[i]: for each member, it
// calls member with its name and the offset of its value, and member
// returns the offset after the value, or -1 to stop. scanObject returns
// the offset after the object, and false if member stopped it, the object
// is not valid JSON as far as the scan checks, or a member name has an
// escape sequence.
func scanObject(b []byte, i int, member func(key []byte, vs int) int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipSpaces(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		k := quoteOrEscape(b, i+1)
		if k >= len(b) || b[k] != '"' {
			return 0, false // escaped (or unterminated) name
		}
		key := b[i+1 : k]
		i = skipSpaces(b, k+1)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		vs := skipSpaces(b, i+1)
		if vs >= len(b) {
			return 0, false
		}
		ve := member(key, vs)
		if ve < 0 {
			return 0, false
		}
		i = skipSpaces(b, ve)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpaces(b, i+1)
		case '}':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// scanArray is scanObject for an array: item gets the offset of each item
// and returns the offset after it, or -1.
func scanArray(b []byte, i int, item func(vs int) int) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return 0, false
	}
	i = skipSpaces(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		if i >= len(b) {
			return 0, false
		}
		ve := item(i)
		if ve < 0 {
			return 0, false
		}
		i = skipSpaces(b, ve)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpaces(b, i+1)
		case ']':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// skipValue returns the offset after the JSON value that starts at b[i],
// or -1. It finds the end of a valid value exactly; it does not check that
// what it skips is valid.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case ',', ':', '}', ']':
		return -1
	}
	// A number, true, false or null.
	j := i
	for j < len(b) && !scalarEnd[b[j]] {
		j++
	}
	return j
}

// scalarEnd marks the bytes that end a number or literal.
var scalarEnd = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true, '\n': true, '\r': true, '"': true, '{': true, '[': true, ':': true}

// skipString returns the offset after the string that starts at b[i] (a
// '"'), or -1.
func skipString(b []byte, i int) int {
	j := i + 1
	for {
		j = quoteOrEscape(b, j)
		if j >= len(b) {
			return -1
		}
		if b[j] == '"' {
			return j + 1
		}
		j += 2 // an escape sequence: a backslash and at least one byte
	}
}

// quoteOrEscape returns the offset of the first '"' or '\\' in b at or
// after j, or len(b). Strings in FHIR are short, so it reads 8 bytes at a
// time rather than call bytes.IndexByte.
func quoteOrEscape(b []byte, j int) int {
	const quotes, backslashes = 0x2222222222222222, 0x5c5c5c5c5c5c5c5c
	for ; j+8 <= len(b); j += 8 {
		w := binary.LittleEndian.Uint64(b[j:])
		// The lowest bit set marks the first byte equal to '"' or '\\':
		// zeroBytes may also mark bytes above a zero byte, never below.
		if m := zeroBytes(w^quotes) | zeroBytes(w^backslashes); m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	for ; j < len(b); j++ {
		if b[j] == '"' || b[j] == '\\' {
			return j
		}
	}
	return len(b)
}

// zeroBytes has the high bit of the lowest zero byte of v set, and no bit
// below it.
func zeroBytes(v uint64) uint64 {
	return (v - 0x0101010101010101) &^ v & 0x8080808080808080
}

func skipSpaces(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
