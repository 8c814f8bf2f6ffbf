// Package config is the pipeline configuration file of fhirdeid: its YAML
// model, environment and file references, validation, and the builders that
// turn a checked configuration into the objects the pipeline runs with (the
// Bulk Data client and its authenticator, the anonymizer engine, the
// destination).
//
// Load reads and checks a file without contacting any server; Open wires
// one pipeline. Errors are *Error values naming the file, the line where
// the YAML decoder knows it, and the field; they never quote a secret or a
// value of the file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultState is the state database used when the file names none,
// relative to the file's folder.
const DefaultState = "fhirdeid-state/state.db"

// File is the pipeline configuration file (YAML). See etc/fhirdeid.yml for
// an annotated sample.
type File struct {
	// State is the path of the state database; logs are kept beside it.
	// Load makes it absolute.
	State string `yaml:"state"`
	// Pipelines are the configured jobs, by name.
	Pipelines map[string]*Pipeline `yaml:"pipelines"`
	// Serve holds the settings of "fhirdeid serve"; its flags override them.
	Serve Serve `yaml:"serve"`
	// Temporal, when set, runs the pipelines as Temporal workflows.
	Temporal *Temporal `yaml:"temporal"`

	path string
	// resolved is set once the Key Vault references are resolved.
	resolved bool
}

// Serve holds the settings of "fhirdeid serve": the "serve:" key of the
// configuration file, with flags overriding the file.
type Serve struct {
	// Addr is the listen address (default 127.0.0.1:8080).
	Addr string `yaml:"addr"`
	// TokenEnv names the environment variable holding the API token.
	TokenEnv string `yaml:"tokenEnv"`
}

// Pipeline is one configured job: a source, an anonymizer, a destination
// and a schedule.
type Pipeline struct {
	Source      Source     `yaml:"source"`
	Anonymizer  Anonymizer `yaml:"anonymizer"`
	Destination string     `yaml:"destination"`
	Schedule    string     `yaml:"schedule"`
	Timezone    string     `yaml:"timezone"`
	// RunMissed runs a schedule missed while the service was down once at
	// start-up.
	RunMissed   bool `yaml:"runMissed"`
	Concurrency int  `yaml:"concurrency"`
	Workers     int  `yaml:"workers"`
	// AllowCountMismatch accepts files whose line count differs from the
	// manifest (the run is then partial).
	AllowCountMismatch bool `yaml:"allowCountMismatch"`
	// Audit and Risk are the privacy checks of every run (assure.go).
	Audit Audit `yaml:"audit"`
	Risk  Risk  `yaml:"risk"`
	// Views are research tables computed from the de-identified resources
	// of each run: "builtin" (every built-in view), "builtin:NAME", or
	// ViewDefinition files (SQL on FHIR v2). Each run writes
	// <run>/views/<name>/*.parquet.
	Views []string `yaml:"views"`
	// ViewsCSV also writes each table part as CSV.
	ViewsCSV bool `yaml:"viewsCSV"`
	// Snapshot: false skips the merged snapshot (current) after each run.
	Snapshot *bool `yaml:"snapshot"`
}

// Source is the FHIR server a pipeline exports from.
type Source struct {
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
	Auth        Auth                `yaml:"auth"`
	// StorageAuth authorises downloads of export files on another host
	// than the FHIR server when the manifest says requiresAccessToken
	// false (Azure: the export's storage account).
	StorageAuth StorageAuth `yaml:"storageAuth"`
	// Deadline bounds the whole export, kick-off to manifest ("30d").
	Deadline string `yaml:"deadline"`
	// MaxPollInterval caps the wait between status polls ("5m").
	MaxPollInterval string `yaml:"maxPollInterval"`
	// TrustedHosts are other origins trusted with the source's token
	// ("host", "host:port" or "https://host[:port]"), such as the blob host
	// of a server whose manifest sets requiresAccessToken.
	TrustedHosts []string `yaml:"trustedHosts"`
	// Limits bound what the server, its manifests and files may cost.
	Limits Limits `yaml:"limits"`
}

// Auth is how fhirdeid authenticates to the source. Token, ClientSecret and
// PrivateKeyFile may be Key Vault references (azurekeyvault://VAULT/NAME;
// for PrivateKeyFile the secret holds the key itself).
type Auth struct {
	// Type is none, bearer, client-credentials (also entra), smart or
	// azure-identity (managed or workload identity; ClientID selects a
	// user-assigned identity, Scope defaults to <origin of url>/.default).
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

	// keyPEM is the private key read from Key Vault when PrivateKeyFile is
	// a reference.
	keyPEM []byte
}

// StorageAuth is how fhirdeid reads export files kept on another host than
// the FHIR server (Azure API for FHIR and Azure Health Data Services write
// them to a storage account and say requiresAccessToken false).
type StorageAuth struct {
	// Type is none (the default: no credentials, as Bulk Data requires),
	// azure-identity (a managed or workload identity token for Azure
	// Storage), entra (a storage token from the source's client
	// credentials), connection-string or sas.
	Type string `yaml:"type"`
	// ClientID selects a user-assigned identity (azure-identity).
	ClientID string `yaml:"clientID"`
	// ConnectionString and SASToken are secrets: ${ENV} or a Key Vault
	// reference.
	ConnectionString string `yaml:"connectionString"`
	SASToken         string `yaml:"sasToken"`
}

// Anonymizer selects the de-identification rules of a pipeline.
type Anonymizer struct {
	// Config is the path of a Microsoft-format anonymizer configuration;
	// empty for the built-in Safe Harbor configuration.
	Config      string `yaml:"config"`
	FHIRVersion string `yaml:"fhirVersion"`
	// Strict makes a rule path that names an unknown element an error
	// instead of a warning.
	Strict bool `yaml:"strict"`
	// OnInvalid is fail (default) or skip: skip drops a line that cannot
	// be parsed or typed as a resource, listing it (file, line, reason) in
	// report.json and log.ndjson; the run is then partial.
	OnInvalid string `yaml:"onInvalid"`
	// Profile names a built-in configuration ("safe-harbor", the default,
	// or "longitudinal"); it excludes Config.
	Profile string `yaml:"profile"`
	// KeysFile is a key file (fhirdeid keys init) whose keys replace the
	// configuration's. Without it, the environment variables
	// FHIRDEID_CRYPTO_HASH_KEY, FHIRDEID_DATE_SHIFT_KEY and
	// FHIRDEID_ENCRYPT_KEY do, when set.
	KeysFile string `yaml:"keysFile"`

	// getenv reads the key variables: Parse's, os.Getenv when nil.
	getenv func(string) string
	// keysData is the key file read from Key Vault (KeysFile a reference),
	// resolvedEnv the key variables that were references, by name.
	keysData    []byte
	resolvedEnv map[string]string
	// offline: unread references get placeholder keys (File.MarkOffline).
	offline bool
}

// Error names the file, line and field of the configuration that is wrong.
// Its message never quotes a value.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Field)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Path is the file the configuration was loaded from.
func (f *File) Path() string { return f.path }

// Names returns the pipeline names in sorted order.
func (f *File) Names() []string { return SortedKeys(f.Pipelines) }

// Pick returns the named pipeline, or the only one when name is empty.
func (f *File) Pick(name string) (string, error) {
	if name != "" {
		if _, ok := f.Pipelines[name]; !ok {
			return "", fmt.Errorf("no pipeline %q in the configuration (have: %v)", name, f.Names())
		}
		return name, nil
	}
	if len(f.Pipelines) != 1 {
		return "", fmt.Errorf("the configuration has %d pipelines %v: choose one with -pipeline",
			len(f.Pipelines), f.Names())
	}
	return f.Names()[0], nil
}

// Load reads and checks the configuration file at path. Every "${NAME}" in
// a string is replaced by the environment variable NAME, which must be set.
// Unknown keys are errors. Relative paths in the file are made relative to
// the file's folder.
func Load(path string, getenv func(string) string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data, getenv)
}

// Parse is Load of data already read from path.
func Parse(path string, data []byte, getenv func(string) string) (*File, error) {
	cfg := File{path: path}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: path, Msg: "the file is empty"}
		}
		return nil, yamlError(path, err)
	}
	if err := expandEnv(reflect.ValueOf(&cfg).Elem(), "", getenv); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = path
		}
		return nil, err
	}
	dir := filepath.Dir(path)
	if cfg.State == "" {
		cfg.State = DefaultState
	}
	if !filepath.IsAbs(cfg.State) {
		cfg.State = filepath.Join(dir, cfg.State)
	}
	if cfg.Temporal != nil {
		if err := cfg.Temporal.check("temporal", dir); err != nil {
			err.File = path
			return nil, err
		}
	}
	if len(cfg.Pipelines) == 0 {
		return nil, &Error{File: path, Field: "pipelines", Msg: "no pipeline configured"}
	}
	for _, name := range cfg.Names() {
		pc := cfg.Pipelines[name]
		if pc == nil {
			return nil, &Error{File: path, Field: "pipelines." + name, Msg: "empty pipeline"}
		}
		if err := pc.check("pipelines."+name, dir); err != nil {
			err.File = path
			return nil, err
		}
		pc.Anonymizer.getenv = getenv
	}
	if err := cfg.checkSecretRefs(); err != nil {
		err.File = path
		return nil, err
	}
	return &cfg, nil
}

var (
	yamlLine    = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)
	yamlUnknown = regexp.MustCompile(`^field (\S+) not found in type .*$`)
)

// yamlError turns a YAML decoding error into an *Error with its line. YAML
// errors quote field names, not values, except for type errors, which quote
// the offending scalar: those are reworded.
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
		return &Error{File: path, Line: line, Msg: text}
	}
	return &Error{File: path, Msg: "invalid YAML"}
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
			if !t.Field(i).IsExported() {
				continue
			}
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
			return &Error{Field: path, Msg: "environment variable " + missing + " is not set"}
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

// SortedKeys returns the keys of m in sorted order.
func SortedKeys[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
