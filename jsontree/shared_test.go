package jsontree

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"fhirdeid/internal/testshared"
)

// syntheaLines returns every line of the synthea-100 NDJSON files, with the
// name of the file it came from, skipping the test when the data is absent.
func syntheaLines(tb testing.TB) (lines [][]byte, files []string) {
	tb.Helper()
	dir := testshared.Dir(tb, "data", "synthea-100")
	names, err := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(names)
	if len(names) == 0 {
		tb.Skip("no *.ndjson.gz in synthea-100")
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			lines = append(lines, bytes.Clone(sc.Bytes()))
			files = append(files, filepath.Base(name))
		}
		if err := sc.Err(); err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		zr.Close()
		f.Close()
	}
	return lines, files
}

// TestSyntheaRoundTrip parses every Synthea resource with one reused
// Parser and checks that compact serialization reproduces the line byte
// for byte.
func TestSyntheaRoundTrip(t *testing.T) {
	lines, files := syntheaLines(t)
	var p Parser
	var out []byte
	identical := 0
	for i, line := range lines {
		root, err := p.Parse(line)
		if err != nil {
			t.Fatalf("%s line %d: %v", files[i], i+1, err)
		}
		out = root.AppendJSON(out[:0])
		if bytes.Equal(out, line) {
			identical++
		} else if identical+10 > i {
			off := 0
			for off < len(out) && off < len(line) && out[off] == line[off] {
				off++
			}
			t.Errorf("%s: resource %d differs from input at byte %d", files[i], i, off)
		}
	}
	t.Logf("%d of %d Synthea lines are byte-identical after Parse+AppendJSON", identical, len(lines))
	if identical != len(lines) {
		t.Errorf("only %d of %d lines are byte-identical", identical, len(lines))
	}
}

// TestSharedMatchesEncodingJSON checks, on a sample of Synthea resources and
// on the FHIRPath suite's input resources, that the tree holds what
// encoding/json decodes.
func TestSharedMatchesEncodingJSON(t *testing.T) {
	lines, files := syntheaLines(t)
	docs := map[string][]byte{}
	for i := 0; i < len(lines); i += 25 {
		docs[files[i]+":"+strconv.Itoa(i)] = lines[i]
	}
	inputs, _ := filepath.Glob(filepath.Join(testshared.Dir(t, "conformance", "fhirpath-r4", "input-json"), "*.json"))
	if len(inputs) == 0 {
		t.Fatal("no FHIRPath input resources")
	}
	for _, name := range inputs {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		docs[filepath.Base(name)] = b
	}
	compacted := 0
	for name, doc := range docs {
		n, err := Parse(doc)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var want any
		dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(doc, []byte("\xEF\xBB\xBF"))))
		dec.UseNumber()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("%s: encoding/json: %v", name, err)
		}
		if !jsonEqual(toAny(n), want) {
			t.Errorf("%s: tree differs from encoding/json", name)
		}
		// json.Compact keeps the input's escapes; in documents without \u
		// or \/ escapes they are the minimal ones that AppendJSON writes.
		if bytes.Contains(doc, []byte(`\u`)) || bytes.Contains(doc, []byte(`\/`)) {
			continue
		}
		var std bytes.Buffer
		if err := json.Compact(&std, doc); err != nil {
			t.Fatalf("%s: json.Compact: %v", name, err)
		}
		if got := n.AppendJSON(nil); !bytes.Equal(got, std.Bytes()) {
			t.Errorf("%s: compact output differs from json.Compact", name)
		}
		compacted++
	}
	if compacted == 0 {
		t.Error("no document compared with json.Compact")
	}
	t.Logf("%d documents compared with encoding/json, %d with json.Compact", len(docs), compacted)
}
