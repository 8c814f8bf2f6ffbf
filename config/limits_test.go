package config

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "gocloud.dev/blob/fileblob"

	"fhirdeid/state"
)

func TestHostileKeys(t *testing.T) {
	dir := t.TempDir()
	src := `pipelines:
  p:
    source:
      url: https://fhir.example.org/fhir
      trustedHosts: [files.example.org, "https://blob.example.net:8443"]
      limits: {maxLineBytes: 1048576, maxRatio: 50, maxManifestFiles: 10, minBytes: 10, rateInterval: 30s}
    anonymizer: {onInvalid: skip}
    destination: file://` + filepath.ToSlash(dir) + `/lake
`
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(context.Background(), filepath.Join(dir, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, store, err := cfg.Open(context.Background(), "p", db, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := p.Client
	if c.MaxLineBytes != 1<<20 || c.Limits.MaxRatio != 50 || c.Limits.MaxManifestFiles != 10 ||
		c.Limits.MinBytes != 10 || c.Limits.RateInterval != 30*time.Second {
		t.Errorf("limits not applied: line %d, %+v", c.MaxLineBytes, c.Limits)
	}
	if c.Limits.MaxManifestBytes != 64<<20 {
		t.Errorf("an unset limit lost its default: %d", c.Limits.MaxManifestBytes)
	}
	if p.OnInvalid != "skip" {
		t.Errorf("OnInvalid = %q", p.OnInvalid)
	}
	for _, tc := range []struct{ body, want string }{
		{"      trustedHosts: ['http://files.example.org']\n", "source.trustedHosts"},
		{"      limits: {maxRatio: 0.5}\n", "source.limits: limits must be positive"},
		{"      limits: {rateInterval: soon}\n", "source.limits.rateInterval"},
	} {
		src := "pipelines:\n  p:\n    source:\n      url: https://h.example/fhir\n" + tc.body + "    destination: file:///lake\n"
		if _, err := Parse("p.yml", []byte(src), env(nil)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.body, err, tc.want)
		}
	}
	src = "pipelines:\n  p:\n    source: {url: 'https://h/fhir'}\n    anonymizer: {onInvalid: ignore}\n    destination: file:///lake\n"
	if _, err := Parse("p.yml", []byte(src), env(nil)); err == nil || !strings.Contains(err.Error(), "anonymizer.onInvalid: must be fail or skip") {
		t.Errorf("onInvalid: error %v", err)
	}
}
