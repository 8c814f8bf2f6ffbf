package anonymize

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhirpath"
	"fhirdeid/internal/testshared"
)

// compileErrorCases are the configuration cases that are rejected only
// because the reference FHIRPath compiler rejects an expression. With the
// stub compiler they pass by construction; they stay pending until the real
// compiler (package fhirpath) is plugged in.
var compileErrorCases = map[string]bool{
	"configuration-invalid-fhirpath.json":                    true,
	"configuration-generalize-fail-compiled-expression.json": true,
}

// TestConformanceConfigCases loads every configCases entry of the Microsoft
// anonymizer's manifest and checks that it loads or is rejected as the
// reference implementation does, for the R4 and the STU3 builds.
func TestConformanceConfigCases(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "ms-anonymizer")
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		ConfigCases []struct {
			Config     string `json:"config"`
			Expect     string `json:"expect"`
			ExpectR4   string `json:"expectR4"`
			ExpectSTU3 string `json:"expectSTU3"`
			Notes      string `json:"notes"`
		} `json:"configCases"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest.ConfigCases) == 0 {
		t.Fatal("no configCases in manifest.json")
	}
	for _, comp := range []struct {
		name     string
		compiler PathCompiler
		real     bool
	}{{"stub compiler", stubCompiler, false}, {"fhirpath compiler", FHIRPathCompiler(), true}} {
		var pass, fail, pending int
		for _, c := range manifest.ConfigCases {
			data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(c.Config)))
			if err != nil {
				t.Errorf("%s: %v", c.Config, err)
				fail++
				continue
			}
			for _, build := range []struct{ version, expect string }{
				{"R4", firstNonEmpty(c.ExpectR4, c.Expect)},
				{"STU3", firstNonEmpty(c.ExpectSTU3, c.Expect)},
			} {
				if build.expect == "" {
					continue // the case is not defined for this build
				}
				name := comp.name + "/" + filepath.Base(c.Config) + "/" + build.version
				cfg, err := ParseConfig(data, Options{FHIRVersion: build.version, Compiler: comp.compiler, Rand: zeroRand()})
				ok := true
				switch build.expect {
				case "valid":
					if err != nil {
						t.Errorf("%s: rejected: %v", name, err)
						ok = false
					} else {
						ok = checkValidCaseNotes(t, name, c.Notes, cfg)
					}
				case "AnonymizerConfigurationException":
					var ce *ConfigError
					if err == nil {
						t.Errorf("%s: accepted, want a configuration error", name)
						ok = false
					} else if !errors.As(err, &ce) {
						t.Errorf("%s: error %T is not a *ConfigError", name, err)
						ok = false
					} else if compileErrorCases[filepath.Base(c.Config)] && ce.ExprColumn == 0 {
						t.Errorf("%s: compile error without a column: %v", name, err)
						ok = false
					}
				default:
					t.Errorf("%s: unknown expectation %q", name, build.expect)
					ok = false
				}
				switch {
				case !ok:
					fail++
				case compileErrorCases[filepath.Base(c.Config)] && !comp.real:
					pending++
				default:
					pass++
				}
				if comp.real {
					msConformance.count(ok, false)
				}
			}
		}
		t.Logf("config cases with the %s: %d pass, %d fail, %d pending on the real FHIRPath compiler (%d manifest entries, run per FHIR build)",
			comp.name, pass, fail, pending, len(manifest.ConfigCases))
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkValidCaseNotes checks the facts the manifest notes state about a
// valid configuration.
func checkValidCaseNotes(t *testing.T, name, notes string, c *Config) bool {
	t.Helper()
	ok := true
	if strings.Contains(notes, "processingErrors") && c.ProcessingErrors() != Raise {
		t.Errorf("%s: processingErrors = %v, want raise", name, c.ProcessingErrors())
		ok = false
	}
	if strings.Contains(notes, "rules by resourceType") {
		count := map[string]int{}
		for _, r := range c.Rules() {
			count[r.ResourceType]++
		}
		for _, rt := range []string{"Patient", "TestResource", "", "Resource", "Device"} {
			if count[rt] != 1 {
				t.Errorf("%s: %d rules with resource type %q, want 1", name, count[rt], rt)
				ok = false
			}
		}
		if k := c.Parameters().DateShiftKey; len(k) != 32 || strings.Trim(k, "0123456789abcdef") != "" {
			t.Errorf("%s: generated dateShiftKey is not 32 hex characters", name)
			ok = false
		}
	}
	if strings.Contains(notes, "warning") {
		found := false
		for _, w := range c.Warnings() {
			if strings.Contains(w, "not a built-in method") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no warning for the unknown method", name)
			ok = false
		}
	}
	return ok
}

// TestConformanceSampleConfigs checks the facts of §5.1 about the shipped
// HIPAA sample configuration.
func TestConformanceSampleConfigs(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "ms-anonymizer")
	data, err := os.ReadFile(filepath.Join(dir, "FHIR/src/Microsoft.Health.Fhir.Anonymizer.R4.CommandLineTool/configuration-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data, Options{Compiler: stubCompiler, Rand: zeroRand()})
	if err != nil {
		t.Fatal(err)
	}
	count := map[Method]int{}
	for _, r := range c.Rules() {
		count[r.Method]++
	}
	if c.NumRules() != 193 || count[MethodRedact] != 179 || count[MethodKeep] != 8 || count[MethodDateShift] != 3 ||
		count[MethodCryptoHash] != 2 || count[MethodPerturb] != 1 {
		t.Errorf("sample config: %d rules, by method %v", c.NumRules(), count)
	}
	// The sample holds a misspelt path: the checking compiler rejects it,
	// the one with warnings reports it and loads.
	m := model.Get(model.R4)
	if _, err := ParseConfig(data, Options{Compiler: FHIRPathCompiler(fhirpath.WithModel(m)), Rand: zeroRand()}); err == nil || !strings.Contains(err.Error(), "notAvaliable") {
		t.Errorf("checking compiler on the sample: %v", err)
	}
	lc, err := ParseConfig(data, Options{Compiler: FHIRPathCompilerWithWarnings(fhirpath.WithModel(m)), Rand: zeroRand()})
	if err != nil {
		t.Fatalf("compiler with warnings on the sample: %v", err)
	}
	if w := strings.Join(lc.Warnings(), "\n"); !strings.Contains(w, "notAvaliable") {
		t.Errorf("no warning for the misspelt path:\n%s", w)
	}
	p := c.Parameters()
	if !p.EnablePartialAgesForRedact || !p.EnablePartialDatesForRedact || !p.EnablePartialZipCodesForRedact ||
		strings.Join(p.RestrictedZipCodeTabulationAreas, " ") != "036 059 102 203 205 369 556 692 821 823 878 879 884 893" {
		t.Errorf("sample parameters = %+v", p)
	}
}
