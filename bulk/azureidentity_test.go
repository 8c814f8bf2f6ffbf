package bulk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

// clearAzureEnv unsets the variables the Azure credential chain reads, for
// the duration of the test.
func clearAzureEnv(t *testing.T) {
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
		"AZURE_USERNAME", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS",
		"AZURE_ADDITIONALLY_ALLOWED_TENANTS", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
		"MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// recorder notes the Authorization header of every request a server gets.
type recorder struct {
	mu    sync.Mutex
	auths []string
}

func (r *recorder) add(a string) {
	r.mu.Lock()
	r.auths = append(r.auths, a)
	r.mu.Unlock()
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auths...)
}

// azureFHIR is a Bulk Data server that accepts only the bearer token want,
// and whose manifests point at a second origin (the storage account) with
// requiresAccessToken false, as Azure's FHIR services do.
type azureFHIR struct {
	fhir, storage *httptest.Server
	fhirSeen      recorder
	storageSeen   recorder
	base          string
}

func newAzureFHIR(t *testing.T, want string, pop [][]byte) *azureFHIR {
	t.Helper()
	srv, err := bulktest.New(bulktest.Options{Resources: pop})
	if err != nil {
		t.Fatal(err)
	}
	a := &azureFHIR{}
	a.fhir = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.fhirSeen.add(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer "+want {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK && bytes.Contains(body, []byte(`"transactionTime"`)) {
			body = bytes.ReplaceAll(body, []byte(a.fhir.URL), []byte(a.storage.URL))
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	a.storage = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.storageSeen.add(r.Header.Get("Authorization"))
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(a.fhir.Close)
	t.Cleanup(a.storage.Close)
	a.base = a.fhir.URL + "/fhir"
	return a
}

func exportWith(t *testing.T, base string, auth bulk.Authenticator) (string, error) {
	t.Helper()
	dir := t.TempDir()
	c, err := bulk.NewClient(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Auth = auth
	c.Clock = newFakeClock()
	c.Retries = bulk.RetryPolicy{MaxRetries: 1, BaseDelay: time.Second, MaxDelay: time.Second}
	exp := &bulk.Exporter{Client: c, Store: bulk.FileCheckpointStore{Path: filepath.Join(dir, ".checkpoint.json")},
		Sink: bulk.DirSink{Dir: dir}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = exp.Run(ctx, bulk.Request{})
	return dir, err
}

// checkTokenOnlyAtOrigin checks that every FHIR request carried the token
// and no storage request carried any credential.
func (a *azureFHIR) checkTokenOnlyAtOrigin(t *testing.T, tok string) {
	t.Helper()
	fhir, storage := a.fhirSeen.all(), a.storageSeen.all()
	if len(fhir) < 2 || len(storage) == 0 {
		t.Fatalf("requests: %d to the FHIR server, %d to storage", len(fhir), len(storage))
	}
	for i, h := range fhir {
		if h != "Bearer "+tok {
			t.Fatalf("FHIR request %d had Authorization %q", i, h)
		}
	}
	for i, h := range storage {
		if h != "" {
			t.Fatalf("storage request %d (another origin) had an Authorization header", i)
		}
	}
}

// An App Service / Container Apps managed identity: the token comes from
// IDENTITY_ENDPOINT with the IDENTITY_HEADER secret, for the FHIR origin.
func TestAzureIdentityManagedIdentity(t *testing.T) {
	clearAzureEnv(t)
	const miToken = "mi-token-7f3a"
	pop := population(3, 2)
	fhir := newAzureFHIR(t, miToken, pop)
	var mu sync.Mutex
	var resources []string
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != "identity-header-secret" {
			http.Error(w, "bad header", http.StatusBadRequest)
			return
		}
		mu.Lock()
		resources = append(resources, r.URL.Query().Get("resource"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"access_token": miToken, "token_type": "Bearer",
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), "resource": r.URL.Query().Get("resource")})
	}))
	defer idp.Close()
	t.Setenv("IDENTITY_ENDPOINT", idp.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "identity-header-secret")

	scope, err := bulk.AzureScopeFor(fhir.base)
	if err != nil {
		t.Fatal(err)
	}
	if scope != fhir.fhir.URL+"/.default" {
		t.Fatalf("scope %s", scope)
	}
	dir, err := exportWith(t, fhir.base, &bulk.AzureIdentity{Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := storedIDs(t, dir), ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
	fhir.checkTokenOnlyAtOrigin(t, miToken)
	mu.Lock()
	defer mu.Unlock()
	if len(resources) != 1 || resources[0] != fhir.fhir.URL {
		t.Fatalf("identity requests for resources %q, want one for %s", resources, fhir.fhir.URL)
	}
}

// A 401 from the identity endpoint is one line naming the credential, with
// neither the identity header nor the endpoint's body.
func TestAzureIdentityRefused(t *testing.T) {
	clearAzureEnv(t)
	fhir := newAzureFHIR(t, "never", population(1, 1))
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"unauthorized","error_description":"echo identity-header-secret body-detail-xyz"}`)
	}))
	defer idp.Close()
	t.Setenv("IDENTITY_ENDPOINT", idp.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "identity-header-secret")
	scope, _ := bulk.AzureScopeFor(fhir.base)
	_, err := exportWith(t, fhir.base, &bulk.AzureIdentity{Scope: scope})
	if err == nil {
		t.Fatal("export succeeded without a token")
	}
	msg := err.Error()
	t.Log(msg)
	for _, bad := range []string{"identity-header-secret", "body-detail-xyz", "\n"} {
		if strings.Contains(msg, bad) {
			t.Fatalf("error contains %q: %s", bad, msg)
		}
	}
	for _, want := range []string{"ManagedIdentityCredential", "401", scope} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error lacks %q: %s", want, msg)
		}
	}
	if n := len(fhir.fhirSeen.all()); n != 0 {
		t.Fatalf("%d requests reached the FHIR server without a token", n)
	}
}

// Workload identity (AKS): the federated token file is exchanged at the
// authority host (a local TLS server, trusted through the HTTP client).
func TestAzureIdentityWorkloadIdentity(t *testing.T) {
	clearAzureEnv(t)
	const wiToken = "wi-token-19c2"
	pop := population(2, 2)
	fhir := newAzureFHIR(t, wiToken, pop)
	var mu sync.Mutex
	var forms []map[string]string
	var idp *httptest.Server
	idp = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			ten := strings.Split(strings.Trim(r.URL.Path, "/"), "/")[0]
			json.NewEncoder(w).Encode(map[string]string{
				"token_endpoint":         idp.URL + "/" + ten + "/oauth2/v2.0/token",
				"authorization_endpoint": idp.URL + "/" + ten + "/oauth2/v2.0/authorize",
				"issuer":                 idp.URL + "/" + ten + "/v2.0",
			})
		case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
			_ = r.ParseForm()
			mu.Lock()
			forms = append(forms, map[string]string{"path": r.URL.Path, "client_id": r.PostForm.Get("client_id"),
				"client_assertion": r.PostForm.Get("client_assertion"), "scope": r.PostForm.Get("scope"),
				"grant_type": r.PostForm.Get("grant_type")})
			mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"access_token": wiToken, "token_type": "Bearer", "expires_in": 3600})
		default:
			http.NotFound(w, r)
		}
	}))
	defer idp.Close()
	fed := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(fed, []byte("federated-jwt-abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", fed)
	t.Setenv("AZURE_AUTHORITY_HOST", idp.URL+"/")
	t.Setenv("AZURE_TENANT_ID", "tenant-1")
	t.Setenv("AZURE_CLIENT_ID", "client-2")
	scope, _ := bulk.AzureScopeFor(fhir.base)
	for _, clientID := range []string{"", "client-2"} {
		fhir.fhirSeen = recorder{}
		fhir.storageSeen = recorder{}
		dir, err := exportWith(t, fhir.base, &bulk.AzureIdentity{Scope: scope, ClientID: clientID, HTTP: idp.Client()})
		if err != nil {
			t.Fatalf("clientID %q: %v", clientID, err)
		}
		if got, want := storedIDs(t, dir), ids(pop); !equalStrings(got, want) {
			t.Fatal(diff(got, want))
		}
		fhir.checkTokenOnlyAtOrigin(t, wiToken)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(forms) != 2 {
		t.Fatalf("%d token requests, want 2", len(forms))
	}
	for _, f := range forms {
		if f["path"] != "/tenant-1/oauth2/v2.0/token" || f["client_id"] != "client-2" || f["client_assertion"] != "federated-jwt-abc" ||
			strings.Fields(f["scope"])[0] != scope || f["grant_type"] != "client_credentials" {
			t.Fatalf("token request %v", f)
		}
	}
}

func TestAzureScopeFor(t *testing.T) {
	for in, want := range map[string]string{
		"https://WS-fhir.fhir.azurehealthcareapis.com/": "https://ws-fhir.fhir.azurehealthcareapis.com/.default",
		"https://myfhir.azurehealthcareapis.com":        "https://myfhir.azurehealthcareapis.com/.default",
		"https://fhir.example.org:8443/r4/base?x=1":     "https://fhir.example.org:8443/.default",
		"http://127.0.0.1:8080/fhir":                    "http://127.0.0.1:8080/.default",
	} {
		if got, err := bulk.AzureScopeFor(in); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fhir.example.org", "ftp://x/y", "https://"} {
		if _, err := bulk.AzureScopeFor(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
