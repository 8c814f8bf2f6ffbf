package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTemporalDefaultsAndSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key.txt"), []byte("  sekrit-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := "temporal:\n  hostPort: 127.0.0.1:7233\n" + minimal
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	tc := cfg.Temporal
	if tc.Namespace != "default" || tc.TaskQueue != "fhirdeid" || tc.UsesTLS() {
		t.Errorf("defaults: %+v", tc)
	}
	if c, err := tc.TLSConfig("temporal"); c != nil || err != nil {
		t.Errorf("TLSConfig without TLS = %v, %v", c, err)
	}
	if u := tc.UIURL(); u != "http://127.0.0.1:8233" {
		t.Errorf("UIURL of a loopback dev server = %q", u)
	}

	src = "temporal:\n  hostPort: temporal.example:7233\n  namespace: research.acme\n  apiKeyFile: key.txt\n  heartbeatTimeout: 30s\n" + minimal
	cfg, err = Parse(filepath.Join(dir, "p.yml"), []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := cfg.Temporal.Key("temporal"); err != nil || k != "sekrit-key" {
		t.Errorf("Key = %q, %v", k, err)
	}
	if u := cfg.Temporal.UIURL(); u != "" {
		t.Errorf("UIURL of a remote service without ui: = %q, want none", u)
	}
	if !cfg.Temporal.UsesTLS() || cfg.Temporal.HeartbeatTimeoutDuration() != 30*time.Second {
		t.Errorf("an API key must use TLS; heartbeat %s", cfg.Temporal.HeartbeatTimeoutDuration())
	}

	src = "temporal:\n  hostPort: temporal.example:7233\n  apiKey: ${TEMPORAL_KEY}\n" + minimal
	cfg, err = Parse(filepath.Join(dir, "p.yml"), []byte(src), env(map[string]string{"TEMPORAL_KEY": "from-env"}))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := cfg.Temporal.Key("temporal"); k != "from-env" {
		t.Errorf("Key = %q", k)
	}
}

func TestTemporalErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ yaml, want string }{
		{"temporal:\n  namespace: x\n", "temporal.hostPort: missing"},
		{"temporal:\n  hostPort: localhost\n", "temporal.hostPort: must be host:port"},
		{"temporal:\n  hostPort: localhost:99999\n", "temporal.hostPort: must be host:port"},
		{"temporal:\n  hostPort: h:1\n  namespace: 'a b'\n", "temporal.namespace:"},
		{"temporal:\n  hostPort: h:1\n  taskQueue: 'q/1'\n", "temporal.taskQueue:"},
		{"temporal:\n  hostPort: h:1\n  apiKey: k\n  apiKeyFile: f\n", "temporal: apiKey and apiKeyFile exclude each other"},
		{"temporal:\n  hostPort: h:1\n  tls: {certFile: c.pem}\n", "temporal.tls: certFile and keyFile go together"},
		{"temporal:\n  hostPort: h:1\n  heartbeatTimeout: soon\n", "temporal.heartbeatTimeout:"},
		{"temporal:\n  hostPort: h:1\n  concurrency: -1\n", "temporal.concurrency:"},
		{"temporal:\n  hostPort: h:1\n  hostFiles: -2\n", "temporal.hostFiles:"},
		{"temporal:\n  hostPort: h:1\n  ui: javascript:alert(1)\n", "temporal.ui: must be an http(s) URL"},
		{"temporal:\n  hostPort: h:1\n  apiKey: ${NOPE}\n", "temporal.apiKey: environment variable NOPE is not set"},
		{"temporal:\n  hostPort: h:1\n  hostport: h:2\n", "hostport"},
	} {
		_, err := Parse(filepath.Join(dir, "p.yml"), []byte(tc.yaml+minimal), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestTemporalTLSConfig(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "worker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	write("junk.pem", []byte("not pem"))

	parse := func(tls string) *Temporal {
		t.Helper()
		cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte("temporal:\n  hostPort: h:1\n  tls: "+tls+"\n"+minimal), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Temporal
	}
	c, err := parse("{caFile: cert.pem, certFile: cert.pem, keyFile: key.pem, serverName: temporal.internal}").TLSConfig("temporal")
	if err != nil || c == nil || len(c.Certificates) != 1 || c.RootCAs == nil || c.ServerName != "temporal.internal" {
		t.Fatalf("TLSConfig = %+v, %v", c, err)
	}
	for _, tc := range []struct{ tls, want string }{
		{"{caFile: junk.pem}", "temporal.tls.caFile: holds no PEM certificate"},
		{"{caFile: missing.pem}", "temporal.tls.caFile: cannot read the file"},
		{"{certFile: missing.pem, keyFile: key.pem}", "temporal.tls.certFile: cannot read the file"},
		{"{certFile: cert.pem, keyFile: junk.pem}", "temporal.tls: certFile and keyFile are not a matching"},
	} {
		_, err := parse(tc.tls).TLSConfig("temporal")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.tls, err, tc.want)
		}
	}
}
