package anonymize

import (
	"errors"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fhirdeid/anonymize/scrub"
	"fhirdeid/internal/synth"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// firstPassLines reads the lines of the first-pass files of a Synthea
// export folder (Patient, Practitioner, Organization, MedicationRequest,
// Immunization, ...), skipping the test when it is absent.
func firstPassLines(tb testing.TB, elem ...string) (lines [][]byte, size int64) {
	tb.Helper()
	dir := testshared.Dir(tb, elem...)
	for _, typ := range FirstPassTypes {
		files, _ := filepath.Glob(filepath.Join(dir, typ+".*ndjson.gz"))
		for _, f := range files {
			for _, l := range readGz(tb, f) {
				lines = append(lines, l)
				size += int64(len(l)) + 1
			}
		}
	}
	if len(lines) == 0 {
		tb.Skipf("no first-pass files in %s", dir)
	}
	return lines, size
}

// BenchmarkIdentifierCollectorSynthea1000 runs the collector over the
// first-pass resources of synthea-1000-clone (1,000 Patients, 203
// Practitioners and Organizations, 23,860 MedicationRequests, 12,870
// Immunizations; 26 MB) on one goroutine, from memory: the first pass's
// CPU cost without reading and gunzipping the files, with a CollectorReader
// and as it was before (a tree of its own for every resource, AddNode).
func BenchmarkIdentifierCollectorSynthea1000(b *testing.B) {
	lines, size := firstPassLines(b, "data", "synthea-1000-clone")
	e := newLongitudinalEngine(b)
	for _, c := range []struct {
		name string
		add  func(col *IdentifierCollector) error
	}{
		{"reader", func(col *IdentifierCollector) error {
			r := col.NewReader()
			for _, l := range lines {
				if err := r.Add(l); err != nil {
					return err
				}
			}
			return nil
		}},
		// The first pass before CollectorReader: a tree of its own for
		// every resource.
		{"tree", func(col *IdentifierCollector) error {
			for _, l := range lines {
				root, err := jsontree.Parse(l)
				if err != nil {
					return err
				}
				col.AddNode(root)
			}
			return nil
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			cpu := cpuNow()
			for b.Loop() {
				if err := c.add(e.NewIdentifierCollector()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuNow()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
		})
	}
}

func newLongitudinalEngine(tb testing.TB) *Engine {
	tb.Helper()
	c, err := ParseConfig(longitudinalScrubConfig(tb), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		tb.Fatal(err)
	}
	e, err := NewEngine(c, EngineOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// quickLines are resources that try CollectorReader's cache of the drug
// names it has added: drug names in every place and form AddNode reads
// them or not, escapes, invalid lines, and lines whose names it has seen
// before (each new name comes again in a later line).
var quickLines = []string{
	`{"resourceType":"MedicationRequest","id":"1","medicationCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]},"subject":{"reference":"Patient/p1"}}`,
	`{"resourceType":"MedicationRequest","id":"2","medicationCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]},"subject":{"reference":"Patient/p1"}}`,
	// A second member after the one seen: the scan must not stop early.
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]},"medication":{"concept":{"coding":[{"system":"s","display":"Betadrug"}]}}}`,
	`{"resourceType":"MedicationRequest","medication":{"concept":{"coding":[{"system":"s","display":"Betadrug"}]}},"medicationCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]}}`,
	// An escaped member name, resource type or display.
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]},"medic\u0061tion":{"coding":[{"system":"s","display":"Gammadrug"}]}}`,
	`{"resourceType":"MedicationRequest","medic\u0061tionCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]}}`,
	`{"resourceType":"Medication\u0052equest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Deltadrug"}]}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Deltadrug"}]}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Ep\u0073idrug \"forte\""}]}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Ep\u0073idrug \"forte\""}]}}`,
	// A display whose JSON, undecoded, is a name seen before.
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Zeta\\u0041drug"}]}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Zeta\u0041drug"}]}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"sy\u0073tem":"s","display":"Zetadrug"}]}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","displa\u0079":"Zetadrug"}]}}`,
	// A coding that is not in an array; codings without a system, with
	// an empty one, with displays that are no strings.
	`{"resourceType":"MedicationDispense","medicationCodeableConcept":{"coding":{"system":"s","display":"Etadrug"}}}`,
	`{"resourceType":"MedicationDispense","medicationCodeableConcept":{"coding":{"system":"s","display":"Etadrug"}}}`,
	`{"resourceType":"MedicationStatement","medicationCodeableConcept":{"coding":[{"display":"Thetadrug"},{"system":"","display":"Thetadrug"},{"system":1,"display":"Thetadrug"},{"system":"s","display":7},{"system":"s","display":""},{"system":"s"},"x",[1]]}}`,
	`{"resourceType":"MedicationStatement","medicationCodeableConcept":{"coding":[{"system":"s","display":"Thetadrug"}]}}`,
	// Concepts that are not objects, a CodeableReference whose concept
	// is not one (its codings then count for nothing), one with codings
	// beside its concept (ignored).
	`{"resourceType":"MedicationAdministration","medicationCodeableConcept":"Iotadrug","medication":[{"coding":[{"system":"s","display":"Iotadrug"}]}]}`,
	`{"resourceType":"MedicationAdministration","medication":{"concept":"x","coding":[{"system":"s","display":"Kappadrug"}]}}`,
	`{"resourceType":"MedicationAdministration","medication":{"coding":[{"system":"s","display":"Lambdadrug"}],"concept":{"coding":[{"system":"s","display":"Mudrug"}]}}}`,
	`{"resourceType":"MedicationAdministration","medication":{"concept":{"concept":{},"coding":[{"system":"s","display":"Nudrug"}]}}}`,
	`{"resourceType":"MedicationAdministration","medication":{"concept":{"coding":[{"system":"s","display":"Nudrug"}]}}}`,
	`{"resourceType":"MedicationAdministration","medication":{"coding":[{"system":"s","display":"Kappadrug"}]}}`,
	`{"resourceType":"MedicationAdministration","medication":{"coding":[{"system":"s","display":"Lambdadrug"}]}}`,
	// Invalid lines, with new names and with known ones: a duplicate
	// member, a trailing comma, bytes after the object, invalid UTF-8.
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Nudrug"}]},"medicationCodeableConcept":{}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Xidrug"}]},}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]},}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Omicrondrug"}]}} x`,
	"{\"resourceType\":\"MedicationRequest\",\"medicationCodeableConcept\":{\"coding\":[{\"system\":\"s\",\"display\":\"Pidrug\xff\"}]}}",
	"{\"resourceType\":\"MedicationRequest\",\"medicationCodeableConcept\":{\"coding\":[{\"system\":\"s\",\"display\":\"Alphadrug 5 MG Oral Tablet\"}]},\"note\":\"\xff\"}",
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Rhodrug"}]`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Rhodrug"}]}}`,
	// Spaces everywhere, a byte order mark, the resource type last.
	` { "resourceType" : "Immunization" , "vaccineCode" : { "coding" : [ { "system" : "cvx" , "display" : "Sigmavax" } ] } } `,
	` { "resourceType" : "Immunization" , "vaccineCode" : { "coding" : [ { "system" : "cvx" , "display" : "Sigmavax" } ] } } `,
	"\xef\xbb\xbf" + `{"resourceType":"Immunization","vaccineCode":{"coding":[{"system":"cvx","display":"Tauvax"}]}}`,
	`{"vaccineCode":{"coding":[{"system":"cvx","display":"Upsilonvax"}]},"resourceType":"Immunization"}`,
	`{"vaccineCode":{"coding":[{"system":"cvx","display":"Upsilonvax"}]},"resourceType":"Immunization"}`,
	// Medication.code: every coding has a "code", so the scan reads the
	// whole line.
	`{"resourceType":"Medication","code":{"coding":[{"system":"s","code":"1","display":"Phidrug"}]},"ingredient":[{"itemCodeableConcept":{"coding":[{"system":"s","display":"Chidrug"}]}}]}`,
	`{"resourceType":"Medication","code":{"coding":[{"system":"s","code":"1","display":"Phidrug"}]}}`,
	// Names elsewhere than in the codes read: contained resources, other
	// members, other types, a text that quotes a member.
	`{"resourceType":"MedicationRequest","contained":[{"resourceType":"Medication","code":{"coding":[{"system":"s","display":"Psidrug"}]}}],"medicationReference":{"reference":"#m","display":"Psidrug"}}`,
	`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"s","display":"Alphadrug 5 MG Oral Tablet"}]},"note":[{"text":"was on \"medication\": {\"coding\":[{\"system\":\"s\",\"display\":\"Omegadrug\"}]} ] } ["}]}`,
	`{"resourceType":"MedicationRequest","note":[{"text":"a ] } [ { \\"}],"x":-1.5e3,"y":true,"z":null,"medicationCodeableConcept":{"coding":[{"system":"s","display":"Ämydrug"}]}}`,
	`{"resourceType":"MedicationRequest","note":[{"text":"a ] } [ { \\"}],"x":-1.5e3,"y":true,"z":null,"medicationCodeableConcept":{"coding":[{"system":"s","display":"Ämydrug"}]}}`,
	`{"resourceType":"Observation","code":{"coding":[{"system":"s","display":"Bravoword"}]},"valueCodeableConcept":{"coding":[{"system":"s","display":"Bravoword"}]}}`,
	`{"resourceType":"Observation","code":{"coding":[{"system":"s","display":"Bravoword"}]},}`,
	`{"resourceType":1,"medicationCodeableConcept":{"coding":[{"system":"s","display":"Charlieword"}]}}`,
	`{"medicationCodeableConcept":{"coding":[{"system":"s","display":"Charlieword"}]}}`,
	`{"resourceType":"","medicationCodeableConcept":{"coding":[{"system":"s","display":"Charlieword"}]}}`,
	`["MedicationRequest"]`, `"MedicationRequest"`, `{}`, ``, `{"resourceType":"MedicationRequest"}`,
	// Identifier types always go to the parser.
	`{"resourceType":"Patient","id":"p1","name":[{"family":"Brown","given":["Rose"]}],"telecom":[{"system":"phone","value":"(410) 555-0199"}],"identifier":[{"value":"MRN77812"}]}`,
	`{"resourceType":"Pati\u0065nt","id":"p2","name":[{"family":"Lake","given":["Sterling"]}]}`,
	`{"id":"p3","name":[{"family":"Major","given":["Cliff"]}],"resourceType":"Patient"}`,
	`{"resourceType":"RelatedPerson","patient":{"reference":"Patient/p1"},"name":[{"text":"Violet Brown"}]}`,
	`{"resourceType":"Practitioner","name":[{"family":"Osler","given":["William"],"prefix":["Dr."]}]}`,
	`{"resourceType":"Organization","name":"Springfield General Hospital","alias":["SGH"],"address":[{"line":["12 Elm Street"],"city":"Springfield","postalCode":"01101"}]}`,
	`{"resourceType":"Location","name":"Ward 7 East","telecom":[{"system":"email","value":"ward7@example.org"}]}`,
	`{"resourceType":"PractitionerRole","identifier":[{"value":"NPI-99887766"}],"telecom":[{"system":"fax","value":"555 010 2233"}]}`,
	`{"resourceType":"Patient","id":"p4","name":[{"family":"Quill"}],}`,
}

// collectTree is the first pass as it was: each resource parsed into a
// tree of its own and read in full by AddNode; lines that do not parse add
// nothing.
func collectTree(e *Engine, lines [][]byte) *IdentifierCollector {
	col := e.NewIdentifierCollector()
	for _, l := range lines {
		if root, err := jsontree.Parse(l); err == nil {
			col.AddNode(root)
		}
	}
	return col
}

// collectReader reads lines with one CollectorReader whose cache holds at
// most limit names.
func collectReader(e *Engine, lines [][]byte, limit int) *IdentifierCollector {
	col := e.NewIdentifierCollector()
	r := col.NewReader()
	r.knownLimit = limit
	// Each line is lent from one buffer that is overwritten after Add, as
	// the first pass's reader reuses its memory: the collector must keep
	// nothing of it.
	var buf []byte
	for _, l := range lines {
		buf = append(buf[:0], l...)
		_ = r.Add(buf)
		for i := range buf {
			buf[i] = 'x'
		}
	}
	return col
}

// collectConcurrent reads lines with IdentifierCollector.Add from
// goroutines goroutines, each taking every goroutines-th line.
func collectConcurrent(e *Engine, lines [][]byte, goroutines int) *IdentifierCollector {
	col := e.NewIdentifierCollector()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := g; i < len(lines); i += goroutines {
				_ = col.Add(lines[i])
			}
		})
	}
	wg.Wait()
	return col
}

// sameCollected fails t unless a and b hold the same identifiers and safe
// words, as far as they can be compared (their hashes have keys of their
// own): the same patient ids, grouped into the same sets, each of the same
// size (a set counts every addition), the shared sets and the safe words of
// the same sizes, and the scrubber giving the same output, with a's input
// and with b's, on texts made of the strings of lines: each patient's
// texts with its own set, and all of them with no patient.
func sameCollected(t *testing.T, a, b *IdentifierCollector, lines [][]byte) {
	t.Helper()
	ids := slices.Sorted(maps.Keys(a.patients))
	if got := slices.Sorted(maps.Keys(b.patients)); !slices.Equal(ids, got) {
		t.Fatalf("patient ids: %d and %d, not the same", len(ids), len(got))
	}
	first := func(m map[string]*scrub.Identifiers, id string) string {
		for _, k := range ids {
			if m[k] == m[id] {
				return k
			}
		}
		return ""
	}
	for _, id := range ids {
		if a.patients[id].Len() != b.patients[id].Len() || first(a.patients, id) != first(b.patients, id) {
			t.Errorf("patient %s: sets of %d and %d entries (grouped with %s and %s)", id, a.patients[id].Len(),
				b.patients[id].Len(), first(a.patients, id), first(b.patients, id))
		}
	}
	if a.shared.Len() != b.shared.Len() {
		t.Errorf("shared sets of %d and %d entries", a.shared.Len(), b.shared.Len())
	}
	if a.safe.Len() != b.safe.Len() {
		t.Errorf("%d and %d safe words", a.safe.Len(), b.safe.Len())
	}
	// Texts: the strings of each resource, by patient.
	texts := map[string][]string{}
	for _, l := range lines {
		root, err := jsontree.Parse(l)
		if err != nil || root.Kind != jsontree.Object {
			continue
		}
		var words []string
		root.Walk(func(n *jsontree.Node) bool {
			if n.Kind == jsontree.String {
				words = append(words, n.Value())
			}
			return true
		})
		p := str(root.Get("id"))
		if str(root.Get("resourceType")) != "Patient" {
			p = refID(str(getPath(root, "patient", "reference")) + str(getPath(root, "subject", "reference")))
		}
		texts[p] = append(texts[p], strings.Join(words, "; ")+".")
	}
	scrubbed := func(c *IdentifierCollector, patient, text string) string {
		in := c.Input()
		return scrub.Scrub(text, scrub.Options{Identifiers: append(in.Identifiers, in.Patients(patient)), Safe: in.Safe}).Text
	}
	n := 0
	for p, ts := range texts {
		for _, pid := range []string{p, ""} {
			for _, text := range ts {
				n++
				if x, y := scrubbed(a, pid, text), scrubbed(b, pid, text); x != y {
					t.Errorf("patient %q: a text scrubbed differently:\n%s\n%s", pid, x, y)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no text compared")
	}
}

// TestCollectorReaderSame checks that the first pass of CollectorReader
// and of IdentifierCollector.Add (one goroutine or several, a cache of any
// size) collects what AddNode collects on a tree of each resource, over
// quickLines in several orders and over a synthetic population.
func TestCollectorReaderSame(t *testing.T) {
	e := newLongitudinalEngine(t)
	check := func(t *testing.T, lines [][]byte) {
		t.Helper()
		want := collectTree(e, lines)
		if want.safe.Len() == 0 {
			t.Fatal("no safe words collected: nothing to compare")
		}
		for _, limit := range []int{knownMax, 1, 3} {
			sameCollected(t, want, collectReader(e, lines, limit), lines)
		}
		sameCollected(t, want, collectConcurrent(e, lines, 3), lines)
	}
	var lines [][]byte
	for _, l := range quickLines {
		lines = append(lines, []byte(l))
	}
	t.Run("quick", func(t *testing.T) { check(t, lines) })
	t.Run("reversed", func(t *testing.T) {
		r := slices.Clone(lines)
		slices.Reverse(r)
		check(t, r)
	})
	t.Run("shuffled", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			s := slices.Clone(lines)
			r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
			check(t, s)
		}
	})
	t.Run("synth", func(t *testing.T) {
		pop := synth.Generate(synth.Options{Patients: 40})
		var lines [][]byte
		for _, typ := range pop.Types() {
			lines = append(lines, pop.Resources[typ]...)
		}
		check(t, lines)
	})
}

// TestCollectorReaderSameSynthea100 compares the first pass of
// CollectorReader with AddNode's over synthea-100's files, as
// TestCollectorReaderSame does.
func TestCollectorReaderSameSynthea100(t *testing.T) {
	lines, _ := firstPassLines(t, "data", "synthea-100")
	e := newLongitudinalEngine(t)
	want := collectTree(e, lines)
	if want.Patients() == 0 || want.safe.Len() == 0 {
		t.Fatalf("%d patients, %d safe words: nothing to compare", want.Patients(), want.safe.Len())
	}
	sameCollected(t, want, collectReader(e, lines, knownMax), lines)
	sameCollected(t, want, collectConcurrent(e, lines, 2), lines)
}

// cpuNow returns the CPU time (user and system) the process has used.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCollectorReaderError checks that an invalid resource gives an
// *InputError that quotes none of its values, and adds nothing.
func TestCollectorReaderError(t *testing.T) {
	r := newLongitudinalEngine(t).NewIdentifierCollector().NewReader()
	err := r.Add([]byte(`{"resourceType":"Patient","id":"p9","name":[{"family":"Secretname"}],}`))
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("got %v, want an *InputError", err)
	}
	if strings.Contains(err.Error(), "Secretname") || strings.Contains(err.Error(), "p9") {
		t.Errorf("the error quotes the resource: %v", err)
	}
	if r.c.Patients() != 0 {
		t.Errorf("%d patients from invalid lines", r.c.Patients())
	}
}
