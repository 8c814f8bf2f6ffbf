package anonymize

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// unsupportedCases need features outside the Microsoft anonymizer's
// configuration format.
var unsupportedCases = map[string]string{}

// maskMethod is the "mask" custom processor of the reference unit tests: it
// replaces the first customSettings.maskedLength characters of every value
// by '*' and records nothing.
var maskMethod = CustomMethod{Apply: func(c CustomCall) (string, bool, error) {
	n := 0
	if v, ok := c.CustomSettings.Get("maskedLength"); ok {
		n, _ = strconv.Atoi(v.Text)
	}
	r := []rune(c.Value)
	for i := 0; i < n && i < len(r); i++ {
		r[i] = '*'
	}
	return string(r), true, nil
}}

// knownFailures are resource cases that do not pass yet, with the reason.
// The test fails when another case fails, and reports a known failure that
// passes so that it can be removed from this list.
var knownFailures = map[string]string{}

const (
	ft = "FHIR/src/Microsoft.Health.Fhir.Anonymizer.Shared.FunctionalTests/"
	ut = "FHIR/src/Microsoft.Health.Fhir.Anonymizer.Shared.Core.UnitTests/"
)

// indexOnlyCases are cases of INDEX.md's table that manifest.json leaves out
// but whose inputs and outcome are available: processing-error behaviour
// and inputs of the other FHIR release.
var indexOnlyCases = []resourceCase{
	{ID: "patient-default-processing-error", FHIRVersions: []string{"R4", "STU3"}, Config: ft + "Configurations/configuration-without-processing-error.json",
		Input: ft + "TestResources/patient-basic.json", Throws: "AnonymizerProcessingException"},
	{ID: "bundle-skip-processing-error", FHIRVersions: []string{"R4", "STU3"}, Config: ft + "Configurations/configuration-skip-processing-error.json",
		Input: ft + "TestResources/bundle-basic.json", Expected: ut + "TestResources/bundle-empty.json"},
	{ID: "stu3-rejects-MedicinalProduct", FHIRVersions: []string{"STU3"}, Config: "FHIR/src/Microsoft.Health.Fhir.Anonymizer.Stu3.FunctionalTests/stu3-configuration-sample.json",
		Input: ft + "TestResources/R4OnlyResource/MedicinalProduct.json", Throws: "InvalidInputException"},
	{ID: "stu3-rejects-Claim-R4", FHIRVersions: []string{"STU3"}, Config: "FHIR/src/Microsoft.Health.Fhir.Anonymizer.Stu3.FunctionalTests/stu3-configuration-sample.json",
		Input: ft + "TestResources/R4OnlyResource/Claim-R4.json", Throws: "InvalidInputException"},
	{ID: "r4-rejects-Contract-Stu3", FHIRVersions: []string{"R4"}, Config: "FHIR/src/Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests/r4-configuration-sample.json",
		Input: ft + "TestResources/Stu3OnlyResource/Contract-Stu3.json", Throws: "InvalidInputException"},
}

type resourceCase struct {
	ID           string   `json:"id"`
	FHIRVersions []string `json:"fhirVersions"`
	Config       string   `json:"config"`
	Input        string   `json:"input"`
	Expected     string   `json:"expected"`
	Throws       string   `json:"throws"`
}

// TestConformanceResourceCases runs every resourceCases entry of the
// manifest through the engine, for each FHIR build the case names, with
// "today" pinned to the snapshot date of the test data.
func TestConformanceResourceCases(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "ms-anonymizer")
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		ResourceCases []resourceCase `json:"resourceCases"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	ctx := WithNow(context.Background(), today)
	var pass, fail, known, unsupported int
	cases := append(manifest.ResourceCases, indexOnlyCases...)
	for _, c := range cases {
		if why, ok := unsupportedCases[c.ID]; ok {
			for range c.FHIRVersions {
				msConformance.count(false, true)
			}
			t.Logf("%s: not run: %s", c.ID, why)
			unsupported += len(c.FHIRVersions)
			continue
		}
		for _, version := range c.FHIRVersions {
			name := c.ID + "/" + version
			err := runResourceCase(ctx, dir, c, version)
			_, isKnown := knownFailures[c.ID]
			switch {
			case err == nil && isKnown:
				t.Errorf("%s: passes but is listed in knownFailures", name)
				pass++
			case err == nil:
				pass++
			case isKnown:
				t.Logf("%s: known failure (%s): %v", name, knownFailures[c.ID], err)
				known++
			default:
				t.Errorf("%s: %v", name, err)
				fail++
			}
			msConformance.count(err == nil, false)
		}
	}
	t.Logf("resource cases: %d pass, %d fail, %d known failures, %d not supported (%d manifest entries and %d more from INDEX.md, run per FHIR build)",
		pass, fail, known, unsupported, len(manifest.ResourceCases), len(indexOnlyCases))
}

func runResourceCase(ctx context.Context, dir string, c resourceCase, version string) error {
	cfgData, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(c.Config)))
	if err != nil {
		return err
	}
	cfg, err := ParseConfig(cfgData, Options{FHIRVersion: version, Compiler: FHIRPathCompiler()})
	if err != nil {
		return fmt.Errorf("loading config: %w", err)
	}
	eng, err := NewEngine(cfg, EngineOptions{CustomMethods: map[string]CustomMethod{"Mask": maskMethod}})
	if err != nil {
		return fmt.Errorf("creating engine: %w", err)
	}
	input, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(c.Input)))
	if err != nil {
		return err
	}
	out, _, err := eng.AnonymizeJSON(ctx, input, FileContext{})
	if c.Throws != "" {
		var want bool
		switch c.Throws {
		case "AnonymizerProcessingException":
			var pe *ProcessingError
			want = errors.As(err, &pe)
		case "InvalidInputException":
			var ie *InputError
			want = errors.As(err, &ie)
		case "AnonymizerConfigurationException":
			var ce *ConfigError
			want = errors.As(err, &ce)
		default:
			return fmt.Errorf("unknown expected exception %s", c.Throws)
		}
		if !want {
			return fmt.Errorf("got error %v (%T), want %s", err, err, c.Throws)
		}
		return nil
	}
	if err != nil {
		return err
	}
	expected, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(c.Expected)))
	if err != nil {
		return err
	}
	if err := sameJSON(expected, out); err != nil {
		return err
	}
	// The C# engine tests compare these two byte for byte.
	exact := bytes.TrimSpace(bytes.TrimPrefix(expected, []byte("\xef\xbb\xbf")))
	switch c.ID {
	case "engine-oneline":
		if !bytes.Equal(out, exact) {
			return fmt.Errorf("compact output differs byte for byte:\n got %s\nwant %s", out, exact)
		}
	case "engine-pretty":
		root, err := jsontree.Parse(out)
		if err != nil {
			return err
		}
		if pretty := root.AppendIndent(nil, "", "  "); !bytes.Equal(pretty, exact) {
			return fmt.Errorf("indented output differs byte for byte:\n got %s\nwant %s", pretty, exact)
		}
	}
	return nil
}

// sameJSON compares two documents as the C# functional tests do after a POCO
// round trip: member order free, numbers numerically, an instant's "Z" equal
// to "+00:00".
func sameJSON(want, got []byte) error {
	parse := func(b []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))))
		d.UseNumber()
		var v any
		err := d.Decode(&v)
		return v, err
	}
	w, err := parse(want)
	if err != nil {
		return fmt.Errorf("expected output: %w", err)
	}
	g, err := parse(got)
	if err != nil {
		return fmt.Errorf("engine output: %w", err)
	}
	var diffs []string
	diffJSON("", w, g, &diffs)
	if len(diffs) > 0 {
		if len(diffs) > 8 {
			diffs = append(diffs[:8], fmt.Sprintf("... %d more", len(diffs)-8))
		}
		return fmt.Errorf("output differs:\n  %s", strings.Join(diffs, "\n  "))
	}
	return nil
}

var utcOffset = regexp.MustCompile(`^\d{4}-\d\d-\d\dT[0-9:.]+\+00:00$`)

func normString(s string) string {
	if utcOffset.MatchString(s) {
		return strings.TrimSuffix(s, "+00:00") + "Z"
	}
	return s
}

func diffJSON(path string, w, g any, diffs *[]string) {
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: want object, got %s", path, short(g)))
			return
		}
		keys := map[string]bool{}
		for k := range wv {
			keys[k] = true
		}
		for k := range gv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			a, aok := wv[k]
			b, bok := gv[k]
			switch {
			case !aok:
				*diffs = append(*diffs, fmt.Sprintf("%s/%s: unexpected %s", path, k, short(b)))
			case !bok:
				*diffs = append(*diffs, fmt.Sprintf("%s/%s: missing, want %s", path, k, short(a)))
			default:
				diffJSON(path+"/"+k, a, b, diffs)
			}
		}
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			*diffs = append(*diffs, fmt.Sprintf("%s: want %s, got %s", path, short(w), short(g)))
			return
		}
		for i := range wv {
			diffJSON(fmt.Sprintf("%s/%d", path, i), wv[i], gv[i], diffs)
		}
	case json.Number:
		gv, ok := g.(json.Number)
		a, _ := new(big.Rat).SetString(string(wv))
		var b *big.Rat
		if ok {
			b, _ = new(big.Rat).SetString(string(gv))
		}
		if b == nil || a.Cmp(b) != 0 {
			*diffs = append(*diffs, fmt.Sprintf("%s: want %s, got %s", path, wv, short(g)))
		}
	case string:
		gv, ok := g.(string)
		if !ok || normString(gv) != normString(wv) {
			*diffs = append(*diffs, fmt.Sprintf("%s: want %q, got %s", path, wv, short(g)))
		}
	default:
		if fmt.Sprint(w) != fmt.Sprint(g) {
			*diffs = append(*diffs, fmt.Sprintf("%s: want %v, got %s", path, w, short(g)))
		}
	}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}
