package config

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"fhirdeid/bulk"
)

// Check validates the authentication settings at field without reading any
// file, and makes the file paths absolute against dir (when dir is not
// empty).
func (a *Auth) Check(field, dir string) *Error {
	if dir != "" {
		for _, p := range []*string{&a.TokenFile, &a.ClientSecretFile, &a.PrivateKeyFile} {
			if *p != "" && !filepath.IsAbs(*p) && !IsSecretRef(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
	switch a.Type {
	case "", "none":
	case "bearer":
		if (a.Token == "") == (a.TokenFile == "") {
			return &Error{Field: field, Msg: "bearer auth needs token or tokenFile (one of them)"}
		}
	case "client-credentials", "entra":
		if a.ClientID == "" {
			return &Error{Field: field + ".clientID", Msg: "missing"}
		}
		if (a.ClientSecret == "") == (a.ClientSecretFile == "") {
			return &Error{Field: field, Msg: "client credentials need clientSecret or clientSecretFile (one of them)"}
		}
		if a.TokenURL == "" && a.Tenant == "" {
			return &Error{Field: field + ".tokenURL", Msg: "missing (or give tenant for Microsoft Entra ID)"}
		}
		switch a.Style {
		case "", "basic", "post":
		default:
			return &Error{Field: field + ".style", Msg: "must be basic or post"}
		}
	case "smart":
		if a.ClientID == "" {
			return &Error{Field: field + ".clientID", Msg: "missing"}
		}
		if a.PrivateKeyFile == "" {
			return &Error{Field: field + ".privateKeyFile", Msg: "missing"}
		}
		switch a.Alg {
		case "", "RS384", "ES384":
		default:
			return &Error{Field: field + ".alg", Msg: "must be RS384 or ES384"}
		}
	case AzureIdentity:
		for _, f := range []struct{ name, v string }{{"token", a.Token}, {"tokenFile", a.TokenFile}, {"tokenURL", a.TokenURL},
			{"clientSecret", a.ClientSecret}, {"clientSecretFile", a.ClientSecretFile}, {"privateKeyFile", a.PrivateKeyFile},
			{"tenant", a.Tenant}, {"resource", a.Resource}} {
			if f.v != "" {
				return &Error{Field: field + "." + f.name, Msg: "not used with azure-identity (the identity comes from the environment: managed identity, workload identity, AZURE_* variables or az login)"}
			}
		}
	default:
		return &Error{Field: field + ".type", Msg: "must be none, bearer, client-credentials, entra, smart or azure-identity"}
	}
	return nil
}

// AzureIdentity is the auth type of Azure managed and workload identities.
const AzureIdentity = "azure-identity"

// unresolved is the error of an authenticator built from a configuration
// whose Key Vault references were not resolved (validate without --online).
func unresolved(field string) error {
	return &Error{Field: field, Msg: "Key Vault reference not resolved (resolved at start-up, or by validate --online)"}
}

// ReadSecretFile reads a secret from a file, trimming surrounding space.
// Errors name field, never the content.
func ReadSecretFile(field, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &Error{Field: field, Msg: "cannot read the file"}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &Error{Field: field, Msg: "the file is empty"}
	}
	return s, nil
}

// DefaultSMARTScope is the scope requested with SMART Backend Services when
// none is configured.
const DefaultSMARTScope = "system/*.read"

// Authenticator builds the authenticator of a checked Auth; it reads secret
// and key files. base is the FHIR server's base URL (SMART discovers its
// token endpoint there). A nil Authenticator means no authentication.
func (a *Auth) Authenticator(field string, hc *http.Client, base string) (bulk.Authenticator, error) {
	switch a.Type {
	case "", "none":
		return nil, nil
	case "bearer":
		tok := a.Token
		if IsSecretRef(tok) {
			return nil, unresolved(field + ".token")
		}
		if a.TokenFile != "" {
			var err error
			if tok, err = ReadSecretFile(field+".tokenFile", a.TokenFile); err != nil {
				return nil, err
			}
		}
		return bulk.StaticToken{Value: bulk.NewSecret(tok)}, nil
	case "client-credentials", "entra":
		secret := a.ClientSecret
		if IsSecretRef(secret) {
			return nil, unresolved(field + ".clientSecret")
		}
		if a.ClientSecretFile != "" {
			var err error
			if secret, err = ReadSecretFile(field+".clientSecretFile", a.ClientSecretFile); err != nil {
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
		data := a.keyPEM
		if data == nil {
			if IsSecretRef(a.PrivateKeyFile) {
				return nil, unresolved(field + ".privateKeyFile")
			}
			var err error
			if data, err = os.ReadFile(a.PrivateKeyFile); err != nil {
				return nil, &Error{Field: field + ".privateKeyFile", Msg: "cannot read the key file"}
			}
		}
		key, kid, alg, err := bulk.ParsePrivateKey(data, a.KeyID)
		if err != nil {
			return nil, &Error{Field: field + ".privateKeyFile", Msg: err.Error()}
		}
		if a.KeyID != "" {
			kid = a.KeyID
		}
		if kid == "" {
			return nil, &Error{Field: field + ".keyID", Msg: "the key has no kid: give keyID"}
		}
		if a.Alg != "" {
			alg = a.Alg
		}
		if alg != "RS384" && alg != "ES384" {
			return nil, &Error{Field: field + ".alg", Msg: "must be RS384 or ES384"}
		}
		scope := a.Scope
		if scope == "" {
			scope = DefaultSMARTScope
		}
		return &bulk.SMARTBackend{HTTP: hc, FHIRBase: base, TokenURL: a.TokenURL, ClientID: a.ClientID, Key: key,
			KeyID: kid, Alg: alg, Scope: scope}, nil
	case AzureIdentity:
		scope := a.Scope
		if scope == "" {
			var err error
			if scope, err = bulk.AzureScopeFor(base); err != nil {
				return nil, &Error{Field: field + ".scope", Msg: "no default: the source URL is not an http(s) URL"}
			}
		}
		return &bulk.AzureIdentity{Scope: scope, Credential: AzureCredential(a.ClientID)}, nil
	}
	return nil, &Error{Field: field + ".type", Msg: "unsupported"}
}
