package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/fhir/model"
	"fhirdeid/fhirpath"
	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// Request builds the export request of a source.
func (s *Source) Request() bulk.Request {
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

// Engine is a pipeline's compiled anonymizer with what the run report says
// of it.
type Engine struct {
	*anonymize.Engine
	// Hash identifies the configuration's bytes ("sha256:...").
	Hash string
	// Fingerprints identify the keys the configuration uses without
	// revealing them, by parameter name.
	Fingerprints map[string]string
	// Warnings are about the keys (a key file others may read).
	Warnings []string
}

// LoadEngine loads and compiles the pipeline's anonymizer configuration
// (its file, or the built-in profile it names, safe-harbor by default) with
// its keys (keys.go), and builds the engine. field is the pipeline's field
// ("pipelines.NAME").
func (pc *Pipeline) LoadEngine(field string) (*Engine, error) {
	data, name, err := pc.Anonymizer.configData(field)
	if err != nil {
		return nil, err
	}
	k, keyWarnings, err := pc.Anonymizer.keys(field)
	if err != nil {
		return nil, err
	}
	version := pc.Anonymizer.FHIRVersion
	if version == "" {
		version = "R4"
	}
	cfg, err := anonymize.ParseConfig(data, anonymize.Options{FHIRVersion: version, Compiler: CheckedCompiler(version, pc.Anonymizer.Strict), Keys: k})
	if err != nil {
		return nil, fmt.Errorf("%s: anonymizer configuration %s: %w", field, name, err)
	}
	if err := pc.checkStableKeys(field, cfg); err != nil {
		return nil, err
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: anonymizer configuration %s: %w", field, name, err)
	}
	sum := sha256.Sum256(data)
	return &Engine{Engine: eng, Hash: "sha256:" + hex.EncodeToString(sum[:]), Fingerprints: cfg.KeyFingerprints(), Warnings: keyWarnings}, nil
}

// CheckedCompiler compiles rule paths and checks them against the FHIR
// model of version. A path that names an element or type the model lacks
// matches nothing: with strict it is an error, otherwise a warning of the
// loaded configuration — Microsoft's own sample configuration has such a
// path ("HealthcareService.notAvaliable"), which its engine silently accepts.
func CheckedCompiler(version string, strict bool) anonymize.PathCompiler {
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

// Fingerprint identifies a key without revealing it: the first 8 bytes of
// SHA-256 over a domain-separated input.
func Fingerprint(key string) string { return anonymize.Fingerprint(key) }

// OpenOptions are the process-wide settings Open wires into a pipeline.
type OpenOptions struct {
	// UserAgent is sent to the FHIR server.
	UserAgent string
	// Logger receives the pipeline's log; nil discards it.
	Logger *slog.Logger
	// NewKeys lets a run use keys other than those of the pipeline's last
	// successful run (pipeline.Pipeline.NewKeys).
	NewKeys bool
}

// LogDir is the folder of the local run logs, beside the state database.
func (f *File) LogDir() string { return filepath.Join(filepath.Dir(f.State), "logs") }

// Open wires the configured pipeline name: FHIR client and auth, engine,
// destination and state. It contacts no server, except Azure Key Vault when
// the file has references that ResolveSecrets has not resolved yet. The
// caller closes the returned store.
func (f *File) Open(ctx context.Context, name string, db *state.DB, opts OpenOptions) (*pipeline.Pipeline, *storage.Store, error) {
	pc, ok := f.Pipelines[name]
	if !ok {
		return nil, nil, fmt.Errorf("no pipeline %q in the configuration", name)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	field := "pipelines." + name
	if err := f.ResolveSecrets(ctx, nil); err != nil {
		return nil, nil, err
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 8,
		ResponseHeaderTimeout: 10 * time.Minute, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 30 * time.Second}}
	client, err := bulk.NewClient(pc.Source.URL, hc)
	if err != nil {
		return nil, nil, &Error{File: f.path, Field: field + ".source.url", Msg: err.Error()}
	}
	client.UserAgent = opts.UserAgent
	if pc.Source.Deadline != "" {
		client.Polling.Deadline, _ = ParseDuration(pc.Source.Deadline)
	}
	if pc.Source.MaxPollInterval != "" {
		client.Polling.MaxDelay, _ = ParseDuration(pc.Source.MaxPollInterval)
	}
	if err := pc.Source.apply(client); err != nil {
		return nil, nil, &Error{File: f.path, Field: field + ".source.trustedHosts", Msg: err.Error()}
	}
	client.Auth, err = pc.Source.Auth.Authenticator(field+".source.auth", hc, pc.Source.URL)
	if err != nil {
		return nil, nil, err
	}
	client.StorageAuth, client.StorageSigner, err = pc.Source.StorageAuth.Build(field+".source.storageAuth", hc, client.Auth)
	if err != nil {
		return nil, nil, err
	}
	eng, err := pc.LoadEngine(field)
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
	for _, w := range eng.Warnings {
		logger.Warn(w, "pipeline", name)
	}
	deid := pipeline.NewEngineDeidentifier(eng.Engine)
	deid.Folder = name
	p := &pipeline.Pipeline{
		Name:               name,
		Client:             client,
		Request:            pc.Source.Request(),
		SinceAuto:          pc.Source.Since == "auto",
		Deidentifier:       deid,
		Store:              store,
		State:              db,
		LogDir:             f.LogDir(),
		Concurrency:        pc.Concurrency,
		Workers:            pc.Workers,
		AllowCountMismatch: pc.AllowCountMismatch,
		OnInvalid:          pc.Anonymizer.OnInvalid,
		Logger:             logger,
		ConfigHash:         eng.Hash,
		KeyFingerprints:    eng.Fingerprints,
		Assurance:          pc.Assurance(),
		NewKeys:            opts.NewKeys,
		NoSnapshot:         pc.Snapshot != nil && !*pc.Snapshot,
	}
	if p.Tables, err = pc.tablesFor(field, store); err != nil {
		store.Close()
		return nil, nil, err
	}
	return p, store, nil
}
