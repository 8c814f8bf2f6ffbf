package anonymize

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/anonymize/scrub"
	"fhirdeid/internal/testshared"
)

// longitudinalScrubConfig is the longitudinal profile with free text
// scrubbed instead of removed, as the report of the scrub work recommends:
// the dateShift rules move before the free-text rules (so that Attachment
// and Annotation dates are shifted, not redacted by scrub), and every rule
// that redacts free text (Narrative, Attachment, Annotation.text,
// Reference.display, CodeableConcept.text, Coding.display, string,
// markdown) becomes scrub with "dates": "shift".
func longitudinalScrubConfig(t testing.TB) []byte {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(defaultconfig.Longitudinal(), &cfg); err != nil {
		t.Fatal(err)
	}
	rules := cfg["fhirPathRules"].([]any)
	path := func(r any) string { return r.(map[string]any)["path"].(string) }
	var dates, others []any
	for _, r := range rules {
		if r.(map[string]any)["method"] == "dateShift" {
			dates = append(dates, r)
		} else {
			others = append(others, r)
		}
	}
	scrubbed := []string{"nodesByType('Narrative')", "nodesByType('Attachment')", "nodesByType('Reference').display",
		"nodesByType('CodeableConcept').text", "nodesByType('Coding').display", "nodesByType('string')", "nodesByType('markdown')"}
	var out []any
	for _, r := range others {
		p := path(r)
		if p == "nodesByType('Narrative')" {
			out = append(out, dates...)
		}
		if p == "nodesByType('Annotation')" {
			out = append(out, map[string]any{"path": "nodesByType('Annotation').text", "method": "scrub", "dates": "shift"})
		}
		if slices.Contains(scrubbed, p) && r.(map[string]any)["method"] == "redact" {
			r = map[string]any{"path": p, "method": "scrub", "dates": "shift"}
		}
		out = append(out, r)
	}
	if len(out) != len(rules)+1 {
		t.Fatalf("rules %d -> %d: the longitudinal profile changed shape", len(rules), len(out))
	}
	cfg["fhirPathRules"] = out
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestScrubPhysioNetLongitudinal runs the PhysioNet deid development notes
// as DocumentReference attachments and as Observation.valueString of their
// corpus patient through the longitudinal profile with scrubbing (above),
// and checks that the spans the engine replaces are exactly the scrubber's
// (so package scrub's recall and retention figures hold for it) and that the
// notes' dates move with the patient's offset.
func TestScrubPhysioNetLongitudinal(t *testing.T) {
	dir := testshared.Dir(t, "data", "physionet-deid-dev")
	raw, err := os.ReadFile(filepath.Join(dir, "id.text"))
	if err != nil {
		t.Fatal(err)
	}
	notes := regexp.MustCompile(`(?s)START_OF_RECORD=(\d+)\|\|\|\|\d+\|\|\|\|\n(.*?)\|\|\|\|END_OF_RECORD`).FindAllStringSubmatch(string(raw), -1)
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
	shifted := 0
	for i, m := range notes {
		note := m[2]
		want := scrub.Detect(note, scrub.Options{})
		for _, form := range []string{"DocumentReference", "Observation"} {
			var res map[string]any
			if form == "DocumentReference" {
				res = map[string]any{"resourceType": "DocumentReference", "id": fmt.Sprint("d", i), "status": "current",
					"subject": map[string]any{"reference": "Patient/deid-" + m[1]},
					"content": []any{map[string]any{"attachment": map[string]any{"contentType": "text/plain", "data": base64.StdEncoding.EncodeToString([]byte(note))}}}}
			} else {
				res = map[string]any{"resourceType": "Observation", "id": fmt.Sprint("o", i), "status": "final", "code": map[string]any{"text": "nursing note"},
					"subject": map[string]any{"reference": "Patient/deid-" + m[1]}, "valueString": note}
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
	if shifted == 0 {
		t.Error("no date in the notes was shifted")
	}
	t.Logf("931 notes × 2 forms: the engine replaces exactly the scrubber's spans; %d dates shifted", shifted)
}
