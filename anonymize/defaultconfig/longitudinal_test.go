package defaultconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

var (
	testKeys  = anonymize.Keys{CryptoHashKey: "test-crypto-hash-key-0123456789", DateShiftKey: "test-date-shift-key-0123456789", EncryptKey: "0123456789abcdef0123456789abcdef"}
	otherKeys = anonymize.Keys{CryptoHashKey: "other-crypto-hash-key-012345678", DateShiftKey: "other-date-shift-key-012345678", EncryptKey: "abcdef0123456789abcdef0123456789"}
	// exportDay is "today" for the age-over-89 rules.
	exportDay = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
)

func longitudinalEngine(t testing.TB, k anonymize.Keys) *anonymize.Engine {
	t.Helper()
	cfg, err := anonymize.ParseConfig(Longitudinal(), anonymize.Options{Keys: k,
		Compiler: anonymize.FHIRPathCompilerWithWarnings(fhirpath.WithModel(model.Get(model.R4)))})
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// TestLongitudinalIsSafeHarborButDates checks that the longitudinal profile
// differs from safe-harbor only where the README says: the three date rules
// (shifted, and moved before the free-text rules), the display keep, free
// text scrubbed instead of redacted (with an Annotation.text rule before the
// Annotation redaction), Device serial and lot numbers and distinct
// identifier redacted before the string rule, and the date-shift parameters.
func TestLongitudinalIsSafeHarborButDates(t *testing.T) {
	if !slices.Equal(Profiles(), []string{"safe-harbor", "longitudinal"}) || !IsProfile("longitudinal") || IsProfile("Longitudinal") {
		t.Errorf("profiles %v", Profiles())
	}
	if d, ok := Profile(""); !ok || !bytes.Equal(d, SafeHarbor()) {
		t.Error("the default profile is not safe-harbor")
	}
	if _, ok := Profile("expert"); ok {
		t.Error("unknown profile found")
	}
	opts := anonymize.Options{Rand: bytes.NewReader(make([]byte, 64))}
	sh, err := anonymize.ParseConfig(SafeHarbor(), opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Rand = bytes.NewReader(make([]byte, 64))
	lo, err := anonymize.ParseConfig(Longitudinal(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var shRules, loRules, shDates, loDates []string
	isDate := func(path string) bool {
		return path == "nodesByType('date')" || path == "nodesByType('dateTime')" || path == "nodesByType('instant')"
	}
	for _, r := range sh.Rules() {
		if isDate(r.Path) {
			shDates = append(shDates, r.Path+" "+r.MethodName)
			continue
		}
		shRules = append(shRules, r.Path+" "+r.MethodName)
	}
	scrubbed := []string{"nodesByType('Narrative')", "nodesByType('Attachment')", "nodesByType('Reference').display",
		"nodesByType('CodeableConcept').text", "nodesByType('Coding').display", "nodesByType('string')", "nodesByType('markdown')"}
	added := []string{"nodesByType('Annotation').text scrub", "Device.serialNumber redact", "Device.lotNumber redact", "Device.distinctIdentifier redact"}
	index := map[string]int{}
	for i, r := range lo.Rules() {
		index[r.Path] = i
		if strings.HasSuffix(r.Path, ".display") && r.Method == anonymize.MethodKeep {
			continue
		}
		if slices.Contains(added, r.Path+" "+r.MethodName) {
			continue
		}
		m := r.MethodName
		if isDate(r.Path) {
			if m != "dateShift" {
				t.Errorf("%s: %s, want dateShift", r.Path, m)
			}
			loDates = append(loDates, r.Path+" redact")
			continue
		}
		if m == anonymize.ScrubMethod {
			if !slices.Contains(scrubbed, r.Path) {
				t.Errorf("%s is scrubbed", r.Path)
			}
			if s := r.Settings(); !strings.EqualFold(settingText(&s, "dates"), "shift") {
				t.Errorf("%s: scrub without \"dates\": \"shift\"", r.Path)
			}
			m = "redact"
		} else if slices.Contains(scrubbed, r.Path) {
			t.Errorf("%s is not scrubbed", r.Path)
		}
		loRules = append(loRules, r.Path+" "+m)
	}
	if !slices.Equal(shRules, loRules) || !slices.Equal(shDates, loDates) {
		t.Errorf("rules differ beyond dates, displays and scrubbing:\n%v\n%v", shRules, loRules)
	}
	for _, a := range added {
		if _, ok := index[strings.Fields(a)[0]]; !ok {
			t.Errorf("rule %s missing", a)
		}
	}
	// The order the scrubbing needs: dates shifted before the free text
	// that holds them (Attachment.creation, Annotation.time), the
	// Annotation text scrubbed before the Annotation goes, device numbers
	// removed before strings are scrubbed.
	for _, order := range [][2]string{
		{"nodesByType('instant')", "nodesByType('Narrative')"},
		{"nodesByType('Annotation').text", "nodesByType('Annotation')"},
		{"Device.serialNumber", "nodesByType('string')"},
		{"Device.lotNumber", "nodesByType('string')"},
		{"Device.distinctIdentifier", "nodesByType('string')"},
	} {
		if index[order[0]] >= index[order[1]] {
			t.Errorf("%s (rule %d) must come before %s (rule %d)", order[0], index[order[0]], order[1], index[order[1]])
		}
	}
	if !lo.UsesScrub() || sh.UsesScrub() {
		t.Error("longitudinal must scrub, safe-harbor must not")
	}
	if len(lo.Rules()) != len(sh.Rules())+1+len(added) {
		t.Errorf("%d rules, safe-harbor has %d", len(lo.Rules()), len(sh.Rules()))
	}
	p, q := lo.Parameters(), sh.Parameters()
	if p.DateShiftScope != anonymize.ScopePatient || p.DateShiftRangeInDays != 50 {
		t.Errorf("date shift parameters %v %d", p.DateShiftScope, p.DateShiftRangeInDays)
	}
	if !slices.Equal(p.RestrictedZipCodeTabulationAreas, q.RestrictedZipCodeTabulationAreas) || p.EnablePartialAgesForRedact != q.EnablePartialAgesForRedact ||
		p.EnablePartialZipCodesForRedact != q.EnablePartialZipCodesForRedact || p.EnablePartialDatesForRedact != q.EnablePartialDatesForRedact {
		t.Error("redaction parameters differ from safe-harbor's")
	}
}

// TestLongitudinalDisplays checks that Coding.display is kept as it is for
// published terminologies only; other displays and CodeableConcept.text are
// scrubbed (the phone number in them goes, the clinical words stay).
func TestLongitudinalDisplays(t *testing.T) {
	eng := longitudinalEngine(t, testKeys)
	kept := []string{"http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm",
		"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-9-cm", "http://www.cms.gov/Medicare/Coding/ICD10",
		"http://www.ama-assn.org/go/cpt", "http://hl7.org/fhir/sid/cvx", "http://hl7.org/fhir/sid/ndc", "http://unitsofmeasure.org",
		"http://terminology.hl7.org/CodeSystem/v3-ActCode", "http://hl7.org/fhir/observation-category",
		"https://bluebutton.cms.gov/resources/codesystem/adjudication"}
	scrubbed := []string{"http://hospital.example.org/codes", "urn:oid:1.2.3.4", "http://hl7.org/fhir/sid/us-ssn", "http://loinc.org.evil.example", "",
		"https://bluebutton.cms.gov/resources/variables/carr_line_clia_lab_num", "https://bluebutton.cms.gov.evil.example/resources/codesystem/x"}
	var codings []string
	for i, s := range append(slices.Clone(kept), scrubbed...) {
		codings = append(codings, fmt.Sprintf(`{"system":%q,"code":"c%d","display":"fever call 617-555-01%02d"}`, s, i, i))
	}
	in := `{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[` + strings.Join(codings, ",") + `],"text":"cough call 617-555-0199"},"subject":{"reference":"Patient/p"}}`
	out, _, err := eng.AnonymizeJSON(anonymize.WithNow(context.Background(), exportDay), []byte(in), anonymize.FileContext{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range kept {
		if !bytes.Contains(out, fmt.Appendf(nil, `"fever call 617-555-01%02d"`, i)) {
			t.Errorf("display of %s changed", kept[i])
		}
	}
	for i := range scrubbed {
		if bytes.Contains(out, fmt.Appendf(nil, `617-555-01%02d`, len(kept)+i)) {
			t.Errorf("display of %q kept as it is", scrubbed[i])
		}
	}
	if got := bytes.Count(out, []byte(`"fever call [PHONE]"`)); got != len(scrubbed) {
		t.Errorf("%d scrubbed displays, want %d: %s", got, len(scrubbed), out)
	}
	if bytes.Contains(out, []byte("0199")) || !bytes.Contains(out, []byte(`"cough call [PHONE]"`)) {
		t.Errorf("CodeableConcept.text not scrubbed: %s", out)
	}
}

func dates(t *testing.T, m *model.Model, data []byte) (*jsontree.Node, map[string]string) {
	t.Helper()
	root, err := jsontree.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := typed.Annotate(root, m); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	root.Walk(func(n *jsontree.Node) bool {
		if (n.Type() == "date" || n.Type() == "dateTime" || n.Type() == "instant") && n.Kind == jsontree.String {
			out[typed.Location(n)] = n.Value()
		}
		return true
	})
	return root, out
}

func day(t *testing.T, v string) time.Time {
	t.Helper()
	d, err := time.Parse("2006-01-02", v[:min(10, len(v))])
	if err != nil {
		t.Fatalf("not a date: %q", v)
	}
	return d
}

func daysBetween(a, b time.Time) int { return int(b.Sub(a).Round(time.Hour).Hours() / 24) }

// patientOf returns the patient whose compartment an input resource is in.
func patientOf(m *model.Model, root *jsontree.Node) string {
	if root.Type() == "Patient" {
		return root.Get("id").Value()
	}
	for _, p := range m.PatientCompartment(root.Type()) {
		for _, path := range p.Paths {
			nodes := []*jsontree.Node{root}
			for step := range strings.SplitSeq(path, ".") {
				var next []*jsontree.Node
				for _, n := range nodes {
					next = typed.Children(n, step, next)
				}
				nodes = next
			}
			for _, n := range nodes {
				if r := n.Get("reference"); r != nil {
					if id, ok := strings.CutPrefix(r.Value(), "Patient/"); ok {
						return id
					}
				}
			}
		}
	}
	return ""
}

type syntheaRun struct {
	in, out [][]byte
}

func runSynthea(t *testing.T, eng *anonymize.Engine) syntheaRun {
	t.Helper()
	dir := testshared.Dir(t, "data", "synthea-100")
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Synthea files: %v", err)
	}
	ctx := anonymize.WithNow(context.Background(), exportDay)
	var r syntheaRun
	for _, f := range files {
		for _, line := range readNDJSON(t, f, 1<<30) {
			out, _, err := eng.AnonymizeJSON(ctx, line, anonymize.FileContext{FileName: filepath.Base(f)})
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			r.in, r.out = append(r.in, line), append(r.out, out)
		}
	}
	return r
}

// TestLongitudinalSynthea checks the promises of per-patient date shifting
// on all of synthea-100: every date of a patient's compartment moves by the
// patient's one non-zero offset within ±50 days, times and zones kept; the
// length of every Encounter.period and Claim.billablePeriod and the age in
// days at every encounter are exact; no date of a resource outside the
// compartments is left unshifted; the only dates removed are those that
// indicate an age over 89, and such birth dates become the year that makes
// 90. Two runs with the same keys give the same bytes; other keys give
// other ids and offsets.
func TestLongitudinalSynthea(t *testing.T) {
	m := model.Get(model.R4)
	run := runSynthea(t, longitudinalEngine(t, testKeys))
	offsets := map[string]int{} // input patient id → offset
	birth := map[string]time.Time{}
	aggregated := map[string]bool{}
	var nonCompartment, shiftedDates, removedOld, periods, ages int
	type enc struct {
		patient       string
		start, outSta string
	}
	var encounters []enc
	over89 := func(d time.Time) bool { return d.AddDate(90, 0, 0).Compare(exportDay) <= 0 }
	for i := range run.in {
		root, in := dates(t, m, run.in[i])
		outRoot, out := dates(t, m, run.out[i])
		pid := patientOf(m, root)
		if outRoot.Get("id").Value() == root.Get("id").Value() {
			t.Fatalf("%s: id kept", root.Type())
		}
		for loc, v := range in {
			o, ok := out[loc]
			where := root.Type() + "." + strings.SplitN(loc, ".", 2)[1]
			if len(v) < 10 {
				if len(v) == 4 && o != v {
					t.Errorf("%s: year-only date changed", where)
				}
				continue
			}
			d := day(t, v)
			if !ok {
				if !over89(d) && !over89(d.AddDate(0, 0, -50)) {
					t.Errorf("%s: date removed although it does not indicate an age over 89", where)
				}
				removedOld++
				continue
			}
			if len(o) == 4 {
				if root.Type() != "Patient" || !strings.HasSuffix(loc, ".birthDate") || o != fmt.Sprint(exportDay.Year()-90) {
					t.Errorf("%s: cut to the year %s", where, o)
				}
				aggregated[pid] = true
				continue
			}
			if o[10:] != v[10:] {
				t.Errorf("%s: time of day or zone changed", where)
			}
			off := daysBetween(d, day(t, o))
			if off == 0 || off < -50 || off > 50 {
				t.Errorf("%s: offset %d", where, off)
			}
			shiftedDates++
			if pid == "" {
				nonCompartment++
				continue
			}
			if prev, seen := offsets[pid]; seen && prev != off {
				t.Fatalf("%s of a patient shifted by %d, another of its dates by %d", where, off, prev)
			}
			offsets[pid] = off
		}
		switch root.Type() {
		case "Patient":
			birth[pid] = day(t, in[root.Type()+".birthDate"])
		case "Encounter", "Claim":
			p := "period"
			if root.Type() == "Claim" {
				p = "billablePeriod"
			}
			s, e := in[root.Type()+"."+p+".start"], in[root.Type()+"."+p+".end"]
			outS, outE := out[root.Type()+"."+p+".start"], out[root.Type()+"."+p+".end"]
			if s == "" || e == "" {
				continue
			}
			if outS == "" || outE == "" {
				continue // removed as older than 89 years: checked above
			}
			ts, _ := time.Parse(time.RFC3339, s)
			te, _ := time.Parse(time.RFC3339, e)
			tos, err1 := time.Parse(time.RFC3339, outS)
			toe, err2 := time.Parse(time.RFC3339, outE)
			if err1 != nil || err2 != nil || toe.Sub(tos) != te.Sub(ts) {
				t.Errorf("%s %d: period length %v became %v", root.Type(), i, te.Sub(ts), toe.Sub(tos))
			}
			periods++
			if root.Type() == "Encounter" {
				encounters = append(encounters, enc{pid, s, outS})
			}
		}
	}
	for _, e := range encounters {
		if aggregated[e.patient] {
			continue
		}
		b := birth[e.patient]
		inAge := daysBetween(b, day(t, e.start))
		outAge := daysBetween(b.AddDate(0, 0, offsets[e.patient]), day(t, e.outSta))
		if inAge != outAge {
			t.Errorf("age at an encounter: %d days became %d", inAge, outAge)
		}
		ages++
	}
	t.Logf("%d resources, %d patients with an offset, %d dates shifted (%d outside the compartments), %d removed as over 89, %d birth dates aggregated, %d periods and %d ages at encounter checked",
		len(run.in), len(offsets), shiftedDates, nonCompartment, removedOld, len(aggregated), periods, ages)
	if len(offsets) != 100 || periods < 9000 || ages < 3000 || nonCompartment == 0 {
		t.Errorf("too little checked: %d patients, %d periods, %d ages, %d non-compartment dates", len(offsets), periods, ages, nonCompartment)
	}
	distinct := map[int]bool{}
	for _, o := range offsets {
		distinct[o] = true
	}
	if len(distinct) < 30 {
		t.Errorf("only %d distinct offsets over 100 patients", len(distinct))
	}

	// Same keys, same bytes; other keys, other ids and offsets.
	again := runSynthea(t, longitudinalEngine(t, testKeys))
	for i := range run.out {
		if !bytes.Equal(run.out[i], again.out[i]) {
			t.Fatalf("resource %d differs between two runs with the same keys", i)
		}
	}
	other := runSynthea(t, longitudinalEngine(t, otherKeys))
	sameID, sameOffset := 0, 0
	for i := range run.in {
		var a, b struct {
			ResourceType, ID, BirthDate string
		}
		json.Unmarshal(run.out[i], &a)
		json.Unmarshal(other.out[i], &b)
		if a.ID == b.ID {
			sameID++
		}
		if a.ResourceType == "Patient" && len(a.BirthDate) == 10 && a.BirthDate == b.BirthDate {
			sameOffset++
		}
	}
	if sameID != 0 || sameOffset > 5 {
		t.Errorf("other keys: %d ids and %d patient offsets unchanged", sameID, sameOffset)
	}
}

// BenchmarkProfilesSynthea de-identifies the first maxPerFile resources of
// each synthea-100 file with each built-in profile and the same keys.
func BenchmarkProfilesSynthea(b *testing.B) {
	dir := testshared.Dir(b, "data", "synthea-100")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	var lines [][]byte
	for _, f := range files {
		lines = append(lines, readNDJSONB(b, f, maxPerFile)...)
	}
	for _, name := range Profiles() {
		b.Run(name, func(b *testing.B) {
			data, _ := Profile(name)
			cfg, err := anonymize.ParseConfig(data, anonymize.Options{Keys: testKeys, Compiler: anonymize.FHIRPathCompiler()})
			if err != nil {
				b.Fatal(err)
			}
			eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := anonymize.WithNow(context.Background(), exportDay)
			var out []byte
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for _, l := range lines {
					if out, _, err = eng.AppendAnonymizedJSON(ctx, out[:0], l, anonymize.FileContext{}); err != nil {
						b.Fatal(err)
					}
				}
				n += len(lines)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
		})
	}
}

// settingText returns a rule setting's string value, or "".
func settingText(v *anonymize.Value, key string) string {
	if s, ok := v.Get(key); ok && s.Kind == anonymize.StringValue {
		return s.Text
	}
	return ""
}
