package bulk

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzResourceType checks the cheap top-level scan against encoding/json:
// on every valid JSON object the two agree, and nothing panics.
func FuzzResourceType(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","id":"1"}`,
		`{"a":{"resourceType":"X"},"resourceType":"Y"}`,
		`{"a":"\"}","resourceType":"P\u0061t"}`,
		`{"a":[1,2,{"b":"]"}],"resourceType":"Q"}`,
		`{"resourceType":7}`,
		`[]`,
		`{"x":"\\","resourceType":"Z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := ResourceType(line)
		id, idErr := topLevelString(line, "id")
		_ = id
		_ = idErr
		if !json.Valid(line) {
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(line, &obj) != nil {
			if err == nil {
				t.Fatalf("non-object accepted: %q", got)
			}
			return
		}
		raw, ok := obj["resourceType"]
		var want string
		if ok && json.Unmarshal(raw, &want) == nil {
			// Duplicate keys: encoding/json keeps the last, the scan the
			// first; skip those.
			if countKey(line, "resourceType") > 1 {
				return
			}
			if err != nil || got != want {
				t.Fatalf("ResourceType = %q, %v; encoding/json says %q", got, err, want)
			}
			return
		}
		if err == nil && countKey(line, "resourceType") <= 1 {
			t.Fatalf("ResourceType = %q without a top-level string resourceType", got)
		}
	})
}

// countKey counts top-level members named key (by decoding as a stream).
func countKey(line []byte, key string) int {
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return n
		}
		if k == key {
			n++
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return n
		}
	}
	return n
}
