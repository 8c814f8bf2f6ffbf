package config

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/keys"
	"fhirdeid/bulk"
)

// fakeCredential issues a fixed token and records the scopes asked for.
type fakeCredential struct {
	mu     sync.Mutex
	scopes []string
	tenant []string
}

func (c *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, strings.Join(o.Scopes, " "))
	c.tenant = append(c.tenant, o.TenantID)
	return azcore.AccessToken{Token: "kv-token-5d1", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// vaultServer speaks the Key Vault secrets REST API (GET
// /secrets/{name}[/{version}]?api-version=...) with challenge
// authentication, over TLS.
type vaultServer struct {
	*httptest.Server
	mu      sync.Mutex
	gets    int
	secrets map[string]string
	deny    map[string]bool
}

func newVault(t *testing.T, secrets map[string]string) *vaultServer {
	v := &vaultServer{secrets: secrets, deny: map[string]bool{}}
	v.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/tenant-kv", resource="https://vault.azure.net"`)
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}`))
			return
		}
		if r.Header.Get("Authorization") != "Bearer kv-token-5d1" || r.Method != http.MethodGet || r.URL.Query().Get("api-version") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(parts) < 2 || parts[0] != "secrets" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		v.mu.Lock()
		v.gets++
		val, ok := v.secrets[parts[1]]
		denied := v.deny[parts[1]]
		v.mu.Unlock()
		switch {
		case denied:
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":"Forbidden","message":"The user does not have secrets get permission; leak-canary-403"}}`))
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"SecretNotFound","message":"A secret with (name/id) was not found; leak-canary-404"}}`))
		default:
			json.NewEncoder(w).Encode(map[string]any{"value": val, "id": "https://" + r.Host + "/secrets/" + parts[1] + "/0123456789abcdef0123456789abcdef",
				"attributes": map[string]any{"enabled": true}})
		}
	}))
	t.Cleanup(v.Close)
	return v
}

func (v *vaultServer) host() string { return strings.TrimPrefix(v.URL, "https://") }

func (v *vaultServer) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.gets
}

func vaultConfig(ref1, ref2 string) string {
	return `pipelines:
  nightly:
    source:
      url: https://fhir.example.org/fhir
      auth:
        type: entra
        tenant: t1
        clientID: c1
        clientSecret: ` + ref1 + `
      storageAuth:
        type: connection-string
        connectionString: ` + ref2 + `
    destination: file:///tmp/lake
`
}

func TestParseSecretRef(t *testing.T) {
	good := map[string]string{
		"azurekeyvault://myvault/fhir-secret":                                  "https://myvault.vault.azure.net/",
		"AzureKeyVault://MyVault/fhir-secret/0123456789abcdef0123456789ABCDEF": "https://myvault.vault.azure.net/",
		"azurekeyvault://myvault.vault.azure.cn/s1":                            "https://myvault.vault.azure.cn/",
		"azurekeyvault://127.0.0.1:8443/s1":                                    "https://127.0.0.1:8443/",
	}
	for in, u := range good {
		r, err := ParseSecretRef(in)
		if err != nil || r.URL != u {
			t.Errorf("%s: %+v, %v", in, r, err)
		}
	}
	for _, bad := range []string{"azurekeyvault://", "azurekeyvault://myvault", "azurekeyvault://myvault/", "azurekeyvault://v/name",
		"azurekeyvault://myvault/bad_name", "azurekeyvault://myvault/n/notaversion", "azurekeyvault://my vault/n",
		"azurekeyvault://myvault/n/0123456789abcdef0123456789abcdef/x", "azurekeyvault://user@host.example/n"} {
		if _, err := ParseSecretRef(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// validate (Parse) checks the form of references without contacting a
// vault, and names the field.
func TestSecretRefsOffline(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(vaultConfig("azurekeyvault://myvault/fhir-secret", "${CONN}")),
		env(map[string]string{"CONN": "azurekeyvault://myvault/storage-conn"}))
	if err != nil {
		t.Fatal(err)
	}
	refs := cfg.SecretRefs()
	if len(refs) != 2 || refs["pipelines.nightly.source.auth.clientSecret"].Name != "fhir-secret" ||
		refs["pipelines.nightly.source.storageAuth.connectionString"].Name != "storage-conn" {
		t.Fatalf("refs %v", refs)
	}
	// Not resolved: building the authenticator says so, rather than
	// sending the reference as a secret.
	pc := cfg.Pipelines["nightly"]
	if _, err := pc.Source.Auth.Authenticator("a", nil, pc.Source.URL); err == nil || !strings.Contains(err.Error(), "not resolved") {
		t.Fatalf("unresolved reference: %v", err)
	}
	_, err = Parse(filepath.Join(dir, "p.yml"), []byte(vaultConfig("azurekeyvault://myvault/bad_name", "x")), env(nil))
	if err == nil || !strings.Contains(err.Error(), "pipelines.nightly.source.auth.clientSecret") || !strings.Contains(err.Error(), "secret name") {
		t.Fatalf("bad reference: %v", err)
	}
}

func TestResolveSecrets(t *testing.T) {
	const conn = "AccountName=lake;AccountKey=c2VjcmV0a2V5"
	v := newVault(t, map[string]string{"fhir-secret": "s3cr3t-from-vault", "storage-conn": conn})
	cred := &fakeCredential{}
	kv := &KeyVault{Credential: cred, HTTP: v.Client(), DisableChallengeResourceVerification: true}
	text := vaultConfig("azurekeyvault://"+v.host()+"/fhir-secret", "azurekeyvault://"+v.host()+"/storage-conn")
	// A second pipeline naming the same secret: read once.
	text += strings.Replace(strings.SplitN(vaultConfig("azurekeyvault://"+v.host()+"/fhir-secret", "azurekeyvault://"+v.host()+"/storage-conn"), "\n", 2)[1], "nightly", "weekly", 1)
	cfg, err := Parse(filepath.Join(t.TempDir(), "p.yml"), []byte(text), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ResolveSecrets(t.Context(), kv); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nightly", "weekly"} {
		pc := cfg.Pipelines[name]
		if pc.Source.Auth.ClientSecret != "s3cr3t-from-vault" || pc.Source.StorageAuth.ConnectionString != conn {
			t.Fatalf("%s: not resolved", name)
		}
		a, err := pc.Source.Auth.Authenticator("a", nil, pc.Source.URL)
		if err != nil {
			t.Fatal(err)
		}
		if cc := a.(*bulk.ClientCredentials); cc.Secret.Reveal() != "s3cr3t-from-vault" {
			t.Fatal("authenticator without the vault's secret")
		}
		if _, signer, err := pc.Source.StorageAuth.Build("s", nil, a); err != nil || signer == nil {
			t.Fatalf("storage signer: %v", err)
		}
	}
	if n := v.count(); n != 2 {
		t.Fatalf("%d secret reads, want 2 (cached)", n)
	}
	if len(cred.scopes) == 0 || cred.scopes[0] != "https://vault.azure.net/.default" || cred.tenant[0] != "tenant-kv" {
		t.Fatalf("token requests %v %v", cred.scopes, cred.tenant)
	}
	if err := cfg.ResolveSecrets(t.Context(), kv); err != nil || v.count() != 2 {
		t.Fatalf("second resolution: %v, %d reads", err, v.count())
	}
}

// A missing secret, a 403 and an unreachable vault each fail with one line
// naming the field and the reference, and leave the file unchanged.
func TestResolveSecretsErrors(t *testing.T) {
	v := newVault(t, map[string]string{"fhir-secret": "s3cr3t-from-vault", "denied": "never-shown"})
	v.deny["denied"] = true
	closed := httptest.NewTLSServer(http.NotFoundHandler())
	closedHost := strings.TrimPrefix(closed.URL, "https://")
	closed.Close()
	for _, tc := range []struct{ ref, want string }{
		{"azurekeyvault://" + v.host() + "/missing-secret", "no such secret"},
		{"azurekeyvault://" + v.host() + "/denied", "access denied (HTTP 403)"},
		{"azurekeyvault://" + closedHost + "/fhir-secret", "unreachable"},
	} {
		kv := &KeyVault{Credential: &fakeCredential{}, HTTP: v.Client(), DisableChallengeResourceVerification: true}
		// The good secret first, so that a failure after it must not
		// leave it in place.
		cfg, err := Parse(filepath.Join(t.TempDir(), "p.yml"), []byte(vaultConfig("azurekeyvault://"+v.host()+"/fhir-secret", tc.ref)), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.ResolveSecrets(t.Context(), kv)
		if err == nil {
			t.Fatalf("%s: resolved", tc.ref)
		}
		msg := err.Error()
		t.Log(msg)
		for _, want := range []string{"pipelines.nightly.source.storageAuth.connectionString", tc.ref, tc.want} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error lacks %q: %s", tc.ref, want, msg)
			}
		}
		for _, bad := range []string{"s3cr3t-from-vault", "never-shown", "leak-canary", "\n"} {
			if strings.Contains(msg, bad) {
				t.Errorf("error contains %q: %s", bad, msg)
			}
		}
		pc := cfg.Pipelines["nightly"]
		if pc.Source.Auth.ClientSecret != "azurekeyvault://"+v.host()+"/fhir-secret" || pc.Source.StorageAuth.ConnectionString != tc.ref {
			t.Errorf("%s: the file changed after a failed resolution", tc.ref)
		}
	}
}

func TestAzureIdentityAuth(t *testing.T) {
	text := `pipelines:
  nightly:
    source:
      url: https://ws-fhir.fhir.azurehealthcareapis.com/
      auth: {type: azure-identity, clientID: 11111111-2222-3333-4444-555555555555}
      storageAuth: {type: azure-identity}
    destination: azblob://lake
`
	cfg, err := Parse(filepath.Join(t.TempDir(), "p.yml"), []byte(text), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.Pipelines["nightly"]
	a, err := pc.Source.Auth.Authenticator("a", nil, pc.Source.URL)
	if err != nil {
		t.Fatal(err)
	}
	ai, ok := a.(*bulk.AzureIdentity)
	if !ok || ai.Scope != "https://ws-fhir.fhir.azurehealthcareapis.com/.default" || ai.Credential != AzureCredential("11111111-2222-3333-4444-555555555555") {
		t.Fatalf("%#v", a)
	}
	sa, _, err := pc.Source.StorageAuth.Build("s", nil, a)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := sa.(*bulk.AzureIdentity); !ok || st.Scope != bulk.AzureStorageScope || st.Credential != AzureCredential("") {
		t.Fatalf("storage %#v", sa)
	}
	for _, bad := range []struct{ auth, want string }{
		{"{type: azure-identity, clientSecret: x}", "clientSecret: not used with azure-identity"},
		{"{type: azure-identity, tenant: t}", "tenant: not used"},
		{"{type: managed}", "azure-identity"},
	} {
		text := strings.Replace(text, "{type: azure-identity, clientID: 11111111-2222-3333-4444-555555555555}", bad.auth, 1)
		if _, err := Parse("p.yml", []byte(text), env(nil)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v", bad.auth, err)
		}
	}
	for _, bad := range []struct{ sa, want string }{
		{"{type: entra}", "the source auth must be entra"},
		{"{type: sas}", "sasToken: missing"},
		{"{type: azure-identity, sasToken: x}", "takes no"},
		{"{sasToken: x}", "type: missing"},
	} {
		text := strings.Replace(text, "storageAuth: {type: azure-identity}", "storageAuth: "+bad.sa, 1)
		if _, err := Parse("p.yml", []byte(text), env(nil)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v", bad.sa, err)
		}
	}
}

// Settings outside the file (the serve API token from the environment)
// resolve through the same resolver; plain values pass through.
func TestResolveValue(t *testing.T) {
	v := newVault(t, map[string]string{"api-token": "tok-from-vault"})
	kv := &KeyVault{Credential: &fakeCredential{}, HTTP: v.Client(), DisableChallengeResourceVerification: true}
	got, err := ResolveValue(t.Context(), "-token-env T", "azurekeyvault://"+v.host()+"/api-token", kv)
	if err != nil || got != "tok-from-vault" {
		t.Fatalf("%q, %v", got, err)
	}
	if got, err := ResolveValue(t.Context(), "-token-env T", "plain", kv); err != nil || got != "plain" {
		t.Fatalf("%q, %v", got, err)
	}
	_, err = ResolveValue(t.Context(), "-token-env T", "azurekeyvault://"+v.host()+"/absent", kv)
	if err == nil || !strings.Contains(err.Error(), "-token-env T") || !strings.Contains(err.Error(), "no such secret") {
		t.Fatalf("%v", err)
	}
}

// The anonymizer's key file, or its key variables, may be Key Vault
// references: resolved, the engine has the vault's keys; offline, validate
// compiles the rules with placeholders; unresolved otherwise, an error.
func TestAnonymizerKeysFromVault(t *testing.T) {
	k := anonymize.Keys{CryptoHashKey: "crypto-hash-key-from-vault-0001", DateShiftKey: "date-shift-key-from-vault-0001",
		EncryptKey: "0123456789abcdef0123456789abcdef"}
	keyFile := keys.Marshal(k, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	v := newVault(t, map[string]string{"anon-keys": string(keyFile), "hash-key": k.CryptoHashKey})
	dir := t.TempDir()
	onDisk := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(onDisk, keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := func(keysFile string) string {
		s := "pipelines:\n  nightly:\n    source:\n      url: https://fhir.example.org/fhir\n      since: auto\n    destination: file:///tmp/lake\n"
		if keysFile != "" {
			s += "    anonymizer:\n      keysFile: " + keysFile + "\n"
		}
		return s
	}
	want, err := mustParse(t, conf(onDisk), nil).Pipelines["nightly"].LoadEngine("pipelines.nightly")
	if err != nil {
		t.Fatal(err)
	}
	kv := &KeyVault{Credential: &fakeCredential{}, HTTP: v.Client(), DisableChallengeResourceVerification: true}

	cfg := mustParse(t, conf("azurekeyvault://"+v.host()+"/anon-keys"), nil)
	pc := cfg.Pipelines["nightly"]
	if _, err := pc.LoadEngine("pipelines.nightly"); err == nil || !strings.Contains(err.Error(), "keysFile: Key Vault reference not resolved") {
		t.Fatalf("unresolved: %v", err)
	}
	if err := cfg.ResolveSecrets(t.Context(), kv); err != nil {
		t.Fatal(err)
	}
	eng, err := pc.LoadEngine("pipelines.nightly")
	if err != nil {
		t.Fatal(err)
	}
	for name, fp := range want.Fingerprints {
		if eng.Fingerprints[name] != fp {
			t.Errorf("%s: fingerprint %s, want %s (the key file's)", name, eng.Fingerprints[name], fp)
		}
	}

	// Offline (validate): placeholders, a warning, and the rules compile.
	cfg = mustParse(t, conf("azurekeyvault://"+v.host()+"/anon-keys"), nil)
	cfg.MarkOffline()
	eng, err = cfg.Pipelines["nightly"].LoadEngine("pipelines.nightly")
	if err != nil || len(eng.Warnings) == 0 {
		t.Fatalf("offline: %v", err)
	}

	// A key variable holding a reference.
	envs := map[string]string{"FHIRDEID_CRYPTO_HASH_KEY": "azurekeyvault://" + v.host() + "/hash-key",
		"FHIRDEID_DATE_SHIFT_KEY": k.DateShiftKey, "FHIRDEID_ENCRYPT_KEY": k.EncryptKey}
	cfg = mustParse(t, conf(""), envs)
	if refs := cfg.SecretRefs(); refs["pipelines.nightly.anonymizer (FHIRDEID_CRYPTO_HASH_KEY)"].Name != "hash-key" {
		t.Fatalf("refs %v", refs)
	}
	if _, err := cfg.Pipelines["nightly"].LoadEngine("pipelines.nightly"); err == nil || !strings.Contains(err.Error(), "not resolved") {
		t.Fatalf("unresolved variable: %v", err)
	}
	if err := cfg.ResolveSecrets(t.Context(), kv); err != nil {
		t.Fatal(err)
	}
	eng, err = cfg.Pipelines["nightly"].LoadEngine("pipelines.nightly")
	if err != nil {
		t.Fatal(err)
	}
	for name, fp := range want.Fingerprints {
		if eng.Fingerprints[name] != fp {
			t.Errorf("variables: %s: fingerprint differs from the key file's", name)
		}
	}
}

func mustParse(t *testing.T, text string, vars map[string]string) *File {
	t.Helper()
	cfg, err := Parse(filepath.Join(t.TempDir(), "p.yml"), []byte(text), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
