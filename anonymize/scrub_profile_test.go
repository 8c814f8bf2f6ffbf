package anonymize

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/anonymize/scrub"
	"fhirdeid/anonymize/scrub/deidcorpus"
)

// longitudinalScrubConfig is the longitudinal profile, which scrubs free
// text (its dateShift rules come before the free-text rules, so that
// Attachment and Annotation dates are shifted, and every rule on free text
// is scrub with "dates": "shift"; see defaultconfig's README).
func longitudinalScrubConfig(t testing.TB) []byte {
	t.Helper()
	data := defaultconfig.Longitudinal()
	c, err := ParseConfig(data, Options{Rand: zeroRand()})
	if err != nil {
		t.Fatal(err)
	}
	if !c.UsesScrub() {
		t.Fatal("the longitudinal profile does not scrub")
	}
	return data
}

// TestScrubPhysioNetLongitudinal runs the PhysioNet deid development notes
// as DocumentReference attachments and as Observation.valueString of their
// corpus patient through the longitudinal profile with scrubbing (above),
// measures recall and retention per PHI kind on the spans the engine
// replaced, for each form (failing below deidcorpus' floors), checks that
// those spans are exactly the scrubber's and that the notes' dates move with
// the patient's offset.
func TestScrubPhysioNetLongitudinal(t *testing.T) {
	notes := deidcorpus.Load(t)
	if len(notes) != 931 {
		t.Fatalf("%d notes, want 931", len(notes))
	}
	c, err := ParseConfig(longitudinalScrubConfig(t), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(c, EngineOptions{PreserveWhitespace: true})
	if err != nil {
		t.Fatal(err)
	}
	forms := []string{"DocumentReference", "Observation"}
	evals := map[string]*deidcorpus.Eval{}
	for _, form := range forms {
		evals[form] = deidcorpus.NewEval()
	}
	shifted := 0
	for i, nt := range notes {
		note := nt.Text
		want := scrub.Detect(note, scrub.Options{})
		for _, form := range forms {
			var res map[string]any
			patient := fmt.Sprint("Patient/deid-", nt.Patient)
			if form == "DocumentReference" {
				res = map[string]any{"resourceType": "DocumentReference", "id": fmt.Sprint("d", i), "status": "current",
					"subject": map[string]any{"reference": patient},
					"content": []any{map[string]any{"attachment": map[string]any{"contentType": "text/plain", "data": base64.StdEncoding.EncodeToString([]byte(note))}}}}
			} else {
				res = map[string]any{"resourceType": "Observation", "id": fmt.Sprint("o", i), "status": "final", "code": map[string]any{"text": "nursing note"},
					"subject": map[string]any{"reference": patient}, "valueString": note}
			}
			in, _ := json.Marshal(res)
			var evs []ScrubEvent
			ctx := WithScrubTrace(context.Background(), func(ev ScrubEvent) {
				if ev.Text == note {
					evs = append(evs, ev)
				}
			})
			out, _, err := e.AnonymizeJSON(ctx, in, FileContext{})
			if err != nil {
				t.Fatalf("note %d as %s: %v", i+1, form, err)
			}
			if !json.Valid(out) {
				t.Fatalf("note %d as %s: invalid JSON", i+1, form)
			}
			if len(evs) != 1 {
				t.Fatalf("note %d as %s: %d scrub events for the note, want 1", i+1, form, len(evs))
			}
			got := evs[0].Spans
			var replaced [][2]int
			for _, sp := range got {
				replaced = append(replaced, [2]int{sp.Start, sp.End})
			}
			evals[form].Add(i, note, nt.Gold, replaced)
			if len(got) != len(want) {
				t.Fatalf("note %d as %s: %d spans, the scrubber finds %d", i+1, form, len(got), len(want))
			}
			for k := range got {
				if got[k].Start != want[k].Start || got[k].End != want[k].End || got[k].Kind != want[k].Kind {
					t.Fatalf("note %d as %s: span %d differs from the scrubber's", i+1, form, k)
				}
				if got[k].Shifted {
					shifted++
				}
			}
		}
	}
	for _, form := range forms {
		title := "longitudinal " + form
		if form == "Observation" {
			title += ".valueString"
		} else {
			title += " attachment"
		}
		evals[form].Report(t, title)
		evals[form].Check(t, title)
	}
	if shifted == 0 {
		t.Error("no date in the notes was shifted")
	}
	t.Logf("931 notes × 2 forms: the engine replaces exactly the scrubber's spans; %d dates shifted", shifted)
}
