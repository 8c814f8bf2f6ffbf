package bulk_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

func genKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	switch alg {
	case "RS384":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "ES384":
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t.Fatalf("alg %s", alg)
	return nil
}

func TestSMARTBackendAuth(t *testing.T) {
	for _, alg := range []string{"RS384", "ES384"} {
		t.Run(alg, func(t *testing.T) {
			key := genKey(t, alg)
			pub, err := bulk.PublicJWK(key, "k1", alg)
			if err != nil {
				t.Fatal(err)
			}
			pop := population(4, 10)
			e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 10, PollsBeforeComplete: 2,
				Auth: &bulktest.AuthOptions{ClientID: "client-1", JWKS: &bulk.JWKS{Keys: []bulk.JWK{pub}}, TokenMaxUses: 5}})
			e.exp.Client.Auth = &bulk.SMARTBackend{FHIRBase: e.url, ClientID: "client-1", Key: key, KeyID: "k1",
				Alg: alg, Scope: "system/*.read", Clock: e.clock}
			// One download at a time: the server counts a token's uses, and
			// with parallel downloads others can use up a fresh token before
			// a refused request's one retry gets to it (a refusal no real
			// server makes of a token minutes from expiry; the test was
			// flaky under load).
			e.exp.Concurrency = 1
			res, err := e.run(t, bulk.Request{})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
				t.Fatal(diff(got, want))
			}
			st := e.srv.Stats()
			// Each token serves 5 requests; the 6th is refused and the
			// client fetches a new token and retries once.
			requests := st.Kickoffs + st.StatusPolls + st.Downloads + st.Deletes
			if st.TokenRequests < 2 || st.Unauthorized == 0 {
				t.Errorf("%d token requests, %d refused requests: tokens were not refreshed mid-run", st.TokenRequests, st.Unauthorized)
			}
			if want := 1 + 3 + int64(len(res.Checkpoint.Files)) + 1; requests-st.Unauthorized != want {
				t.Errorf("%d accepted requests, want %d (kick-off, 3 polls, files, delete)", requests-st.Unauthorized, want)
			}
			if !res.Checkpoint.Manifest.RequiresAccessToken {
				t.Error("manifest should require the token")
			}
		})
	}
}

func TestSMARTKeyFormats(t *testing.T) {
	for _, alg := range []string{"RS384", "ES384"} {
		key := genKey(t, alg)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		k, _, gotAlg, err := bulk.ParsePrivateKey(pemData, "")
		if err != nil || gotAlg != alg || !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Errorf("%s PEM: alg %q err %v", alg, gotAlg, err)
		}
		jwks := privateJWKS(t, key, "kid-"+alg, alg)
		k2, kid, gotAlg, err := bulk.ParsePrivateKey(jwks, "kid-"+alg)
		if err != nil || kid != "kid-"+alg || gotAlg != alg || !k2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Errorf("%s JWKS: kid %q alg %q err %v", alg, kid, gotAlg, err)
		}
		if _, _, _, err := bulk.ParsePrivateKey(jwks, "other"); err == nil {
			t.Errorf("%s JWKS: unknown kid accepted", alg)
		}
	}
	if _, _, _, err := bulk.ParsePrivateKey([]byte("not a key"), ""); err == nil {
		t.Error("garbage accepted as a key")
	}
}

// privateJWKS encodes key as a JWKS with private members (test helper; the
// package only reads such sets).
func privateJWKS(t *testing.T, key crypto.Signer, kid, alg string) []byte {
	t.Helper()
	pub, err := bulk.PublicJWK(key, kid, alg)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{"kty": pub.Kty, "kid": kid, "alg": alg, "key_ops": []string{"sign"}}
	enc := func(b []byte) string { return strings.TrimRight(b64url(b), "=") }
	switch k := key.(type) {
	case *rsa.PrivateKey:
		m["n"], m["e"] = pub.N, pub.E
		m["d"], m["p"], m["q"] = enc(k.D.Bytes()), enc(k.Primes[0].Bytes()), enc(k.Primes[1].Bytes())
	case *ecdsa.PrivateKey:
		m["crv"], m["x"], m["y"] = pub.Crv, pub.X, pub.Y
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		m["d"] = enc(raw)
	}
	b, _ := json.Marshal(map[string]any{"keys": []any{m}})
	return b
}

func TestClientSecretAuth(t *testing.T) {
	for _, style := range []bulk.AuthStyle{bulk.AuthBasic, bulk.AuthPost} {
		pop := population(2, 3)
		e := newEnv(t, bulktest.Options{Resources: pop, Auth: &bulktest.AuthOptions{ClientID: "c2", ClientSecret: "s3cr3t-value", TokenMaxUses: 5}})
		e.exp.Client.Auth = &bulk.ClientCredentials{TokenURL: e.srv.TokenURL(), ClientID: "c2", Secret: bulk.NewSecret("s3cr3t-value"),
			Style: style, Scope: "system/*.rs", Clock: e.clock}
		e.exp.Concurrency = 1 // see TestSMARTBackendAuth
		if _, err := e.run(t, bulk.Request{}); err != nil {
			t.Fatalf("style %d: %v", style, err)
		}
		if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
			t.Fatal(diff(got, want))
		}
	}
}

func TestStaticToken(t *testing.T) {
	e := newEnv(t, bulktest.Options{Resources: population(1, 1), Auth: &bulktest.AuthOptions{ClientID: "c", ClientSecret: "x"}})
	// Get a token from the server, then use it as a static bearer token.
	cc := &bulk.ClientCredentials{TokenURL: e.srv.TokenURL(), ClientID: "c", Secret: bulk.NewSecret("x")}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.exp.Client.Auth = bulk.StaticToken{Value: tok}
	if _, err := e.run(t, bulk.Request{}); err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name  string
		opts  bulktest.Options
		setup func(e *env)
		want  []string
	}{
		{"connection refused", bulktest.Options{}, func(e *env) {
			e.exp.Client.Base.Host = "127.0.0.1:1"
			e.exp.Client.Retries.MaxRetries = 1
		}, []string{"kick-off: GET http://127.0.0.1:1/fhir/$export", "connection refused"}},
		{"refused auth", bulktest.Options{Auth: &bulktest.AuthOptions{ClientID: "c", ClientSecret: "right"}}, func(e *env) {
			e.exp.Client.Auth = &bulk.ClientCredentials{TokenURL: e.srv.TokenURL(), ClientID: "c", Secret: bulk.NewSecret("wrong-secret-123")}
		}, []string{"kick-off: get access token: token: POST", "HTTP 401", "invalid_client: unknown client or wrong secret"}},
		{"no token", bulktest.Options{Auth: &bulktest.AuthOptions{ClientID: "c", ClientSecret: "right"}}, nil,
			[]string{"kick-off: GET", "HTTP 401", "error/login missing, invalid or expired access token"}},
		{"4xx with OperationOutcome", bulktest.Options{Faults: bulktest.Faults{KickoffStatus: 400, KickoffDiagnostics: "Group export is not allowed for this client"}}, nil,
			[]string{"kick-off: GET", "HTTP 400", "error/processing Group export is not allowed for this client"}},
		{"unsupported parameter", bulktest.Options{}, func(e *env) {}, []string{"kick-off", "HTTP 400", "unsupported parameter _typeFilter"}},
		{"invalid manifest", bulktest.Options{Faults: bulktest.Faults{InvalidManifest: true}}, nil, []string{"status: manifest: transactionTime missing"}},
		{"unknown group", bulktest.Options{}, nil, []string{"kick-off", "HTTP 404", "unknown group"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Resources = population(1, 1)
			e := newEnv(t, tc.opts)
			if tc.setup != nil {
				tc.setup(e)
			}
			req := bulk.Request{}
			switch tc.name {
			case "unsupported parameter":
				req.TypeFilters = []string{"Observation?category=laboratory"}
			case "unknown group":
				req = bulk.Request{Level: bulk.GroupLevel, GroupID: "nope"}
			}
			_, err := e.run(t, req)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if strings.Contains(msg, "wrong-secret-123") {
				t.Error("error leaks the secret")
			}
		})
	}
}

func TestUnsupportedParameterLenient(t *testing.T) {
	pop := population(1, 1)
	e := newEnv(t, bulktest.Options{Resources: pop})
	if _, err := e.run(t, bulk.Request{TypeFilters: []string{"Observation?category=laboratory"}, Lenient: true}); err != nil {
		t.Fatal(err)
	}
}

// TestNoSecretLeak plants a client secret and a server-issued token and
// checks that neither appears in errors, log.ndjson, the checkpoint or any
// stored file, including after a refused request.
func TestNoSecretLeak(t *testing.T) {
	const secret = "PLANTED-client-secret-7f3a9"
	e := newEnv(t, bulktest.Options{Resources: population(3, 3), PartSize: 4,
		Auth:   &bulktest.AuthOptions{ClientID: "leaky", ClientSecret: secret, TokenMaxUses: 5},
		Faults: bulktest.Faults{CutDownloads: 1, StatusTransient: 1}})
	var tokens []string
	tc := &recordingTransport{base: http.DefaultTransport, seen: &tokens}
	e.exp.Client.HTTP = &http.Client{Transport: tc}
	cc := &bulk.ClientCredentials{HTTP: &http.Client{Transport: tc}, TokenURL: e.srv.TokenURL(), ClientID: "leaky",
		Secret: bulk.NewSecret(secret), Style: bulk.AuthPost, Clock: e.clock}
	e.exp.Client.Auth = cc
	// One download at a time: with parallel downloads the others can use
	// up a fresh token's 5 uses before a refused request's one retry.
	e.exp.Concurrency = 1
	_, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	// A failing run too: wrong secret.
	bad := &bulk.ClientCredentials{TokenURL: e.srv.TokenURL(), ClientID: "leaky", Secret: bulk.NewSecret(secret + "x")}
	e.exp.Client.Auth = bad
	_, err2 := e.exp.Client.Kickoff(context.Background(), &bulk.Request{})
	if err2 == nil {
		t.Fatal("wrong secret accepted")
	}
	if len(tokens) == 0 {
		t.Fatal("no token was seen on the wire")
	}
	planted := append([]string{secret}, tokens...)
	var texts []string
	texts = append(texts, e.logMu.String(), err2.Error())
	_ = filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			texts = append(texts, string(b))
		}
		return nil
	})
	for _, s := range []any{cc.Secret, bulk.NewSecret(secret)} {
		for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			texts = append(texts, sprintf(f, s))
		}
		b, _ := json.Marshal(s)
		texts = append(texts, string(b))
	}
	for _, txt := range texts {
		for _, p := range planted {
			if strings.Contains(txt, p) {
				t.Fatalf("a secret leaked into output: %.80q…", txt)
			}
		}
	}
	if !errors.Is(err2, err2) {
		t.Fatal("unreachable")
	}
}

type recordingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen *[]string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := req.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		tok := strings.TrimPrefix(h, "Bearer ")
		found := false
		for _, s := range *r.seen {
			found = found || s == tok
		}
		if !found {
			*r.seen = append(*r.seen, tok)
		}
	}
	return r.base.RoundTrip(req)
}
