package anonymize

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"fhirdeid/anonymize/scrub"
)

const scrubTestConfig = `{
  "fhirVersion": "R4",
  "fhirPathRules": [
    {"path": "DocumentReference.content.attachment", "method": "scrub"},
    {"path": "Observation.value", "method": "scrub", "dates": "shift"},
    {"path": "nodesByType('Narrative')", "method": "scrub"},
    {"path": "nodesByType('Annotation').text", "method": "scrub"},
    {"path": "Resource", "method": "keep"}
  ],
  "parameters": {"dateShiftFixedOffsetInDays": 10}
}`

func scrubAnon(t *testing.T, e *Engine, ctx context.Context, in string) map[string]any {
	t.Helper()
	out, _, err := e.AnonymizeJSON(ctx, []byte(in), FileContext{})
	if err != nil {
		t.Fatalf("anonymize: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	return m
}

func TestScrubMethodAttachments(t *testing.T) {
	e := newTestEngine(t, scrubTestConfig)
	note := "Seen by Dr. Healey on 7/22/2019. Call 410-555-1234. Pt stable."
	b64 := base64.StdEncoding.EncodeToString([]byte(note))
	pdf := base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 John Smith"))
	in := `{"resourceType":"DocumentReference","id":"d1","status":"current","content":[
	  {"attachment":{"contentType":"text/plain; charset=utf-8","data":"` + b64 + `","hash":"abc=","size":99}},
	  {"attachment":{"contentType":"application/pdf","data":"` + pdf + `","title":"Smith.pdf"}}]}`
	m := scrubAnon(t, e, context.Background(), in)
	content := m["content"].([]any)
	att := content[0].(map[string]any)["attachment"].(map[string]any)
	raw, err := base64.StdEncoding.DecodeString(att["data"].(string))
	if err != nil {
		t.Fatalf("data not base64: %v", err)
	}
	want := scrub.Scrub(note, scrub.Options{}).Text
	if string(raw) != want {
		t.Errorf("scrubbed note = %q, want %q", raw, want)
	}
	for _, phi := range []string{"Healey", "7/22", "555-1234"} {
		if strings.Contains(string(raw), phi) {
			t.Errorf("scrubbed note keeps %q: %q", phi, raw)
		}
	}
	if !strings.Contains(string(raw), "Pt stable") {
		t.Errorf("scrubbed note lost its clinical text: %q", raw)
	}
	if _, ok := att["hash"]; ok {
		t.Error("hash kept")
	}
	if sz, _ := att["size"].(float64); int(sz) != len(raw) {
		t.Errorf("size = %v, want %d", att["size"], len(raw))
	}
	if len(content) > 1 {
		if a2, ok := content[1].(map[string]any)["attachment"]; ok {
			t.Errorf("non-text attachment not redacted: %v", a2)
		}
	}
}

func TestScrubMethodDatesAndContext(t *testing.T) {
	e := newTestEngine(t, scrubTestConfig)
	in := `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},
	  "valueString":"Brown visited on 2019-07-22 and 7/30/2019; MRN 00123456.",
	  "note":[{"text":"Mrs Brown called about John."}]}`
	// Without the contextual layer "Brown" is an English word.
	m := scrubAnon(t, e, context.Background(), in)
	vs := m["valueString"].(string)
	if !strings.Contains(vs, "2019-08-01") || !strings.Contains(vs, "8/9/2019") {
		t.Errorf("dates not shifted by 10 days: %q", vs)
	}
	if strings.Contains(vs, "00123456") {
		t.Errorf("MRN kept: %q", vs)
	}
	ids := scrub.NewIdentifiers()
	ids.AddName("Brown")
	days := -3
	ctx := WithScrubInput(context.Background(), ScrubInput{Identifiers: []*scrub.Identifiers{ids}, DateShiftDays: &days})
	m = scrubAnon(t, e, ctx, in)
	vs = m["valueString"].(string)
	if strings.Contains(strings.ToLower(vs), "brown") {
		t.Errorf("patient's name kept with the contextual layer: %q", vs)
	}
	if !strings.Contains(vs, "2019-07-19") {
		t.Errorf("dates not shifted by the caller's offset: %q", vs)
	}
	if note := m["note"].([]any)[0].(map[string]any)["text"].(string); strings.Contains(note, "Brown") || strings.Contains(note, "John") {
		t.Errorf("annotation keeps a name: %q", note)
	}
}

func TestScrubMethodXHTMLStaysWellFormed(t *testing.T) {
	e := newTestEngine(t, scrubTestConfig)
	div := `<div xmlns=\"http://www.w3.org/1999/xhtml\"><p class=\"x\" title=\"Dr. Healey\">Seen by Dr. Healey &amp; Mrs. Vasquez on 7/22/2019 &lt;ok&gt;</p><table><tr><td>Phone 410-555-1234</td></tr></table></div>`
	in := `{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"` + div + `"}}`
	m := scrubAnon(t, e, context.Background(), in)
	out := m["text"].(map[string]any)["div"].(string)
	d := xml.NewDecoder(strings.NewReader(out))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("scrubbed div is not well-formed XML: %v\n%s", err, out)
		}
	}
	for _, phi := range []string{"Healey", "Vasquez", "7/22", "555-1234"} {
		if strings.Contains(out, phi) {
			t.Errorf("div keeps %q: %s", phi, out)
		}
	}
	for _, keep := range []string{`class="x"`, "&amp;", "&lt;ok&gt;", "<table><tr><td>"} {
		if !strings.Contains(out, keep) {
			t.Errorf("div lost markup %q: %s", keep, out)
		}
	}
}

func TestScrubIsNotACustomMethodName(t *testing.T) {
	c, err := ParseConfig([]byte(scrubTestConfig), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		t.Fatal(err)
	}
	if !c.UsesScrub() {
		t.Error("UsesScrub is false for a configuration with scrub rules")
	}
	if e := newTestEngine(t, `{"fhirVersion":"R4","fhirPathRules":[{"path":"Resource","method":"keep"}]}`); e.Config().UsesScrub() {
		t.Error("UsesScrub is true without scrub rules")
	}
	if _, err := NewEngine(c, EngineOptions{CustomMethods: map[string]CustomMethod{"Scrub": {Apply: func(CustomCall) (string, bool, error) { return "", true, nil }}}}); err == nil {
		t.Error("a custom method named scrub was accepted")
	}
}

func TestScrubTrace(t *testing.T) {
	e := newTestEngine(t, scrubTestConfig)
	var evs []ScrubEvent
	ctx := WithScrubTrace(context.Background(), func(ev ScrubEvent) { evs = append(evs, ev) })
	scrubAnon(t, e, ctx, `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueString":"Call 410-555-1234"}`)
	if len(evs) != 1 || len(evs[0].Spans) != 1 || evs[0].Spans[0].Kind != scrub.KindPhone || evs[0].Location != "Observation.value" && !strings.HasPrefix(evs[0].Location, "Observation.value") {
		t.Fatalf("trace = %+v", evs)
	}
}

// TestScrubShiftsLikeThePatientsDates checks that, in date-shift scope
// "patient", dates in a note move by the same offset as the patient's
// structured dates.
func TestScrubShiftsLikeThePatientsDates(t *testing.T) {
	e := newTestEngine(t, `{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"nodesByType('dateTime')","method":"dateShift"},
	  {"path":"nodesByType('Annotation').text","method":"scrub","dates":"shift"},
	  {"path":"Resource","method":"keep"}],
	  "parameters":{"dateShiftKey":"k","dateShiftScope":"patient"}}`)
	for _, patient := range []string{"p1", "p2", "p3"} {
		in := `{"resourceType":"Condition","id":"c-` + patient + `","subject":{"reference":"Patient/` + patient + `"},
		  "onsetDateTime":"2019-07-22","note":[{"text":"Onset 2019-07-22, seen again 7/22/2019."}]}`
		m := scrubAnon(t, e, context.Background(), in)
		onset := m["onsetDateTime"].(string)
		note := m["note"].([]any)[0].(map[string]any)["text"].(string)
		if onset == "2019-07-22" {
			t.Fatalf("onset not shifted")
		}
		if want := "Onset " + onset + ","; !strings.HasPrefix(note, want) {
			t.Errorf("patient %s: note %q, want it to start %q (the structured date's shift)", patient, note, want)
		}
	}
}

// TestIdentifierCollector builds the contextual sets from a Patient (with
// a contact), a RelatedPerson and a Practitioner, and scrubs a note of an
// Observation whose subject reference a rule hashed before the scrub rule
// ran: the patient's, the relative's and the practitioner's words go, the
// same words in another patient's note stay.
func TestIdentifierCollector(t *testing.T) {
	e := newTestEngine(t, `{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"nodesByType('Reference').reference","method":"cryptoHash"},
	  {"path":"nodesByType('Annotation').text","method":"scrub"},
	  {"path":"Resource","method":"keep"}],"parameters":{"cryptoHashKey":"k"}}`)
	col := e.NewIdentifierCollector()
	for _, r := range []string{
		`{"resourceType":"Patient","id":"p1","name":[{"family":"Brown","given":["Rose"]}],"telecom":[{"system":"phone","value":"(410) 555-0199"}],
		  "address":[{"line":["7 Orchard Way"],"city":"Bath"}],"identifier":[{"value":"MRN77812"}],"contact":[{"name":{"family":"Lake","given":["Sterling"]}}]}`,
		`{"resourceType":"RelatedPerson","id":"r1","patient":{"reference":"Patient/p1"},"name":[{"given":["Violet"]}]}`,
		`{"resourceType":"Practitioner","id":"d1","name":[{"family":"Major","given":["Cliff"]}]}`,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}`,
		// Drug names of codes with a system become safe words; a coding
		// without a system and a concept's text do not.
		`{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},
		  "medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1","display":"Aggrestat 12.5 MG Injection"},
		  {"display":"Quillfeather"}],"text":"Zorbanek"}}`,
	} {
		if err := col.Add([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	if col.Patients() != 1 {
		t.Fatalf("%d patients", col.Patients())
	}
	if n := col.Input().Safe.Len(); n != 2 {
		t.Errorf("%d safe words, want 2 (aggrestat, injection)", n)
	}
	note := "Rose brown visited with violet and sterling lake from orchard way, bath; cliff major saw her; call 410 555 0199; mrn77812. Brown stool."
	ctx := WithScrubInput(context.Background(), col.Input())
	obs := func(patient string) string {
		in := `{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"},"note":[{"text":"` + note + `"}]}`
		m := scrubAnon(t, e, ctx, in)
		if ref := m["subject"].(map[string]any)["reference"].(string); ref == "Patient/"+patient {
			t.Fatalf("the reference was not hashed first")
		}
		return m["note"].([]any)[0].(map[string]any)["text"].(string)
	}
	got := strings.ToLower(obs("p1"))
	for _, w := range []string{"rose", "brown", "violet", "sterling", "lake", "orchard", "bath", "cliff", "major", "0199", "77812"} {
		if strings.Contains(got, w) {
			t.Errorf("%q survives in the patient's note: %s", w, got)
		}
	}
	if !strings.Contains(got, "stool") {
		t.Errorf("clinical text lost: %s", got)
	}
	drugs := strings.ToLower(obs2(t, e, ctx, "started aggrestat; quillfeather and zorbanek saw her"))
	if !strings.Contains(drugs, "aggrestat") || strings.Contains(drugs, "quillfeather") || strings.Contains(drugs, "zorbanek") {
		t.Errorf("the coded drug name should survive, the uncoded words not: %s", drugs)
	}
	other := strings.ToLower(obs("p2"))
	for _, w := range []string{"brown", "orchard", "bath"} {
		if !strings.Contains(other, w) {
			t.Errorf("%q removed from another patient's note: %s", w, other)
		}
	}
	if strings.Contains(other, "major") || strings.Contains(other, "cliff") {
		t.Errorf("a practitioner's name survives in another patient's note: %s", other)
	}
}

// obs2 scrubs note as the note of an Observation of patient p1 and returns it.
func obs2(t *testing.T, e *Engine, ctx context.Context, note string) string {
	in := `{"resourceType":"Observation","id":"o3","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"},"note":[{"text":"` + note + `"}]}`
	return scrubAnon(t, e, ctx, in)["note"].([]any)[0].(map[string]any)["text"].(string)
}

// FuzzScrubMethod feeds arbitrary text to the scrub method as an
// Observation.valueString, as a text/html and a text/rtf attachment and as
// a Narrative div: the output is valid JSON, the attachments' data is
// base64 of valid UTF-8 with a matching size, and a well-formed div stays
// well-formed.
func FuzzScrubMethod(f *testing.F) {
	for _, s := range []string{
		"Seen by Dr. Healey on 7/22/2019, call 410-555-1234.",
		`<p title="Dr. Smith">Mrs &amp; Jones 7/22</p>`,
		`{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Dr. Smith\'e9 7/22\par}`,
		"\xff\xfe Dr. \xc3 Smith",
		`"quoted" \ backslash </div> ]]> & <`,
	} {
		f.Add(s)
	}
	e := newTestEngine(f, scrubTestConfig)
	f.Fuzz(func(t *testing.T, text string) {
		b64 := base64.StdEncoding.EncodeToString([]byte(text))
		textJSON, _ := json.Marshal(text)
		for _, in := range []string{
			`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"valueString":` + string(textJSON) + `}`,
			`{"resourceType":"DocumentReference","id":"d","status":"current","content":[{"attachment":{"contentType":"text/html","data":"` + b64 + `"}},{"attachment":{"contentType":"text/rtf","data":"` + b64 + `","size":3}}]}`,
		} {
			out, _, err := e.AnonymizeJSON(context.Background(), []byte(in), FileContext{})
			if err != nil {
				var ie *InputError
				if errors.As(err, &ie) {
					continue // e.g. an empty string value
				}
				t.Fatalf("anonymize: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("output is not JSON: %v", err)
			}
			if content, ok := m["content"].([]any); ok {
				for _, c := range content {
					att := c.(map[string]any)["attachment"].(map[string]any)
					data, _ := att["data"].(string)
					raw, err := base64.StdEncoding.DecodeString(data)
					if err != nil {
						t.Fatalf("data is not base64: %v", err)
					}
					if !utf8.Valid(raw) {
						t.Fatalf("scrubbed attachment is not valid UTF-8")
					}
					if sz, _ := att["size"].(float64); len(raw) > 0 && int(sz) != len(raw) {
						t.Fatalf("size %v, data %d bytes", att["size"], len(raw))
					}
				}
			}
		}
		// A well-formed div stays well-formed.
		div := `<div xmlns="http://www.w3.org/1999/xhtml">` + text + `</div>`
		if !utf8.ValidString(text) || !scrubWellFormed(div) {
			return
		}
		divJSON, _ := json.Marshal(div)
		out, _, err := e.AnonymizeJSON(context.Background(), []byte(`{"resourceType":"Patient","id":"p","text":{"status":"generated","div":`+string(divJSON)+`}}`), FileContext{})
		if err != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("output is not JSON: %v", err)
		}
		if got, _ := m["text"].(map[string]any)["div"].(string); !scrubWellFormed(got) {
			t.Fatalf("well-formed div became malformed: %q -> %q", div, got)
		}
	})
}

func scrubWellFormed(s string) bool {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// TestScrubAttachmentData checks a rule that names Attachment.data rather
// than the attachment: text is scrubbed (not redacted), other data goes.
func TestScrubAttachmentData(t *testing.T) {
	e := newTestEngine(t, `{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"nodesByType('Attachment').data","method":"scrub"},
	  {"path":"Resource","method":"keep"}]}`)
	note := base64.StdEncoding.EncodeToString([]byte("Dr. Healey called 410-555-1234."))
	in := `{"resourceType":"DocumentReference","id":"d","status":"current","content":[
	  {"attachment":{"contentType":"text/plain","data":"` + note + `","size":31,"hash":"x"}},
	  {"attachment":{"contentType":"image/png","data":"` + note + `"}}]}`
	m := scrubAnon(t, e, context.Background(), in)
	content := m["content"].([]any)
	att := content[0].(map[string]any)["attachment"].(map[string]any)
	raw, _ := base64.StdEncoding.DecodeString(att["data"].(string))
	if string(raw) != "Dr. [NAME] called [PHONE]." {
		t.Errorf("text data = %q", raw)
	}
	if _, ok := att["hash"]; ok {
		t.Error("hash kept")
	}
	if len(content) > 1 {
		if a2 := content[1].(map[string]any)["attachment"].(map[string]any); a2["data"] != nil {
			t.Errorf("image data kept")
		}
	}
}

// TestScrubMemoAcrossPatients scrubs the same texts for several patients in
// turn, with the memo and without it: a text that names one patient is
// scrubbed for that patient only, a text with a date follows each
// patient's shift, and the others are reused, all giving what scrubbing
// each text afresh gives.
func TestScrubMemoAcrossPatients(t *testing.T) {
	const config = `{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"nodesByType('dateTime')","method":"dateShift"},
	  {"path":"nodesByType('Annotation').text","method":"scrub","dates":"shift"},
	  {"path":"nodesByType('CodeableConcept').text","method":"scrub"},
	  {"path":"Resource","method":"keep"}],
	  "parameters":{"dateShiftKey":"k","dateShiftScope":"patient"}}`
	with, without := newTestEngine(t, config), newTestEngine(t, config)
	without.noScrubMemo = true
	col := with.NewIdentifierCollector()
	for _, p := range []string{
		`{"resourceType":"Patient","id":"p1","name":[{"family":"Brown","given":["Rose"]}]}`,
		`{"resourceType":"Patient","id":"p2","name":[{"family":"Green","given":["Major"]}],"telecom":[{"system":"phone","value":"410 555 0199"}]}`,
		`{"resourceType":"Patient","id":"p3"}`,
	} {
		if err := col.Add([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := WithScrubInput(context.Background(), col.Input())
	texts := []string{"Brown stool, green bile", "major bleed, green bile", "Body Height", "Seen 2019-07-22 by Rose", "Rose"}
	outs := map[string]map[string]bool{} // text -> the distinct outputs
	for round := 0; round < 3; round++ {
		for _, patient := range []string{"p1", "p2", "p3", "p1", "p3", "p2", "p2"} {
			for _, text := range texts {
				in := `{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/` + patient + `"},"code":{"text":"` + text +
					`"},"note":[{"text":"` + text + `"}]}`
				a, _, err := with.AnonymizeJSON(ctx, []byte(in), FileContext{})
				if err != nil {
					t.Fatal(err)
				}
				b, _, err := without.AnonymizeJSON(ctx, []byte(in), FileContext{})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Fatalf("round %d, patient %s, text %q: with the memo %s, without %s", round, patient, text, a, b)
				}
				var m struct {
					Note []struct{ Text string }
				}
				if err := json.Unmarshal(a, &m); err != nil || len(m.Note) != 1 {
					t.Fatalf("output %s: %v", a, err)
				}
				if outs[text] == nil {
					outs[text] = map[string]bool{}
				}
				outs[text][m.Note[0].Text] = true
			}
		}
	}
	// The texts that name a patient or hold a date differ by patient; the
	// others do not.
	for text, want := range map[string]int{texts[0]: 3, texts[1]: 2, texts[2]: 1, texts[3]: 3, texts[4]: 2} {
		if got := len(outs[text]); got != want {
			t.Errorf("%q: %d distinct outputs over the patients, want %d", text, got, want)
		}
	}
}

// TestScrubKeepsAConceptTextItsCodingShows checks that a CodeableConcept's
// text equal to a display of its codings that an earlier rule left in place
// is kept, while other texts, and a text whose equal display no rule has
// processed yet, are scrubbed.
func TestScrubKeepsAConceptTextItsCodingShows(t *testing.T) {
	e := newTestEngine(t, `{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"nodesByType('Coding').where(system = 'http://loinc.org').display","method":"keep"},
	  {"path":"nodesByType('CodeableConcept').text","method":"scrub"},
	  {"path":"nodesByType('Coding').display","method":"scrub"},
	  {"path":"Resource","method":"keep"}]}`)
	obs := func(system, display, text string) (string, string) {
		in := `{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"` + system + `","code":"1","display":"` + display +
			`"}],"text":"` + text + `"}}`
		m := scrubAnon(t, e, context.Background(), in)
		code := m["code"].(map[string]any)
		return code["text"].(string), code["coding"].([]any)[0].(map[string]any)["display"].(string)
	}
	// The vocabulary layer takes "Body Height" for a name.
	if got := scrub.Scrub("Body Height", scrub.Options{}).Text; got == "Body Height" {
		t.Fatalf("the scrubber keeps %q: the test needs a text it changes", got)
	}
	if text, display := obs("http://loinc.org", "Body Height", "Body Height"); text != "Body Height" || display != "Body Height" {
		t.Errorf("LOINC display kept, text = %q, display = %q; want both kept", text, display)
	}
	if text, _ := obs("http://loinc.org", "Body Height", "Body Height of John Smith"); text == "Body Height of John Smith" {
		t.Errorf("a text other than the display is kept: %q", text)
	}
	// The display of another system is scrubbed after the text: the text
	// is scrubbed as it was.
	if text, display := obs("http://example.org/local", "Body Height", "Body Height"); text == "Body Height" || display == "Body Height" {
		t.Errorf("local coding: text = %q, display = %q; want both scrubbed", text, display)
	}
}
