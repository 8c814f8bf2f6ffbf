package scrub

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPatterns(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"admitted 7/22, seen 7-22-92 and 07/22/1992", "admitted [DATE], seen [DATE] and [DATE]"},
		{"on July 22nd and 22Jul and Jul 22, 1992", "on [DATE] and [DATE] and [DATE]"},
		{"s/p MI '92, CABG 1995, cva 74'.", "s/p MI [DATE], CABG [DATE], cva [DATE]."},
		{"due 2020-01-31 or nov. 2016", "due [DATE] or [DATE]"},
		{"call (410) 555-1234 or 410.555.1234, fax 410-555-9876 x12", "call [PHONE] or [PHONE], fax [PHONE]"},
		{"SSN 123-45-6789, MRN: 00123456, acct #A-4411", "SSN [ID], MRN: [ID], acct #[ID]"},
		{"mail j.smith+x@example.org or see https://example.org/a?b=1.", "mail [EMAIL] or see [URL]."},
		{"from 192.168.10.12 via www.example.com", "from [IP] via [URL]"},
		{"lives at 1234 North Oak Street, Apt 5", "lives at [ADDRESS]"},
		{"a 92 yo woman, age 95, 91-year-old", "a [AGE>89] woman, age [AGE>89], [AGE>89]"},
		{"given at 14:30 and 2 pm", "given at [TIME] and [TIME]"},
		{"BP 120/80, HR 88, 2.5 mg, 1/2 NS, K 3.8, temp 98.6", "BP 120/80, HR 88, 2.5 mg, [DATE] NS, K 3.8, temp 98.6"},
		{"heparin 10000 units", "heparin 10000 units"},
	} {
		if got := Scrub(c.in, Options{}).Text; got != c.want {
			t.Errorf("Scrub(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestVocabulary(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"Seen by Dr. Healey and dr small today.", "Seen by Dr. [NAME] and dr [NAME] today."},
		{"Husband Rich Martino in to visit.", "Husband [NAME] in to visit."},
		{"pt is a 57yo f followed by dr healey; arrived from kernan", "pt is a 57yo f followed by dr [NAME]; arrived from [LOCATION]"},
		{"Transferred to Calvert Hospital, then to Quartermain 3.", "Transferred to [LOCATION], then to [NAME]."},
		{"Dr. Art White signed. Q. Lander aware.", "Dr. [NAME] signed. [NAME] aware."},
		{"PT ON LASIX, HEPARIN AND COUMADIN; FOLEY DRAINING.", "PT ON LASIX, HEPARIN AND COUMADIN; FOLEY DRAINING."},
		{"E. coli in the sputum, spoke to wife.", "E. coli in the sputum, spoke to wife."},
		{"Went to the University of Maryland.", "Went to the [LOCATION]."},
		// A name before its relation; an English word only in parentheses.
		{"spoke with sue (dtr) re plan", "spoke with [NAME] (dtr) re plan"},
		{"Mary, pt's wife, called. plan, pt's wife agrees", "[NAME], pt's wife, called. plan, pt's wife agrees"},
		{"J.Smith, RN aware; E.Coli in urine", "[NAME], RN aware; E.Coli in urine"},
		// Residence cues; a generic nursing home is no institution.
		{"pt is resident of brookline, lives in a nursing home", "pt is resident of [LOCATION], lives in a nursing home"},
		{"LIVES IN ELDERLY HOUSING. NATIVE OF IRELAND", "LIVES IN ELDERLY HOUSING. NATIVE OF [LOCATION]"},
	} {
		if got := Scrub(c.in, Options{}).Text; got != c.want {
			t.Errorf("Scrub(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

// TestSafeWords: words of an export's drug codes are kept as clinical by
// the vocabulary layer, while the contextual layer still removes a patient's
// name that happens to be one of them.
func TestSafeWords(t *testing.T) {
	in := "started Aggrestat drip per Dr. Quillfeather; ambisone held"
	if got := Scrub(in, Options{}).Text; got != "started [NAME] drip per Dr. [NAME]; [NAME] held" {
		t.Fatalf("without safe words: %q (the test needs words no list knows)", got)
	}
	safe := NewWords()
	safe.AddText("Aggrestat 12.5 MG/250ML Injection")
	safe.AddText("AmBisome") // a different word: "ambisone" stays unknown
	if safe.Len() != 3 {
		t.Errorf("%d safe words, want 3 (aggrestat, injection, ambisome; mg is short, 250ml has digits)", safe.Len())
	}
	if got := Scrub(in, Options{Safe: safe}).Text; got != "started Aggrestat drip per Dr. [NAME]; [NAME] held" {
		t.Errorf("with safe words: %q", got)
	}
	ids := NewIdentifiers()
	ids.AddName("Aggrestat")
	if got := Scrub(in, Options{Safe: safe, Identifiers: []*Identifiers{ids}}).Text; strings.Contains(got, "Aggrestat") {
		t.Errorf("a patient's own name survives as a safe word: %q", got)
	}
}

func TestContextual(t *testing.T) {
	ids := NewIdentifiers()
	ids.AddName("Will Brown")
	ids.AddAddress("12 Green Lane")
	ids.AddAddress("Springfield")
	ids.AddPhone("+1 (410) 555-1234")
	ids.AddIdentifier("MRN-0042")
	in := "BROWN, will came from 12 green lane, springfield; ph 4105551234; mrn 0042. Brown stool."
	res := Scrub(in, Options{Identifiers: []*Identifiers{nil, ids}})
	low := strings.ToLower(res.Text)
	for _, phi := range []string{"brown", "will", "green", "springfield", "4105551234", "0042"} {
		if strings.Contains(low, phi) {
			t.Errorf("%q survives: %q", phi, res.Text)
		}
	}
	ctx := 0
	for _, sp := range res.Spans {
		if sp.Layer == LayerContext {
			ctx++
		}
	}
	if ctx == 0 {
		t.Errorf("no span from the contextual layer: %+v", res.Spans)
	}
	if !strings.Contains(res.Text, "stool") {
		t.Errorf("clinical text lost: %q", res.Text)
	}
	// Without the set, the English words stay.
	if got := Scrub("Brown stool, will call.", Options{}).Text; got != "Brown stool, will call." {
		t.Errorf("without identifiers: %q", got)
	}
}

func TestShiftDates(t *testing.T) {
	opts := Options{ShiftDays: func() int { return 10 }, ReferenceYear: 2001}
	for _, c := range []struct{ in, want string }{
		{"on 7/22/1992 and 12/25/99", "on 8/1/1992 and 1/4/00"},
		{"on 2019-12-25", "on 2020-01-04"},
		{"on July 22nd, 1992 and 30 Dec", "on August 1, 1992 and Jan 9"},
		{"on 7/22 and in 1992", "on 8/1 and in [DATE]"},
	} {
		res := Scrub(c.in, opts)
		if res.Text != c.want {
			t.Errorf("Scrub(%q) = %q, want %q", c.in, res.Text, c.want)
		}
	}
}

func TestMarkup(t *testing.T) {
	html := `<div xmlns="http://www.w3.org/1999/xhtml"><!-- Dr. Healey --><p title="Dr. Healey" class="Healey">Dr. Healey &amp; Mrs Vasquez<br/>on 7/22/2019</p><![CDATA[call 410-555-1234]]></div>`
	res := ScrubMarkup(html, HTML, Options{})
	want := `<div xmlns="http://www.w3.org/1999/xhtml"><!-- Dr. Healey --><p title="Dr. [NAME]" class="Healey">Dr. [NAME] &amp; Mrs [NAME]<br/>on [DATE]</p><![CDATA[call [PHONE]]]></div>`
	if res.Text != want {
		t.Errorf("HTML:\n got %s\nwant %s", res.Text, want)
	}
	// A replacement must not form "]]>" with the text after it: XML forbids
	// it in text, and it would end a CDATA section early.
	for _, tc := range []struct{ in, want string }{
		{`<p>Dr. Healey]></p>`, `<p>Dr. [NAME]]&gt;</p>`},
		{`<p><![CDATA[Dr. Healey]>]]></p>`, `<p><![CDATA[Dr. [NAME]]]]><![CDATA[>]]></p>`},
		{`<p>Dr. Healey]]</p>`, `<p>Dr. [NAME]]]</p>`},
	} {
		if got := ScrubMarkup(tc.in, HTML, Options{}).Text; got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
	styled := `<html><head><style>p { font-family: Arial }</style><script>var Healey = 1;</script></head><body><p>Dr. Healey</p></body></html>`
	if got := ScrubMarkup(styled, HTML, Options{}).Text; got != `<html><head><style>p { font-family: Arial }</style><script>var Healey = 1;</script></head><body><p>Dr. [NAME]</p></body></html>` {
		t.Errorf("HTML with style and script: %s", got)
	}
	rtf := `{\rtf1\ansi{\fonttbl{\f0 Healey Sans;}}\f0\fs20 Seen by Dr. Healey on 7/22/2019.\par Call 410-555-1234.}`
	res = ScrubMarkup(rtf, RTF, Options{})
	wantRTF := `{\rtf1\ansi{\fonttbl{\f0 Healey Sans;}}\f0\fs20 Seen by Dr. [NAME] on [DATE].\par Call [PHONE].}`
	if res.Text != wantRTF {
		t.Errorf("RTF:\n got %s\nwant %s", res.Text, wantRTF)
	}
	for _, ct := range []struct {
		ct   string
		f    Format
		text bool
	}{{"text/plain; charset=UTF-8", Plain, true}, {"TEXT/HTML", HTML, true}, {"application/rtf", RTF, true}, {"text/rtf", RTF, true}, {"application/pdf", Plain, false}, {"image/png", Plain, false}} {
		if f, ok := FormatOf(ct.ct); f != ct.f || ok != ct.text {
			t.Errorf("FormatOf(%q) = %v, %v", ct.ct, f, ok)
		}
	}
}

// FuzzScrub checks that the scrubber never panics, that its output is valid
// UTF-8 made of the input with its spans replaced, that the spans are in
// order within the input, and that well-formed XHTML stays well-formed.
func FuzzScrub(f *testing.F) {
	for _, s := range []string{
		"Seen by Dr. Healey on 7/22/2019, call 410-555-1234.",
		`<div xmlns="http://www.w3.org/1999/xhtml"><p title="Dr. Smith">Mrs &amp; Jones 7/22</p></div>`,
		`{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Dr. Smith\'e9 \u1234? 7/22\par}`,
		"\xff\xfe Dr. \xc3 Smith 7/\xe2\x82",
		strings.Repeat("A", 70000) + " 7/22",
		strings.Repeat("7/", 5000),
		strings.Repeat("A.", 20000), // a dotted run that is no host name: linear, not quadratic
		"'92 '", "1-", "(410) 555-", "a@", "@b.com", "http://", "St. ", "Dr.", "u of", "12 Oak",
	} {
		f.Add(s)
	}
	ids := NewIdentifiers()
	ids.AddName("Healey Smith")
	ids.AddPhone("410-555-1234")
	ids.AddAddress("12 Oak Street")
	f.Fuzz(func(t *testing.T, in string) {
		for _, opts := range []Options{{}, {Identifiers: []*Identifiers{ids}, ShiftDays: func() int { return -400 }}} {
			res := Scrub(in, opts)
			if !utf8.ValidString(res.Text) {
				t.Fatalf("output is not valid UTF-8")
			}
			if opts.ShiftDays == nil {
				if err := checkRendered(in, res); err != nil {
					t.Fatal(err)
				}
			}
			prev := 0
			for _, sp := range res.Spans {
				if sp.Start < prev || sp.End > len(in) || sp.Start >= sp.End {
					t.Fatalf("bad span %+v", sp)
				}
				prev = sp.End
			}
			for _, fm := range []Format{HTML, RTF} {
				r := ScrubMarkup(in, fm, opts)
				if !utf8.ValidString(r.Text) {
					t.Fatalf("format %d: output is not valid UTF-8", fm)
				}
			}
		}
		// A set that matches none of the text's context hashes changes
		// nothing in it.
		if len(in) <= 4096 {
			for _, fm := range []Format{Plain, HTML, RTF} {
				if !ids.MatchesAny(ContextHashes(in, fm, nil)) {
					with, without := ScrubMarkup(in, fm, Options{Identifiers: []*Identifiers{ids}}), ScrubMarkup(in, fm, Options{})
					if with.Text != without.Text || !slices.Equal(with.Spans, without.Spans) {
						t.Fatalf("format %d: the set changes the result but matches no context hash", fm)
					}
				}
			}
		}
		if utf8.ValidString(in) && wellFormed(in) {
			out := ScrubMarkup(in, HTML, Options{}).Text
			if !wellFormed(out) {
				t.Fatalf("well-formed XML became malformed:\n%q\n%q", in, out)
			}
		}
	})
}

func wellFormed(s string) bool {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	n := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return n > 0
		}
		if err != nil {
			return false
		}
		if _, ok := tok.(xml.StartElement); ok {
			n++
		}
	}
}

// TestConcurrent scrubs from several goroutines (the engine does) and
// checks each result against a sequential one: the pooled state and its word
// cache are per call.
func TestConcurrent(t *testing.T) {
	texts := []string{
		"Seen by Dr. Healey on 7/22/2019, call 410-555-1234.",
		strings.Repeat("Pt stable, wife Mary at bedside, MRN 00123456. ", 200),
		"<p>Mrs Vasquez &amp; son</p>",
		"BROWN, will came from 12 green lane",
	}
	ids := NewIdentifiers()
	ids.AddName("Will Brown")
	want := make([]string, len(texts))
	for i, s := range texts {
		want[i] = ScrubMarkup(s, HTML, Options{Identifiers: []*Identifiers{ids}}).Text
	}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			var err error
			for n := 0; n < 50; n++ {
				i := (n + g) % len(texts)
				if got := ScrubMarkup(texts[i], HTML, Options{Identifiers: []*Identifiers{ids}}).Text; got != want[i] {
					err = fmt.Errorf("text %d differs when scrubbed concurrently", i)
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestSharedIdentifiers checks that a shared set removes a practitioner's or
// an organisation's whole name and its uncommon words, not its common
// words alone.
func TestSharedIdentifiers(t *testing.T) {
	x := NewSharedIdentifiers()
	x.AddName("Will Zanetti")
	x.AddName("General Hospital of Springfield")
	got := Scrub("will call back; general condition good; seen at general hospital of springfield by will zanetti", Options{Identifiers: []*Identifiers{x}}).Text
	want := "will call back; general condition good; seen at [NAME] by [NAME]"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestIdentifierFilter checks the filter in front of the maps of an
// Identifiers set: every key of the maps passes it, through the growths of
// the filter, and most other hashes do not.
func TestIdentifierFilter(t *testing.T) {
	x := NewIdentifiers()
	for i := range 3000 {
		x.AddName(fmt.Sprintf("Given%d Family%d", i, i))
		x.AddPhone(fmt.Sprintf("555-%03d-%04d", i%1000, i))
		x.AddIdentifier(fmt.Sprintf("MRN-%06d", i))
		x.AddAddress(fmt.Sprintf("%d Elm%d Street", 100+i, i))
	}
	if len(x.filter)*64 < 16*x.n {
		t.Fatalf("filter of %d bits for %d entries", len(x.filter)*64, x.n)
	}
	keys := 0
	for _, m := range []map[uint64]Kind{x.words, x.seqs, x.ids} {
		for h := range m {
			keys++
			if !x.mayHave(h) {
				t.Fatalf("key %x not in the filter", h)
			}
		}
	}
	for h := range x.starts {
		if !x.mayHave(h) {
			t.Fatalf("start %x not in the filter", h)
		}
	}
	passed := 0
	for i := range 100000 {
		if x.mayHave(x.h(fmt.Sprintf("other%d", i))) {
			passed++
		}
	}
	if passed > 10000 {
		t.Errorf("%d of 100000 other hashes pass the filter of %d keys", passed, keys)
	}
	// And the scrubber still finds them all.
	out := Scrub("Seen by Given17 Family17 at 555-017-0017, MRN-000017, 117 Elm17 Street.", Options{Identifiers: []*Identifiers{x}})
	for _, w := range []string{"Given17", "Family17", "0017", "000017", "Elm17"} {
		if strings.Contains(out.Text, w) {
			t.Errorf("%q left in %q", w, out.Text)
		}
	}
}

// A set's content does not depend on the order of its additions: a word
// that is part of a name and of an address, or a number that is a phone
// number and an identifier, gets one kind whichever came first (the first
// pass adds the resources of several files at once, in no fixed order).
func TestIdentifiersOrderIndependent(t *testing.T) {
	adds := []func(*Identifiers){
		func(x *Identifiers) { x.AddName("Springfield Clinic") },
		func(x *Identifiers) { x.AddAddress("Springfield") },
		func(x *Identifiers) { x.AddAddress("4105 Main Street") },
		func(x *Identifiers) { x.AddPhone("+1 410 555 1234") },
		func(x *Identifiers) { x.AddIdentifier("4105551234") },
		func(x *Identifiers) { x.AddName("Dr Main") },
	}
	in := "Seen at Springfield Clinic, springfield; call 4105551234 re 4105; Main St, dr main."
	for _, shared := range []bool{false, true} {
		var res [2]Result
		for perm := range res {
			x := NewIdentifiers()
			if shared {
				x = NewSharedIdentifiers()
			}
			for i := range adds {
				j := i
				if perm == 1 {
					j = len(adds) - 1 - i
				}
				adds[j](x)
			}
			res[perm] = Scrub(in, Options{Identifiers: []*Identifiers{x}})
		}
		if res[0].Text == in {
			t.Fatalf("shared %v: nothing scrubbed: the test checks nothing", shared)
		}
		if res[1].Text != res[0].Text || len(res[1].Spans) != len(res[0].Spans) {
			t.Fatalf("shared %v: one order gives %q, the other %q", shared, res[1].Text, res[0].Text)
		}
		for i := range res[0].Spans {
			if res[1].Spans[i].Kind != res[0].Spans[i].Kind {
				t.Fatalf("shared %v: span %d is %v in one order, %v in the other", shared, i, res[1].Spans[i].Kind, res[0].Spans[i].Kind)
			}
		}
	}
}

// TestContextHashes checks ContextHashes and MatchesAny against the
// scrubber: a set built from parts of a text (its words, runs of words,
// numbers joined by punctuation) that changes the text's result must match
// one of its hashes, and one that matches none must change nothing.
func TestContextHashes(t *testing.T) {
	texts := []string{
		"Seen by Dr. Healey on 7/22/2019, call 410-555-1234.",
		"Body Height",
		"Patient John Jacob Smith-Jones lives at 12 Green Lane, Springfield MA 01101.",
		"MRN: AB-0042/17 (ref #99812) phone (410) 555 1234 ext 12",
		"BROWN, will came from 12 green lane, springfield; Brown stool.",
		`<div xmlns="http://www.w3.org/1999/xhtml"><p title="Dr. Smith">Mrs &amp; Jones of 12 Oak Street</p></div>`,
		`{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Dr. Smith\'e9 lives on Oak Street\par}`,
		"O'Brien's daughter Ann-Marie visited; José Núñez called 555-0199.",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	matched, unmatched := 0, 0
	for _, text := range texts {
		words := strings.FieldsFunc(text, func(r rune) bool { return r == ' ' || r == ',' || r == ';' || r == '<' || r == '>' || r == '"' })
		for trial := 0; trial < 200; trial++ {
			x := NewIdentifiers()
			// One to three parts of the text, or a word it lacks.
			for p := 0; p < 1+rng.IntN(3); p++ {
				i := rng.IntN(len(words))
				j := min(len(words), i+1+rng.IntN(4))
				part := strings.Join(words[i:j], " ")
				switch rng.IntN(5) {
				case 0:
					x.AddName(part)
				case 1:
					x.AddAddress(part)
				case 2:
					x.AddPhone(part)
				case 3:
					x.AddIdentifier(part)
				default:
					x.AddName("Zebedee Quux")
				}
			}
			for _, f := range []Format{Plain, HTML, RTF} {
				hs := ContextHashes(text, f, nil)
				with := ScrubMarkup(text, f, Options{Identifiers: []*Identifiers{x}})
				without := ScrubMarkup(text, f, Options{})
				same := with.Text == without.Text && slices.Equal(with.Spans, without.Spans)
				if x.MatchesAny(hs) {
					matched++
					continue
				}
				unmatched++
				if !same {
					t.Fatalf("format %d, %q: the set changes the result (%q, not %q) but matches none of its context hashes", f, text, with.Text, without.Text)
				}
			}
		}
	}
	// Both outcomes occur, or the test proves nothing.
	if matched == 0 || unmatched == 0 {
		t.Fatalf("matched %d, unmatched %d: the sets do not exercise both cases", matched, unmatched)
	}
	// A set holding a word of the text matches it; an empty one never.
	x := NewIdentifiers()
	x.AddName("Healey")
	if !x.MatchesAny(ContextHashes(texts[0], Plain, nil)) {
		t.Errorf("a set with the name Healey matches none of the hashes of a text naming Dr. Healey")
	}
	if NewIdentifiers().MatchesAny(ContextHashes(texts[0], Plain, nil)) {
		t.Errorf("an empty set matches")
	}
}
