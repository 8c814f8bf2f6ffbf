package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/bulk"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const minimal = `pipelines:
  nightly:
    source:
      url: https://fhir.example.org/fhir
    destination: file:///tmp/lake
`

func TestParseDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, DefaultState); cfg.State != want {
		t.Errorf("State = %q, want %q", cfg.State, want)
	}
	pc := cfg.Pipelines["nightly"]
	if pc.Schedule != DefaultSchedule {
		t.Errorf("Schedule = %q, want the default", pc.Schedule)
	}
	if pc.Location().String() != "UTC" {
		t.Errorf("Location = %v", pc.Location())
	}
	if got := cfg.Names(); len(got) != 1 || got[0] != "nightly" {
		t.Errorf("Names = %v", got)
	}
	if name, err := cfg.Pick(""); err != nil || name != "nightly" {
		t.Errorf("Pick(\"\") = %q, %v", name, err)
	}
	if _, err := cfg.Pick("other"); err == nil || !strings.Contains(err.Error(), "nightly") {
		t.Errorf("Pick(other) = %v, want an error listing the pipelines", err)
	}
	if cfg.LogDir() != filepath.Join(dir, "fhirdeid-state", "logs") {
		t.Errorf("LogDir = %q", cfg.LogDir())
	}
	r := pc.Source.Request()
	if r.Level != bulk.SystemLevel || r.Since != "" {
		t.Errorf("Request = %+v", r)
	}
}

func TestParseRelativePathsAndEnv(t *testing.T) {
	dir := t.TempDir()
	src := `state: st/state.db
pipelines:
  a:
    source:
      url: ${FHIR_URL}
      level: group
      group: g1
      since: auto
      auth: {type: smart, clientID: c, privateKeyFile: key.pem}
    anonymizer: {config: anon.json}
    destination: file:///lake
    timezone: Europe/Paris
`
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(src), env(map[string]string{"FHIR_URL": "https://h.example/fhir"}))
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.Pipelines["a"]
	if pc.Source.URL != "https://h.example/fhir" {
		t.Errorf("URL = %q", pc.Source.URL)
	}
	if cfg.State != filepath.Join(dir, "st/state.db") || pc.Anonymizer.Config != filepath.Join(dir, "anon.json") ||
		pc.Source.Auth.PrivateKeyFile != filepath.Join(dir, "key.pem") {
		t.Errorf("paths not made absolute: %q %q %q", cfg.State, pc.Anonymizer.Config, pc.Source.Auth.PrivateKeyFile)
	}
	if pc.Location().String() != "Europe/Paris" {
		t.Errorf("Location = %v", pc.Location())
	}
	r := pc.Source.Request()
	if r.Level != bulk.GroupLevel || r.GroupID != "g1" || r.Since != "" {
		t.Errorf("Request = %+v (since auto is resolved by the pipeline, not sent as is)", r)
	}
}

func TestParseErrors(t *testing.T) {
	const secret = "s3cr3t-value-never-printed"
	pipe := func(body string) string {
		return "pipelines:\n  p:\n    source:\n      url: https://h.example/fhir\n" + body + "    destination: file:///lake\n"
	}
	cases := []struct {
		name, src string
		want      []string
	}{
		{"empty file", "", []string{"p.yml: the file is empty"}},
		{"unknown key", "pipelines:\n  p:\n    sinse: auto\n", []string{"p.yml:3: unknown key sinse"}},
		{"wrong type", "pipelines:\n  p:\n    concurrency: " + secret + "\n", []string{"p.yml:3: wrong type of value"}},
		{"no pipelines", "state: x.db\n", []string{"pipelines: no pipeline configured"}},
		{"empty pipeline", "pipelines:\n  p:\n", []string{"pipelines.p: empty pipeline"}},
		{"bad name", "pipelines:\n  'a b':\n    destination: x\n", []string{"letters, digits"}},
		{"missing env", "pipelines:\n  p:\n    source:\n      url: ${NOPE}\n", []string{"pipelines.p.source.url: environment variable NOPE is not set"}},
		{"no url", "pipelines:\n  p:\n    destination: file:///x\n", []string{"pipelines.p.source.url: missing"}},
		{"bad url", "pipelines:\n  p:\n    source: {url: 'ftp://x/y'}\n", []string{"pipelines.p.source.url: must be an http or https URL"}},
		{"group without level", pipe("      group: g\n"), []string{"source.group: only with level: group"}},
		{"group level without id", pipe("      level: group\n"), []string{"level group needs a group id"}},
		{"bad level", pipe("      level: everything\n"), []string{"source.level: must be system, patient or group"}},
		{"bad since", pipe("      since: yesterday\n"), []string{"source.since: must be auto or an instant"}},
		{"bad deadline", pipe("      deadline: forever\n"), []string{"source.deadline: must be a duration"}},
		{"no destination", "pipelines:\n  p:\n    source: {url: 'https://h/fhir'}\n", []string{"pipelines.p.destination: missing"}},
		{"bad timezone", pipe("") + "    timezone: Mars/Olympus\n", []string{"pipelines.p.timezone: unknown time zone"}},
		{"negative concurrency", pipe("") + "    concurrency: -1\n", []string{"pipelines.p.concurrency: must not be negative"}},
		{"bearer without token", pipe("      auth: {type: bearer}\n"), []string{"source.auth: bearer auth needs token or tokenFile"}},
		{"bearer with both", pipe("      auth: {type: bearer, token: " + secret + ", tokenFile: t}\n"), []string{"one of them"}},
		{"cc without id", pipe("      auth: {type: client-credentials, clientSecret: " + secret + ", tokenURL: 'https://t'}\n"), []string{"source.auth.clientID: missing"}},
		{"cc without token url", pipe("      auth: {type: entra, clientID: c, clientSecret: " + secret + "}\n"), []string{"source.auth.tokenURL: missing (or give tenant"}},
		{"cc bad style", pipe("      auth: {type: entra, clientID: c, clientSecret: " + secret + ", tenant: t, style: jwt}\n"), []string{"source.auth.style: must be basic or post"}},
		{"smart without key", pipe("      auth: {type: smart, clientID: c}\n"), []string{"source.auth.privateKeyFile: missing"}},
		{"smart bad alg", pipe("      auth: {type: smart, clientID: c, privateKeyFile: k, alg: HS256}\n"), []string{"source.auth.alg: must be RS384 or ES384"}},
		{"bad auth type", pipe("      auth: {type: kerberos}\n"), []string{"source.auth.type: must be none, bearer"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yml", []byte(tc.src), env(nil))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes a value: %q", err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{"30d": "720h0m0s", "1.5d": "36h0m0s", "5m": "5m0s", "90s": "1m30s"} {
		d, err := ParseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"-1d", "xd", "forever", ""} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q): no error", in)
		}
	}
}

func TestAuthenticator(t *testing.T) {
	dir := t.TempDir()
	const secret = "file-secret-not-in-errors"
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("  "+secret+"\n"), 0o600)
	emptyFile := filepath.Join(dir, "empty")
	os.WriteFile(emptyFile, []byte("\n"), 0o600)

	a := Auth{Type: "bearer", TokenFile: secretFile}
	got, err := a.Authenticator("f", nil, "https://h/fhir")
	if err != nil {
		t.Fatal(err)
	}
	st, ok := got.(bulk.StaticToken)
	if !ok || st.Value.Reveal() != secret {
		t.Errorf("bearer from file: %T, trimmed token not read", got)
	}

	a = Auth{Type: "entra", ClientID: "c", ClientSecretFile: secretFile, Tenant: "tenant-1", Scope: "https://h/.default"}
	got, err = a.Authenticator("f", nil, "https://h/fhir")
	if err != nil {
		t.Fatal(err)
	}
	cc, ok := got.(*bulk.ClientCredentials)
	if !ok || cc.Style != bulk.AuthPost || !strings.Contains(cc.TokenURL, "tenant-1") || cc.Secret.Reveal() != secret {
		t.Errorf("entra: %+v", got)
	}
	a = Auth{Type: "client-credentials", ClientID: "c", ClientSecret: "x", TokenURL: "https://t/token"}
	got, _ = a.Authenticator("f", nil, "https://h/fhir")
	if cc := got.(*bulk.ClientCredentials); cc.Style != bulk.AuthBasic || cc.TokenURL != "https://t/token" {
		t.Errorf("client credentials default style/URL: %+v", cc)
	}

	for _, tc := range []struct {
		a    Auth
		want string
	}{
		{Auth{Type: "bearer", TokenFile: filepath.Join(dir, "missing")}, "f.tokenFile: cannot read the file"},
		{Auth{Type: "bearer", TokenFile: emptyFile}, "f.tokenFile: the file is empty"},
		{Auth{Type: "entra", ClientID: "c", ClientSecretFile: emptyFile, Tenant: "t"}, "f.clientSecretFile: the file is empty"},
		{Auth{Type: "smart", ClientID: "c", PrivateKeyFile: filepath.Join(dir, "missing")}, "f.privateKeyFile: cannot read the key file"},
		{Auth{Type: "smart", ClientID: "c", PrivateKeyFile: secretFile}, "f.privateKeyFile:"},
	} {
		_, err := tc.a.Authenticator("f", nil, "https://h/fhir")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.a.Type, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes the secret: %v", err)
		}
	}
	if got, err := (&Auth{}).Authenticator("f", nil, ""); got != nil || err != nil {
		t.Errorf("no auth: %v, %v", got, err)
	}
}

func TestLoadEngine(t *testing.T) {
	dir := t.TempDir()
	pc := &Pipeline{}
	eng, err := pc.LoadEngine("pipelines.p")
	if err != nil {
		t.Fatal(err)
	}
	// Only the keys the rules use are fingerprinted: safe-harbor hashes ids
	// and shifts no date.
	if eng.Config().NumRules() == 0 || !strings.HasPrefix(eng.Hash, "sha256:") || len(eng.Fingerprints) != 1 || eng.Fingerprints["cryptoHashKey"] == "" {
		t.Errorf("built-in engine: %d rules, hash %q, fingerprints %v", eng.Config().NumRules(), eng.Hash, eng.Fingerprints)
	}

	anon := filepath.Join(dir, "anon.json")
	os.WriteFile(anon, []byte(`{"fhirVersion":"R4","fhirPathRules":[{"path":"Patient.nmae","method":"redact"},{"path":"Resource.id","method":"cryptoHash"}],
		"parameters":{"cryptoHashKey":"k1","dateShiftKey":"k2"}}`), 0o600)
	pc = &Pipeline{Anonymizer: Anonymizer{Config: anon}}
	eng, err = pc.LoadEngine("pipelines.p")
	if err != nil {
		t.Fatalf("a misspelt path is a warning without strict: %v", err)
	}
	if w := eng.Config().Warnings(); len(w) != 1 || !strings.Contains(w[0], "nmae") {
		t.Errorf("warnings = %v", w)
	}
	if eng.Fingerprints["cryptoHashKey"] != Fingerprint("k1") || Fingerprint("k1") == Fingerprint("k2") ||
		strings.Contains(Fingerprint("k1"), "k1") {
		t.Errorf("fingerprints %v", eng.Fingerprints)
	}
	pc.Anonymizer.Strict = true
	if _, err := pc.LoadEngine("pipelines.p"); err == nil || !strings.Contains(err.Error(), "pipelines.p: anonymizer configuration") {
		t.Errorf("strict: %v", err)
	}
	pc.Anonymizer.Config = filepath.Join(dir, "missing.json")
	if _, err := pc.LoadEngine("pipelines.p"); err == nil || !strings.Contains(err.Error(), "pipelines.p.anonymizer.config: cannot read the file") {
		t.Errorf("missing file: %v", err)
	}
}
