package anonymize

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/synth"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// scrubRules are the free-text rules the planted-PHI tests add to the
// Safe Harbor configuration, before its redact rules.
var scrubRules = []map[string]any{
	{"path": "nodesByType('Narrative')", "method": "scrub"},
	{"path": "nodesByType('Attachment')", "method": "scrub"},
	{"path": "nodesByType('Annotation').text", "method": "scrub"},
	{"path": "nodesByType('Reference').display", "method": "scrub"},
	{"path": "nodesByType('CodeableConcept').text", "method": "scrub"},
	{"path": "nodesByType('Coding').display", "method": "scrub"},
}

// scrubEngine returns an engine running the Safe Harbor configuration with
// scrubRules inserted before its first rule that redacts free text.
func scrubEngine(t testing.TB) *Engine {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(defaultconfig.SafeHarbor(), &cfg); err != nil {
		t.Fatal(err)
	}
	rules := cfg["fhirPathRules"].([]any)
	at := -1
	for i, r := range rules {
		if r.(map[string]any)["path"] == "nodesByType('Narrative')" {
			at = i
			break
		}
	}
	if at < 0 {
		t.Fatal("the Safe Harbor configuration has no Narrative rule")
	}
	var out []any
	out = append(out, rules[:at]...)
	for _, r := range scrubRules {
		out = append(out, r)
	}
	out = append(out, rules[at:]...)
	cfg["fhirPathRules"] = out
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data, Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(c, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestScrubPlantedSynth de-identifies the synthetic population (its notes
// carry the patients' names, MRNs, SSNs, phones, addresses and birth dates)
// with free text scrubbed instead of removed, the identifiers collected in a
// first pass, and checks that no planted identifier survives while the
// notes' clinical text does.
func TestScrubPlantedSynth(t *testing.T) {
	c, err := ParseConfig(longitudinalScrubConfig(t), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		t.Fatal(err)
	}
	long, err := NewEngine(c, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("safe-harbor+scrub", func(t *testing.T) { plantedSynth(t, scrubEngine(t)) })
	t.Run("longitudinal+scrub", func(t *testing.T) { plantedSynth(t, long) })
}

func plantedSynth(t *testing.T, e *Engine) {
	pop := synth.Generate(synth.Options{Patients: 60})
	col := e.NewIdentifierCollector()
	for _, typ := range FirstPassTypes {
		for _, line := range pop.Resources[typ] {
			if err := col.Add(line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if col.Patients() != 60 {
		t.Fatalf("%d patients collected, want 60", col.Patients())
	}
	base := WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	run := func(ctx context.Context) (leaks int, texts map[string]int) {
		lc := synth.NewLeakChecker(pop.Identifiers)
		texts = map[string]int{}
		for _, typ := range pop.Types() {
			for i, line := range pop.Resources[typ] {
				out, _, err := e.AnonymizeJSON(ctx, line, FileContext{FileName: typ + ".ndjson"})
				if err != nil {
					t.Fatalf("%s line %d: %v", typ, i+1, err)
				}
				lc.CheckLine(out)
				s := string(out)
				if strings.Contains(s, "reports symptoms since last visit") {
					texts["Condition.note"]++
				}
				if strings.Contains(s, `"div":"<div`) && strings.Contains(s, ", born ") {
					texts["Patient.text"]++
				}
				if typ == "DocumentReference" {
					root, _ := jsontree.Parse(out)
					root.Walk(func(n *jsontree.Node) bool {
						if n.Kind == jsontree.String && len(n.Value()) > 40 {
							if raw, err := base64.StdEncoding.DecodeString(n.Value()); err == nil && strings.Contains(string(raw), "Clinical note for") {
								texts["DocumentReference.attachment"]++
							}
						}
						return true
					})
				}
			}
		}
		if lc.Found() > 0 {
			// Synthetic values: safe to print.
			t.Logf("found: %v", lc.FoundIdentifiers())
		}
		return lc.Found(), texts
	}
	leaks, texts := run(WithScrubInput(base, col.Input()))
	if leaks != 0 {
		t.Errorf("%d of %d planted identifiers survive scrubbing", leaks, len(pop.Identifiers))
	}
	for _, k := range []string{"Condition.note", "Patient.text", "DocumentReference.attachment"} {
		if texts[k] == 0 {
			t.Errorf("no scrubbed %s kept its clinical text", k)
		}
	}
	noCtx, _ := run(base)
	t.Logf("%d planted identifiers, none survives (%d survive without the contextual layer); texts kept: %v", len(pop.Identifiers), noCtx, texts)
}

// TestScrubPlantedSynthea100 plants each synthea-100 patient's name, MRN,
// phone, address and birth date in notes of its Conditions (Annotation),
// Observations (Annotation) and DiagnosticReports (a text/plain
// presentedForm), de-identifies all 38,472 resources with free text
// scrubbed, and checks that none of the planted values survives anywhere.
func TestScrubPlantedSynthea100(t *testing.T) {
	if testing.Short() {
		t.Skip("de-identifies all of synthea-100")
	}
	dir := testshared.Dir(t, "data", "synthea-100")
	c, err := ParseConfig(longitudinalScrubConfig(t), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		t.Fatal(err)
	}
	long, err := NewEngine(c, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("safe-harbor+scrub", func(t *testing.T) { plantedSynthea(t, dir, scrubEngine(t)) })
	t.Run("longitudinal+scrub", func(t *testing.T) { plantedSynthea(t, dir, long) })
}

// firstPass adds the resources of the first-pass types of the export in dir
// (files Type.000.ndjson.gz) to col, and gives each line to each, if not
// nil.
func firstPass(t *testing.T, dir string, col *IdentifierCollector, each func(typ string, line []byte)) {
	t.Helper()
	for _, typ := range FirstPassTypes {
		p := filepath.Join(dir, typ+".000.ndjson.gz")
		if _, err := os.Stat(p); err != nil {
			continue
		}
		for _, line := range readGz(t, p) {
			if err := col.Add(line); err != nil {
				t.Fatal(err)
			}
			if each != nil {
				each(typ, line)
			}
		}
	}
}

func plantedSynthea(t *testing.T, dir string, e *Engine) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	col := e.NewIdentifierCollector()
	type person struct{ notes []string }
	people := map[string]*person{}
	var ids []string
	firstPass(t, dir, col, func(typ string, line []byte) {
		if typ == "Patient" {
			root, _ := jsontree.Parse(line)
			var given, family, mrn, phone, addr, city string
			if n := getPath(root, "name"); n != nil && len(n.Children()) > 0 {
				family = str(n.Children()[0].Get("family"))
				if g := n.Children()[0].Get("given"); g != nil && len(g.Children()) > 0 {
					given = str(g.Children()[0])
				}
			}
			for _, id := range arr(root.Get("identifier")) {
				if v := str(id.Get("value")); v != "" && mrn == "" && strings.Contains(str(getPath(id, "type", "text")), "Medical Record") {
					mrn = v
				}
			}
			for _, tc := range arr(root.Get("telecom")) {
				if str(tc.Get("system")) == "phone" {
					phone = str(tc.Get("value"))
				}
			}
			if a := arr(root.Get("address")); len(a) > 0 {
				if l := arr(a[0].Get("line")); len(l) > 0 {
					addr = str(l[0])
				}
				city = str(a[0].Get("city"))
			}
			birth := str(root.Get("birthDate"))
			us := birth
			if tm, err := time.Parse("2006-01-02", birth); err == nil {
				us = tm.Format("1/2/2006")
			}
			for _, v := range []string{given, family, mrn, phone, addr, birth} {
				if len(v) >= 3 {
					ids = append(ids, v)
				}
			}
			people[str(root.Get("id"))] = &person{notes: []string{
				fmt.Sprintf("%s %s (MRN %s) seen today, BP stable, tolerating diet. Lives at %s, %s; call %s.", given, family, mrn, addr, city, phone),
				fmt.Sprintf("Pt %s, DOB %s, reports chest pain since %s. Wife at bedside; contact %s.", strings.ToUpper(family), us, birth, phone),
				fmt.Sprintf("Discussed plan with %s; follow up at %s, %s. MRN: %s", given+" "+family, addr, city, mrn),
			}}
		}
	})
	if len(people) != 100 || len(ids) < 400 {
		t.Fatalf("%d patients, %d values to plant", len(people), len(ids))
	}
	// The first pass also read the medication and immunization files: their
	// drug names are safe words, and none of the identifiers below may
	// survive because of them.
	if col.Input().Safe.Len() == 0 {
		t.Fatal("no drug or vaccine names collected from synthea-100")
	}
	ctx := WithScrubInput(WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)), col.Input())
	lc := synth.NewLeakChecker(ids)
	planted, n := 0, 0
	var out []byte
	for _, f := range files {
		typ := strings.SplitN(filepath.Base(f), ".", 2)[0]
		for i, line := range readGz(t, f) {
			if typ == "Condition" || typ == "Observation" || typ == "DiagnosticReport" {
				root, err := jsontree.Parse(line)
				if err != nil {
					t.Fatal(err)
				}
				if p := people[refID(str(getPath(root, "subject", "reference")))]; p != nil {
					note := p.notes[i%len(p.notes)]
					if typ == "DiagnosticReport" {
						att := jsontree.NewObject()
						att.Set("contentType", jsontree.NewString("text/plain; charset=utf-8"))
						att.Set("data", jsontree.NewString(base64.StdEncoding.EncodeToString([]byte(note))))
						pf := jsontree.NewArray()
						pf.Append(att)
						root.Set("presentedForm", pf)
					} else {
						a := jsontree.NewObject()
						a.Set("text", jsontree.NewString(note))
						notes := jsontree.NewArray()
						notes.Append(a)
						root.Set("note", notes)
					}
					line = root.AppendJSON(nil)
					planted++
				}
			}
			var err error
			out, _, err = e.AppendAnonymizedJSON(ctx, out[:0], line, FileContext{FileName: filepath.Base(f)})
			if err != nil {
				t.Fatalf("%s line %d: %v", filepath.Base(f), i+1, err)
			}
			lc.CheckLine(withoutTerminologyDisplays(t, out))
			n++
		}
	}
	if n != 38472 || planted < 10000 {
		t.Fatalf("%d resources, %d notes planted", n, planted)
	}
	if lc.Found() != 0 {
		// Synthea values: safe to print.
		t.Errorf("%d of %d planted values survive: %v", lc.Found(), len(ids), lc.FoundIdentifiers())
	}
	t.Logf("%d resources, %d notes planted with %d distinct values, none survives", n, planted, len(ids))
}

// datasetLines returns the lines of every .ndjson.gz file of the shared
// data set name ("synthea-100"), at most perFile of each (0: all of them);
// the test is skipped when the set has no such file.
func datasetLines(t testing.TB, name string, perFile int) [][]byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(testshared.Dir(t, "data", name), "*.ndjson.gz"))
	if len(files) == 0 {
		t.Skipf("no %s files", name)
	}
	var lines [][]byte
	for _, f := range files {
		ls := readGz(t, f)
		if perFile > 0 {
			ls = ls[:min(len(ls), perFile)]
		}
		lines = append(lines, ls...)
	}
	return lines
}

func readGz(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out [][]byte
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkScrubRulesSynthea1000 de-identifies synthea-1000-clone (381,066
// resources) with the Safe Harbor configuration and with the same plus the
// free-text scrub rules (Narrative, Attachment, Annotation.text,
// Reference.display, CodeableConcept.text, Coding.display), and with the
// longitudinal profile (which scrubs), in one run, one goroutine, with the identifiers of a first pass (which the
// longitudinal engine finds by raw patient id): resources/s of each.
func BenchmarkScrubRulesSynthea1000(b *testing.B) {
	lines := datasetLines(b, "synthea-1000-clone", 0)
	sh, err := ParseConfig(defaultconfig.SafeHarbor(), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		b.Fatal(err)
	}
	safe, err := NewEngine(sh, EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	scrubbed := scrubEngine(b)
	lsc, err := ParseConfig(longitudinalScrubConfig(b), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
	if err != nil {
		b.Fatal(err)
	}
	longScrub, err := NewEngine(lsc, EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	longLoop, err := NewEngine(lsc, EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	longLoop.noDispatch = true
	col := scrubbed.NewIdentifierCollector()
	for _, line := range lines {
		if bytes.Contains(line[:min(len(line), 40)], []byte(`"resourceType":"Patient"`)) || bytes.Contains(line[:min(len(line), 40)], []byte(`"resourceType":"Practitioner"`)) || bytes.Contains(line[:min(len(line), 40)], []byte(`"resourceType":"Organization"`)) {
			if err := col.Add(line); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	for _, c := range []struct {
		name string
		e    *Engine
		ctx  context.Context
	}{{"safe-harbor", safe, ctx}, {"safe-harbor+scrub", scrubbed, WithScrubInput(ctx, col.Input())},
		{"longitudinal", longScrub, WithScrubInput(ctx, col.Input())}, {"longitudinal-rule-loop", longLoop, WithScrubInput(ctx, col.Input())}} {
		b.Run(c.name, func(b *testing.B) {
			var out []byte
			for b.Loop() {
				for _, line := range lines {
					var err error
					if out, _, err = c.e.AppendAnonymizedJSON(c.ctx, out[:0], line, FileContext{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
		})
	}
}

// withoutTerminologyDisplays removes the displays of LOINC, SNOMED CT and
// RxNorm codings, and the text of concepts coded in them (Synthea copies
// the display there): they are the terminologies' text, the same for every
// patient ("White oak IgE Ab in Serum" is no trace of a patient named
// White), which the longitudinal profile keeps and the scrub method leaves
// alone unless it is the patient's own name.
func withoutTerminologyDisplays(t *testing.T, line []byte) []byte {
	root, err := jsontree.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	standard := func(n *jsontree.Node) bool {
		switch str(n.Get("system")) {
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
			for _, c := range arr(n.Get("coding")) {
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

// TestScrubMemoSameOutput de-identifies synthea-100 (up to 1,500 resources
// of each file) with the longitudinal profile and the identifiers of a
// first pass, once with the scrub method's memo and once without: the
// outputs are byte-identical.
func TestScrubMemoSameOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("de-identifies much of synthea-100")
	}
	dir := testshared.Dir(t, "data", "synthea-100")
	engine := func(memo bool) *Engine {
		c, err := ParseConfig(defaultconfig.Longitudinal(), Options{Compiler: FHIRPathCompiler(), Rand: zeroRand()})
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(c, EngineOptions{Rand: onesReader{}})
		if err != nil {
			t.Fatal(err)
		}
		e.noScrubMemo = !memo
		return e
	}
	with, without := engine(true), engine(false)
	col := with.NewIdentifierCollector()
	firstPass(t, dir, col, nil)
	ctx := WithScrubInput(WithNow(context.Background(), today), col.Input())
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	n := 0
	for _, f := range files {
		lines := readGz(t, f)
		if len(lines) > 1500 {
			lines = lines[:1500]
		}
		for i, line := range lines {
			fc := FileContext{FileName: filepath.Base(f)}
			a, _, err := with.AnonymizeJSON(ctx, line, fc)
			if err != nil {
				t.Fatalf("%s:%d: %v", filepath.Base(f), i+1, err)
			}
			b, _, err := without.AnonymizeJSON(ctx, line, fc)
			if err != nil {
				t.Fatalf("%s:%d: %v", filepath.Base(f), i+1, err)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("%s:%d: the output with the memo differs from the output without it", filepath.Base(f), i+1)
			}
			n++
		}
	}
	if n < 10000 {
		t.Errorf("only %d resources compared", n)
	}
	// The pooled run, if the pool kept it (under -race it may not), shows
	// the memo at work.
	r := with.getRun()
	held := 0
	if r.smemo.entries != nil {
		for _, e := range r.smemo.entries {
			if e.text != "" {
				held++
			}
		}
	}
	t.Logf("%d resources compared; the memo holds %d texts", n, held)
	with.putRun(r)
}
