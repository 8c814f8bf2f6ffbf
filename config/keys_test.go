package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/keys"
)

func TestAnonymizerProfileAndKeys(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "keys.json")
	k, err := keys.Create(kf, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	src := `pipelines:
  nightly:
    source:
      url: https://fhir.example.org/fhir
      since: auto
    anonymizer:
      profile: longitudinal
      keysFile: keys.json
    destination: file:///tmp/lake
`
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.Pipelines["nightly"]
	if pc.Anonymizer.KeysFile != kf {
		t.Errorf("keysFile %q not made absolute", pc.Anonymizer.KeysFile)
	}
	eng, err := pc.LoadEngine("pipelines.nightly")
	if err != nil {
		t.Fatal(err)
	}
	p := eng.Config().Parameters()
	if p.DateShiftScope != anonymize.ScopePatient || p.CryptoHashKey != k.CryptoHashKey || p.DateShiftKey != k.DateShiftKey {
		t.Error("the longitudinal profile with the key file's keys was not loaded")
	}
	if len(eng.Fingerprints) != 2 || eng.Fingerprints["dateShiftKey"] != anonymize.Fingerprint(k.DateShiftKey) {
		t.Errorf("fingerprints %v", eng.Fingerprints)
	}
	if len(eng.Warnings) != 0 {
		t.Errorf("warnings %v", eng.Warnings)
	}
	os.Chmod(kf, 0o604)
	if eng, err = pc.LoadEngine("pipelines.nightly"); err != nil || len(eng.Warnings) != 1 || !strings.Contains(eng.Warnings[0], kf) {
		t.Errorf("world-readable key file: %v %v", err, eng.Warnings)
	}
}

func TestAnonymizerBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"fhirdeidKeys":1,"cryptoHashKey":"SECRETSECRETSECRET","dateShiftKey":1}`), 0o600)
	for _, tc := range []struct {
		name, anonymizer, since string
		want                    []string
		atLoad                  bool
	}{
		{"unknown profile", "profile: expert", "", []string{"pipelines.nightly.anonymizer.profile", `unknown profile "expert"`, "safe-harbor and longitudinal"}, true},
		{"profile and config", "profile: longitudinal\n      config: x.json", "", []string{"pipelines.nightly.anonymizer.profile", "not both"}, true},
		{"missing key file", "keysFile: absent.json", "", []string{"pipelines.nightly.anonymizer.keysFile", filepath.Join(dir, "absent.json"), "does not exist"}, false},
		{"malformed key file", "keysFile: bad.json", "", []string{"pipelines.nightly.anonymizer.keysFile", bad, "dateShiftKey", "must be a string"}, false},
		{"random keys with since auto", "profile: longitudinal", "auto", []string{"pipelines.nightly.anonymizer", "since is auto", "cryptoHashKey and dateShiftKey", "fhirdeid keys init", "keysFile", "FHIRDEID_CRYPTO_HASH_KEY"}, false},
		{"random keys with since auto (safe-harbor)", "strict: false", "auto", []string{"cryptoHashKey would be drawn at random"}, false},
	} {
		src := "pipelines:\n  nightly:\n    source:\n      url: https://fhir.example.org/fhir\n"
		if tc.since != "" {
			src += "      since: " + tc.since + "\n"
		}
		src += "    anonymizer:\n      " + tc.anonymizer + "\n    destination: file:///tmp/lake\n"
		cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(src), env(nil))
		if !tc.atLoad {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			_, err = cfg.Pipelines["nightly"].LoadEngine("pipelines.nightly")
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: a key in %q", tc.name, err)
		}
	}
	// Keys from the environment satisfy since: auto.
	t.Setenv(keys.EnvCryptoHashKey, "env-hash-key-0123456789")
	t.Setenv(keys.EnvDateShiftKey, "env-shift-key-0123456789")
	pc := &Pipeline{Source: Source{Since: "auto"}, Anonymizer: Anonymizer{Profile: "longitudinal"}}
	eng, err := pc.LoadEngine("pipelines.p")
	if err != nil || eng.Fingerprints["cryptoHashKey"] != anonymize.Fingerprint("env-hash-key-0123456789") {
		t.Errorf("environment keys: %v", err)
	}
}
