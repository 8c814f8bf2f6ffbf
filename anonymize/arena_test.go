package anonymize

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"fhirdeid/jsontree"
)

// The values that methods make (shifted dates, hashes) live in memory that
// AppendAnonymizedJSON reuses from call to call. Its output must equal
// that of Anonymize on a parsed tree, whose values are fresh strings, for a
// resource whose made values fill several parts of that memory, called
// again and again with resources in between (a string of an earlier call
// overwritten would show).
func TestMethodTextReused(t *testing.T) {
	e := newTestEngine(t, rules(
		`{"path": "Resource.id", "method": "cryptoHash"}`,
		`{"path": "nodesByType('Reference').reference", "method": "cryptoHash"}`,
		`{"path": "nodesByType('dateTime')", "method": "dateShift"}`,
	))
	ctx := WithNow(context.Background(), today)
	big := func(n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, `{"resourceType":"Encounter","id":"enc-%d","status":"finished","subject":{"reference":"Patient/p-%d"},"statusHistory":[`, n, n%3)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"status":"arrived","period":{"start":"2019-%02d-%02dT10:%02d:00Z","end":"2020-01-02T11:00:00+02:00"}}`, i%12+1, i%28+1, i%60)
		}
		b.WriteString(`],"participant":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"individual":{"reference":"Practitioner/pr-%d"}}`, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	want := func(in string) string {
		root, err := jsontree.Parse([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Anonymize(ctx, root, FileContext{}); err != nil {
			t.Fatal(err)
		}
		return string(root.AppendJSON(nil))
	}
	var dst []byte
	for round := range 3 {
		for _, n := range []int{3000, 1, 700, 3000} {
			in := big(n + round)
			var err error
			dst, _, err = e.AppendAnonymizedJSON(ctx, dst[:0], []byte(in), FileContext{})
			if err != nil {
				t.Fatal(err)
			}
			if got, w := string(dst), want(in); got != w {
				t.Fatalf("round %d, %d entries: AppendAnonymizedJSON and Anonymize differ (%d and %d bytes)", round, n, len(got), len(w))
			}
		}
	}
	if !strings.Contains(string(dst), `"start":"20`) {
		t.Fatal("no shifted date in the output: the test checks nothing")
	}
}
