package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"fhirdeid/internal/synth"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// A Patient and an Observation whose note names the patient in capitals:
// only the contextual layer, from the first pass, removes "BAKER".
const (
	firstPassPatient = `{"resourceType":"Patient","id":"p1","name":[{"family":"Baker","given":["Wendy"]}],"birthDate":"1970-03-04"}`
	firstPassNote    = `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"note"},"subject":{"reference":"Patient/p1"},` +
		`"note":[{"text":"PT BAKER SEEN TODAY, BP STABLE, TOLERATING DIET."}]}`
)

// writeFiles creates dir with the files named and holding as in files.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnonymizeScrubFirstPass checks that "anonymize" reads the identifier
// types before it de-identifies: the note of an Observation, in a file that
// sorts (and is processed) before the Patient's, loses the patient's family
// name even though it is an English word in an all-capital note, which only
// the contextual layer recognises; through standard input (no first pass)
// the command warns, and the same name survives.
func TestAnonymizeScrubFirstPass(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	patient, obs := firstPassPatient, firstPassNote
	writeFiles(t, in, map[string]string{"a-Observation.ndjson": obs + "\n", "z-Patient.ndjson": patient + "\n"})
	code, _, errs := runCmd(t, "", nil, "anonymize", "--profile", "longitudinal", "-i", in, "-o", out, "-b", "-v", "--today", "2026-06-01")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "identifiers of 1 patients collected from 2 files") {
		t.Errorf("no first pass reported: %s", errs)
	}
	got := readNDJSON(t, filepath.Join(out, "a-Observation.ndjson"))[0]
	if strings.Contains(got, "BAKER") || !strings.Contains(got, "[NAME]") || !strings.Contains(got, "TOLERATING DIET") {
		t.Errorf("note not scrubbed with the patient's identifiers: %s", got)
	}

	code, stdout, errs := runCmd(t, patient+"\n"+obs+"\n", nil, "anonymize", "--profile", "longitudinal", "--today", "2026-06-01", "-")
	if code != 0 {
		t.Fatalf("stdin: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "contextual layer") {
		t.Errorf("no warning for standard input: %s", errs)
	}
	if !strings.Contains(stdout, "BAKER") {
		t.Errorf("standard input scrubbed with identifiers it cannot have collected: %s", stdout)
	}

	// safe-harbor does not scrub: no first pass.
	code, _, errs = runCmd(t, "", nil, "anonymize", "-i", in, "-o", filepath.Join(dir, "sh"), "-b", "-v")
	if code != 0 || strings.Contains(errs, "identifiers of") {
		t.Errorf("safe-harbor: exit %d, %s", code, errs)
	}
}

// TestAnonymizeScrubPlantedSynthea100 plants each synthea-100 patient's
// names, MRN, phone, address and birth date in notes of its Conditions and
// Observations (Annotation.text) and DiagnosticReports (a text/plain
// presentedForm), runs "fhirdeid anonymize --profile longitudinal" over the
// folder, and checks with the leak checker that none of the planted values
// survives in any output, while the notes' clinical words do.
func TestAnonymizeScrubPlantedSynthea100(t *testing.T) {
	if testing.Short() {
		t.Skip("de-identifies all of synthea-100")
	}
	src := testshared.Dir(t, "data", "synthea-100")
	// This test grows the test process by ~150 MB; a child started
	// afterwards (vfork) reports it as its own peak RSS, so this file's
	// name sorts after export_hostile_test.go, whose RSS limits it would
	// break, and the memory is given back when it ends.
	t.Cleanup(debug.FreeOSMemory)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(src, "*.ndjson.gz"))
	if len(files) == 0 {
		t.Fatal("no synthea-100 files")
	}
	notes := map[string][]string{} // patient id → notes
	var ids []string
	for _, line := range readNDJSON(t, filepath.Join(src, "Patient.000.ndjson.gz")) {
		root, err := jsontree.Parse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		var given, family, mrn, phone, addr, city string
		if n := root.Get("name"); n != nil && len(n.Children()) > 0 {
			family = jsonStr(n.Children()[0].Get("family"))
			if g := n.Children()[0].Get("given"); g != nil && len(g.Children()) > 0 {
				given = jsonStr(g.Children()[0])
			}
		}
		for _, id := range children(root.Get("identifier")) {
			if typ := id.Get("type"); typ != nil && strings.Contains(jsonStr(typ.Get("text")), "Medical Record") {
				mrn = jsonStr(id.Get("value"))
			}
		}
		for _, tc := range children(root.Get("telecom")) {
			if jsonStr(tc.Get("system")) == "phone" {
				phone = jsonStr(tc.Get("value"))
			}
		}
		if a := children(root.Get("address")); len(a) > 0 {
			if l := children(a[0].Get("line")); len(l) > 0 {
				addr = jsonStr(l[0])
			}
			city = jsonStr(a[0].Get("city"))
		}
		birth := jsonStr(root.Get("birthDate"))
		us := birth
		if tm, err := time.Parse("2006-01-02", birth); err == nil {
			us = tm.Format("1/2/2006")
		}
		for _, v := range []string{given, family, mrn, phone, addr, birth} {
			if len(v) >= 3 {
				ids = append(ids, v)
			}
		}
		notes[jsonStr(root.Get("id"))] = []string{
			fmt.Sprintf("%s %s (MRN %s) seen today, BP stable, tolerating diet. Lives at %s, %s; call %s.", given, family, mrn, addr, city, phone),
			fmt.Sprintf("Pt %s, DOB %s, reports chest pain since %s. Wife at bedside; contact %s.", strings.ToUpper(family), us, birth, phone),
			fmt.Sprintf("Discussed plan with %s; follow up at %s, %s. MRN: %s", given+" "+family, addr, city, mrn),
		}
	}
	if len(notes) != 100 || len(ids) < 400 {
		t.Fatalf("%d patients, %d values to plant", len(notes), len(ids))
	}
	planted := 0
	for _, f := range files {
		typ := strings.SplitN(filepath.Base(f), ".", 2)[0]
		var b strings.Builder
		for i, line := range readNDJSON(t, f) {
			if typ == "Condition" || typ == "Observation" || typ == "DiagnosticReport" {
				root, err := jsontree.Parse([]byte(line))
				if err != nil {
					t.Fatal(err)
				}
				subj := ""
				if s := root.Get("subject"); s != nil {
					subj = strings.TrimPrefix(jsonStr(s.Get("reference")), "Patient/")
					subj = strings.TrimPrefix(subj, "urn:uuid:")
				}
				if p := notes[subj]; p != nil {
					note := p[i%len(p)]
					arr := jsontree.NewArray()
					obj := jsontree.NewObject()
					if typ == "DiagnosticReport" {
						obj.Set("contentType", jsontree.NewString("text/plain; charset=utf-8"))
						obj.Set("data", jsontree.NewString(base64.StdEncoding.EncodeToString([]byte(note))))
						arr.Append(obj)
						root.Set("presentedForm", arr)
					} else {
						obj.Set("text", jsontree.NewString(note))
						arr.Append(obj)
						root.Set("note", arr)
					}
					line = string(root.AppendJSON(nil))
					planted++
				}
			}
			b.WriteString(line)
			b.WriteByte('\n')
		}
		// Plain NDJSON: the first pass and the output do not depend on gzip.
		name := strings.TrimSuffix(filepath.Base(f), ".gz")
		if err := os.WriteFile(filepath.Join(in, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if planted < 10000 {
		t.Fatalf("%d notes planted", planted)
	}
	// Fixed keys: with random ones, a patient's shifted birth date lands
	// now and then on another patient's birth date (100 patients, ±50
	// days), which the leak checker cannot tell from a leak.
	keys := map[string]string{"FHIRDEID_CRYPTO_HASH_KEY": "scrub-planted-hash-key-0123456789",
		"FHIRDEID_DATE_SHIFT_KEY": "scrub-planted-shift-key-012345678", "FHIRDEID_ENCRYPT_KEY": "0123456789abcdef0123456789abcdef"}
	code, _, errs := runCmd(t, "", keys, "anonymize", "--profile", "longitudinal", "-i", in, "-o", out, "-b", "-v", "--today", "2026-06-01")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "identifiers of 100 patients collected") {
		t.Errorf("first pass: %s", errs)
	}
	lc := synth.NewLeakChecker(ids)
	n, kept := 0, 0
	outs, _ := filepath.Glob(filepath.Join(out, "*.ndjson"))
	for _, f := range outs {
		for _, line := range readNDJSON(t, f) {
			if line == "" {
				continue
			}
			lc.CheckLine(withoutStandardDisplays(t, []byte(line)))
			if strings.Contains(line, "tolerating diet") || strings.Contains(line, "reports chest pain") {
				kept++
			}
			n++
		}
	}
	if n != 38472 {
		t.Errorf("%d resources out", n)
	}
	if lc.Found() != 0 {
		// Synthea values: safe to print.
		t.Errorf("%d of %d planted values survive: %v", lc.Found(), len(ids), lc.FoundIdentifiers())
	}
	if kept < planted/2 {
		t.Errorf("clinical words kept in %d of %d notes", kept, planted)
	}
	t.Logf("%d resources, %d notes planted with %d distinct values, none survives; clinical words in %d outputs", n, planted, len(ids), kept)
}

func jsonStr(n *jsontree.Node) string {
	if n == nil || n.Kind != jsontree.String {
		return ""
	}
	return n.Value()
}

func children(n *jsontree.Node) []*jsontree.Node {
	if n == nil {
		return nil
	}
	if n.Kind == jsontree.Array {
		return n.Children()
	}
	return []*jsontree.Node{n}
}

// withoutStandardDisplays removes the displays of LOINC, SNOMED CT and
// RxNorm codings and the text of concepts coded in them, which the
// longitudinal profile keeps: terminology text is the same for every
// patient ("White oak IgE Ab" is no trace of a patient named White).
func withoutStandardDisplays(t *testing.T, line []byte) []byte {
	t.Helper()
	root, err := jsontree.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	standard := func(n *jsontree.Node) bool {
		switch jsonStr(n.Get("system")) {
		case "http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm":
			return true
		}
		return false
	}
	root.Walk(func(n *jsontree.Node) bool {
		if n.Kind != jsontree.Object {
			return true
		}
		if standard(n) {
			if d := n.Get("display"); d != nil {
				n.Remove(d)
			}
		}
		if txt := n.Get("text"); txt != nil {
			for _, c := range children(n.Get("coding")) {
				if standard(c) {
					n.Remove(txt)
					break
				}
			}
		}
		return true
	})
	return root.AppendJSON(nil)
}
