package bulktest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestRandomChanges(t *testing.T) {
	all := Synthetic(30, 5)
	cs, err := RandomChanges(all, 9, 50, 20, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Upsert) != 70 || len(cs.Delete) != 20 {
		t.Fatalf("%d upserts, %d deletions", len(cs.Upsert), len(cs.Delete))
	}
	orig := map[string][]byte{}
	for _, l := range all {
		var k struct{ ResourceType, ID string }
		json.Unmarshal(l, &k)
		orig[k.ResourceType+"/"+k.ID] = l
	}
	news := 0
	for _, u := range cs.Upsert {
		var k struct{ ResourceType, ID string }
		json.Unmarshal(u, &k)
		o, ok := orig[k.ResourceType+"/"+k.ID]
		if !ok {
			news++
			continue
		}
		if bytes.Equal(o, u) {
			t.Errorf("update of %s/%s changes nothing", k.ResourceType, k.ID)
		}
	}
	if news != 20 {
		t.Errorf("%d new resources, want 20", news)
	}
	for _, d := range cs.Delete {
		if strings.HasPrefix(d, "Patient/") || orig[d] == nil {
			t.Errorf("deletion %s", d)
		}
	}
	again, _ := RandomChanges(all, 9, 50, 20, 20)
	if !reflect.DeepEqual(cs, again) {
		t.Error("the same seed gave another change set")
	}
	var buf bytes.Buffer
	if err := WriteChangeSet(&buf, cs); err != nil {
		t.Fatal(err)
	}
	back, err := ReadChangeSet(&buf)
	if err != nil || !reflect.DeepEqual(back, cs) {
		t.Fatalf("change set round trip: %v", err)
	}
	if _, err := ReadChangeSet(strings.NewReader("{\"id\":\"x\"}\n")); err == nil {
		t.Error("a line without resourceType was accepted")
	}
}
