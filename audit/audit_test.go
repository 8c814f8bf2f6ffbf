package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"fhirdeid/jsontree"
)

func TestSipHashVector(t *testing.T) {
	// The test vector of the SipHash paper (appendix A): key 00..0f,
	// message 00..0e.
	var key [16]byte
	msg := make([]byte, 15)
	for i := range key {
		key[i] = byte(i)
	}
	for i := range msg {
		msg[i] = byte(i)
	}
	k := sipKey{0x0706050403020100, 0x0f0e0d0c0b0a0908}
	if got := k.sum64(msg); got != 0xa129ca6149be45e5 {
		t.Fatalf("sum64 = %#x, want 0xa129ca6149be45e5", got)
	}
}

func TestTokens(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"555-532-1156", []string{"555", "532", "1156"}},
		{"(555) 532 1156", []string{"555", "532", "1156"}},
		{"Alva958 KUHN96", []string{"alva958", "kuhn96"}},
		{"1965-01-13T08:00:00Z", []string{"1965", "01", "13", "08", "00", "00z"}},
		{"Tea at 5t", []string{"tea", "at", "5t"}},
		{strings.Repeat("a3", 32), []string{strings.Repeat("a3", 32)}},
		{"O'Brien, Zoë", []string{"o", "brien", "zoë"}},
		{"  ", nil},
	} {
		var tk tokens
		tk.split([]byte(c.in))
		var got []string
		for i := 0; i < tk.n(); i++ {
			got = append(got, string(tk.span(i, i+1)))
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("split(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

const rawPatient = `{"resourceType":"Patient","id":"p1",
 "identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-18-8203"},{"value":"1"}],
 "name":[{"use":"official","family":"Lemke","given":["Abram","Quincy"],"prefix":["Mr."]}],
 "telecom":[{"system":"phone","value":"555-532-1156"},{"system":"email","value":"abram.lemke@example.org"}],
 "birthDate":"1965-01-13",
 "address":[{"line":["167 Nikolaus Gate"],"city":"Easthampton","state":"Massachusetts","postalCode":"01027"}]}`

const rawThird = `{"resourceType":"Patient","id":"p3","name":[{"family":"van der Berg-Smith","given":["Quincy"]}]}`

const rawOther = `{"resourceType":"Patient","id":"p2","name":[{"family":"Rose","given":["May"]}],"birthDate":"1980-02-03"}`

// planted is every value of rawPatient, for the no-value checks.
var planted = []string{"999-18-8203", "9991888203", "Lemke", "Abram", "Quincy", "555-532-1156", "5555321156",
	"abram.lemke", "1965-01-13", "19650113", "Nikolaus", "Easthampton", "01027"}

func collect(t *testing.T, raws ...string) *Collector {
	t.Helper()
	c := NewCollector()
	for _, r := range raws {
		if err := c.Collect([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func scan(c *Collector, out string) *Scanner {
	s := c.Scanner()
	s.Keep = 100
	s.Scan("Out.000", 1, []byte(out))
	return s
}

func paths(s *Scanner) []string {
	var p []string
	for _, l := range s.Leaks() {
		p = append(p, l.Path+"="+l.Kind)
	}
	return p
}

func TestPlanted(t *testing.T) {
	c := collect(t, rawPatient, rawOther, rawThird)
	note := base64.StdEncoding.EncodeToString([]byte("Patient ABRAM LEMKE was seen today.\nPhone (555) 532 1156."))
	for _, tc := range []struct {
		name, out string
		want      []string
	}{
		{"extension", `{"resourceType":"Observation","extension":[{"url":"http://x/ssn","valueString":"ssn 999188203 on file"}]}`,
			[]string{"Observation.extension.valueString=identifier"}},
		{"valueString", `{"resourceType":"Observation","valueString":"call (555) 532-1156"}`,
			[]string{"Observation.valueString=telecom"}},
		{"contained", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","identifier":[{"value":"999-18-8203"}]}]}`,
			[]string{"Observation.contained.identifier.value=identifier"}},
		{"base64 note", `{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain","data":"` + note + `"}}]}`,
			[]string{"DocumentReference.content.attachment.data=name", "DocumentReference.content.attachment.data=telecom"}},
		{"email, date, address", `{"resourceType":"Basic","text":{"div":"<div>Abram.Lemke@example.org born 1965-01-13T10:00:00Z at 167 Nikolaus gate</div>"}}`,
			[]string{"Basic.text.div=email", "Basic.text.div=date", "Basic.text.div=address-line"}},
		{"kept name", `{"resourceType":"Patient","name":[{"family":"Lemke","given":["Abram"]}]}`,
			[]string{"Patient.name.family=name-part", "Patient.name.given=name-part"}},
		{"a multi-token family name inside the full name", `{"resourceType":"Encounter","subject":{"display":"Mr. Quincy van der Berg-Smith"}}`,
			[]string{"Encounter.subject.display=name"}},
		{"family then given in one string", `{"resourceType":"Encounter","subject":{"display":"Lemke, Abram"}}`,
			[]string{"Encounter.subject.display=name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := scan(c, tc.out)
			got := paths(s)
			if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(tc.want)) {
				t.Errorf("leaks %q, want %q", got, tc.want)
			}
			rep := s.Report()
			if rep.Leaks != int64(len(tc.want)) || rep.ResourcesWithLeaks != 1 {
				t.Errorf("report counts %d leaks in %d resources", rep.Leaks, rep.ResourcesWithLeaks)
			}
			noValues(t, &rep)
		})
	}
}

// TestNoSignalDrowning: short and common tokens, a given name alone, a
// year, a city alone and another person's parts do not count.
func TestNoSignalDrowning(t *testing.T) {
	c := collect(t, rawPatient, rawOther)
	for _, out := range []string{
		`{"resourceType":"Observation","valueString":"1"}`,                                       // identifier "1" is not collected
		`{"resourceType":"Observation","valueString":"born 1965"}`,                               // a year
		`{"resourceType":"Condition","note":[{"text":"Abram"}]}`,                                 // a given name alone
		`{"resourceType":"Condition","note":[{"text":"a rose in may"}]}`,                         // common words that are another patient's name parts, not corroborated by each other? they are: see below
		`{"resourceType":"Organization","name":"Easthampton clinic","address":[{"state":"MA"}]}`, // a city alone
		`{"resourceType":"Observation","valueString":"Abram saw Rose"}`,                          // parts of two different people
		`{"resourceType":"Observation","valueString":"555-532"}`,                                 // part of a phone number
		`{"resourceType":"Observation","code":{"coding":[{"code":"01027"}]}}`,                    // a postal code alone
		`{"resourceType":"Observation","id":"` + strings.Repeat("ab", 32) + `"}`,
	} {
		s := scan(c, out)
		got := paths(s)
		if strings.Contains(out, "a rose in may") {
			// Both words belong to the same person (May Rose): corroborated.
			if len(got) != 2 {
				t.Errorf("%s: leaks %q, want the two parts of one person's name", out, got)
			}
			continue
		}
		if len(got) != 0 {
			t.Errorf("%s: leaks %q, want none", out, got)
		}
	}
}

func TestCommonWeakValue(t *testing.T) {
	var raws []string
	for i := range maxEntities + 1 {
		raws = append(raws, fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","name":[{"family":"Family%c%c","given":["Given%c%c"]}],"address":[{"city":"Springfield"}]}`, i, 'a'+i, 'a'+i, 'a'+i, 'a'+i))
	}
	c := collect(t, raws...)
	// Springfield belongs to 17 people: with one person's given name it
	// does not count, but that given name alone is not corroborated either.
	s := scan(c, `{"resourceType":"Observation","valueString":"Givenaa of Springfield"}`)
	if got := paths(s); len(got) != 0 {
		t.Errorf("leaks %q, want none", got)
	}
	s = scan(c, `{"resourceType":"Observation","valueString":"Givenaa Familyaa of Springfield"}`)
	if got := paths(s); fmt.Sprint(got) != "[Observation.valueString=name]" {
		t.Errorf("leaks %q, want the whole name only", got)
	}
}

func TestNDJSONAndSummary(t *testing.T) {
	c := NewCollector()
	if err := c.CollectNDJSON(strings.NewReader(rawCompact(rawPatient)+"\n\nnot json \"identifier\": [\n"+rawCompact(rawOther)), 0); err != nil {
		t.Fatal(err)
	}
	if read, invalid := c.Resources(); read != 3 || invalid != 1 {
		t.Errorf("resources %d read, %d invalid; want 3, 1", read, invalid)
	}
	s := c.Scanner()
	s.Keep = 10
	out := `{"resourceType":"Observation","valueString":"ok"}` + "\n" + `{"resourceType":"Observation","valueString":"SSN 999-18-8203"}` + "\n" + `not json 555 532 1156`
	if err := s.ScanNDJSON("Observation.000", strings.NewReader(out), 0); err != nil {
		t.Fatal(err)
	}
	rep := Summary(c, s)
	if rep.IdentifiersCollected < 10 || rep.ResourcesCollected != 3 || rep.ResourcesScanned != 3 || rep.Unreadable != 1 || rep.Leaks != 2 {
		t.Fatalf("summary %+v", rep)
	}
	if l := rep.Examples[0]; l.File != "Observation.000" || l.Line != 2 || l.Path != "Observation.valueString" {
		t.Errorf("first example %+v", l)
	}
	if l := rep.Examples[1]; l.Line != 3 || l.Path != "(unreadable)" {
		t.Errorf("second example %+v", l)
	}
	if err := s.ScanNDJSON("x", strings.NewReader(strings.Repeat("a", 100)), 50); err == nil {
		t.Error("a line over the limit was accepted")
	}
	noValues(t, &rep)
}

func TestHostileMemberNames(t *testing.T) {
	c := collect(t, rawPatient)
	s := scan(c, `{"resourceType":"Observation","Abram Lemke 999-18-8203":"999-18-8203"}`)
	rep := s.Report()
	if rep.Leaks != 1 {
		t.Fatalf("leaks %d", rep.Leaks)
	}
	noValues(t, &rep)
}

func rawCompact(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		panic(err)
	}
	return b.String()
}

// noValues fails if the report's JSON holds any planted value, in any case
// or without punctuation.
func noValues(t *testing.T, rep *Report) {
	t.Helper()
	j, _ := json.Marshal(rep)
	low := strings.ToLower(string(j))
	for _, v := range planted {
		if strings.Contains(low, strings.ToLower(v)) {
			t.Errorf("report contains a planted value: %s", j)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestConcurrentCollect collects from several goroutines at once (the
// pipeline's workers do), then scans from several scanners.
func TestConcurrentCollect(t *testing.T) {
	c := NewCollector()
	var raws []string
	for i := range 200 {
		raws = append(raws, fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"value":"MRN-%06d"}],"name":[{"family":"Fam%c%c","given":["Giv%c%c"]}]}`,
			i, i, 'a'+i%26, 'a'+i/26, 'a'+i%26, 'a'+i/26))
	}
	done := make(chan bool)
	for w := range 4 {
		go func() {
			for i := w; i < len(raws); i += 4 {
				_ = c.Collect([]byte(raws[i]))
			}
			done <- true
		}()
	}
	for range 4 {
		<-done
	}
	if n := c.Identifiers(); n != 200*5 {
		t.Errorf("%d identifiers, want 1000 (MRN, given, family and the name in two orders, per patient)", n)
	}
	reps := make(chan Report)
	for w := range 4 {
		go func() {
			s := c.Scanner()
			for i := w; i < len(raws); i += 4 {
				s.Scan("Patient.000", int64(i+1), []byte(raws[i]))
			}
			reps <- s.Report()
		}()
	}
	var total Report
	for range 4 {
		r := <-reps
		total.Add(&r)
	}
	if total.ResourcesWithLeaks != 200 || total.ByPath["Patient.identifier.value"] != 200 || total.ByPath["Patient.name.family"] != 200 {
		t.Errorf("report %+v", total)
	}
}

func TestIdentifierLimit(t *testing.T) {
	c := NewCollector()
	c.MaxIdentifiers = 3
	_ = c.Collect([]byte(rawPatient))
	if !c.Full() || c.Identifiers() != 3 {
		t.Fatalf("full %v with %d identifiers", c.Full(), c.Identifiers())
	}
	if r := Summary(c); !strings.Contains(r.Incomplete, "limit (3)") {
		t.Errorf("incomplete %q", r.Incomplete)
	}
}

// TestPrefilter: every member name Collect reads makes a resource walked;
// a resource without them is skipped.
func TestPrefilter(t *testing.T) {
	for _, list := range collectKeys {
		for _, k := range list {
			for _, doc := range []string{`{"resourceType":"X","` + k + `":{}}`, `{"` + k + `" :1}`, "{\n  \"" + k + "\"\t\n: []}", `{"a":{"` + k + `":"x"}}`} {
				if !mayIdentify([]byte(doc)) {
					t.Errorf("%s: skipped", doc)
				}
			}
		}
	}
	for _, doc := range []string{
		`{"resourceType":"Observation","status":"final","code":{"text":"names and identifiers"},"valueString":"given names"}`,
		`{"resourceType":"Observation","identifiers":[]}`, `"`, ``, `:`, `":`, `"":1`, `{"x":"name"}`, `{"x":"http://name"}`,
	} {
		if mayIdentify([]byte(doc)) {
			t.Errorf("%s: walked", doc)
		}
	}
	// Escaped member names are decoded by the parsers (the engine sees
	// "name"): the prefilter must not skip them.
	for _, doc := range []string{`{"resourceType":"Patient","n\u0061me":[{"family":"X"}]}`, `{"\u0074elecom":[]}`,
		`{"\u0069\u0064\u0065\u006e\u0074\u0069\u0066\u0069\u0065\u0072":[]}`, `{"a":{"birth\u0044ate" : "1970-01-01"}}`} {
		if !mayIdentify([]byte(doc)) {
			t.Errorf("%s: skipped", doc)
		}
	}
	// The hostile case: a quote at the very end.
	if mayIdentify([]byte(`{"a":"b`)) {
		t.Error("truncated document walked")
	}
	c := NewCollector()
	_ = c.Collect([]byte(`{"resourceType":"Patient","name":[{"text":"Abram Lemke"}]}`))
	if c.Identifiers() != 1 {
		t.Errorf("a name with only text: %d identifiers", c.Identifiers())
	}
	_ = c.Collect([]byte(`{"resourceType":"Patient","n\u0061me":[{"text":"Maren Olde"}]}`))
	if c.Identifiers() != 2 {
		t.Errorf("a name under an escaped member name: %d identifiers, want 2", c.Identifiers())
	}
}

// TestTreesAsText: collecting from and scanning parsed trees (as the
// pipeline does, from the engine's trees) finds what the JSON text gives,
// while collection goes on in other goroutines.
func TestTreesAsText(t *testing.T) {
	parse := func(s string) *jsontree.Node {
		n, err := jsontree.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	c := NewCollector()
	for _, r := range []string{rawPatient, rawOther, rawThird} {
		c.CollectTree(parse(r))
	}
	if n, _ := c.Resources(); n != 3 || c.Identifiers() != collect(t, rawPatient, rawOther, rawThird).Identifiers() {
		t.Fatalf("tree collection: %d resources, %d identifiers", n, c.Identifiers())
	}
	note := base64.StdEncoding.EncodeToString([]byte("Patient ABRAM LEMKE was seen today."))
	outs := []string{
		`{"resourceType":"Observation","extension":[{"url":"http://x/ssn","valueString":"ssn 999188203 on file"}]}`,
		`{"resourceType":"Observation","contained":[{"resourceType":"Patient","identifier":[{"value":"999-18-8203"}]}]}`,
		`{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain","data":"` + note + `"}}]}`,
		`{"resourceType":"Patient","name":[{"family":"Lemke","given":["Abram"]}]}`,
		`{"resourceType":"Encounter","subject":{"display":"Lemke, Abram"}}`,
		`{"resourceType":"Encounter","subject":{"display":"May"}}`,
	}
	gen0 := c.Gen()
	fs := c.ScanFile("Out.000.ndjson.gz", 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // collection of unrelated people goes on meanwhile
		defer wg.Done()
		for i := range 200 {
			c.CollectTree(parse(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"value":"MRN%08d"}]}`, i)))
		}
	}()
	for i, o := range outs {
		fs.ScanTree(i%2, int64(i+1), parse(o))
	}
	wg.Wait()
	text := c.Scanner()
	for i, o := range outs {
		text.Scan("Out.000.ndjson.gz", int64(i+1), []byte(o))
	}
	got, want := fs.Report(), text.Report()
	got.Sort()
	want.Sort()
	if fmt.Sprint(got.ByPath, got.Examples, got.Leaks, got.StringsScanned) != fmt.Sprint(want.ByPath, want.Examples, want.Leaks, want.StringsScanned) {
		t.Errorf("trees: %+v\ntext: %+v", got, want)
	}
	if got.Leaks != 6 { // the given name alone ("May") is not one
		t.Errorf("%d leaks, want 6: %+v", got.Leaks, got.ByPath)
	}
	// The identifiers collected meanwhile are nowhere in the output: the
	// scan stands.
	if c.Gen() == gen0 || !fs.Complete() {
		t.Errorf("generation %d → %d: the scan is not complete, though what changed is not in the file", gen0, c.Gen())
	}
	if fs.Anchors() == 0 {
		t.Error("the sealed scan remembers no token")
	}
	// One that is there (a display's family name, new as an identifier,
	// and the kept given name, now of a second person) makes it incomplete.
	fs = c.ScanFile("Out.000.ndjson.gz", 1)
	for i, o := range outs {
		fs.ScanTree(0, int64(i+1), parse(o))
	}
	c.CollectTree(parse(`{"resourceType":"Patient","identifier":[{"value":"ssn 999188203"}]}`))
	if fs.Complete() {
		t.Error("an identifier collected after the scan and present in the file: the scan says it is complete")
	}
	if fs2 := c.ScanFile("x", 1); !fs2.Complete() {
		t.Error("a scan that began after the last change is not complete")
	}
	// Many scans at once: the one that began before the change and holds
	// it, the one that began after it, and one that began before but
	// holds none of what changed.
	early, other := c.ScanFile("a", 1), c.ScanFile("b", 1)
	early.ScanTree(0, 1, parse(outs[4])) // "Lemke, Abram"
	other.ScanTree(0, 1, parse(outs[5]))
	c.CollectTree(parse(`{"resourceType":"Patient","name":[{"family":"Lemke","given":["Abram"]}]}`))
	late := c.ScanFile("c", 1)
	late.ScanTree(0, 1, parse(outs[4]))
	if got := CompleteScans(c, early, late, other); fmt.Sprint(got) != "[false true true]" {
		t.Errorf("CompleteScans: %v, want [false true true]", got)
	}
	noValues(t, &got)
}

func TestMaskHex(t *testing.T) {
	h := strings.Repeat("0123456789abcdef", 4)
	s := NewCollector().Scanner()
	for in, want := range map[string]string{
		"Patient/" + h:                    "Patient/", // the same tokens and pairs
		h:                                 "",
		"urn:uuid:" + h[:31]:              "urn:uuid:" + h[:31], // too short
		h + "-" + strings.ToUpper(h[:32]): "\x00-\x00",
		"x" + h:                           "x" + h, // one token, not all hex
		"é" + h + " " + h:                 "é" + h + " \x00",
		"code 1234":                       "code 1234",
		strings.Repeat("a", 40) + "g":     strings.Repeat("a", 40) + "g",
	} {
		if got := string(s.maskHex([]byte(in))); got != want {
			t.Errorf("maskHex(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRewrittenDate: a birth date matched in a date value that
// de-identification wrote (a shifted date that happens to equal someone's
// birth date) is a leak only with another identifier of that person in the
// resource; the same date left as the input had it is a leak on its own.
func TestRewrittenDate(t *testing.T) {
	parse := func(s string) *jsontree.Node {
		n, err := jsontree.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	c := NewCollector()
	c.CollectTree(parse(`{"resourceType":"Patient","id":"p","name":[{"family":"Quennell","given":["Abram"]}],"birthDate":"1961-04-12","telecom":[{"system":"phone","value":"555-301-2299"}]}`))
	scan := func(out string, rewrite bool) int64 {
		root := parse(out)
		if rewrite { // as a date-shifting rule does: the value is written anew
			for _, k := range []string{"created", "birthDate"} {
				if n := root.Get(k); n != nil {
					n.SetString(n.Value())
				}
			}
		}
		s := c.Scanner()
		s.ScanTree("Out.000.ndjson.gz", 1, root)
		return s.Report().Leaks
	}
	for _, tc := range []struct {
		out     string
		rewrite bool
		want    int64
	}{
		{`{"resourceType":"Claim","created":"1961-04-12"}`, false, 1},
		{`{"resourceType":"Claim","created":"1961-04-12"}`, true, 0},
		{`{"resourceType":"Claim","created":"1961-04-12T08:00:00Z"}`, true, 0},
		{`{"resourceType":"Patient","birthDate":"1961-04-12","telecom":[{"value":"555-301-2299"}]}`, true, 2},
		{`{"resourceType":"Claim","note":"born 1961-04-12"}`, false, 1},
	} {
		if got := scan(tc.out, tc.rewrite); got != tc.want {
			t.Errorf("%s (rewritten %v): %d leaks, want %d", tc.out, tc.rewrite, got, tc.want)
		}
	}
}

// TestRewrittenDateReadAgain: a file read again from storage (its scan
// began before the birth date was collected) judges its dates as the scan
// saw them written: a day found only in rewritten values is no leak alone,
// a day also kept as the input had it is one.
func TestRewrittenDateReadAgain(t *testing.T) {
	parse := func(s string) *jsontree.Node {
		n, err := jsontree.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	outs := []string{
		`{"resourceType":"Claim","created":"1961-04-12"}`,              // rewritten below
		`{"resourceType":"Encounter","period":{"start":"1970-01-02"}}`, // rewritten below
		`{"resourceType":"Encounter","period":{"start":"1970-01-02"}}`, // kept
	}
	for _, again := range []bool{false, true} {
		c := NewCollector()
		fs := c.ScanFile("Out.000.ndjson.gz", 1)
		var text bytes.Buffer
		for i, o := range outs {
			root := parse(o)
			if i < 2 {
				n := root.Get("created")
				if n == nil {
					n = root.Get("period").Get("start")
				}
				n.SetString(n.Value())
			}
			fs.ScanTree(0, int64(i+1), root)
			text.WriteString(o + "\n")
		}
		// The birth dates are collected after the scan began.
		c.CollectTree(parse(`{"resourceType":"Patient","birthDate":"1961-04-12"}`))
		c.CollectTree(parse(`{"resourceType":"Patient","birthDate":"1970-01-02"}`))
		if fs.Complete() {
			t.Fatal("scan complete though birth dates were collected after it began")
		}
		s := c.Scanner()
		if again {
			s.RewrittenDates(fs)
		}
		if err := s.ScanNDJSON("Out.000.ndjson.gz", &text, 1<<20); err != nil {
			t.Fatal(err)
		}
		// Without the first scan's dates every match is a leak.
		want := map[bool]int64{false: 3, true: 2}[again]
		if got := s.Report().Leaks; got != want {
			t.Errorf("read again (with the scan's dates %v): %d leaks, want %d", again, got, want)
		}
	}
}

// TestRewrittenDayHashesAcrossProcesses: a file scanned first by one
// collector (a worker) and read again by another (the worker that
// completes the run's audit) keeps the first scan's judgement of its dates
// when both share a day key, and not otherwise.
func TestRewrittenDayHashesAcrossProcesses(t *testing.T) {
	out := `{"resourceType":"Claim","created":"1961-04-12"}`
	root, err := jsontree.Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	n := root.Get("created")
	n.SetString(n.Value())
	key := [16]byte{1, 2, 3}
	first := NewCollector()
	first.SetDayKey(key)
	fs := first.ScanFile("Claim.000.ndjson.gz", 1)
	fs.ScanTree(0, 1, root)
	h := fs.RewrittenDayHashes()
	if len(h) != 1 {
		t.Fatalf("%d rewritten days, want 1", len(h))
	}
	for _, shared := range []bool{true, false} {
		c := NewCollector()
		if shared {
			c.SetDayKey(key)
		}
		if err := c.Collect([]byte(`{"resourceType":"Patient","birthDate":"1961-04-12"}`)); err != nil {
			t.Fatal(err)
		}
		s := c.Scanner()
		s.RewrittenDayHashes(h)
		if err := s.ScanNDJSON("Claim.000.ndjson.gz", strings.NewReader(out+"\n"), 1<<20); err != nil {
			t.Fatal(err)
		}
		want := map[bool]int64{true: 0, false: 1}[shared]
		if got := s.Report().Leaks; got != want {
			t.Errorf("day key shared %v: %d leaks, want %d", shared, got, want)
		}
	}
}

// TestExamplesOrderIndependent: a report keeps the first leaks in file and
// line order, whichever order they were found and reports combined in.
func TestExamplesOrderIndependent(t *testing.T) {
	var leaks []Leak
	for f := range 3 {
		for line := range 15 {
			leaks = append(leaks, Leak{File: fmt.Sprintf("Patient.%03d.ndjson.gz", f), Line: int64(line + 1), Path: "Patient.name.family", Kind: "name-part"})
		}
	}
	combine := func(order []int) Report {
		// Two reports of interleaved leaks, added in either order.
		var a, b Report
		for i, k := range order {
			if i%2 == 0 {
				a.Examples = keepExample(a.Examples, leaks[k])
			} else {
				b.Examples = keepExample(b.Examples, leaks[k])
			}
		}
		var r Report
		r.Add(&b)
		r.Add(&a)
		return r
	}
	fwd := make([]int, len(leaks))
	rev := make([]int, len(leaks))
	for i := range leaks {
		fwd[i], rev[i] = i, len(leaks)-1-i
	}
	x, y := combine(fwd), combine(rev)
	if len(x.Examples) != MaxExamples || fmt.Sprint(x.Examples) != fmt.Sprint(y.Examples) || fmt.Sprint(x.Examples) != fmt.Sprint(leaks[:MaxExamples]) {
		t.Errorf("examples depend on the order:\n%v\n%v", x.Examples, y.Examples)
	}
}
