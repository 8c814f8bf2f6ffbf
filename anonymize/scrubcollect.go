package anonymize

import (
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
// next. It remembers the coded drug and vaccine names (the displays it adds
// as safe words) it has already added, as a few hundred names repeat in
// hundreds of thousands of resources of an export, so that it neither
// tokenizes them nor takes the collector's lock for them again. What the
// collector holds at the end is the same as with AddNode on every resource.
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
	r := &CollectorReader{c: c, known: map[string]struct{}{}, knownLimit: knownMax}
	// Nothing of a resource's tree outlives Add (the collector keeps keyed
	// hashes, and copies of the few strings it keeps), so the parser need
	// not copy the resource's strings, nor keep their text past it.
	r.parser.Borrow, r.parser.ReuseText = true, true
	return r
}

// Add reads one resource of the first pass (other types are ignored). It
// returns an *InputError for a resource that is not valid JSON.
func (r *CollectorReader) Add(resource []byte) error {
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
