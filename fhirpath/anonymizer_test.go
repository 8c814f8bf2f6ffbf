package fhirpath

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/internal/testshared"
)

// TestAnonymizerConfigExpressions compiles every rule path and every
// generalize case of Microsoft's anonymizer test configurations: valid
// configurations must compile (with WithWarnings: the shipped samples hold
// misspelt paths such as HealthcareService.notAvaliable that the check phase
// reports), the two that test invalid FHIRPath must not.
func TestAnonymizerConfigExpressions(t *testing.T) {
	dir := testshared.Dir(t, "conformance", "ms-anonymizer")
	var manifest struct {
		ConfigCases []struct {
			Config     string `json:"config"`
			Expect     string `json:"expect"`
			ExpectR4   string `json:"expectR4"`
			ExpectSTU3 string `json:"expectSTU3"`
		} `json:"configCases"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &manifest); err != nil {
		t.Fatal(err)
	}
	invalidFHIRPath := map[string]bool{
		"configuration-invalid-fhirpath.json":                    true,
		"configuration-generalize-fail-compiled-expression.json": true,
	}
	// The functional-test configurations are valid too.
	ft, _ := filepath.Glob(filepath.Join(dir, "FHIR/src/Microsoft.Health.Fhir.Anonymizer.Shared.FunctionalTests/Configurations/*.json"))
	configs := map[string]model.Version{}
	for _, f := range ft {
		configs[f] = model.R4
	}
	for _, c := range manifest.ConfigCases {
		f := filepath.Join(dir, c.Config)
		switch {
		case invalidFHIRPath[filepath.Base(c.Config)]:
			configs[f] = model.R4
		case c.ExpectR4 == "valid" || (c.ExpectR4 == "" && c.Expect == "valid"):
			configs[f] = model.R4
		case c.ExpectSTU3 == "valid":
			configs[f] = model.STU3
		}
	}
	compiled, warnings := 0, 0
	for file, v := range configs {
		m := model.Get(v)
		if m == nil {
			t.Fatalf("no model for %s", v)
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
		var cfg struct {
			Rules []struct {
				Path  string            `json:"path"`
				Cases map[string]string `json:"cases"`
			} `json:"fhirPathRules"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			// A few files rely on Json.NET's leniency (trailing commas).
			t.Logf("%s: not strict JSON, skipped: %v", filepath.Base(file), err)
			continue
		}
		var exprs []string
		for _, r := range cfg.Rules {
			exprs = append(exprs, r.Path)
			for k, v := range r.Cases {
				exprs = append(exprs, k, v)
			}
		}
		wantErr := invalidFHIRPath[filepath.Base(file)]
		failed := false
		for _, src := range exprs {
			opts := []Option{WithModel(m), WithFunctions(AnonymizerFunctions()...), WithWarnings(func(w *CheckError) {
				warnings++
				t.Logf("%s: warning for %q: %v", filepath.Base(file), src, w)
			})}
			first, _, _ := strings.Cut(src, ".")
			if m.IsResource(first) && !m.Type(first).Abstract {
				opts = append(opts, WithContextType(first))
			}
			_, err := Compile(src, opts...)
			if err != nil {
				failed = true
			}
			if err != nil && !wantErr {
				t.Errorf("%s: Compile(%q): %v", filepath.Base(file), src, err)
			}
			compiled++
		}
		if wantErr && !failed {
			t.Errorf("%s: every expression compiled, want an error", filepath.Base(file))
		}
	}
	if compiled < 100 {
		t.Errorf("only %d expressions compiled", compiled)
	}
	if warnings == 0 {
		t.Error("no warnings: the misspelt sample paths were not reported")
	}
}
