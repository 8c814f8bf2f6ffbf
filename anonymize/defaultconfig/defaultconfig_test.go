package defaultconfig

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"fhirdeid/anonymize"
	"fhirdeid/fhir/model"
	"fhirdeid/fhirpath"
)

func load(t *testing.T, compiler anonymize.PathCompiler) *anonymize.Config {
	t.Helper()
	c, err := anonymize.ParseConfig(SafeHarbor(), anonymize.Options{
		Compiler: compiler,
		Rand:     bytes.NewReader(make([]byte, 64)),
		Format:   anonymize.JSON,
	})
	if err != nil {
		t.Fatalf("the default configuration does not load: %v", err)
	}
	return c
}

func TestLoadsWithStubCompiler(t *testing.T) {
	c := load(t, func(resourceType, expr string) (anonymize.Compiled, error) { return expr, nil })
	if c.FHIRVersion() != "R4" || c.ProcessingErrors() != anonymize.Raise {
		t.Errorf("version %q, processingErrors %v", c.FHIRVersion(), c.ProcessingErrors())
	}
	for _, w := range c.Warnings() {
		// The only expected warning is the generated cryptoHashKey.
		if !strings.Contains(w, "cryptoHashKey is empty") {
			t.Errorf("unexpected warning: %s", w)
		}
	}
	r4 := anonymize.ResourceTypes("R4")
	for _, r := range c.Rules() {
		if r.ResourceType != "" && r.ResourceType != "Resource" && !slices.Contains(r4, r.ResourceType) {
			t.Errorf("rule %d: %q is not an R4 resource type", r.Index, r.ResourceType)
		}
		if r.Method == anonymize.MethodCustom {
			t.Errorf("rule %d: custom method %q", r.Index, r.MethodName)
		}
	}
}

// TestCompilesWithFHIRPath compiles every path with the project's FHIRPath
// engine, checked against the R4 model: no misspelt element, no warning.
func TestCompilesWithFHIRPath(t *testing.T) {
	c := load(t, anonymize.FHIRPathCompiler(fhirpath.WithModel(model.Get(model.R4))))
	if _, err := anonymize.NewEngine(c, anonymize.EngineOptions{}); err != nil {
		t.Fatal(err)
	}
	c = load(t, anonymize.FHIRPathCompilerWithWarnings(fhirpath.WithModel(model.Get(model.R4))))
	for _, w := range c.Warnings() {
		if !strings.Contains(w, "cryptoHashKey is empty") {
			t.Errorf("warning: %s", w)
		}
	}
}

// TestCoverage checks the Safe Harbor facts the README promises.
func TestCoverage(t *testing.T) {
	c := load(t, nil)
	p := c.Parameters()
	if !p.EnablePartialDatesForRedact || !p.EnablePartialAgesForRedact || !p.EnablePartialZipCodesForRedact {
		t.Errorf("partial redaction not enabled: %+v", p)
	}
	// The union of the HHS 2000-census list and Microsoft's sample list.
	hhs := strings.Fields("036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893")
	ms := strings.Fields("036 059 102 203 205 369 556 692 821 823 878 879 884 893")
	for _, z := range append(hhs, ms...) {
		if !slices.Contains(p.RestrictedZipCodeTabulationAreas, z) {
			t.Errorf("restricted ZIP3 %s missing", z)
		}
	}
	if len(p.RestrictedZipCodeTabulationAreas) != 19 {
		t.Errorf("%d restricted ZIP3 prefixes, want 19", len(p.RestrictedZipCodeTabulationAreas))
	}
	methodOf := map[string]anonymize.Method{}
	index := map[string]int{}
	for _, r := range c.Rules() {
		if _, dup := methodOf[r.Path]; dup {
			t.Errorf("path %q appears twice", r.Path)
		}
		methodOf[r.Path] = r.Method
		index[r.Path] = r.Index
	}
	want := map[string]anonymize.Method{
		"nodesByType('Extension')":            anonymize.MethodRedact,
		"Resource.id":                         anonymize.MethodCryptoHash,
		"nodesByType('Reference').reference":  anonymize.MethodCryptoHash,
		"nodesByType('Reference').display":    anonymize.MethodRedact,
		"nodesByType('HumanName')":            anonymize.MethodRedact,
		"nodesByType('Address')":              anonymize.MethodRedact,
		"nodesByType('ContactPoint')":         anonymize.MethodRedact,
		"nodesByType('Identifier')":           anonymize.MethodRedact,
		"nodesByType('date')":                 anonymize.MethodRedact,
		"nodesByType('dateTime')":             anonymize.MethodRedact,
		"nodesByType('instant')":              anonymize.MethodRedact,
		"nodesByType('Age')":                  anonymize.MethodRedact,
		"nodesByType('Attachment')":           anonymize.MethodRedact,
		"nodesByType('Narrative')":            anonymize.MethodRedact,
		"nodesByType('string')":               anonymize.MethodRedact,
		"nodesByType('markdown')":             anonymize.MethodRedact,
		"nodesByType('url')":                  anonymize.MethodRedact,
		"nodesByType('uri')":                  anonymize.MethodRedact,
		"Device.udiCarrier":                   anonymize.MethodRedact,
		"nodesByType('Address').state":        anonymize.MethodKeep,
		"nodesByType('Address').country":      anonymize.MethodKeep,
		"nodesByType('Coding').code":          anonymize.MethodKeep,
		"nodesByType('Coding').system":        anonymize.MethodKeep,
		"nodesByType('CodeableConcept').text": anonymize.MethodRedact,
	}
	for path, m := range want {
		if got, ok := methodOf[path]; !ok || got != m {
			t.Errorf("%s: method %v (present %v), want %v", path, got, ok, m)
		}
	}
	// First rule wins: the keeps must come before the type-wide redactions
	// they carve out of, and extensions must be removed before any keep can
	// claim a part of them.
	for _, order := range [][2]string{
		{"nodesByType('Extension')", "nodesByType('Coding').code"},
		{"nodesByType('Address').state", "nodesByType('Address')"},
		{"nodesByType('Coding').system", "nodesByType('uri')"},
		{"nodesByType('Quantity').unit", "nodesByType('string')"},
		{"nodesByType('Age').unit", "nodesByType('Age')"},
		{"Resource.id", "nodesByType('string')"},
	} {
		if index[order[0]] >= index[order[1]] {
			t.Errorf("%s (rule %d) must come before %s (rule %d)", order[0], index[order[0]], order[1], index[order[1]])
		}
	}
}

func TestSafeHarborIsACopy(t *testing.T) {
	a := SafeHarbor()
	a[0] = 'x'
	if SafeHarbor()[0] == 'x' {
		t.Error("SafeHarbor returns the embedded bytes")
	}
}
