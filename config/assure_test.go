package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAssuranceKeys(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Pipelines["nightly"].Assurance()
	if !a.Audit || a.FailOnLeak || !a.Risk || a.MinK != 0 || a.RiskFail {
		t.Errorf("defaults %+v: want audit and risk on, nothing gating", a)
	}
	src := minimal + `    audit: {failOn: leak}
    risk: {minK: 5, action: fail, quasiIdentifiers: [birthYear, gender, maritalStatus.coding.code]}
`
	cfg, err = Parse(filepath.Join(dir, "p.yml"), []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	a = cfg.Pipelines["nightly"].Assurance()
	if !a.Audit || !a.FailOnLeak || !a.Risk || a.MinK != 5 || !a.RiskFail || len(a.QuasiIdentifiers) != 3 {
		t.Errorf("configured %+v", a)
	}
	off := minimal + "    audit: {enabled: false}\n    risk: {enabled: false}\n"
	cfg, err = Parse(filepath.Join(dir, "p.yml"), []byte(off), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Pipelines["nightly"].Assurance(); a.Audit || a.Risk {
		t.Errorf("disabled %+v", a)
	}
	for _, c := range []struct{ yaml, field string }{
		{"    audit: {failOn: warning}\n", "audit.failOn"},
		{"    risk: {action: stop}\n", "risk.action"},
		{"    risk: {minK: -1}\n", "risk.minK"},
		{"    risk: {quasiIdentifiers: ['name[0]']}\n", "risk.quasiIdentifiers"},
	} {
		_, err := Parse(filepath.Join(dir, "p.yml"), []byte(minimal+c.yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v, want one naming %s", strings.TrimSpace(c.yaml), err, c.field)
		}
	}
}
