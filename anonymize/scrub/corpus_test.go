package scrub

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"fhirdeid/anonymize/scrub/deidcorpus"
)

// deidNote is one note of the PhysioNet deid corpus with its gold spans.
type deidNote struct {
	patient, note int
	text          string
	gold          [][2]int
}

// loadDeidCorpus reads the PhysioNet deid development notes.
func loadDeidCorpus(tb testing.TB) []deidNote {
	var notes []deidNote
	for _, n := range deidcorpus.Load(tb) {
		notes = append(notes, deidNote{patient: n.Patient, note: n.Note, text: n.Text, gold: n.Gold})
	}
	return notes
}

// TestPhysioNetDeid measures recall and retention on the PhysioNet deid
// development notes (see package deidcorpus for the definitions) and fails
// below deidcorpus.RecallFloor or deidcorpus.RetentionFloor.
// FHIRDEID_SCRUB_DEBUG=1 logs the missed spans and lost words,
// FHIRDEID_SCRUB_DEBUG=ctx each missed span in its context (note text: for
// a developer's terminal only).
func TestPhysioNetDeid(t *testing.T) {
	notes := loadDeidCorpus(t)
	ev := deidcorpus.NewEval()
	missedClass := map[string]int{}
	for idx, nt := range notes {
		res := Scrub(nt.text, Options{})
		var replaced [][2]int
		for _, sp := range res.Spans {
			replaced = append(replaced, [2]int{sp.Start, sp.End})
		}
		ev.Add(idx, nt.text, nt.gold, replaced)
		// The output must be the input with the spans replaced.
		if err := checkRendered(nt.text, res); err != nil {
			t.Fatalf("patient %d note %d: %v", nt.patient, nt.note, err)
		}
	}
	for _, m := range ev.MissedAt {
		text := notes[m.Note].text
		g := m.Span
		missedClass[missClass(text[g[0]:g[1]])]++
		if os.Getenv("FHIRDEID_SCRUB_DEBUG") == "ctx" {
			a, b := max(0, g[0]-40), min(len(text), g[1]+30)
			t.Logf("miss %s %q [%s] %q", deidcorpus.Kind(text[g[0]:g[1]]), text[a:g[0]], text[g[0]:g[1]], text[g[1]:b])
		}
	}
	ev.Report(t, "scrub.Scrub")
	t.Logf("missed spans by what they are made of: %v", missedClass)
	if os.Getenv("FHIRDEID_SCRUB_DEBUG") != "" {
		dump := func(title string, m map[string]int) {
			type kv struct {
				k string
				v int
			}
			var l []kv
			for k, v := range m {
				l = append(l, kv{k, v})
			}
			sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
			var b strings.Builder
			for _, x := range l {
				fmt.Fprintf(&b, "%q:%d ", x.k, x.v)
			}
			t.Logf("%s: %s", title, b.String())
		}
		dump("missed", ev.Missed)
		dump("lost", ev.Lost)
	}
	ev.Check(t, "scrub.Scrub")
}

// checkRendered verifies that res.Text is text with each span replaced by
// its placeholder (or a shifted date).
func checkRendered(text string, res Result) error {
	var b strings.Builder
	pos := 0
	for _, sp := range res.Spans {
		if sp.Start < pos || sp.End > len(text) || sp.Start >= sp.End {
			return fmt.Errorf("span [%d,%d) out of order or range", sp.Start, sp.End)
		}
		b.WriteString(strings.ToValidUTF8(text[pos:sp.Start], "\uFFFD"))
		if !sp.Shifted {
			b.WriteString(sp.Kind.Placeholder())
		} else {
			return nil // shifted text is checked by its own tests
		}
		pos = sp.End
	}
	b.WriteString(strings.ToValidUTF8(text[pos:], "\uFFFD"))
	if b.String() != res.Text {
		return fmt.Errorf("output is not the input with its spans replaced")
	}
	return nil
}

// missClass says what a missed gold span is made of: only words of the
// English or clinical lists that are not names ("common words"), only
// numbers, or something else.
func missClass(span string) string {
	v := loadVocab()
	words, common, nums := 0, 0, 0
	for _, w := range strings.FieldsFunc(strings.ToLower(span), func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '\'') }) {
		words++
		switch f := v.flags(w); {
		case isAllDigits(strings.Trim(w, "'")):
			nums++
		case f&(wEnglish|wClinical|wStop) != 0 && f&(wName|wProper) == 0:
			common++
		}
	}
	switch {
	case words > 0 && common == words:
		return "common words"
	case words > 0 && nums == words:
		return "numbers"
	case words > 0 && common+nums == words:
		return "common words and numbers"
	}
	return "other"
}
