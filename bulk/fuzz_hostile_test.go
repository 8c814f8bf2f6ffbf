package bulk

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzDecodeManifest feeds arbitrary manifests to DecodeManifest and
// CheckManifest: nothing panics, and an accepted manifest has only absolute
// http(s) URLs, types that are resource type names, and no repeated URL.
func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"transactionTime":"2026-01-01T00:00:00Z","requiresAccessToken":true,"output":[{"type":"Patient","url":"https://h/1.ndjson","count":2}],"error":[]}`))
	f.Add([]byte(`{"transactionTime":"2026-01-01T00:00:00Z","output":[{"type":"../../x","url":"https://h/1"}],"outcome":[{"type":"OperationOutcome","url":"/e"}]}`))
	f.Add([]byte(`{"transactionTime":"2026-01-01","output":[{"type":"Patient","url":"https://h/1"},{"type":"Patient","url":"https://h/1"}],"extension":[1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data, nil)
		if err != nil {
			return
		}
		if err := CheckManifest(m, ""); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, list := range [][]File{m.Output, m.Deleted, m.Error} {
			for _, fl := range list {
				if !strings.HasPrefix(fl.URL, "http://") && !strings.HasPrefix(fl.URL, "https://") {
					t.Fatalf("accepted URL %q", fl.URL)
				}
				if fl.Type != "" && safeName(fl.Type) != fl.Type {
					t.Fatalf("accepted type %q", fl.Type)
				}
				if seen[fl.URL] {
					t.Fatalf("accepted a repeated URL")
				}
				seen[fl.URL] = true
			}
		}
	})
}

// FuzzLineReader splits arbitrary input with a small line limit: every
// line returned is within the limit, non-blank, without its newline, and
// the lines are those of a plain split when no limit is hit.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n\n{\"b\":2}\r\n"), uint16(8))
	f.Add([]byte(strings.Repeat("x", 300)+"\nshort\n"), uint16(64))
	f.Add([]byte("no newline at the end"), uint16(4))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		limit := int(max%512) + 1
		lr := NewLineReader(bytes.NewReader(data), limit)
		var got [][]byte
		for lr.Next() {
			l := lr.Line()
			if len(l) > limit {
				t.Fatalf("line of %d bytes with limit %d", len(l), limit)
			}
			if len(bytes.TrimSpace(l)) == 0 || bytes.HasSuffix(l, []byte("\n")) {
				t.Fatalf("blank or unterminated line returned")
			}
			got = append(got, append([]byte(nil), l...))
		}
		if lr.Err() != nil {
			if !IsLimit(lr.Err()) {
				t.Fatalf("error %v", lr.Err())
			}
			return
		}
		var want [][]byte
		for _, l := range bytes.Split(data, []byte("\n")) {
			l = bytes.TrimRight(l, "\r")
			if len(bytes.TrimSpace(l)) > 0 {
				want = append(want, l)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d lines, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d differs", i+1)
			}
		}
	})
}
