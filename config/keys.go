package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/anonymize/keys"
)

// check validates the anonymizer's profile and key file settings and makes
// the key file's path absolute (relative to dir, the configuration file's
// folder).
func (a *Anonymizer) check(field, dir string) *Error {
	if a.Profile != "" {
		if !defaultconfig.IsProfile(a.Profile) {
			return &Error{Field: field + ".profile", Msg: fmt.Sprintf("unknown profile %q: the built-in profiles are %s", a.Profile, strings.Join(defaultconfig.Profiles(), " and "))}
		}
		if a.Config != "" {
			return &Error{Field: field + ".profile", Msg: "give config (a configuration file) or profile (a built-in one), not both"}
		}
	}
	if a.KeysFile != "" && !filepath.IsAbs(a.KeysFile) && !IsSecretRef(a.KeysFile) {
		a.KeysFile = filepath.Join(dir, a.KeysFile)
	}
	return nil
}

// configData returns the configuration's text and a name for messages.
func (a *Anonymizer) configData(field string) ([]byte, string, error) {
	if a.Config != "" {
		data, err := os.ReadFile(a.Config)
		if err != nil {
			return nil, "", &Error{Field: field + ".anonymizer.config", Msg: "cannot read the file"}
		}
		return data, a.Config, nil
	}
	profile := a.Profile
	if profile == "" {
		profile = defaultconfig.DefaultProfile
	}
	data, ok := defaultconfig.Profile(profile)
	if !ok {
		return nil, "", &Error{Field: field + ".anonymizer.profile", Msg: fmt.Sprintf("unknown profile %q: the built-in profiles are %s", profile, strings.Join(defaultconfig.Profiles(), " and "))}
	}
	return data, "built-in profile " + profile, nil
}

// keys returns the keys that replace the configuration's: the key file's,
// or else those set in the environment.
func (a *Anonymizer) keys(field string) (anonymize.Keys, []string, error) {
	if a.keysData != nil {
		k, err := keys.Parse(a.keysData)
		if err != nil {
			return k, nil, &Error{Field: field + ".anonymizer.keysFile", Msg: "the Key Vault secret is not a key file: " + err.Error()}
		}
		return k, nil, nil
	}
	if IsSecretRef(a.KeysFile) {
		if a.offline {
			return placeholderKeys, []string{"anonymizer keys: the Key Vault reference was not read (validate --online reads it)"}, nil
		}
		return anonymize.Keys{}, nil, unresolved(field + ".anonymizer.keysFile")
	}
	if a.KeysFile != "" {
		k, warnings, err := keys.Load(a.KeysFile)
		if err != nil {
			return k, warnings, &Error{Field: field + ".anonymizer.keysFile", Msg: err.Error()}
		}
		return k, warnings, nil
	}
	var refErr error
	getenv := func(name string) string {
		v := a.env(name)
		if !IsSecretRef(v) {
			return v
		}
		if r, ok := a.resolvedEnv[name]; ok {
			return r
		}
		if !a.offline && refErr == nil {
			refErr = unresolved(field + ".anonymizer (" + name + ")")
		}
		return placeholderKeys.EncryptKey
	}
	k, err := keys.FromEnv(getenv)
	if refErr != nil {
		return anonymize.Keys{}, nil, refErr
	}
	if err != nil {
		return k, nil, &Error{Field: field + ".anonymizer", Msg: err.Error()}
	}
	return k, nil, nil
}

// keyVars are the environment variables of the anonymizer keys.
var keyVars = []string{keys.EnvCryptoHashKey, keys.EnvDateShiftKey, keys.EnvEncryptKey}

// env reads a key variable.
func (a *Anonymizer) env(name string) string {
	if a.getenv == nil {
		return os.Getenv(name)
	}
	return a.getenv(name)
}

// placeholderKeys stand in for keys in Key Vault when a file is checked
// offline; they never reach an engine that processes data.
var placeholderKeys = anonymize.Keys{CryptoHashKey: "offline-placeholder-key", DateShiftKey: "offline-placeholder-key",
	EncryptKey: "offline-placehol"}

// checkStableKeys refuses random per-run keys in an incremental pipeline
// (since: auto): each run would pseudonymise and shift dates differently, and
// no run would join the previous ones.
func (pc *Pipeline) checkStableKeys(field string, cfg *anonymize.Config) error {
	if pc.Source.Since != "auto" {
		return nil
	}
	random := cfg.RandomKeys()
	if len(random) == 0 {
		return nil
	}
	return &Error{Field: field + ".anonymizer", Msg: fmt.Sprintf(
		"source.since is auto, but the anonymizer's %s would be drawn at random for every run, so no run would join the previous ones: "+
			"create a key file with \"fhirdeid keys init keys.json\" and set anonymizer.keysFile: keys.json "+
			"(or set %s, or the key in the anonymizer configuration)", strings.Join(random, " and "), envNames(random))}
}

func envNames(names []string) string {
	var out []string
	for _, n := range names {
		switch n {
		case anonymize.CryptoHashKeyName:
			out = append(out, keys.EnvCryptoHashKey)
		case anonymize.DateShiftKeyName:
			out = append(out, keys.EnvDateShiftKey)
		case anonymize.EncryptKeyName:
			out = append(out, keys.EnvEncryptKey)
		}
	}
	return strings.Join(out, " and ")
}
