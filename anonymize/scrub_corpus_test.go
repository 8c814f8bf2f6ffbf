package anonymize

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"fhirdeid/anonymize/scrub"
	"fhirdeid/internal/testshared"
)

// TestScrubPhysioNetThroughEngine puts each PhysioNet deid development note
// in a DocumentReference attachment and in an Observation.valueString, runs
// them through an engine with scrub rules, and checks that the engine's
// output is exactly the scrubber's: the recall and retention measured by
// package scrub's TestPhysioNetDeid hold for the engine's output.
func TestScrubPhysioNetThroughEngine(t *testing.T) {
	dir := testshared.Dir(t, "data", "physionet-deid-dev")
	raw, err := os.ReadFile(filepath.Join(dir, "id.text"))
	if err != nil {
		t.Fatal(err)
	}
	notes := regexp.MustCompile(`(?s)START_OF_RECORD=\d+\|\|\|\|\d+\|\|\|\|\n(.*?)\|\|\|\|END_OF_RECORD`).FindAllStringSubmatch(string(raw), -1)
	if len(notes) != 931 {
		t.Fatalf("%d notes, want 931", len(notes))
	}
	e := newTestEngine(t, `{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"DocumentReference.content.attachment","method":"scrub"},
	  {"path":"Observation.value","method":"scrub"},
	  {"path":"Resource","method":"keep"}]}`)
	ctx := context.Background()
	for i, m := range notes {
		note := m[1]
		want := scrub.Scrub(note, scrub.Options{}).Text
		doc, _ := json.Marshal(map[string]any{"resourceType": "DocumentReference", "id": "d", "status": "current",
			"content": []any{map[string]any{"attachment": map[string]any{"contentType": "text/plain", "data": base64.StdEncoding.EncodeToString([]byte(note))}}}})
		out := scrubAnon(t, e, ctx, string(doc))
		att := out["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any)
		got, err := base64.StdEncoding.DecodeString(att["data"].(string))
		if err != nil || string(got) != want {
			t.Fatalf("note %d: the DocumentReference attachment differs from the scrubber's output", i+1)
		}
		obs, _ := json.Marshal(map[string]any{"resourceType": "Observation", "id": "o", "status": "final", "code": map[string]any{"text": "note"}, "valueString": note})
		out = scrubAnon(t, e, ctx, string(obs))
		// The engine trims string values as the reference implementation
		// does: compare with the trimmed note's scrubbing.
		if vs, _ := out["valueString"].(string); vs != scrub.Scrub(strings.TrimSpace(note), scrub.Options{}).Text {
			t.Fatalf("note %d: Observation.valueString differs from the scrubber's output", i+1)
		}
	}
}
