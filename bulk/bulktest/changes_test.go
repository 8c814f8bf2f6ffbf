package bulktest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
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

func TestChangesEndpoint(t *testing.T) {
	all := Synthetic(5, 1)
	s, err := New(Options{Resources: all})
	if err != nil {
		t.Fatal(err)
	}
	base := s.Start()
	defer s.Close()
	cs, _ := RandomChanges(all, 1, 3, 2, 1)
	var buf bytes.Buffer
	WriteChangeSet(&buf, cs)
	resp, err := http.Post(strings.TrimSuffix(base, "/fhir")+"/_bulktest/changes", "application/fhir+ndjson", &buf)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST changes: %d", resp.StatusCode)
	}
	n := 0
	s.eachResource(func([]byte) error { n++; return nil })
	if n != len(all)-2+1 {
		t.Errorf("%d resources after the change set, want %d", n, len(all)-1)
	}
	if dels := s.deletedSince(time.Now().Add(-time.Hour)); len(dels) != 2 {
		t.Errorf("deleted since an hour ago: %v", dels)
	}
	resp, _ = http.Post(strings.TrimSuffix(base, "/fhir")+"/_bulktest/changes", "application/fhir+ndjson", strings.NewReader("not json\n"))
	if resp.StatusCode != 400 {
		t.Errorf("a bad change set: %d", resp.StatusCode)
	}
}
