package anonymize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPatientReferenceID(t *testing.T) {
	for _, tc := range []struct {
		ref, id string
		ok      bool
	}{
		{"Patient/123", "123", true},
		{"https://example.org/fhir/Patient/a-b", "a-b", true},
		{"Patient/123/_history/2", "123", true},
		{"Practitioner/123", "", false},
		{"#p1", "", false},
		{"urn:uuid:6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2", "", false},
		{"Patient/", "", false},
		{"Patient", "", false},
		{"MyPatient/1", "", false},
	} {
		id, ok := PatientReferenceID(tc.ref)
		if ok != tc.ok || (ok && id != tc.id) {
			t.Errorf("%q: got %q %v, want %q %v", tc.ref, id, ok, tc.id, tc.ok)
		}
	}
}

func TestPatientDateShiftOffset(t *testing.T) {
	for _, rng := range []int{1, 7, 50, 365} {
		seen := map[int]bool{}
		for i := range 2000 {
			id := "p" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('a'+i/260))
			o := PatientDateShiftOffset("key", "patient", id, rng)
			if o == 0 || o < -rng || o > rng {
				t.Fatalf("range %d: offset %d", rng, o)
			}
			if o != PatientDateShiftOffset("key", "patient", id, rng) {
				t.Fatal("not deterministic")
			}
			seen[o] = true
		}
		if want := min(2*rng, 80); len(seen) < want {
			t.Errorf("range %d: only %d distinct offsets", rng, len(seen))
		}
	}
	a := PatientDateShiftOffset("key", "patient", "1", 0)
	if a < -50 || a > 50 || a == 0 {
		t.Errorf("default range: %d", a)
	}
	// Key, scope and id all change the offset (over many ids).
	diffKey, diffScope := 0, 0
	for i := range 100 {
		id := string(rune('A' + i))
		if PatientDateShiftOffset("k1", "patient", id, 50) != PatientDateShiftOffset("k2", "patient", id, 50) {
			diffKey++
		}
		if PatientDateShiftOffset("k1", "patient", id, 50) != PatientDateShiftOffset("k1", "resource", id, 50) {
			diffScope++
		}
	}
	if diffKey < 90 || diffScope < 90 {
		t.Errorf("offsets do not depend on the key (%d/100) or the scope (%d/100)", diffKey, diffScope)
	}
}

func TestShiftDateKeepTime(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in        string
		typ       DateType
		offset    int
		birthDate bool
		out       string
		keep      bool
		op        Operation
	}{
		{"2015-02-07", Date, -21, false, "2015-01-17", true, OpPerturb},
		{"2015-02-07T13:28:17-05:00", DateTime, -21, false, "2015-01-17T13:28:17-05:00", true, OpPerturb},
		{"2015-02-07T13:28:17.123Z", Instant, 30, false, "2015-03-09T13:28:17.123Z", true, OpPerturb},
		{"2016-02-28T23:59:59+14:00", DateTime, 1, false, "2016-02-29T23:59:59+14:00", true, OpPerturb},
		{"2015-12-31", Date, 1, false, "2016-01-01", true, OpPerturb},
		{"2015-02", Date, 10, false, "2015", true, OpRedact},
		{"2015", DateTime, 10, false, "2015", true, OpRedact},
		{"1930-05-01", Date, 5, false, "", false, OpRedact},
		{"1930-05-01", Date, 5, true, "1936", true, OpRedact},
		// 89 years and 11 months: shifted back past 90, it is aggregated.
		{"1936-07-01", Date, -50, true, "1936", true, OpRedact},
		{"1936-07-01", Date, 5, true, "1936-07-06", true, OpPerturb},
		{"2015-02-07x", Date, 1, false, "2015", true, OpRedact},
	} {
		out, keep, op, err := ShiftDateKeepTime(tc.in, tc.typ, tc.offset, true, tc.birthDate, now)
		if err != nil || out != tc.out || keep != tc.keep || op != tc.op {
			t.Errorf("%s %v %+d birth=%v: got %q %v %v %v, want %q %v %v", tc.in, tc.typ, tc.offset, tc.birthDate, out, keep, op, err, tc.out, tc.keep, tc.op)
		}
	}
	if _, _, _, err := ShiftDateKeepTime("2015-02-30", Date, 1, true, false, now); err == nil || strings.Contains(err.Error(), "2015") {
		t.Errorf("invalid date: %v", err)
	}
}

const patientScopeConfig = `{"fhirVersion":"R4","fhirPathRules":[
	{"path":"Resource.id","method":"cryptoHash"},
	{"path":"nodesByType('Reference').reference","method":"cryptoHash"},
	{"path":"nodesByType('date')","method":"dateShift"},
	{"path":"nodesByType('dateTime')","method":"dateShift"},
	{"path":"nodesByType('instant')","method":"dateShift"}],
	"parameters":{"dateShiftKey":"k","cryptoHashKey":"h","dateShiftScope":"patient","dateShiftRangeInDays":RANGE,"enablePartialDatesForRedact":true}}`

// TestEnginePatientScope checks that a patient's resources move together,
// whatever rule hashed the ids first, and that other resources fall back
// to the resource scope.
func TestEnginePatientScope(t *testing.T) {
	e := newTestEngine(t, strings.Replace(patientScopeConfig, "RANGE", "20", 1))
	if e.Config().Parameters().DateShiftScope != ScopePatient || e.Config().Parameters().DateShiftRangeInDays != 20 {
		t.Fatalf("parameters: %+v", e.Config().Parameters())
	}
	ctx := WithNow(context.Background(), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	shifted := func(in string, field func(map[string]any) string) string {
		t.Helper()
		out, _, err := e.AnonymizeJSON(ctx, []byte(in), FileContext{})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		return field(m)
	}
	get := func(path ...string) func(map[string]any) string {
		return func(m map[string]any) string {
			var v any = m
			for _, p := range path {
				switch x := v.(type) {
				case map[string]any:
					v = x[p]
				case []any:
					v = x[0].(map[string]any)[p]
				}
			}
			s, _ := v.(string)
			return s
		}
	}
	days := func(a, b string) int {
		ta, err1 := time.Parse("2006-01-02", a[:10])
		tb, err2 := time.Parse("2006-01-02", b[:10])
		if err1 != nil || err2 != nil {
			t.Fatalf("not dates: %q %q", a, b)
		}
		return int(tb.Sub(ta).Hours() / 24)
	}
	for _, pid := range []string{"p1", "p2", "another"} {
		pat := shifted(`{"resourceType":"Patient","id":"`+pid+`","birthDate":"2000-01-01"}`, get("birthDate"))
		obs := `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + pid + `"},"effectiveDateTime":"2000-01-01T10:11:12+02:00"}`
		o := shifted(obs, get("effectiveDateTime"))
		enc := shifted(`{"resourceType":"Encounter","id":"e9","status":"finished","class":{"code":"AMB"},"subject":{"reference":"https://x.org/fhir/Patient/`+pid+`"},"period":{"start":"2000-01-01T00:00:00Z"}}`, get("period", "start"))
		// A contained resource without a patient of its own takes its container's.
		cont := shifted(`{"resourceType":"Claim","id":"c","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/`+pid+`"},"created":"2000-01-01","provider":{"reference":"#org"},"priority":{"text":"x"},"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"#cov"}}],
			"contained":[{"resourceType":"Organization","id":"org","_active":{"extension":[{"url":"http://x","valueDate":"2000-01-01"}]}}]}`, get("contained", "_active", "extension", "valueDate"))
		off := days("2000-01-01", pat)
		if off == 0 || off < -20 || off > 20 {
			t.Errorf("%s: offset %d out of range", pid, off)
		}
		// Each patient's own offset, not the one the engine remembered
		// from the patient before.
		if want := PatientDateShiftOffset("k", "patient", pid, 20); off != want {
			t.Errorf("%s: offset %d, want %d", pid, off, want)
		}
		for what, v := range map[string]string{"Observation": o, "Encounter": enc, "contained Organization": cont} {
			if got := days("2000-01-01", v); got != off {
				t.Errorf("%s: %s shifted by %d, Patient by %d", pid, what, got, off)
			}
		}
		if !strings.HasSuffix(o, "T10:11:12+02:00") || !strings.HasSuffix(enc, "T00:00:00Z") {
			t.Errorf("time of day or zone lost: %q %q", o, enc)
		}
	}
	// Organizations fall back to the resource scope: keyed on their own id.
	orgs := map[int]bool{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		v := shifted(`{"resourceType":"Organization","id":"`+id+`","_active":{"extension":[{"url":"http://x","valueDate":"2000-01-01"}]}}`, get("_active", "extension", "valueDate"))
		o := days("2000-01-01", v)
		if o == 0 || o < -20 || o > 20 {
			t.Errorf("organization %s: offset %d", id, o)
		}
		orgs[o] = true
	}
	if len(orgs) < 3 {
		t.Errorf("organizations share %d offsets: not keyed on their ids", len(orgs))
	}
}

func TestKeysOption(t *testing.T) {
	cfg := strings.Replace(patientScopeConfig, "RANGE", "50", 1)
	c, err := ParseConfig([]byte(cfg), Options{Compiler: FHIRPathCompiler(), Keys: Keys{CryptoHashKey: "file-hash", DateShiftKey: "file-shift"}})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Parameters()
	if p.CryptoHashKey != "file-hash" || p.DateShiftKey != "file-shift" {
		t.Errorf("keys not applied")
	}
	if got := c.UsedKeys(); strings.Join(got, ",") != "cryptoHashKey,dateShiftKey" {
		t.Errorf("used keys %v", got)
	}
	if r := c.RandomKeys(); len(r) != 0 {
		t.Errorf("random keys %v", r)
	}
	fps := c.KeyFingerprints()
	if len(fps) != 2 || fps["cryptoHashKey"] != Fingerprint("file-hash") || strings.Contains(fps["cryptoHashKey"], "file-hash") {
		t.Errorf("fingerprints %v", fps)
	}
	// Without keys anywhere, the used ones are random.
	noKeys := strings.Replace(strings.Replace(cfg, `"dateShiftKey":"k",`, "", 1), `"cryptoHashKey":"h",`, "", 1)
	c, err = ParseConfig([]byte(noKeys), Options{Compiler: FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.RandomKeys(); strings.Join(r, ",") != "cryptoHashKey,dateShiftKey" {
		t.Errorf("random keys %v", r)
	}
	// A bad encryptKey from a key source is rejected like one in the file.
	if _, err := ParseConfig([]byte(cfg), Options{Keys: Keys{EncryptKey: "short"}}); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("bad encrypt key: %v", err)
	}
	for _, bad := range []string{`0`, `-3`, `1.5`, `"x"`, `3651`, `true`} {
		if _, err := ParseConfig([]byte(strings.Replace(patientScopeConfig, "RANGE", bad, 1)), Options{}); err == nil || !strings.Contains(err.Error(), "dateShiftRangeInDays") {
			t.Errorf("range %s: %v", bad, err)
		}
	}
}

// TestEnginePatientScopeSTU3 uses the STU3 compartment (Claim.patient,
// AuditEvent.agent.reference).
func TestEnginePatientScopeSTU3(t *testing.T) {
	cfg := strings.Replace(strings.Replace(patientScopeConfig, "RANGE", "30", 1), `"fhirVersion":"R4"`, `"fhirVersion":"STU3"`, 1)
	c, err := ParseConfig([]byte(cfg), Options{FHIRVersion: "STU3", Compiler: FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(c, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithNow(context.Background(), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	shift := func(in, field string) string {
		t.Helper()
		out, _, err := e.AnonymizeJSON(ctx, []byte(in), FileContext{})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(out, &m)
		s, _ := m[field].(string)
		return s
	}
	p := shift(`{"resourceType":"Patient","id":"x1","birthDate":"2000-03-01"}`, "birthDate")
	a := shift(`{"resourceType":"AuditEvent","id":"a","type":{"code":"rest"},"recorded":"2000-03-01T08:00:00Z","agent":[{"requestor":true,"reference":{"reference":"Patient/x1"}}],"source":{"identifier":{"value":"s"}}}`, "recorded")
	if p == "" || a == "" || p == "2000-03-01" || a[:10] != p || a[10:] != "T08:00:00Z" {
		t.Errorf("STU3: Patient %q, AuditEvent %q", p, a)
	}
}

// TestPatientOffsetMemo de-identifies the resources of more patients than
// the run's memo of offsets holds, in turn and then in another order: each
// date moves by its own patient's offset.
func TestPatientOffsetMemo(t *testing.T) {
	e := newTestEngine(t, `{"fhirVersion":"R4","fhirPathRules":[
	  {"path":"nodesByType('dateTime')","method":"dateShift"},
	  {"path":"Resource","method":"keep"}],
	  "parameters":{"dateShiftKey":"memo","dateShiftScope":"patient"}}`)
	const n = 3 * patientMemoSize
	distinct := map[string]bool{}
	for round, step := range []int{1, 7, 1} {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("p%d", i*step%n)
			in := `{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/` + id + `"},"onsetDateTime":"2019-07-22"}`
			out, _, err := e.AnonymizeJSON(WithNow(context.Background(), today), []byte(in), FileContext{})
			if err != nil {
				t.Fatal(err)
			}
			want, _, _, err := ShiftDateKeepTime("2019-07-22", DateTime, PatientDateShiftOffset("memo", "patient", id, 0), true, false, today)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte(`"onsetDateTime":"`+want+`"`)) {
				t.Fatalf("round %d, patient %s: %s, want onset %s", round, id, out, want)
			}
			distinct[want] = true
		}
	}
	if len(distinct) < 20 {
		t.Fatalf("only %d distinct shifted dates over %d patients", len(distinct), n)
	}
}
