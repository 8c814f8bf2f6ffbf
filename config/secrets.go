package config

import (
	"context"
	"net/http"
	"strings"

	"fhirdeid/bulk"
)

// secretField is a configuration value that may be a Key Vault reference:
// value is what the file (or the environment) says, set stores the secret.
type secretField struct {
	field, value string
	set          func(v string)
}

// secretFields lists the secret-bearing values of every pipeline: the
// source's secrets, the private key and the anonymizer's key file (whose
// contents the secret then holds), and the anonymizer key variables.
func (f *File) secretFields() []secretField {
	var out []secretField
	str := func(field string, p *string) secretField {
		return secretField{field: field, value: *p, set: func(v string) { *p = v }}
	}
	for _, name := range f.Names() {
		pc := f.Pipelines[name]
		if pc == nil {
			continue
		}
		a, an := &pc.Source.Auth, &pc.Anonymizer
		base := "pipelines." + name + "."
		out = append(out,
			str(base+"source.auth.token", &a.Token),
			str(base+"source.auth.clientSecret", &a.ClientSecret),
			secretField{field: base + "source.auth.privateKeyFile", value: a.PrivateKeyFile, set: func(v string) { a.keyPEM = []byte(v) }},
			str(base+"source.storageAuth.connectionString", &pc.Source.StorageAuth.ConnectionString),
			str(base+"source.storageAuth.sasToken", &pc.Source.StorageAuth.SASToken),
			secretField{field: base + "anonymizer.keysFile", value: an.KeysFile, set: func(v string) { an.keysData = []byte(v) }})
		if an.KeysFile == "" {
			for _, env := range keyVars {
				out = append(out, secretField{field: base + "anonymizer (" + env + ")", value: an.env(env), set: func(v string) {
					if an.resolvedEnv == nil {
						an.resolvedEnv = map[string]string{}
					}
					an.resolvedEnv[env] = v
				}})
			}
		}
	}
	return out
}

// checkSecretRefs checks the form of every Key Vault reference, offline.
func (f *File) checkSecretRefs() *Error {
	for _, s := range f.secretFields() {
		if IsSecretRef(s.value) {
			if _, err := ParseSecretRef(s.value); err != nil {
				return &Error{Field: s.field, Msg: err.Error()}
			}
		}
	}
	return nil
}

// SecretRefs returns the Key Vault references of the file, by field.
func (f *File) SecretRefs() map[string]SecretRef {
	out := map[string]SecretRef{}
	if f.resolved {
		return out
	}
	for _, s := range f.secretFields() {
		if r, err := ParseSecretRef(s.value); err == nil {
			out[s.field] = r
		}
	}
	return out
}

// ResolveSecrets replaces every Key Vault reference of the file with the
// secret it names, read through r (nil: a KeyVault with the process's
// default Azure credential). It is all or nothing: on an error, which names
// the field and the reference, the file is unchanged. Resolving twice does
// nothing the second time.
func (f *File) ResolveSecrets(ctx context.Context, r SecretResolver) error {
	refs := f.SecretRefs()
	if f.resolved || len(refs) == 0 {
		f.resolved = true
		return nil
	}
	if r == nil {
		r = defaultVault
	}
	values := map[string]bulk.Secret{}
	for _, field := range SortedKeys(refs) {
		v, err := r.ResolveSecret(ctx, refs[field])
		if err != nil {
			return &Error{File: f.path, Field: field, Msg: err.Error()}
		}
		values[field] = v
	}
	for _, s := range f.secretFields() {
		if v, ok := values[s.field]; ok {
			s.set(v.Reveal())
		}
	}
	f.resolved = true
	return nil
}

// MarkOffline lets LoadEngine compile the rules of a file whose anonymizer
// keys are unread Key Vault references (validate without --online):
// placeholder keys stand in for them. Open resolves the references first
// and never uses the placeholders.
func (f *File) MarkOffline() {
	for _, pc := range f.Pipelines {
		if pc != nil {
			pc.Anonymizer.offline = true
		}
	}
}

// ResolveValue returns value, or the secret it names when it is a Key Vault
// reference (for settings outside the file, such as the serve API token
// taken from the environment). field names the setting in errors.
func ResolveValue(ctx context.Context, field, value string, r SecretResolver) (string, error) {
	if !IsSecretRef(value) {
		return value, nil
	}
	ref, err := ParseSecretRef(value)
	if err != nil {
		return "", &Error{Field: field, Msg: err.Error()}
	}
	if r == nil {
		r = defaultVault
	}
	v, err := r.ResolveSecret(ctx, ref)
	if err != nil {
		return "", &Error{Field: field, Msg: err.Error()}
	}
	return v.Reveal(), nil
}

// defaultVault is the process's Key Vault resolver (its cache is shared).
var defaultVault = &KeyVault{}

// Check validates the storage authentication settings at field.
func (s *StorageAuth) Check(field string, src *Auth) *Error {
	switch s.Type {
	case "", "none":
		if s.ClientID != "" || s.ConnectionString != "" || s.SASToken != "" {
			return &Error{Field: field + ".type", Msg: "missing (azure-identity, entra, connection-string or sas)"}
		}
	case AzureIdentity:
		if s.ConnectionString != "" || s.SASToken != "" {
			return &Error{Field: field, Msg: "azure-identity takes no connectionString or sasToken"}
		}
	case "entra":
		if src.Type != "entra" && src.Type != "client-credentials" {
			return &Error{Field: field + ".type", Msg: "entra uses the source's client credentials: the source auth must be entra or client-credentials"}
		}
	case "connection-string":
		if s.ConnectionString == "" {
			return &Error{Field: field + ".connectionString", Msg: "missing"}
		}
	case "sas":
		if s.SASToken == "" {
			return &Error{Field: field + ".sasToken", Msg: "missing"}
		}
	default:
		return &Error{Field: field + ".type", Msg: "must be none, azure-identity, entra, connection-string or sas"}
	}
	return nil
}

// Build returns the storage authenticator or signer of a checked
// StorageAuth; fhirAuth is the source's authenticator (entra reuses its
// client credentials).
func (s *StorageAuth) Build(field string, hc *http.Client, fhirAuth bulk.Authenticator) (bulk.Authenticator, bulk.RequestSigner, error) {
	switch s.Type {
	case AzureIdentity:
		return &bulk.AzureIdentity{Scope: bulk.AzureStorageScope, Credential: AzureCredential(s.ClientID)}, nil, nil
	case "entra":
		cc, ok := fhirAuth.(*bulk.ClientCredentials)
		if !ok {
			return nil, nil, &Error{Field: field + ".type", Msg: "entra needs the source's client credentials"}
		}
		st := &bulk.ClientCredentials{HTTP: hc, TokenURL: cc.TokenURL, ClientID: cc.ClientID, Secret: cc.Secret, Style: cc.Style}
		if cc.Resource != "" {
			st.Resource = bulk.AzureStorageResource
		} else {
			st.Scope = bulk.AzureStorageScope
		}
		return st, nil, nil
	case "connection-string":
		if IsSecretRef(s.ConnectionString) {
			return nil, nil, unresolved(field + ".connectionString")
		}
		signer, err := bulk.ParseAzureConnectionString(bulk.NewSecret(s.ConnectionString))
		if err != nil {
			return nil, nil, &Error{Field: field + ".connectionString", Msg: err.Error()}
		}
		return nil, signer, nil
	case "sas":
		if IsSecretRef(s.SASToken) {
			return nil, nil, unresolved(field + ".sasToken")
		}
		return nil, bulk.AzureSAS{Token: bulk.NewSecret(strings.TrimSpace(s.SASToken))}, nil
	}
	return nil, nil, nil
}
