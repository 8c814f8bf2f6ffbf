package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/bulk"
	"fhirdeid/fhir/model"
	"fhirdeid/fhirpath"
	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// fileConfig is the pipeline configuration file (YAML). See
// etc/fhirdeid.yml for an annotated sample.
type fileConfig struct {
	// State is the path of the state database; logs are kept beside it.
	State string `yaml:"state"`
	// Pipelines are the configured jobs, by name.
	Pipelines map[string]*pipelineConfig `yaml:"pipelines"`
	// Serve holds the settings of "fhirdeid serve"; its flags override them.
	Serve serveConfig `yaml:"serve"`
}

type pipelineConfig struct {
	Source      sourceConfig     `yaml:"source"`
	Anonymizer  anonymizerConfig `yaml:"anonymizer"`
	Destination string           `yaml:"destination"`
	Schedule    string           `yaml:"schedule"`
	Timezone    string           `yaml:"timezone"`
	// RunMissed runs a schedule missed while the service was down once at
	// start-up.
	RunMissed   bool `yaml:"runMissed"`
	Concurrency int  `yaml:"concurrency"`
	Workers     int  `yaml:"workers"`
	// AllowCountMismatch accepts files whose line count differs from the
	// manifest (the run is then partial).
	AllowCountMismatch bool `yaml:"allowCountMismatch"`
}

type sourceConfig struct {
	URL         string              `yaml:"url"`
	Level       string              `yaml:"level"`
	Group       string              `yaml:"group"`
	Types       []string            `yaml:"types"`
	TypeFilters []string            `yaml:"typeFilters"`
	Elements    []string            `yaml:"elements"`
	Since       string              `yaml:"since"`
	Until       string              `yaml:"until"`
	POST        bool                `yaml:"post"`
	Params      map[string][]string `yaml:"params"`
	Auth        authConfig          `yaml:"auth"`
	// Timeout bounds the whole export, kick-off to manifest ("30d").
	Deadline string `yaml:"deadline"`
	// MaxPollInterval caps the wait between status polls ("5m").
	MaxPollInterval string `yaml:"maxPollInterval"`
}

type authConfig struct {
	// Type is none, bearer, client-credentials (also entra) or smart.
	Type             string `yaml:"type"`
	Token            string `yaml:"token"`
	TokenFile        string `yaml:"tokenFile"`
	TokenURL         string `yaml:"tokenURL"`
	ClientID         string `yaml:"clientID"`
	ClientSecret     string `yaml:"clientSecret"`
	ClientSecretFile string `yaml:"clientSecretFile"`
	Style            string `yaml:"style"`
	Scope            string `yaml:"scope"`
	Resource         string `yaml:"resource"`
	Tenant           string `yaml:"tenant"`
	PrivateKeyFile   string `yaml:"privateKeyFile"`
	KeyID            string `yaml:"keyID"`
	Alg              string `yaml:"alg"`
}

type anonymizerConfig struct {
	// Config is the path of a Microsoft-format anonymizer configuration;
	// empty for the built-in Safe Harbor configuration.
	Config      string `yaml:"config"`
	FHIRVersion string `yaml:"fhirVersion"`
	// Strict makes a rule path that names an unknown element an error
	// instead of a warning.
	Strict bool `yaml:"strict"`
}

// configError names the field of the configuration file that is wrong.
type configError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *configError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// loadConfigFile reads and checks the configuration file at path. Every
// "${NAME}" in a string is replaced by the environment variable NAME, which
// must be set. Unknown keys are errors.
func loadConfigFile(path string, getenv func(string) string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	var cfg fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, yamlError(path, err)
	}
	if err := expandEnv(reflect.ValueOf(&cfg).Elem(), "", getenv); err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			ce.File = path
		}
		return nil, err
	}
	if cfg.State == "" {
		cfg.State = "fhirdeid-state/state.db"
	}
	if !filepath.IsAbs(cfg.State) {
		cfg.State = filepath.Join(filepath.Dir(path), cfg.State)
	}
	if len(cfg.Pipelines) == 0 {
		return nil, &configError{File: path, Field: "pipelines", Msg: "no pipeline configured"}
	}
	for _, name := range sortedNames(cfg.Pipelines) {
		pc := cfg.Pipelines[name]
		if pc == nil {
			return nil, &configError{File: path, Field: "pipelines." + name, Msg: "empty pipeline"}
		}
		if err := pc.check("pipelines."+name, filepath.Dir(path)); err != nil {
			err.File = path
			return nil, err
		}
	}
	return &cfg, nil
}

var (
	yamlLine    = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)
	yamlUnknown = regexp.MustCompile(`^field (\S+) not found in type .*$`)
)

// yamlError turns a YAML decoding error into a configError with its line.
// YAML errors quote field names, not values, except for type errors, which
// quote the offending scalar: those are reworded.
func yamlError(path string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line := 0
		fmt.Sscan(m[1], &line)
		text := m[2]
		if m := yamlUnknown.FindStringSubmatch(text); m != nil {
			text = "unknown key " + m[1]
		} else if strings.Contains(text, "cannot unmarshal") {
			text = "wrong type of value" + typeHint(text)
		}
		return &configError{File: path, Line: line, Msg: text}
	}
	return &configError{File: path, Msg: "invalid YAML"}
}

func typeHint(s string) string {
	if i := strings.LastIndex(s, " into "); i >= 0 {
		return " (want " + s[i+len(" into "):] + ")"
	}
	return ""
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} in every string field (and string list and map
// value) with the environment variable NAME.
func expandEnv(v reflect.Value, path string, getenv func(string) string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return expandEnv(v.Elem(), path, getenv)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if err := expandEnv(v.Field(i), joinField(path, tag), getenv); err != nil {
				return err
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			c := reflect.New(e.Type()).Elem()
			c.Set(e)
			if err := expandEnv(c, joinField(path, fmt.Sprint(k.Interface())), getenv); err != nil {
				return err
			}
			v.SetMapIndex(k, c)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := expandEnv(v.Index(i), fmt.Sprintf("%s[%d]", path, i), getenv); err != nil {
				return err
			}
		}
	case reflect.String:
		s := v.String()
		var missing string
		out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
			name := ref[2 : len(ref)-1]
			val := getenv(name)
			if val == "" && missing == "" {
				missing = name
			}
			return val
		})
		if missing != "" {
			return &configError{Field: path, Msg: "environment variable " + missing + " is not set"}
		}
		v.SetString(out)
	}
	return nil
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// check validates a pipeline's settings without touching any server.
func (pc *pipelineConfig) check(field, dir string) *configError {
	name := strings.TrimPrefix(field, "pipelines.")
	if !validName.MatchString(name) {
		return &configError{Field: field, Msg: "a pipeline name has letters, digits, '.', '_' and '-' only"}
	}
	s := &pc.Source
	if s.URL == "" {
		return &configError{Field: field + ".source.url", Msg: "missing"}
	}
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &configError{Field: field + ".source.url", Msg: "must be an http or https URL"}
	}
	switch s.Level {
	case "", "system", "patient":
		if s.Group != "" {
			return &configError{Field: field + ".source.group", Msg: "only with level: group"}
		}
	case "group":
		if s.Group == "" {
			return &configError{Field: field + ".source.group", Msg: "level group needs a group id"}
		}
	default:
		return &configError{Field: field + ".source.level", Msg: "must be system, patient or group"}
	}
	if s.Since != "" && s.Since != "auto" {
		if _, err := time.Parse(time.RFC3339, s.Since); err != nil {
			return &configError{Field: field + ".source.since", Msg: "must be auto or an instant such as 2026-01-01T00:00:00Z"}
		}
	}
	for _, d := range []struct{ name, v string }{{"deadline", s.Deadline}, {"maxPollInterval", s.MaxPollInterval}} {
		if d.v == "" {
			continue
		}
		if _, err := parseDuration(d.v); err != nil {
			return &configError{Field: field + ".source." + d.name, Msg: "must be a duration such as 30s, 5m, 12h or 30d"}
		}
	}
	if err := pc.Source.Auth.check(field+".source.auth", dir); err != nil {
		return err
	}
	if pc.Destination == "" {
		return &configError{Field: field + ".destination", Msg: "missing (a storage URL: file:///path, s3://bucket, azblob://container, gs://bucket)"}
	}
	if pc.Anonymizer.Config != "" && !filepath.IsAbs(pc.Anonymizer.Config) {
		pc.Anonymizer.Config = filepath.Join(dir, pc.Anonymizer.Config)
	}
	if pc.Schedule == "" {
		pc.Schedule = "0 1 * * *"
	}
	if pc.Timezone != "" {
		if _, err := time.LoadLocation(pc.Timezone); err != nil {
			return &configError{Field: field + ".timezone", Msg: "unknown time zone"}
		}
	}
	if pc.Concurrency < 0 || pc.Workers < 0 {
		return &configError{Field: field + ".concurrency", Msg: "must not be negative"}
	}
	return nil
}

// parseDuration accepts Go durations plus a "d" suffix for days.
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days float64
		if _, err := fmt.Sscanf(n, "%g", &days); err != nil || days < 0 {
			return 0, errors.New("invalid duration")
		}
		return time.Duration(days * 24 * float64(time.Hour)), nil
	}
	return time.ParseDuration(s)
}

func (a *authConfig) check(field, dir string) *configError {
	for _, p := range []*string{&a.TokenFile, &a.ClientSecretFile, &a.PrivateKeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	switch a.Type {
	case "", "none":
	case "bearer":
		if (a.Token == "") == (a.TokenFile == "") {
			return &configError{Field: field, Msg: "bearer auth needs token or tokenFile (one of them)"}
		}
	case "client-credentials", "entra":
		if a.ClientID == "" {
			return &configError{Field: field + ".clientID", Msg: "missing"}
		}
		if (a.ClientSecret == "") == (a.ClientSecretFile == "") {
			return &configError{Field: field, Msg: "client credentials need clientSecret or clientSecretFile (one of them)"}
		}
		if a.TokenURL == "" && a.Tenant == "" {
			return &configError{Field: field + ".tokenURL", Msg: "missing (or give tenant for Microsoft Entra ID)"}
		}
		switch a.Style {
		case "", "basic", "post":
		default:
			return &configError{Field: field + ".style", Msg: "must be basic or post"}
		}
	case "smart":
		if a.ClientID == "" {
			return &configError{Field: field + ".clientID", Msg: "missing"}
		}
		if a.PrivateKeyFile == "" {
			return &configError{Field: field + ".privateKeyFile", Msg: "missing"}
		}
		switch a.Alg {
		case "", "RS384", "ES384":
		default:
			return &configError{Field: field + ".alg", Msg: "must be RS384 or ES384"}
		}
	default:
		return &configError{Field: field + ".type", Msg: "must be none, bearer, client-credentials, entra or smart"}
	}
	return nil
}

// readSecretFile reads a secret from a file, trimming surrounding space.
func readSecretFile(field, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &configError{Field: field, Msg: "cannot read the file"}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &configError{Field: field, Msg: "the file is empty"}
	}
	return s, nil
}

// authenticator builds the source's authenticator; it reads secret and key
// files.
func (a *authConfig) authenticator(field string, hc *http.Client, base string) (bulk.Authenticator, error) {
	switch a.Type {
	case "", "none":
		return nil, nil
	case "bearer":
		tok := a.Token
		if a.TokenFile != "" {
			var err error
			if tok, err = readSecretFile(field+".tokenFile", a.TokenFile); err != nil {
				return nil, err
			}
		}
		return bulk.StaticToken{Value: bulk.NewSecret(tok)}, nil
	case "client-credentials", "entra":
		secret := a.ClientSecret
		if a.ClientSecretFile != "" {
			var err error
			if secret, err = readSecretFile(field+".clientSecretFile", a.ClientSecretFile); err != nil {
				return nil, err
			}
		}
		tokenURL := a.TokenURL
		style := bulk.AuthBasic
		if a.Style == "post" {
			style = bulk.AuthPost
		}
		if tokenURL == "" {
			v := 2
			if a.Resource != "" {
				v = 1
			}
			tokenURL = bulk.EntraTokenURL(a.Tenant, v)
			style = bulk.AuthPost // Entra ID takes client_secret_post
		}
		return &bulk.ClientCredentials{HTTP: hc, TokenURL: tokenURL, ClientID: a.ClientID, Secret: bulk.NewSecret(secret),
			Style: style, Scope: a.Scope, Resource: a.Resource}, nil
	case "smart":
		data, err := os.ReadFile(a.PrivateKeyFile)
		if err != nil {
			return nil, &configError{Field: field + ".privateKeyFile", Msg: "cannot read the key file"}
		}
		key, kid, alg, err := bulk.ParsePrivateKey(data, a.KeyID)
		if err != nil {
			return nil, &configError{Field: field + ".privateKeyFile", Msg: err.Error()}
		}
		if a.KeyID != "" {
			kid = a.KeyID
		}
		if kid == "" {
			return nil, &configError{Field: field + ".keyID", Msg: "the key has no kid: give keyID"}
		}
		if a.Alg != "" {
			alg = a.Alg
		}
		scope := a.Scope
		if scope == "" {
			scope = "system/*.read"
		}
		return &bulk.SMARTBackend{HTTP: hc, FHIRBase: base, TokenURL: a.TokenURL, ClientID: a.ClientID, Key: key,
			KeyID: kid, Alg: alg, Scope: scope}, nil
	}
	return nil, &configError{Field: field + ".type", Msg: "unsupported"}
}

// request builds the export request of a pipeline.
func (s *sourceConfig) request() bulk.Request {
	r := bulk.Request{Types: s.Types, TypeFilters: s.TypeFilters, Elements: s.Elements, Until: s.Until,
		POST: s.POST, Extra: s.Params}
	switch s.Level {
	case "patient":
		r.Level = bulk.PatientLevel
	case "group":
		r.Level, r.GroupID = bulk.GroupLevel, s.Group
	default:
		r.Level = bulk.SystemLevel
	}
	if s.Since != "auto" {
		r.Since = s.Since
	}
	return r
}

// loadAnonymizer loads and compiles the pipeline's anonymizer configuration
// (the built-in Safe Harbor one when none is given) and builds the engine.
// It returns the configuration's hash and its keys' fingerprints for the run
// report.
func (pc *pipelineConfig) loadAnonymizer(field string) (*anonymize.Engine, string, map[string]string, error) {
	data := defaultconfig.SafeHarbor()
	name := "built-in " + defaultconfig.Name
	if pc.Anonymizer.Config != "" {
		var err error
		data, err = os.ReadFile(pc.Anonymizer.Config)
		if err != nil {
			return nil, "", nil, &configError{Field: field + ".anonymizer.config", Msg: "cannot read the file"}
		}
		name = pc.Anonymizer.Config
	}
	version := pc.Anonymizer.FHIRVersion
	if version == "" {
		version = "R4"
	}
	cfg, err := anonymize.ParseConfig(data, anonymize.Options{FHIRVersion: version, Compiler: checkedCompiler(version, pc.Anonymizer.Strict)})
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s: anonymizer configuration %s: %w", field, name, err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s: anonymizer configuration %s: %w", field, name, err)
	}
	sum := sha256.Sum256(data)
	params := cfg.Parameters()
	fps := map[string]string{}
	for k, v := range map[string]string{"cryptoHashKey": params.CryptoHashKey, "dateShiftKey": params.DateShiftKey, "encryptKey": params.EncryptKey} {
		fps[k] = fingerprint(v)
	}
	return eng, "sha256:" + hex.EncodeToString(sum[:]), fps, nil
}

// checkedCompiler compiles rule paths and checks them against the FHIR
// model of version. A path that names an element or type the model lacks
// matches nothing: with strict it is an error, otherwise a warning of the
// loaded configuration — Microsoft's own sample configuration has such a
// path ("HealthcareService.notAvaliable"), which its engine silently accepts.
func checkedCompiler(version string, strict bool) anonymize.PathCompiler {
	v, ok := model.ParseVersion(version)
	if !ok {
		// ParseConfig reports the unsupported version.
		return anonymize.FHIRPathCompiler()
	}
	if strict {
		return anonymize.FHIRPathCompiler(fhirpath.WithModel(model.Get(v)))
	}
	return anonymize.FHIRPathCompilerWithWarnings(fhirpath.WithModel(model.Get(v)))
}

// fingerprint identifies a key without revealing it: the first 8 bytes of
// SHA-256 over a domain-separated input.
func fingerprint(key string) string {
	h := sha256.Sum256([]byte("fhirdeid key fingerprint\x00" + key))
	return "sha256:" + hex.EncodeToString(h[:8])
}

// openPipeline wires a configured pipeline: FHIR client and auth, engine,
// destination and state. It contacts no server.
func openPipeline(ctx context.Context, cfg *fileConfig, name string, db *state.DB, logger *slog.Logger) (*pipeline.Pipeline, *storage.Store, error) {
	pc := cfg.Pipelines[name]
	field := "pipelines." + name
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 8,
		ResponseHeaderTimeout: 10 * time.Minute, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 30 * time.Second}}
	client, err := bulk.NewClient(pc.Source.URL, hc)
	if err != nil {
		return nil, nil, &configError{Field: field + ".source.url", Msg: err.Error()}
	}
	client.UserAgent = "fhirdeid/" + Version
	if pc.Source.Deadline != "" {
		client.Polling.Deadline, _ = parseDuration(pc.Source.Deadline)
	}
	if pc.Source.MaxPollInterval != "" {
		client.Polling.MaxDelay, _ = parseDuration(pc.Source.MaxPollInterval)
	}
	client.Auth, err = pc.Source.Auth.authenticator(field+".source.auth", hc, pc.Source.URL)
	if err != nil {
		return nil, nil, err
	}
	eng, hash, fps, err := pc.loadAnonymizer(field)
	if err != nil {
		return nil, nil, err
	}
	store, err := storage.Open(ctx, pc.Destination)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.destination: %w", field, err)
	}
	for _, w := range eng.Config().Warnings() {
		logger.Warn("anonymizer configuration: "+w, "pipeline", name)
	}
	deid := pipeline.NewEngineDeidentifier(eng)
	deid.Folder = name
	p := &pipeline.Pipeline{
		Name:               name,
		Client:             client,
		Request:            pc.Source.request(),
		SinceAuto:          pc.Source.Since == "auto",
		Deidentifier:       deid,
		Store:              store,
		State:              db,
		LogDir:             filepath.Join(filepath.Dir(cfg.State), "logs"),
		Concurrency:        pc.Concurrency,
		Workers:            pc.Workers,
		AllowCountMismatch: pc.AllowCountMismatch,
		Logger:             logger,
		ConfigHash:         hash,
		KeyFingerprints:    fps,
	}
	return p, store, nil
}
