package anonymize

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"fhirdeid/internal/testshared"
)

// vectorCount counts the vectors of unit-vectors.json by outcome.
type vectorCount struct {
	pass, fail, pending, known int
}

// knownGeneralizeFailures are the generalize vectors (type and value, of
// the suites with the case "$this = @2010") that do not pass yet, with the
// reason. Empty: the dates of different precisions that Firely's engine
// compares (1990 >= @1990-01-01, 2010-01-02 = @2010) are compared as ranges
// (fhirpath.Env.PartialDatesAsRanges) in generalize cases.
var knownGeneralizeFailures = map[string]string{}

func (c *vectorCount) check(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		c.pass++
		return
	}
	c.fail++
	t.Errorf(format, args...)
}

// TestUnitVectors runs every vector of extracted/unit-vectors.json that does
// not need FHIRPath evaluation or the tree engine; those are counted as
// pending.
func TestUnitVectors(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "ms-anonymizer", "extracted")
	raw, err := os.ReadFile(filepath.Join(dir, "unit-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		CryptoHash struct {
			Key   string `json:"key"`
			Plain []struct {
				Input        *string `json:"input"`
				Output       *string `json:"output"`
				HashedString *string `json:"hashedString"`
			} `json:"plain"`
			Reference []struct {
				Input  string `json:"input"`
				Output string `json:"output"`
			} `json:"reference"`
			ReferenceIDExtraction struct {
				Known                 [][2]string `json:"known"`
				WholeValueTransformed [][2]string `json:"wholeValueTransformed"`
			} `json:"referenceIdExtraction"`
		} `json:"cryptoHash"`
		DateShift struct {
			Offsets []struct {
				Prefix string `json:"prefix"`
				Key    string `json:"key"`
				Offset int    `json:"offset"`
			} `json:"offsets"`
			Examples []struct {
				Type    string  `json:"type"`
				Input   string  `json:"input"`
				Partial *bool   `json:"enablePartialDatesForRedact"`
				Output  *string `json:"output"`
				Label   string  `json:"label"`
			} `json:"examples_key_dummy_prefix_empty"`
			Redacted []struct {
				Type    string  `json:"type"`
				Input   string  `json:"input"`
				Partial bool    `json:"partial"`
				Output  *string `json:"output"`
			} `json:"redactedInsteadOfShifted"`
			Quirks []map[string]any `json:"derivedQuirks"`
		} `json:"dateShift"`
		Redact struct {
			DatePartial    [][3]*string              `json:"datePartial"`
			AgePartial     [][2]*int                 `json:"agePartial"`
			AgeNonPartial  [][2]*int                 `json:"ageNonPartial"`
			PostalNonPart  struct{ Inputs []string } `json:"postalCodeNonPartial"`
			PostalPartial  postalVectors             `json:"postalCodePartial"`
			PostalPartial2 postalVectors             `json:"postalCodePartial2"`
		} `json:"redact"`
		Encrypt struct {
			Key        string      `json:"key"`
			Decrypt    [][2]string `json:"decrypt"`
			MustFail   []string    `json:"decryptMustFail"`
			VisitorKey string      `json:"visitorKey"`
		} `json:"encrypt"`
		Perturb struct {
			Fixed        [][]json.RawMessage `json:"fixed"`
			Proportional [][]json.RawMessage `json:"proportional"`
		} `json:"perturb"`
		Generalize struct {
			Suites []struct {
				Vectors [][]any `json:"vectors"`
			} `json:"suites"`
			RuntimeErrors []any `json:"runtimeErrors_AnonymizerProcessingException"`
			Complex       []any `json:"complexNodeThrows_AnonymizerRuleNotApplicableException"`
		} `json:"generalize"`
		Substitute struct {
			Primitive []struct {
				ReplaceWith json.RawMessage `json:"replaceWith"`
				Result      *string         `json:"result"`
			} `json:"primitive"`
			Complex []struct {
				ReplaceWith json.RawMessage `json:"replaceWith"`
				Result      json.RawMessage `json:"result"`
			} `json:"complex"`
			Conflicts []any    `json:"conflicts"`
			Invalid   [][2]any `json:"invalidReplaceWith_FormatException"`
		} `json:"substitute"`
		Visitor struct {
			Facts []string `json:"facts"`
		} `json:"visitor"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var n vectorCount

	// cryptoHash
	h := NewHasher(v.CryptoHash.Key, "R4")
	for _, p := range v.CryptoHash.Plain {
		if p.Input == nil {
			n.check(t, p.Output == nil, "hash of null gives a value")
			continue
		}
		in := *p.Input
		if p.HashedString != nil {
			in = *p.HashedString
		}
		got := h.Hash(in)
		n.check(t, got == *p.Output, "Hash(%q) = %q, want %q", in, got, *p.Output)
	}
	for _, r := range v.CryptoHash.Reference {
		got := h.HashReference(r.Input)
		n.check(t, got == r.Output, "HashReference(%q) = %q, want %q", r.Input, got, r.Output)
	}
	marker := func(string) string { return "@ID" }
	for _, pairs := range [][][2]string{v.CryptoHash.ReferenceIDExtraction.Known, v.CryptoHash.ReferenceIDExtraction.WholeValueTransformed} {
		for _, p := range pairs {
			got := TransformReference(p[0], marker, ReferencePatterns("R4"))
			n.check(t, got == p[1], "TransformReference(%q) = %q, want %q", p[0], got, p[1])
		}
	}

	// dateShift
	for _, o := range v.DateShift.Offsets {
		got := DateShiftOffset(o.Prefix, o.Key)
		n.check(t, got == o.Offset, "DateShiftOffset(%q, %q) = %d, want %d", o.Prefix, o.Key, got, o.Offset)
	}
	offset := DateShiftOffset("", "dummy")
	for _, e := range v.DateShift.Examples {
		typ, _ := ParseDateType(e.Type)
		partial := e.Partial == nil || *e.Partial
		got, keep, op, err := ShiftDate(e.Input, typ, offset, partial, today)
		ok := err == nil && keep == (e.Output != nil) && (!keep || got == *e.Output) &&
			(e.Label == "" || op.String() == e.Label)
		n.check(t, ok, "ShiftDate(%q, %s, partial=%v) = %q %v %v %v, want %v %s", e.Input, e.Type, partial, got, keep, op, err, deref(e.Output), e.Label)
	}
	for _, e := range v.DateShift.Redacted {
		typ, _ := ParseDateType(e.Type)
		got, keep, op, err := ShiftDate(e.Input, typ, offset, e.Partial, today)
		ok := err == nil && op == OpRedact && keep == (e.Output != nil) && (!keep || got == *e.Output)
		n.check(t, ok, "ShiftDate(%q, %s) = %q %v %v %v, want redacted %v", e.Input, e.Type, got, keep, op, err, deref(e.Output))
	}
	for _, q := range v.DateShift.Quirks {
		typ, _ := ParseDateType(q["type"].(string))
		for k, want := range q {
			rest, ok := strings.CutPrefix(k, "output_with_offset_")
			if !ok {
				continue
			}
			off, _ := strconv.Atoi(rest)
			got, keep, _, err := ShiftDate(q["input"].(string), typ, off, true, today)
			n.check(t, err == nil && keep && got == want, "ShiftDate(%q, offset %d) = %q, want %q", q["input"], off, got, want)
		}
	}

	// redact
	for _, d := range v.Redact.DatePartial {
		typ, _ := ParseDateType(*d[0])
		got, keep := RedactDate(*d[1], typ, true, today)
		n.check(t, keep == (d[2] != nil) && (!keep || got == *d[2]), "RedactDate(%q) = %q %v, want %v", *d[1], got, keep, deref(d[2]))
		_, keep = RedactDate(*d[1], typ, false, today)
		n.check(t, !keep, "RedactDate(%q, partial=false) kept the value", *d[1])
	}
	for _, a := range v.Redact.AgePartial {
		in := strconv.Itoa(*a[0])
		got, keep, err := RedactAge(in, true)
		n.check(t, err == nil && keep == (a[1] != nil) && (!keep || got == in), "RedactAge(%s) = %q %v %v", in, got, keep, err)
	}
	for _, a := range v.Redact.AgeNonPartial {
		_, keep, err := RedactAge(strconv.Itoa(*a[0]), false)
		n.check(t, err == nil && !keep, "RedactAge(%d, partial=false) kept", *a[0])
	}
	for _, in := range v.Redact.PostalNonPart.Inputs {
		_, keep, op := RedactPostalCode(in, false, nil)
		n.check(t, !keep && op == OpRedact, "RedactPostalCode(%q, partial=false) kept", in)
	}
	for _, pv := range []postalVectors{v.Redact.PostalPartial, v.Redact.PostalPartial2} {
		for _, p := range pv.Pairs {
			got, keep, op := RedactPostalCode(p[0], true, pv.Restricted)
			n.check(t, keep && got == p[1] && op == OpAbstract, "RedactPostalCode(%q) = %q %v, want %q", p[0], got, op, p[1])
		}
	}

	// encrypt
	e, err := NewEncryptor(v.Encrypt.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range v.Encrypt.Decrypt {
		got, err := e.Decrypt(d[0])
		n.check(t, err == nil && got == d[1], "Decrypt(%q) = %q %v, want %q", d[0], got, err, d[1])
		ct, err := e.Encrypt(d[1])
		back, err2 := e.Decrypt(ct)
		n.check(t, err == nil && err2 == nil && back == d[1] && ct != d[0], "Encrypt round trip of %q = %q", d[1], back)
	}
	for _, bad := range v.Encrypt.MustFail {
		_, err := e.Decrypt(bad)
		n.check(t, errors.Is(err, ErrCiphertext), "Decrypt(%q) error = %v, want ErrCiphertext", bad, err)
	}
	if v.Encrypt.VisitorKey != "" {
		k, _, _ := strings.Cut(v.Encrypt.VisitorKey, " ")
		_, err := NewEncryptor(k, nil)
		n.check(t, err == nil, "visitor key rejected: %v", err)
	}

	// perturb: [type, value, span, roundTo, min, max]; the noise is
	// deterministic here, so check the bounds (u=0 and u→1) and a spread of
	// positions in between.
	for _, set := range []struct {
		rangeType RangeType
		vectors   [][]json.RawMessage
	}{{Fixed, v.Perturb.Fixed}, {Proportional, v.Perturb.Proportional}} {
		for _, p := range set.vectors {
			var typ string
			var span float64
			var roundTo int
			json.Unmarshal(p[0], &typ)
			json.Unmarshal(p[2], &span)
			json.Unmarshal(p[3], &roundTo)
			value := string(p[1])
			lo, _ := new(big.Rat).SetString(string(p[4]))
			hi, _ := new(big.Rat).SetString(string(p[5]))
			fhirType, _, _ := strings.Cut(typ, ".")
			target := PerturbTargetOf(fhirType, "R4")
			if target == PerturbQuantity {
				target = PerturbDecimal
			}
			ok := true
			var bad string
			for _, u := range []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999999999} {
				got, err := Perturb(value, target, span, set.rangeType, roundTo, u)
				r, okr := new(big.Rat).SetString(got)
				places := 0
				if i := strings.IndexByte(got, '.'); i >= 0 {
					places = len(got) - i - 1
				}
				maxPlaces := roundTo
				if target != PerturbDecimal {
					maxPlaces = 0
				}
				if err != nil || !okr || r.Cmp(lo) < 0 || r.Cmp(hi) > 0 || places > maxPlaces {
					ok, bad = false, got
				}
			}
			n.check(t, ok, "Perturb(%s %s, span %v %v, roundTo %d) = %s, want in [%s, %s]", typ, value, span, set.rangeType, roundTo, bad, p[4], p[5])
		}
	}

	// substitute
	for _, s := range v.Substitute.Primitive {
		rw, err := parseJSON(s.ReplaceWith)
		if err != nil {
			t.Fatal(err)
		}
		got, keep := SubstitutePrimitive(rw)
		n.check(t, keep == (s.Result != nil) && (!keep || got == *s.Result), "SubstitutePrimitive(%s) = %q %v", s.ReplaceWith, got, keep)
	}
	for _, s := range v.Substitute.Complex {
		// Only the fragment preparation is engine-free: the null and the
		// empty-string cases. Merging into the element (order, visited
		// children) is pending on the engine.
		rw, err := parseJSON(s.ReplaceWith)
		if err != nil {
			t.Fatal(err)
		}
		frag, err := SubstituteComplex(rw)
		if err != nil {
			n.check(t, false, "SubstituteComplex(%s): %v", s.ReplaceWith, err)
			continue
		}
		want, _ := parseJSON(s.Result)
		if rw.Kind == NullValue || strings.Contains(string(s.ReplaceWith), `""`) {
			n.check(t, sameMembers(frag, want), "SubstituteComplex(%s) = %s, want the members of %s", s.ReplaceWith, frag.AppendJSON(nil), s.Result)
		} else {
			n.pending++
		}
	}
	for _, inv := range v.Substitute.Invalid {
		b, _ := json.Marshal(inv[1])
		rw, _ := parseJSON(b)
		if rw.Kind == ObjectValue {
			n.pending++ // an object of the wrong type: needs the FHIR model
			continue
		}
		_, err := SubstituteComplex(rw)
		n.check(t, err != nil, "SubstituteComplex(%s) accepted", b)
	}
	n.pending += len(v.Substitute.Conflicts)

	// generalize: the cases need the FHIRPath evaluator.
	for _, s := range v.Generalize.Suites {
		n.pending += len(s.Vectors)
	}
	n.pending += len(v.Generalize.RuntimeErrors) + len(v.Generalize.Complex)
	// visitor facts need the engine.
	n.pending += len(v.Visitor.Facts)

	t.Logf("value-level unit vectors: %d pass, %d fail, %d left to TestUnitVectorsEngine and TestEnginePrecedence", n.pass, n.fail, n.pending)
}

type postalVectors struct {
	Restricted []string    `json:"restricted"`
	Pairs      [][2]string `json:"pairs"`
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// sameMembers compares two objects ignoring member order.
func sameMembers(a, b Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case ObjectValue:
		if len(a.Members) != len(b.Members) {
			return false
		}
		for _, m := range a.Members {
			o, ok := b.Get(m.Key)
			if !ok || !sameMembers(m.Value, *o) {
				return false
			}
		}
		return true
	case ArrayValue:
		if len(a.Items) != len(b.Items) {
			return false
		}
		for i := range a.Items {
			if !sameMembers(a.Items[i], b.Items[i]) {
				return false
			}
		}
		return true
	}
	return a.Text == b.Text
}

// generalizeTarget places a primitive of a FHIR type in a resource: the
// rule path, the resource with %s for the JSON value, and the member that
// holds it.
var generalizeTargets = map[string]struct {
	path, resource string
	keys           []string
}{
	"integer":     {"Patient.multipleBirth", `{"resourceType":"Patient","multipleBirthInteger":%s}`, []string{"multipleBirthInteger"}},
	"positiveInt": {"Observation.value.dimensions", `{"resourceType":"Observation","status":"final","code":{"text":"c"},"valueSampledData":{"period":1,"dimensions":%s}}`, []string{"valueSampledData", "dimensions"}},
	"unsignedInt": {"Patient.photo.size", `{"resourceType":"Patient","photo":[{"size":%s}]}`, []string{"photo", "0", "size"}},
	"string":      {"Patient.name.family", `{"resourceType":"Patient","name":[{"family":%s}]}`, []string{"name", "0", "family"}},
	"date":        {"Patient.birthDate", `{"resourceType":"Patient","birthDate":%s}`, []string{"birthDate"}},
	"dateTime":    {"Patient.deceased", `{"resourceType":"Patient","deceasedDateTime":%s}`, []string{"deceasedDateTime"}},
	"instant":     {"Observation.issued", `{"resourceType":"Observation","status":"final","code":{"text":"c"},"issued":%s}`, []string{"issued"}},
	"time":        {"Observation.value", `{"resourceType":"Observation","status":"final","code":{"text":"c"},"valueTime":%s}`, []string{"valueTime"}},
}

// runGeneralize applies one generalize rule to one value through the engine
// and returns the element's resulting JSON text ("" when removed).
func runGeneralize(typ string, value json.RawMessage, cases json.RawMessage, other string) (string, error) {
	tgt, ok := generalizeTargets[typ]
	if !ok {
		return "", fmt.Errorf("no target element for type %s", typ)
	}
	cfg := `{"fhirPathRules":[{"path":` + strconv.Quote(tgt.path) + `,"method":"generalize","cases":` + string(cases)
	if other != "" {
		cfg += `,"otherValues":` + strconv.Quote(other)
	}
	cfg += `}],"parameters":{"cryptoHashKey":"k","dateShiftKey":"k"}}`
	c, err := ParseConfig([]byte(cfg), Options{Compiler: FHIRPathCompiler()})
	if err != nil {
		return "", err
	}
	e, err := NewEngine(c, EngineOptions{})
	if err != nil {
		return "", err
	}
	out, _, err := e.AnonymizeJSON(WithNow(context.Background(), today), []byte(fmt.Sprintf(tgt.resource, value)), FileContext{})
	if err != nil {
		return "", err
	}
	v, err := parseJSON(out)
	if err != nil {
		return "", err
	}
	cur := &v
	for _, k := range tgt.keys {
		if i, err := strconv.Atoi(k); err == nil {
			if cur.Kind != ArrayValue || i >= len(cur.Items) {
				return "", nil
			}
			cur = &cur.Items[i]
			continue
		}
		next, ok := cur.Get(k)
		if !ok {
			return "", nil
		}
		cur = next
	}
	return string(cur.AppendJSON(nil)), nil
}

// TestUnitVectorsEngine runs the vectors of unit-vectors.json that need
// FHIRPath and the engine: generalize suites, generalize errors and
// substitute conflicts.
func TestUnitVectorsEngine(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "ms-anonymizer", "extracted")
	raw, err := os.ReadFile(filepath.Join(dir, "unit-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Generalize struct {
			Suites []struct {
				Cases   json.RawMessage     `json:"cases"`
				Vectors [][]json.RawMessage `json:"vectors"`
			} `json:"suites"`
			RuntimeErrors [][]json.RawMessage `json:"runtimeErrors_AnonymizerProcessingException"`
			Complex       []string            `json:"complexNodeThrows_AnonymizerRuleNotApplicableException"`
		} `json:"generalize"`
		Substitute struct {
			Conflicts []struct {
				Type        string          `json:"type"`
				Value       json.RawMessage `json:"value"`
				Visited     string          `json:"visited"`
				ReplaceWith json.RawMessage `json:"replaceWith"`
				Result      json.RawMessage `json:"result"`
			} `json:"conflicts"`
		} `json:"substitute"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var n vectorCount
	for _, s := range v.Generalize.Suites {
		for _, vec := range s.Vectors {
			var typ, other string
			json.Unmarshal(vec[0], &typ)
			if len(vec) > 3 {
				json.Unmarshal(vec[3], &other)
			}
			value := vec[1]
			if typ == "instant" { // "2001-04-06T04:13:14Z (built from DateTimeOffset)"
				var s string
				json.Unmarshal(value, &s)
				s, _, _ = strings.Cut(s, " ")
				value = json.RawMessage(strconv.Quote(s))
			}
			want := ""
			if string(vec[2]) != "null" {
				want = string(vec[2])
				if typ != "integer" && typ != "positiveInt" && typ != "unsignedInt" && want[0] != '"' {
					want = strconv.Quote(want)
				}
			}
			got, err := runGeneralize(typ, value, s.Cases, other)
			ok := err == nil && sameNumberOrText(got, want)
			key := typ + " " + string(value)
			if why, isKnown := knownGeneralizeFailures[key]; isKnown && strings.Contains(string(s.Cases), "$this = @2010") {
				if ok {
					t.Errorf("generalize %s passes but is listed in knownGeneralizeFailures", key)
				} else {
					t.Logf("generalize %s: known failure (%s): got %s, want %s", key, why, orRemoved(got), orRemoved(want))
					n.known++
				}
				continue
			}
			n.check(t, ok, "generalize %s %s with %s (otherValues %q) = %s %v, want %s", typ, value, s.Cases, other, got, err, orRemoved(want))
		}
	}
	for _, re := range v.Generalize.RuntimeErrors {
		var typ string
		json.Unmarshal(re[0], &typ)
		_, err := runGeneralize(typ, re[1], re[2], "")
		var pe *ProcessingError
		n.check(t, errors.As(err, &pe), "generalize %s %s with %s: error %v, want a processing error", typ, re[1], re[2], err)
	}
	complexTargets := map[string]string{
		"Address":      `{"resourceType":"Patient","address":[{"city":"x"}]}`,
		"HumanName":    `{"resourceType":"Patient","name":[{"family":"x"}]}`,
		"ContactPoint": `{"resourceType":"Patient","telecom":[{"value":"x"}]}`,
	}
	for _, typ := range v.Generalize.Complex {
		c, _ := ParseConfig([]byte(`{"fhirPathRules":[{"path":"nodesByType('`+typ+`')","method":"generalize","cases":{"true":"'a'"}}]}`), Options{Compiler: FHIRPathCompiler()})
		e, err := NewEngine(c, EngineOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = e.AnonymizeJSON(context.Background(), []byte(complexTargets[typ]), FileContext{})
		var ce *ConfigError
		n.check(t, errors.As(err, &ce), "generalize on %s: error %v, want a configuration error", typ, err)
	}
	// Substitute conflicts: a keep rule visits a node first.
	for _, sc := range v.Substitute.Conflicts {
		var path, resource string
		var keys []string
		switch sc.Type {
		case "id":
			path, resource, keys = "Patient.id", `{"resourceType":"Patient","id":`+string(sc.Value)+`}`, []string{"id"}
		case "HumanName":
			path, resource, keys = "Patient.name", `{"resourceType":"Patient","name":[`+string(sc.Value)+`]}`, []string{"name", "0"}
		}
		visited := strings.Replace(strings.Replace(sc.Visited, "$this", path, 1), "HumanName.", "Patient.name.", 1)
		cfg := `{"fhirPathRules":[{"path":` + strconv.Quote(visited) + `,"method":"keep"},{"path":` + strconv.Quote(path) + `,"method":"substitute","replaceWith":` + string(sc.ReplaceWith) + `}]}`
		c, err := ParseConfig([]byte(cfg), Options{Compiler: FHIRPathCompiler()})
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(c, EngineOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := e.AnonymizeJSON(context.Background(), []byte(resource), FileContext{})
		if err != nil {
			n.check(t, false, "substitute conflict %s: %v", sc.Visited, err)
			continue
		}
		doc, _ := parseJSON(out)
		cur := &doc
		for _, k := range keys {
			if i, err := strconv.Atoi(k); err == nil {
				cur = &cur.Items[i]
			} else {
				cur, _ = cur.Get(k)
			}
		}
		want, _ := parseJSON(sc.Result)
		n.check(t, cur != nil && sameMembers(*cur, want), "substitute with %s visited = %s, want %s", sc.Visited, out, sc.Result)
	}
	t.Logf("engine-level unit vectors: %d pass, %d fail, %d known failures", n.pass, n.fail, n.known)
}

func orRemoved(s string) string {
	if s == "" {
		return "removed"
	}
	return s
}

// sameNumberOrText compares JSON texts, numbers numerically.
func sameNumberOrText(a, b string) bool {
	if a == b {
		return true
	}
	x, ok1 := new(big.Rat).SetString(a)
	y, ok2 := new(big.Rat).SetString(b)
	return ok1 && ok2 && x.Cmp(y) == 0
}
