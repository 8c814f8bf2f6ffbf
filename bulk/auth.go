package bulk

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Authenticator supplies access tokens for requests.
type Authenticator interface {
	// Token returns a valid access token, fetching a new one when the cached
	// one is missing or near its expiry. An empty Secret means no
	// Authorization header.
	Token(ctx context.Context) (Secret, error)
	// Invalidate drops tok after the server refused it (a 401), so the next
	// Token call fetches a fresh one.
	Invalidate(tok Secret)
}

// StaticToken is a fixed bearer token.
type StaticToken struct {
	// Value is the token.
	Value Secret
}

// Token returns the fixed token.
func (s StaticToken) Token(context.Context) (Secret, error) { return s.Value, nil }

// Invalidate does nothing: a static token cannot be refreshed.
func (StaticToken) Invalidate(Secret) {}

// tokenSource fetches a token and its lifetime.
type tokenSource func(ctx context.Context) (tok Secret, expiresIn time.Duration, err error)

// tokenCache caches a token and refreshes it before expiry.
type tokenCache struct {
	mu      sync.Mutex
	fetched bool // a token was obtained before
	tok     Secret
	exp     time.Time
	fetch   tokenSource
	clock   Clock
}

func (c *tokenCache) get(ctx context.Context) (Secret, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clk := c.clock
	if clk == nil {
		clk = SystemClock{}
	}
	now := clk.Now()
	if !c.tok.IsZero() && now.Before(c.exp) {
		return c.tok, nil
	}
	tok, life, err := c.fetch(ctx)
	var he *HTTPError
	if err != nil && c.fetched && errors.As(err, &he) && he.StatusCode == http.StatusBadRequest {
		// Some servers (Epic) answer a re-authorisation with a spurious
		// 400: a first authorisation that worked earns one more try.
		tok, life, err = c.fetch(ctx)
	}
	if err != nil {
		return Secret{}, err
	}
	c.fetched = true
	if life <= 0 {
		life = 5 * time.Minute
	}
	// Refresh at 80 % of the lifetime, and at least 10 s before expiry.
	margin := life / 5
	if margin < 10*time.Second {
		margin = min(10*time.Second, life/2)
	}
	c.tok, c.exp = tok, now.Add(life-margin)
	return tok, nil
}

func (c *tokenCache) invalidate(tok Secret) {
	c.mu.Lock()
	if c.tok.Reveal() == tok.Reveal() {
		c.tok = Secret{}
	}
	c.mu.Unlock()
}

// AuthStyle is how client credentials reach the token endpoint.
type AuthStyle int

const (
	// AuthBasic sends client_id:client_secret as HTTP Basic authentication.
	AuthBasic AuthStyle = iota
	// AuthPost sends client_id and client_secret in the form body
	// (client_secret_post; Microsoft Entra ID).
	AuthPost
)

// ClientCredentials is the OAuth2 client-credentials grant with a shared
// secret: SMART client-confidential-symmetric, CMS BCDA, or Microsoft Entra
// ID (v1 endpoint with Resource, v2 with Scope "<fhir-url>/.default").
type ClientCredentials struct {
	// HTTP sends the token requests.
	HTTP *http.Client
	// TokenURL is the token endpoint. For Entra ID it is
	// https://login.microsoftonline.com/{tenant}/oauth2/token (v1) or
	// .../oauth2/v2.0/token (v2); see EntraTokenURL.
	TokenURL string
	// ClientID and Secret are the credentials.
	ClientID string
	Secret   Secret
	// Style selects HTTP Basic or form-post credentials.
	Style AuthStyle
	// Scope is the requested scope (space-separated); Resource is the Entra
	// v1 resource parameter. Either may be empty.
	Scope, Resource string
	// Clock is the time source (nil: system clock).
	Clock Clock

	once  sync.Once
	cache *tokenCache
}

// EntraTokenURL returns the Microsoft Entra ID token endpoint of a tenant:
// version 1 (resource=) or 2 (scope=.../.default).
func EntraTokenURL(tenant string, version int) string {
	if version == 1 {
		return "https://login.microsoftonline.com/" + url.PathEscape(tenant) + "/oauth2/token"
	}
	return "https://login.microsoftonline.com/" + url.PathEscape(tenant) + "/oauth2/v2.0/token"
}

// Token returns a cached or fresh access token.
func (a *ClientCredentials) Token(ctx context.Context) (Secret, error) {
	a.once.Do(func() { a.cache = &tokenCache{fetch: a.fetch, clock: a.Clock} })
	return a.cache.get(ctx)
}

// Invalidate drops tok.
func (a *ClientCredentials) Invalidate(tok Secret) {
	a.once.Do(func() { a.cache = &tokenCache{fetch: a.fetch, clock: a.Clock} })
	a.cache.invalidate(tok)
}

// Format prints the configuration without the secret.
func (a *ClientCredentials) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "bulk.ClientCredentials{TokenURL:%s ClientID:%s Secret:%s Scope:%s Resource:%s}",
		redactURL(a.TokenURL), a.ClientID, redacted, a.Scope, a.Resource)
}

// Format prints the configuration without the private key.
func (a *SMARTBackend) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "bulk.SMARTBackend{TokenURL:%s ClientID:%s Key:%s KeyID:%s Alg:%s Scope:%s}",
		redactURL(a.TokenURL), a.ClientID, redacted, a.KeyID, a.Alg, a.Scope)
}

func (a *ClientCredentials) fetch(ctx context.Context) (Secret, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if a.Scope != "" {
		form.Set("scope", a.Scope)
	}
	if a.Resource != "" {
		form.Set("resource", a.Resource)
	}
	var basic [2]string
	if a.Style == AuthPost {
		form.Set("client_id", a.ClientID)
		form.Set("client_secret", a.Secret.Reveal())
	} else {
		basic = [2]string{url.QueryEscape(a.ClientID), url.QueryEscape(a.Secret.Reveal())}
	}
	tok, life, err := postToken(ctx, a.HTTP, a.TokenURL, form, basic)
	return tok, life, scrub(err, a.Secret.Reveal())
}

// scrub removes a secret from an error's server-provided text, in case a
// server echoes what it was sent.
func scrub(err error, secret string) error {
	var he *HTTPError
	if err != nil && len(secret) >= 4 && errors.As(err, &he) && strings.Contains(he.Outcome, secret) {
		he.Outcome = strings.ReplaceAll(he.Outcome, secret, redacted)
	}
	return err
}

// postToken posts a token request and decodes the response.
func postToken(ctx context.Context, hc *http.Client, tokenURL string, form url.Values, basic [2]string) (Secret, time.Duration, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Secret{}, 0, fmt.Errorf("token: build request for %s: %w", redactURL(tokenURL), cleanNetErr(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic[0] != "" {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Secret{}, 0, &netError{step: "token", method: http.MethodPost, url: redactURL(tokenURL), err: cleanNetErr(err)}
	}
	if resp.StatusCode != http.StatusOK {
		return Secret{}, 0, httpError("token", resp)
	}
	body, err := readSmall(resp, 1<<20)
	if err != nil {
		return Secret{}, 0, fmt.Errorf("token: read response: %w", cleanNetErr(err))
	}
	var tr struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return Secret{}, 0, errors.New("token: response is not a JSON token response")
	}
	if tr.AccessToken == "" {
		return Secret{}, 0, errors.New("token: response has no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return Secret{}, 0, fmt.Errorf("token: token_type %q is not bearer", oneLine(tr.TokenType))
	}
	var life time.Duration
	if s := strings.Trim(string(tr.ExpiresIn), `"`); s != "" && s != "null" {
		if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 {
			life = time.Duration(n * float64(time.Second))
		}
	}
	return NewSecret(tr.AccessToken), life, nil
}

// SMARTBackend is SMART Backend Services authorisation: the client
// credentials grant with a private_key_jwt client assertion signed with
// RS384 or ES384.
type SMARTBackend struct {
	// HTTP sends discovery and token requests.
	HTTP *http.Client
	// FHIRBase is used to discover the token endpoint from
	// [base]/.well-known/smart-configuration when TokenURL is empty.
	FHIRBase string
	// TokenURL is the token endpoint; "" discovers it.
	TokenURL string
	// ClientID is the registered client id (iss and sub of the assertion).
	ClientID string
	// Key signs assertions: *rsa.PrivateKey or *ecdsa.PrivateKey (P-384).
	Key crypto.Signer
	// KeyID is the kid header.
	KeyID string
	// Alg is "RS384" or "ES384" (default chosen from the key).
	Alg string
	// JKU is an optional jku header: the URL of the client's JWKS.
	JKU string
	// Scope is the requested scope, such as "system/*.read".
	Scope string
	// Clock is the time source (nil: system clock).
	Clock Clock

	once  sync.Once
	cache *tokenCache
	mu    sync.Mutex
	found string
}

// Token returns a cached or fresh access token.
func (a *SMARTBackend) Token(ctx context.Context) (Secret, error) {
	a.once.Do(func() { a.cache = &tokenCache{fetch: a.fetch, clock: a.Clock} })
	return a.cache.get(ctx)
}

// Invalidate drops tok.
func (a *SMARTBackend) Invalidate(tok Secret) {
	a.once.Do(func() { a.cache = &tokenCache{fetch: a.fetch, clock: a.Clock} })
	a.cache.invalidate(tok)
}

func (a *SMARTBackend) tokenURL(ctx context.Context) (string, error) {
	if a.TokenURL != "" {
		return a.TokenURL, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.found != "" {
		return a.found, nil
	}
	u, err := DiscoverTokenURL(ctx, a.HTTP, a.FHIRBase)
	if err != nil {
		return "", err
	}
	a.found = u
	return u, nil
}

// DiscoverTokenURL reads token_endpoint from
// [base]/.well-known/smart-configuration, falling back to the OAuth URIs
// extension of the CapabilityStatement ([base]/metadata) that older servers
// use.
func DiscoverTokenURL(ctx context.Context, hc *http.Client, base string) (string, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	base = strings.TrimSuffix(base, "/")
	wk := base + "/.well-known/smart-configuration"
	var sc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	body, err := getJSON(ctx, hc, wk, "application/json")
	if err == nil && json.Unmarshal(body, &sc) == nil && sc.TokenEndpoint != "" {
		return checkTokenURL(sc.TokenEndpoint)
	}
	if err == nil {
		err = fmt.Errorf("discovery: %s has no token_endpoint", redactURL(wk))
	}
	body, merr := getJSON(ctx, hc, base+"/metadata", "application/fhir+json")
	if merr != nil {
		return "", err
	}
	var cs struct {
		Rest []struct {
			Security struct {
				Extension []struct {
					URL       string `json:"url"`
					Extension []struct {
						URL      string `json:"url"`
						ValueURI string `json:"valueUri"`
					} `json:"extension"`
				} `json:"extension"`
			} `json:"security"`
		} `json:"rest"`
	}
	if json.Unmarshal(body, &cs) == nil {
		for _, r := range cs.Rest {
			for _, e := range r.Security.Extension {
				if e.URL != "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
					continue
				}
				for _, sub := range e.Extension {
					if sub.URL == "token" && sub.ValueURI != "" {
						return checkTokenURL(sub.ValueURI)
					}
				}
			}
		}
	}
	return "", err
}

func checkTokenURL(s string) (string, error) {
	if u, err := url.Parse(s); err != nil || !u.IsAbs() {
		return "", errors.New("discovery: the token endpoint is not an absolute URL")
	}
	return s, nil
}

// getJSON GETs a small JSON document.
func getJSON(ctx context.Context, hc *http.Client, u, accept string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: build request: %w", cleanNetErr(err))
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &netError{step: "discovery", method: http.MethodGet, url: redactURL(u), err: cleanNetErr(err)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, httpError("discovery", resp)
	}
	body, err := readSmall(resp, 4<<20)
	if err != nil {
		return nil, fmt.Errorf("discovery: read %s: %w", redactURL(u), cleanNetErr(err))
	}
	return body, nil
}

func (a *SMARTBackend) fetch(ctx context.Context) (Secret, time.Duration, error) {
	tu, err := a.tokenURL(ctx)
	if err != nil {
		return Secret{}, 0, err
	}
	assertion, err := a.assertion(tu)
	if err != nil {
		return Secret{}, 0, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	if a.Scope != "" {
		form.Set("scope", a.Scope)
	}
	return postToken(ctx, a.HTTP, tu, form, [2]string{})
}

// assertion signs a client assertion for the token endpoint aud.
func (a *SMARTBackend) assertion(aud string) (string, error) {
	alg := a.Alg
	if alg == "" {
		alg = defaultAlg(a.Key)
	}
	var method jwt.SigningMethod
	switch alg {
	case "RS384":
		method = jwt.SigningMethodRS384
	case "ES384":
		method = jwt.SigningMethodES384
	case "RS256":
		method = jwt.SigningMethodRS256
	case "ES256":
		method = jwt.SigningMethodES256
	case "RS512":
		method = jwt.SigningMethodRS512
	case "ES512":
		method = jwt.SigningMethodES512
	default:
		return "", fmt.Errorf("token: unsupported signing algorithm %q (want RS384 or ES384)", alg)
	}
	if a.Key == nil {
		return "", errors.New("token: no private key")
	}
	clk := a.Clock
	if clk == nil {
		clk = SystemClock{}
	}
	now := clk.Now()
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", fmt.Errorf("token: jti: %w", err)
	}
	claims := jwt.MapClaims{
		"iss": a.ClientID, "sub": a.ClientID, "aud": aud,
		"exp": now.Add(270 * time.Second).Unix(), "jti": hex.EncodeToString(nonce[:]),
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["typ"] = "JWT"
	if a.KeyID != "" {
		t.Header["kid"] = a.KeyID
	}
	if a.JKU != "" {
		t.Header["jku"] = a.JKU
	}
	s, err := t.SignedString(a.Key)
	if err != nil {
		return "", fmt.Errorf("token: sign client assertion with %s: %w", alg, err)
	}
	return s, nil
}

func defaultAlg(k crypto.Signer) string {
	switch key := k.(type) {
	case *ecdsa.PrivateKey:
		switch key.Curve {
		case elliptic.P256():
			return "ES256"
		case elliptic.P521():
			return "ES512"
		}
		return "ES384"
	}
	return "RS384"
}

// ParsePrivateKey reads a signing key from PEM (PKCS#1, PKCS#8 or SEC 1) or
// from a JWK or JWKS holding private keys. For a JWKS, kid selects the key
// ("" takes the first signing key). It returns the key, its kid (from the
// JWK, or kid) and the algorithm (from the JWK's alg, else by key type: RS384
// for RSA, ES256/384/512 by curve). Errors never quote key material.
func ParsePrivateKey(data []byte, kid string) (key crypto.Signer, keyID, alg string, err error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "{") {
		return parseJWKKey([]byte(trimmed), kid)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", "", errors.New("key: neither PEM nor JWK/JWKS")
	}
	var k any
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, "", "", fmt.Errorf("key: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, "", "", errors.New("key: PEM private key does not parse")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, "", "", errors.New("key: unsupported private key type")
	}
	switch s.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
	default:
		return nil, "", "", errors.New("key: only RSA and EC keys are supported")
	}
	return s, kid, defaultAlg(s), nil
}

// JWK is a JSON Web Key (public or private members).
type JWK struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	D      string   `json:"d,omitempty"`
	P      string   `json:"p,omitempty"`
	Q      string   `json:"q,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

func parseJWKKey(data []byte, kid string) (crypto.Signer, string, string, error) {
	var set JWKS
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, "", "", errors.New("key: JWK/JWKS is not valid JSON")
	}
	if len(set.Keys) == 0 {
		var one JWK
		if json.Unmarshal(data, &one) == nil && one.Kty != "" {
			set.Keys = []JWK{one}
		}
	}
	for i, k := range set.Keys {
		if k.D == "" || (kid != "" && k.Kid != kid) {
			continue
		}
		if len(k.KeyOps) > 0 && !contains(k.KeyOps, "sign") {
			continue
		}
		s, err := k.privateKey()
		if err != nil {
			return nil, "", "", fmt.Errorf("key: JWKS key %d: %w", i, err)
		}
		alg := k.Alg
		if alg == "" {
			alg = defaultAlg(s)
		}
		return s, k.Kid, alg, nil
	}
	if kid != "" {
		return nil, "", "", fmt.Errorf("key: no private signing key with kid %q in the JWKS", kid)
	}
	return nil, "", "", errors.New("key: no private signing key in the JWKS")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}

func (k JWK) privateKey() (crypto.Signer, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64int(k.N)
		e, err2 := b64int(k.E)
		d, err3 := b64int(k.D)
		p, err4 := b64int(k.P)
		q, err5 := b64int(k.Q)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, errors.New("RSA key members n, e, d, p, q must be base64url integers")
		}
		key := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: int(e.Int64())}, D: d, Primes: []*big.Int{p, q}}
		if err := key.Validate(); err != nil {
			return nil, errors.New("RSA key is inconsistent")
		}
		key.Precompute()
		return key, nil
	case "EC":
		curve, err := curveOf(k.Crv)
		if err != nil {
			return nil, err
		}
		d, err := b64int(k.D)
		if err != nil {
			return nil, errors.New("EC key member d must be a base64url integer")
		}
		b := make([]byte, (curve.Params().BitSize+7)/8)
		key, err := ecdsa.ParseRawPrivateKey(curve, d.FillBytes(b))
		if err != nil {
			return nil, errors.New("EC key does not parse")
		}
		return key, nil
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}

func curveOf(crv string) (elliptic.Curve, error) {
	switch crv {
	case "P-256":
		return elliptic.P256(), nil
	case "P-384":
		return elliptic.P384(), nil
	case "P-521":
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("unsupported curve %q", crv)
}

// PublicKey returns the public key of a JWK.
func (k JWK) PublicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64int(k.N)
		e, err2 := b64int(k.E)
		if err1 != nil || err2 != nil {
			return nil, errors.New("key: RSA members n, e must be base64url integers")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		curve, err := curveOf(k.Crv)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		x, err1 := b64int(k.X)
		y, err2 := b64int(k.Y)
		if err1 != nil || err2 != nil {
			return nil, errors.New("key: EC members x, y must be base64url integers")
		}
		size := (curve.Params().BitSize + 7) / 8
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		x.FillBytes(raw[1 : 1+size])
		y.FillBytes(raw[1+size:])
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, errors.New("key: EC point is not on the curve")
		}
		return pub, nil
	}
	return nil, fmt.Errorf("key: unsupported kty %q", k.Kty)
}

// PublicJWK returns the public JWK of an RSA or EC key, for registering a
// client's JWKS with a server.
func PublicJWK(key crypto.Signer, kid, alg string) (JWK, error) {
	enc := base64.RawURLEncoding.EncodeToString
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", Kid: kid, Alg: alg, N: enc(pub.N.Bytes()), E: enc(big.NewInt(int64(pub.E)).Bytes()), KeyOps: []string{"verify"}}, nil
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes()
		if err != nil {
			return JWK{}, errors.New("key: EC public key does not encode")
		}
		size := (len(raw) - 1) / 2
		return JWK{Kty: "EC", Kid: kid, Alg: alg, Crv: pub.Curve.Params().Name, X: enc(raw[1 : 1+size]), Y: enc(raw[1+size:]), KeyOps: []string{"verify"}}, nil
	}
	return JWK{}, errors.New("key: unsupported key type")
}
