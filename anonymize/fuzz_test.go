package anonymize

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzParseJSON checks that the configuration reader never panics, that it
// accepts every document encoding/json accepts (unless it has duplicate
// keys), and that it reads the same values.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":[1,2.5e3,-0,true,false,null,"x\u00e9\n"]}`, `{"a":{"b":{"c":[]}}}`, "\ufeff{\"a\":1}",
		`{"a":1,}`, `[1,2,]`, `{"a":1 /* c */}`, "{\"a\":1 // c\n}", `{"a":"\ud83d\ude00"}`, `{"a":"\ud83d"}`,
		`{"a":1,"a":2}`, `{"fhirPathRules":[{"path":"Patient.id","method":"redact"}]}`, `"\u0000"`, `01`, `1.`, `-`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseJSON(data)
		var want any
		stdErr := json.Unmarshal(bytes.TrimPrefix(data, []byte("\ufeff")), &want)
		if stdErr == nil && err != nil {
			// encoding/json accepts duplicate keys; nothing else may differ.
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.HasPrefix(se.Msg, "duplicate key") {
				t.Fatalf("rejects a document encoding/json accepts: %v", err)
			}
			return
		}
		if err != nil {
			return
		}
		// What we read must encode to JSON that means the same as the input
		// (when encoding/json could read the input).
		if stdErr == nil {
			var got any
			if err := json.Unmarshal(v.AppendJSON(nil), &got); err != nil {
				t.Fatalf("re-encoded value is not JSON: %v", err)
			}
			a, _ := json.Marshal(want)
			b, _ := json.Marshal(got)
			if !bytes.Equal(a, b) {
				t.Fatalf("values differ:\n%s\n%s", a, b)
			}
		}
		// The configuration loader must not panic on any parsed document.
		ParseConfig(data, Options{Compiler: permissiveCompiler, Rand: zeroRand()})
	})
}
