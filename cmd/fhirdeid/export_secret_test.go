package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

// TestExportNoSecretLeak plants a client secret, a static token and a
// private key, runs successful and failing exports, and greps stdout,
// stderr and every file written for the secrets and for every access token
// the server issued.
func TestExportNoSecretLeak(t *testing.T) {
	const secret = "PLANTED-secret-9c1e77"
	const static = "PLANTED-static-token-44ab"
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	pub, _ := bulk.PublicJWK(key, "kid1", "ES384")
	srv, err := bulktest.New(bulktest.Options{Resources: bulktest.Synthetic(10, 2), PartSize: 20, RetryAfter: "",
		Auth:   &bulktest.AuthOptions{ClientID: "cid", ClientSecret: secret, JWKS: &bulk.JWKS{Keys: []bulk.JWK{pub}}, TokenMaxUses: 6},
		Faults: bulktest.Faults{CutDownloads: 2, StatusTransient: 1}})
	if err != nil {
		t.Fatal(err)
	}
	base := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		switch k {
		case "SECRET":
			return secret
		case "WRONG":
			return secret + "-wrong"
		case "STATIC":
			return static
		}
		return ""
	}
	// One download at a time: with parallel downloads the others can use up
	// a fresh token's 6 uses before a refused request's one retry.
	common := []string{"export", "--url", base, "--min-wait", "1ms", "--max-wait", "5ms", "--concurrency", "1"}
	runs := []struct {
		args []string
		code int
	}{
		{[]string{"--out", filepath.Join(dir, "a"), "--client-id", "cid", "--client-secret-env", "SECRET", "--token-url", srv.TokenURL()}, 0},
		{[]string{"--out", filepath.Join(dir, "b"), "--client-id", "cid", "--key", keyFile, "--kid", "kid1"}, 0},
		{[]string{"--out", filepath.Join(dir, "c"), "--client-id", "cid", "--client-secret-env", "WRONG", "--token-url", srv.TokenURL(), "--auth-style", "post"}, 1},
		{[]string{"--out", filepath.Join(dir, "d"), "--token-env", "STATIC"}, 1},
	}
	var texts []string
	for _, r := range runs {
		code, stdout, stderr := runExportCmd(t, getenv, append(append([]string{}, common...), r.args...)...)
		if code != r.code {
			t.Fatalf("%v: exit %d, want %d: %s", r.args, code, r.code, stderr)
		}
		texts = append(texts, stdout, stderr)
	}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && p != keyFile {
			b, _ := os.ReadFile(p)
			texts = append(texts, string(b))
			if strings.HasSuffix(p, ".gz") {
				texts = append(texts, string(gunzipFile(t, p)))
			}
		}
		return nil
	})
	planted := append([]string{secret, static, strings.TrimSpace(string(keyPEM[30:90]))}, srv.IssuedTokens()...)
	if len(srv.IssuedTokens()) < 2 {
		t.Fatalf("only %d tokens issued; the test needs refreshes", len(srv.IssuedTokens()))
	}
	for _, txt := range texts {
		for _, p := range planted {
			if strings.Contains(txt, p) {
				t.Fatalf("a secret leaked: %.60q…", p)
			}
		}
	}
}

// gunzipFile returns the decompressed content of a gzip file (also used by
// other tests of this package).
func gunzipFile(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return b
}
