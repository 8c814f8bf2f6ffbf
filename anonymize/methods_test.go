package anonymize

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"fhirdeid/jsontree"
)

// today pins "now" for the age > 89 checks, to the snapshot date of the
// reference test data.
var today = time.Date(2025, 9, 5, 0, 0, 0, 0, time.UTC)

// A few vectors of unit-vectors.json, copied so that the core tests run
// without the shared material.
func TestHash(t *testing.T) {
	h := NewHasher("123", "R4")
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "8f16771f9f8851b26f4d460fa17de93e2711c7e51337cb8a608a0f81e1c1b6ae"},
		{"ÆŊŋßſ♫∅", "1a94823f0a0f00a4b1ca771c3446dc5e17958f4dae3588ace2bca8a843eb63d9"},
		{"example", "698d54f0494528a759f19c8e87a9f99e75a5881b9267ee3926bcf62c992d84ba"},
		{"True", "970cad44852eb4b6b1b72c346793a28b799f8dd3d9f37491e52eb5178b359350"},
		{"23", "c846593cc9ec1e3a2126c5aa321f8e1c2246f976ffd8f1b9c0fe75a1e26c985d"},
	}
	for _, tt := range tests {
		if got := h.Hash(tt.in); got != tt.want {
			t.Errorf("Hash(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHashReference(t *testing.T) {
	h := NewHasher("123", "R4")
	tests := []struct{ in, want string }{
		{"", ""},
		{"#", "#"},
		{"#p1", "#a10e6bee4fbeb6a7804153c25688dd4dd7b9c2a005417136026350fc33ac609f"},
		{"Patient/example", "Patient/698d54f0494528a759f19c8e87a9f99e75a5881b9267ee3926bcf62c992d84ba"},
		{"http://example.org/fhir/Observation/apo89654/_history/2", "http://example.org/fhir/Observation/b1e85ca33baf76575ad28588af85b8f10c0dd40e9ed8cd57cdb7ae94ccd75695/_history/2"},
		{"urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "urn:uuid:24970eb3f915e516a2b5241c0d6979097a6357a13b89612c6a54b8ab5479df34"},
		{"urn:oid:1.2.3.4.5", "urn:oid:0543fb50485f58a47073f51aad1677607aec031c2c83c25ee7b040ade95cfbcc"},
	}
	for _, tt := range tests {
		if got := h.HashReference(tt.in); got != tt.want {
			t.Errorf("HashReference(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// The id part, shown with a marker transform.
	marker := func(string) string { return "@ID" }
	rx := ReferencePatterns("R4")
	for _, tt := range []struct{ in, want string }{
		{"Patient/034AB16", "Patient/@ID"},
		{"034AB16", "@ID"},
		{"Patient/AbcŴΉЙ", "@ID"},
		{"http://my-server.org/fhir/Patient/1", "@ID"}, // '-' is not allowed in the host
		{"http://example.org/fhir/Patient/1", "http://example.org/fhir/Patient/@ID"},
		{"https://example.org:8080/fhir/Patient/1/_history/7", "https://example.org:8080/fhir/Patient/@ID/_history/7"},
		{"Patient?identifier=x|1", "@ID"},
		{"Unknownthing/1", "@ID"},
		{"urn:oid:1.2.3=4.5", "@ID"},
		{"urn:uuid:C757873D-EC9A-4326-A141-556F43239520", "urn:uuid:@ID"},
		{"Patient/" + strings.Repeat("a", 65), "@ID"},
	} {
		if got := TransformReference(tt.in, marker, rx); got != tt.want {
			t.Errorf("TransformReference(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// STU3 names types that R4 does not.
	if got := TransformReference("ProcessRequest/1", marker, ReferencePatterns("STU3")); got != "ProcessRequest/@ID" {
		t.Errorf("STU3 ProcessRequest/1 = %q", got)
	}
	if got := TransformReference("ProcessRequest/1", marker, rx); got != "@ID" {
		t.Errorf("R4 ProcessRequest/1 = %q, want whole value", got)
	}
}

func TestDateShiftOffset(t *testing.T) {
	tests := []struct {
		prefix, key string
		want        int
	}{
		{"", "dummy", -21},
		{"example", "123", 41},
		{"", "123", 50},
		{"", "", -50},
		{"filename", "123", 4},
		{"c72e70ca31a54fdccbad35634bbdfdcfa5176bf053e20d1136dbad7d2b2db70a", "123", -11},
	}
	for _, tt := range tests {
		if got := DateShiftOffset(tt.prefix, tt.key); got != tt.want {
			t.Errorf("DateShiftOffset(%q, %q) = %d, want %d", tt.prefix, tt.key, got, tt.want)
		}
	}
}

// The summed form of DateShiftOffset equals the fold that §2.3 defines,
// o = (o*131 + b) mod 101 byte by byte, for every length (the powers of 30
// it uses repeat every 100 bytes) and for bytes of non-ASCII text.
func TestDateShiftOffsetFold(t *testing.T) {
	fold := func(s string) int {
		o := 0
		for i := 0; i < len(s); i++ {
			o = (o*131 + int(s[i])) % 101
		}
		return o - 50
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := range 450 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.IntN(256))
		}
		for _, cut := range []int{0, n / 3, n} {
			prefix, key := string(b[:cut]), string(b[cut:])
			if got, want := DateShiftOffset(prefix, key), fold(prefix+key); got != want {
				t.Fatalf("length %d, prefix %d bytes: %d, the fold gives %d", n, cut, got, want)
			}
		}
	}
}

func BenchmarkDateShiftOffset(b *testing.B) {
	const id = "c72e70ca31a54fdccbad35634bbdfdcfa5176bf053e20d1136dbad7d2b2db70a"
	for b.Loop() {
		DateShiftOffset(id, "123")
	}
}

func TestShiftDate(t *testing.T) {
	const off = -21
	tests := []struct {
		typ     DateType
		in      string
		offset  int
		partial bool
		want    string // "" = removed
		op      Operation
	}{
		{Date, "2015-02-07", off, true, "2015-01-17", OpPerturb},
		{Date, "2015-02", off, true, "2015", OpRedact},
		{Date, "2015-02", off, false, "", OpRedact},
		{Date, "2015", off, true, "2015", OpRedact},
		{DateTime, "2015-02-07", off, true, "2015-01-17", OpPerturb},
		{DateTime, "2015-02-07T13:28:17-05:00", off, true, "2015-01-17T00:00:00-05:00", OpPerturb},
		{DateTime, "2015-02-07T13:28:17+05:00", off, true, "2015-01-17T00:00:00+05:00", OpPerturb},
		{DateTime, "2015-02-07T13:28:17Z", off, true, "2015-01-17T00:00:00Z", OpPerturb},
		{DateTime, "2015-02-07T13:28:17.12345-05:00", off, true, "2015-01-17T00:00:00.00000-05:00", OpPerturb},
		{Instant, "2015-02-07T13:28:17+00:00", off, true, "2015-01-17T00:00:00+00:00", OpPerturb},
		{DateTime, "1925-02-07T13:28:17-05:00", off, true, "", OpRedact},
		{Instant, "1915-03-07T13:28:17-05:00", off, true, "", OpRedact},
		{DateTime, "2001-01-01Z", 41, true, "2001-02-11", OpPerturb},
		{DateTime, "2015-02-07T13:28:17", off, true, "2015-01-17", OpPerturb},
		{Date, "2000-01-01", 41, true, "2000-02-11", OpPerturb},
		// Fixed offsets, including 0, still zero the time.
		{DateTime, "2015-02-07T13:28:17Z", 0, true, "2015-02-07T00:00:00Z", OpPerturb},
		{Date, "2015-02-07", 11, true, "2015-02-18", OpPerturb},
		{Date, "2015-02-07", -15, true, "2015-01-23", OpPerturb},
		{Date, "2016-02-28", 1, true, "2016-02-29", OpPerturb},
		{Date, "2015-12-31", 1, true, "2016-01-01", OpPerturb},
		// Born 1940: not over 89 on the pinned date.
		{Date, "1940-01-01", 10, true, "1940-01-11", OpPerturb},
	}
	for _, tt := range tests {
		got, keep, op, err := ShiftDate(tt.in, tt.typ, tt.offset, tt.partial, today)
		if err != nil {
			t.Errorf("ShiftDate(%q, %v) error: %v", tt.in, tt.typ, err)
			continue
		}
		if !keep {
			got = ""
		}
		if got != tt.want || op != tt.op {
			t.Errorf("ShiftDate(%q, %v, %d, %v) = %q %v, want %q %v", tt.in, tt.typ, tt.offset, tt.partial, got, op, tt.want, tt.op)
		}
	}
	for _, bad := range []string{"2015-02-30", "2015-02-29", "9999-12-31"} {
		if _, _, _, err := ShiftDate(bad, Date, 5, true, today); !errors.Is(err, ErrDateRange) {
			t.Errorf("ShiftDate(%q) error = %v, want ErrDateRange", bad, err)
		} else {
			for _, part := range strings.Split(bad, "-") {
				if strings.Contains(err.Error(), part) {
					t.Errorf("error quotes a part of the value: %v", err)
				}
			}
		}
	}
}

func TestRedactDate(t *testing.T) {
	tests := []struct {
		typ     DateType
		in      string
		partial bool
		want    string
	}{
		{Date, "2015", true, "2015"},
		{Date, "2015-02", true, "2015"},
		{Date, "2015-02-07", true, "2015"},
		{Date, "1925-02-07", true, ""},
		{DateTime, "2015-02-07T13:28:17-05:00", true, "2015"},
		{DateTime, "1925-02-07T13:28:17-05:00", true, ""},
		{Instant, "2015-02-07T13:28:17-05:00", true, "2015"},
		{Date, "2015-02-07", false, ""},
		// Age over 89 counts to the day: born 1935-09-06 is 89 on 2025-09-05.
		{Date, "1935-09-06", true, "1935"},
		{Date, "1935-09-05", true, ""},
		{Date, "1935", true, ""},
	}
	for _, tt := range tests {
		got, keep := RedactDate(tt.in, tt.typ, tt.partial, today)
		if !keep {
			got = ""
		}
		if got != tt.want {
			t.Errorf("RedactDate(%q, %v, %v) = %q, want %q", tt.in, tt.typ, tt.partial, got, tt.want)
		}
	}
}

func TestRedactAge(t *testing.T) {
	tests := []struct {
		in      string
		partial bool
		keep    bool
	}{
		{"92", true, false}, {"57", true, true}, {"91", true, false}, {"89", true, true},
		{"101", false, false}, {"35", false, false}, {"90.5", true, false}, {"45.5", true, true},
	}
	for _, tt := range tests {
		got, keep, err := RedactAge(tt.in, tt.partial)
		if err != nil {
			t.Fatalf("RedactAge(%q): %v", tt.in, err)
		}
		if keep != tt.keep || (keep && got != tt.in) {
			t.Errorf("RedactAge(%q, %v) = %q %v, want keep=%v", tt.in, tt.partial, got, keep, tt.keep)
		}
	}
	if _, _, err := RedactAge("abc", true); err == nil || strings.Contains(err.Error(), "abc") {
		t.Errorf("RedactAge(abc) error = %v", err)
	}
}

func TestRedactPostalCode(t *testing.T) {
	tests := []struct {
		in         string
		partial    bool
		restricted []string
		want       string
		op         Operation
	}{
		{"98052", true, []string{"203", "556"}, "98000", OpAbstract},
		{"10104", true, []string{"203", "556"}, "10100", OpAbstract},
		{"20301", true, []string{"203", "556"}, "00000", OpAbstract},
		{"55602", true, []string{"203", "556"}, "00000", OpAbstract},
		{"98028-1830", true, []string{"203", "556"}, "98000-0000", OpAbstract},
		{"20301-1830", true, []string{"203", "556"}, "00000-0000", OpAbstract},
		{"12345", true, []string{"123"}, "00000", OpAbstract},
		{"54321", true, []string{"123"}, "54300", OpAbstract},
		{"123456789", true, nil, "123000000", OpAbstract},
		{"12", true, nil, "12", OpAbstract},
		{"98052", false, nil, "", OpRedact},
	}
	for _, tt := range tests {
		got, keep, op := RedactPostalCode(tt.in, tt.partial, tt.restricted)
		if !keep {
			got = ""
		}
		if got != tt.want || op != tt.op {
			t.Errorf("RedactPostalCode(%q) = %q %v, want %q %v", tt.in, got, op, tt.want, tt.op)
		}
	}
}

func TestEncryptRoundTrip(t *testing.T) {
	const key = "704ab12c8e3e46d4bea600ef62a6bec7"
	e, err := NewEncryptor(key, bytes.NewReader(bytes.Repeat([]byte{7}, 1024)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ ct, pt string }{
		{"qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY=", "abc"},
		{"zrFYnZ2cIwcfmjCVybP1ZC+LaD7gwGXBHR2bZjuutzA=", "测试"},
	} {
		got, err := e.Decrypt(tt.ct)
		if err != nil || got != tt.pt {
			t.Errorf("Decrypt(%q) = %q, %v; want %q", tt.ct, got, err, tt.pt)
		}
	}
	for _, pt := range []string{"", "a", "exactly16bytes!!", "This is for test", "ͶΆΈΞξτϡϿῧῄᾴѶѾ"} {
		ct, err := e.Encrypt(pt)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ct, "BwcHBwcHBwcHBwcHBwcHB") { // base64 of the injected IV
			t.Errorf("Encrypt(%q) = %q: IV not taken from the injected reader", pt, ct)
		}
		back, err := e.Decrypt(ct)
		if err != nil || back != pt {
			t.Errorf("round trip of %q = %q, %v", pt, back, err)
		}
	}
	for _, bad := range []string{"YWJj", "!!notbase64", "QXMgdGhlIG51bWJlciBvZiBwb3NzaWJsZSB0ZXN0cyBmb3IgZXZlbiBzaW1wbGUgc29m**&&^^"} {
		if _, err := e.Decrypt(bad); !errors.Is(err, ErrCiphertext) {
			t.Errorf("Decrypt(%q) error = %v, want ErrCiphertext", bad, err)
		}
	}
	for _, k := range []string{"", "short", "12345678901234567890", strings.Repeat("k", 33)} {
		if _, err := NewEncryptor(k, nil); !errors.Is(err, ErrKeySize) {
			t.Errorf("NewEncryptor(len %d) error = %v, want ErrKeySize", len(k), err)
		} else if k != "" && strings.Contains(err.Error(), k) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
	for _, k := range []string{"1234567890123456", strings.Repeat("k", 24), key} {
		if _, err := NewEncryptor(k, nil); err != nil {
			t.Errorf("NewEncryptor(len %d): %v", len(k), err)
		}
	}
}

func TestPerturb(t *testing.T) {
	tests := []struct {
		name      string
		value     string
		target    PerturbTarget
		span      float64
		rangeType RangeType
		roundTo   int
		u         float64
		want      string
	}{
		{"zero span keeps the text", "5.0", PerturbDecimal, 0, Fixed, 2, 0.3, "5.0"},
		{"zero span integer", "5", PerturbInteger, 0, Fixed, 2, 0.9, "5"},
		{"lower bound", "5.234", PerturbDecimal, 6, Fixed, 2, 0, "2.23"},
		{"middle", "5.234", PerturbDecimal, 6, Fixed, 2, 0.5, "5.23"},
		{"proportional lower", "5.234", PerturbDecimal, 1, Proportional, 2, 0, "2.62"},
		{"banker's rounding down to even", "2.5", PerturbInteger, 0.0000001, Fixed, 0, 0.5, "2"},
		{"banker's rounding up to even", "3.5", PerturbDecimal, 0, Fixed, 0, 0.5, "4"},
		{"integer forced to roundTo 0", "100", PerturbInteger, 10, Fixed, 2, 0.99, "105"},
		{"positiveInt floor 1", "1", PerturbPositiveInt, 200, Fixed, 2, 0, "1"},
		{"unsignedInt floor 0", "10", PerturbUnsignedInt, 40, Fixed, 0, 0, "0"},
		{"negative proportional uses magnitude", "-10", PerturbDecimal, 0.2, Proportional, 2, 0, "-11.00"},
		{"roundTo 4", "1024.12345678", PerturbDecimal, 0.00002, Fixed, 4, 0.5, "1024.1235"},
	}
	for _, tt := range tests {
		got, err := Perturb(tt.value, tt.target, tt.span, tt.rangeType, tt.roundTo, tt.u)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: Perturb(%s) = %s, want %s", tt.name, tt.value, got, tt.want)
		}
	}
	if _, err := Perturb("abc", PerturbDecimal, 1, Fixed, 2, 0.5); err == nil || strings.Contains(err.Error(), "abc") {
		t.Errorf("Perturb(abc) error = %v", err)
	}
}

func TestRoundHalfEven(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"2.5", 0, "2"}, {"3.5", 0, "4"}, {"-2.5", 0, "-2"}, {"-3.5", 0, "-4"},
		{"1.005", 2, "1.00"}, {"1.015", 2, "1.02"}, {"1.0151", 2, "1.02"}, {"-1.0149", 2, "-1.01"},
	}
	for _, tt := range tests {
		r, _ := new(big.Rat).SetString(tt.in)
		if got := roundHalfEven(r, tt.n).FloatString(tt.n); got != tt.want {
			t.Errorf("roundHalfEven(%s, %d) = %s, want %s", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestPerturbNoise(t *testing.T) {
	a := PerturbNoise("k", "Observation", "1", "valueQuantity.value")
	if a != PerturbNoise("k", "Observation", "1", "valueQuantity.value") {
		t.Error("noise is not deterministic")
	}
	seen := map[float64]bool{a: true}
	for _, parts := range [][]string{
		{"Observation", "2", "valueQuantity.value"},
		{"Observation", "1", "component[0].valueQuantity.value"},
		{"Observation1", "", "valueQuantity.value"},
	} {
		v := PerturbNoise("k", parts...)
		if v < 0 || v >= 1 {
			t.Errorf("noise %v out of [0,1)", v)
		}
		if seen[v] {
			t.Errorf("noise for %q collides", parts)
		}
		seen[v] = true
	}
	if PerturbNoise("other", "Observation", "1", "valueQuantity.value") == a {
		t.Error("noise does not depend on the key")
	}
}

func TestPerturbTargetOf(t *testing.T) {
	tests := []struct {
		typ, version string
		want         PerturbTarget
	}{
		{"decimal", "R4", PerturbDecimal}, {"Integer", "R4", PerturbInteger}, {"positiveInt", "R4", PerturbPositiveInt},
		{"unsignedInt", "R4", PerturbUnsignedInt}, {"integer64", "R4", PerturbNone}, {"Age", "R4", PerturbQuantity},
		{"MoneyQuantity", "R4", PerturbQuantity}, {"MoneyQuantity", "STU3", PerturbNone}, {"HumanName", "R4", PerturbNone},
	}
	for _, tt := range tests {
		if got := PerturbTargetOf(tt.typ, tt.version); got != tt.want {
			t.Errorf("PerturbTargetOf(%q, %q) = %v, want %v", tt.typ, tt.version, got, tt.want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	parse := func(s string) Value {
		v, err := parseJSON([]byte(`{"x":` + s + `}`))
		if err != nil {
			t.Fatal(err)
		}
		return v.Members[0].Value
	}
	for _, tt := range []struct {
		replaceWith string
		want        string
		keep        bool
	}{
		{`null`, "", false}, {`"string.Empty"`, "string.Empty", true}, {`false`, "False", true},
		{`true`, "True", true}, {`"abc"`, "abc", true}, {`1`, "1", true}, {`"2000"`, "2000", true},
	} {
		got, keep := SubstitutePrimitive(parse(tt.replaceWith))
		if got != tt.want || keep != tt.keep {
			t.Errorf("SubstitutePrimitive(%s) = %q %v, want %q %v", tt.replaceWith, got, keep, tt.want, tt.keep)
		}
	}
	for _, tt := range []struct{ replaceWith, want string }{
		{`null`, `{}`},
		{`{"use":"work","system":"phone","value":"12345678","period":{"start":"2020","end":""}}`, `{"use":"work","system":"phone","value":"12345678","period":{"start":"2020"}}`},
	} {
		got, err := SubstituteComplex(parse(tt.replaceWith))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(got.AppendJSON(nil)); s != tt.want {
			t.Errorf("SubstituteComplex(%s) = %s, want %s", tt.replaceWith, s, tt.want)
		}
	}
	for _, bad := range []string{`""`, `"2019-01-01"`, `[1]`, `3`} {
		if _, err := SubstituteComplex(parse(bad)); err == nil {
			t.Errorf("SubstituteComplex(%s) accepted", bad)
		}
	}
}

// stubEvaluator answers generalize cases from tables keyed by the compiled
// values, which the test sets to strings.
type stubEvaluator struct {
	match map[string]bool
	fail  string
}

func (s stubEvaluator) Match(c Compiled) (bool, error) {
	if c == s.fail {
		return false, errors.New("type error")
	}
	return s.match[c.(string)], nil
}

func (s stubEvaluator) Value(c Compiled) (Generalized, error) {
	return Generalized{Kind: StringValue, Text: "v:" + c.(string)}, nil
}

func TestGeneralize(t *testing.T) {
	cases := []GeneralizeCase{
		{CompiledCondition: "c1", CompiledValue: "e1"},
		{CompiledCondition: "c2", CompiledValue: "e2"},
	}
	tests := []struct {
		name    string
		match   map[string]bool
		other   OtherValues
		want    Generalized
		changed bool
	}{
		{"first match wins", map[string]bool{"c1": true, "c2": true}, OtherRedact, Generalized{StringValue, "v:e1"}, true},
		{"second", map[string]bool{"c2": true}, OtherRedact, Generalized{StringValue, "v:e2"}, true},
		{"none, redact", nil, OtherRedact, Generalized{Kind: NullValue}, true},
		{"none, keep", nil, OtherKeep, Generalized{}, false},
	}
	for _, tt := range tests {
		got, changed, err := Generalize(cases, tt.other, stubEvaluator{match: tt.match})
		if err != nil || got != tt.want || changed != tt.changed {
			t.Errorf("%s: got %v %v %v, want %v %v", tt.name, got, changed, err, tt.want, tt.changed)
		}
	}
	_, _, err := Generalize(cases, OtherRedact, stubEvaluator{fail: "c2"})
	if !errors.Is(err, ErrGeneralize) || !strings.Contains(err.Error(), "case 2") {
		t.Errorf("error = %v, want ErrGeneralize naming case 2", err)
	}
}

func TestSecurityLabels(t *testing.T) {
	var s Operations
	if got := SecurityLabels(s, nil); got != nil {
		t.Errorf("empty set gives %v", got)
	}
	s = s.Add(OpGeneralize).Add(OpRedact).Add(OpCryptoHash).Add(OpPerturb)
	got := SecurityLabels(s, []string{"redacted"})
	var codes []string
	for _, c := range got {
		codes = append(codes, c.Code)
	}
	if want := "CRYTOHASH PERTURBED GENERALIZED"; strings.Join(codes, " ") != want {
		t.Errorf("codes = %v, want %s", codes, want)
	}
	all := Operations(0)
	for op := range numOps {
		all = all.Add(op)
	}
	var b []byte
	for _, c := range SecurityLabels(all, nil) {
		b = c.AppendJSON(append(b, '\n'))
	}
	want := `
{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED","display":"redacted"}
{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"ABSTRED","display":"abstracted"}
{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"CRYTOHASH","display":"cryptographic hash function"}
{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"MASKED","display":"masked"}
{"code":"PERTURBED","display":"exact value is replaced with another exact value"}
{"code":"SUBSTITUTED","display":"exact value is replaced with a predefined value"}
{"code":"GENERALIZED","display":"exact value is replaced with a general value"}`
	if string(b) != want {
		t.Errorf("labels =%s\nwant%s", b, want)
	}
}

func BenchmarkHash(b *testing.B) {
	h := NewHasher("123", "R4")
	const v = "patienttestcity1"
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		h.Hash(v)
	}
}

func BenchmarkHashReference(b *testing.B) {
	h := NewHasher("123", "R4")
	const v = "Patient/c757873d-ec9a-4326-a141-556f43239520"
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		h.HashReference(v)
	}
}

func BenchmarkDateShift(b *testing.B) {
	const v = "2015-02-07T13:28:17.123-05:00"
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		off := DateShiftOffset("c72e70ca31a54fdccbad35634bbdfdcfa5176bf053e20d1136dbad7d2b2db70a", "123")
		if _, _, _, err := ShiftDate(v, DateTime, off, true, today); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReferenceMatcherAgreesWithPatterns compares the hand-written reference
// matcher with the regular expressions of the specification over a corpus
// built from the pieces that matter.
func TestReferenceMatcherAgreesWithPatterns(t *testing.T) {
	marker := func(string) string { return "@ID" }
	for _, version := range []string{"R4", "STU3"} {
		rx := ReferencePatterns(version)
		types := resourceTypeSet(version)
		schemes := []string{"", "http://", "https://", "ftp://", "HTTP://", "http:/"}
		hosts := []string{"", "example.org/", "my-server.org/", "x/fhir/", "a:8080/b/", `h\x/`, "%$/", "host_1/", "example.org/fhir"}
		typeNames := []string{"Patient", "Observation", "StructureDefinition", "StructureDefinitionTest", "ProcessRequest", "Unknown", "patient", ""}
		ids := []string{"1", "abc-1.2", strings.Repeat("a", 64), strings.Repeat("a", 65), "Ab_c", "é", ""}
		suffixes := []string{"", "/_history/2", "/_history/", "/_history/a_b", "/_history/1/_history/2", "/x"}
		n := 0
		for _, sc := range schemes {
			for _, h := range hosts {
				for _, ty := range typeNames {
					for _, id := range ids {
						for _, suf := range suffixes {
							ref := sc + h + ty + "/" + id + suf
							want := TransformReference(ref, marker, rx)
							if got := transformReference(ref, marker, types); got != want {
								t.Errorf("%s %q: matcher gives %q, patterns %q", version, ref, got, want)
							}
							n++
						}
					}
				}
			}
		}
		for _, ref := range []string{"urn:oid:1.2.3", "urn:oid:1.02.3", "urn:oid:3.1", "urn:oid:1", "urn:oid:1.", "urn:oid:0.0",
			"urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "urn:uuid:c757873d-ec9a-4326-a141-556f4323952", "urn:uuid:C757873D-EC9A-4326-A141-556F4323952G",
			"#", "#x", "Patient/1", "Patient?identifier=1", "/Patient/1", "Patient//1"} {
			want := TransformReference(ref, marker, rx)
			if got := transformReference(ref, marker, types); got != want {
				t.Errorf("%s %q: matcher gives %q, patterns %q", version, ref, got, want)
			}
			n++
		}
		if n < 1000 {
			t.Errorf("only %d references compared", n)
		}
	}
}

// The patterns of §2.3 as regular expressions, the oracle of the
// hand-written parser. Groups: 1 year, 5 month, 7 day, 8 the "T..." part.
const yearPattern = `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)`

var (
	dateRegexp     = regexp.MustCompile(yearPattern + `(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?`)
	dateTimeRegexp = regexp.MustCompile(yearPattern + `(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?`)
)

func regexDateParts(value string, t DateType) dateParts {
	rx := dateTimeRegexp
	if t == Date {
		rx = dateRegexp
	}
	m := rx.FindStringSubmatchIndex(value)
	if m == nil {
		return dateParts{}
	}
	group := func(i int) string {
		if m[2*i] < 0 {
			return ""
		}
		return value[m[2*i]:m[2*i+1]]
	}
	p := dateParts{ok: true}
	p.year, _ = strconv.Atoi(group(1))
	if s := group(5); s != "" {
		p.month, _ = strconv.Atoi(s)
	}
	if s := group(7); s != "" {
		p.day, _ = strconv.Atoi(s)
	}
	if t != Date {
		p.timePart = group(8)
	}
	return p
}

// TestDatePartsAgreeWithPatterns compares the hand-written date parser with
// the regular expressions of the specification over a generated corpus.
func TestDatePartsAgreeWithPatterns(t *testing.T) {
	prefixes := []string{"", " ", "x", "1", "12015", "0000", "00001"}
	years := []string{"2015", "0000", "0001", "1000", "0100", "0010", "9999", "201", "20a5"}
	months := []string{"", "-01", "-12", "-00", "-13", "-1", "-1x", "/02"}
	days := []string{"", "-01", "-31", "-00", "-32", "-3", "-29"}
	times := []string{"", "T13:28:17Z", "T13:28:17", "T13:28:17.12345-05:00", "T23:59:60+14:00", "T24:00:00Z", "T13:28Z",
		"T13:28:17.+05:00", "T13:28:17+14:01", "T13:28:17+13:59", "T13:28:17-1:00", "T00:00:00z", "t13:28:17Z", "T13:60:17Z", "T13:28:61Z"}
	suffixes := []string{"", "Z", "x", " 2016-01-01"}
	n := 0
	for _, pre := range prefixes {
		for _, y := range years {
			for _, m := range months {
				for _, d := range days {
					for _, tm := range times {
						for _, suf := range suffixes {
							v := pre + y + m + d + tm + suf
							for _, typ := range []DateType{Date, DateTime, Instant} {
								if got, want := parseDateParts(v, typ), regexDateParts(v, typ); got != want {
									t.Errorf("%v %q: parser %+v, patterns %+v", typ, v, got, want)
								}
								n++
							}
						}
					}
				}
			}
		}
	}
	if n < 10000 {
		t.Errorf("only %d values compared", n)
	}
}

// TestHasherCache checks the cryptoHash results of the engine's memo of
// recent inputs (hashMemo) and of the Hasher against HMAC-SHA256 computed
// directly, with more inputs than the memo has entries and inputs of every
// length around its limit.
func TestHasherCache(t *testing.T) {
	h := NewHasher("key", "R4")
	var m hashMemo
	want := func(s string) string {
		mac := hmac.New(sha256.New, []byte("key"))
		mac.Write([]byte(s))
		return hex.EncodeToString(mac.Sum(nil))
	}
	var inputs []string
	for i := range 3 * hashMemoSize {
		inputs = append(inputs, fmt.Sprintf("id-%d", i))
	}
	for n := hashMemoInput - 2; n <= hashMemoInput+2; n++ {
		inputs = append(inputs, strings.Repeat("x", n), strings.Repeat("y", n))
	}
	for round := range 3 {
		for i := range inputs {
			s := inputs[(i*7+round)%len(inputs)]
			if got := h.Hash(s); got != want(s) {
				t.Fatalf("round %d: Hash(%q) = %s, want %s", round, s, got, want(s))
			}
			if got := string(m.appendHash(nil, h, s, false)); got != want(s) {
				t.Fatalf("round %d: the memo's hash of %q = %s, want %s", round, s, got, want(s))
			}
		}
	}
}

// ParseDateType folds case as strings.EqualFold does, the long s of
// "inſtant" included, and tells other types apart.
func TestParseDateType(t *testing.T) {
	for in, want := range map[string]DateType{"date": Date, "DATE": Date, "dateTime": DateTime, "DateTIME": DateTime,
		"instant": Instant, "INSTANT": Instant, "in\u017ftant": Instant} {
		if got, ok := ParseDateType(in); !ok || got != want {
			t.Errorf("ParseDateType(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "string", "time", "dates", "dateTim", "instants", "Period", "d\u00e4te"} {
		if _, ok := ParseDateType(in); ok {
			t.Errorf("ParseDateType(%q) recognised", in)
		}
	}
}

// TestTypeSet checks the set of resource type names that reference matching
// uses against the model's list: every name is found, near misses are not.
func TestTypeSet(t *testing.T) {
	for _, version := range []string{"R4", "STU3"} {
		names := ResourceTypes(version)
		is := map[string]bool{}
		for _, n := range names {
			is[n] = true
		}
		set := resourceTypeSet(version)
		for _, n := range names {
			if !set.has(n) {
				t.Errorf("%s: %s not found", version, n)
			}
			for _, near := range []string{n + "x", n[:len(n)-1], strings.ToLower(n), "X" + n, n + n} {
				if set.has(near) != is[near] {
					t.Errorf("%s: has(%q) = %v", version, near, !is[near])
				}
			}
		}
		if set.has("") {
			t.Errorf("%s: the empty name is found", version)
		}
	}
}

// TestAppendHex compares appendHex with encoding/hex for every byte value at
// every position.
func TestAppendHex(t *testing.T) {
	var sum [32]byte
	for v := range 256 {
		for i := range sum {
			sum[i] = byte(v + 7*i)
		}
		if got, want := string(appendHex([]byte("x"), &sum)), "x"+hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("appendHex = %s, want %s", got, want)
		}
	}
}

// TestSecurityLabelsPlain checks what addSecurityLabels relies on when it
// sets the labels' keys and values as plain text.
func TestSecurityLabelsPlain(t *testing.T) {
	for _, l := range securityLabels {
		for _, s := range []string{l.System, l.Code, l.Display, "system", "code", "display"} {
			if !jsontree.IsPlain(s) {
				t.Errorf("label text %q is not plain", s)
			}
		}
	}
}
