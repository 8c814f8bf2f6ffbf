package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
)

// fhirdeid run with auth and storageAuth azure-identity, as the Container
// Apps job runs: the managed identity endpoint (IDENTITY_ENDPOINT,
// IDENTITY_HEADER) issues one token for the FHIR origin, sent only there,
// and one for Azure Storage, sent only to the storage origin the manifest
// names. Then the same with fhirdeid export.
func TestRunAzureIdentity(t *testing.T) {
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
		"AZURE_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS", "MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	pop := synth.Generate(synth.Options{Patients: 8})
	var all [][]byte
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	srv, err := bulktest.New(bulktest.Options{Resources: all, PartSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string][]string{} // server → Authorization headers
	note := func(who, h string) {
		mu.Lock()
		seen[who] = append(seen[who], h)
		mu.Unlock()
	}
	var fhir, storage *httptest.Server
	fhir = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		note("fhir", r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer fhir-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK && bytes.Contains(body, []byte(`"transactionTime"`)) {
			body = bytes.ReplaceAll(body, []byte(fhir.URL), []byte(storage.URL))
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	defer fhir.Close()
	storage = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		note("storage", r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer storage-token" || r.Header.Get("x-ms-version") == "" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	defer storage.Close()
	var resources []string
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != "hdr-secret" {
			http.Error(w, "no header", http.StatusBadRequest)
			return
		}
		res := r.URL.Query().Get("resource")
		mu.Lock()
		resources = append(resources, res)
		mu.Unlock()
		tok := map[string]string{fhir.URL: "fhir-token", "https://storage.azure.com": "storage-token"}[res]
		if tok == "" {
			http.Error(w, "unknown resource", http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"access_token": tok, "token_type": "Bearer", "resource": res,
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)})
	}))
	defer idp.Close()
	t.Setenv("IDENTITY_ENDPOINT", idp.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "hdr-secret")

	dir := t.TempDir()
	lake := filepath.Join(dir, "lake")
	cfg := filepath.Join(dir, "fhirdeid.yml")
	os.WriteFile(cfg, []byte(`state: state/state.db
pipelines:
  ehr:
    source:
      url: `+fhir.URL+`/fhir
      auth: {type: azure-identity}
      storageAuth: {type: azure-identity}
      # Storage credentials go only to Azure blob hosts and trusted ones:
      # trust the local stand-in.
      trustedHosts: [`+strings.TrimPrefix(storage.URL, "http://")+`]
    destination: file://`+filepath.ToSlash(lake)+`
`), 0o644)
	code, out, errOut := runExportCmd(t, nil, "run", cfg)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "fhir-token") || strings.Contains(out+errOut, "storage-token") {
		t.Fatal("a token was printed")
	}
	latest, err := os.ReadFile(filepath.Join(lake, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(lake, strings.TrimSpace(string(latest)), "*.ndjson.gz"))
	if len(files) == 0 {
		t.Fatal("no output")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen["fhir"]) < 2 || len(seen["storage"]) == 0 {
		t.Fatalf("requests: %d FHIR, %d storage", len(seen["fhir"]), len(seen["storage"]))
	}
	for who, want := range map[string]string{"fhir": "Bearer fhir-token", "storage": "Bearer storage-token"} {
		for _, h := range seen[who] {
			if h != want {
				t.Fatalf("%s request with Authorization %q", who, h)
			}
		}
	}
	want := map[string]bool{fhir.URL: true, "https://storage.azure.com": true}
	for _, r := range resources {
		if !want[r] {
			t.Fatalf("a token was asked for %s", r)
		}
	}

	// fhirdeid export --azure-identity --storage-auth azure-identity, with
	// the same identity (the process's credential is shared, so the same
	// identity endpoint).
	seen = map[string][]string{}
	mu.Unlock()
	outDir := filepath.Join(dir, "export")
	code, out, errOut = runExportCmd(t, nil, "export", "--url", fhir.URL+"/fhir", "--out", outDir, "--azure-identity",
		"--storage-auth", "azure-identity", "--trusted-host", strings.TrimPrefix(storage.URL, "http://"), "--min-wait", "10ms", "--quiet")
	mu.Lock()
	if code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	if got, _ := filepath.Glob(filepath.Join(outDir, "*.ndjson.gz")); len(got) == 0 {
		t.Fatal("export: no files")
	}
	if len(seen["fhir"]) < 2 || len(seen["storage"]) == 0 {
		t.Fatalf("export requests: %d FHIR, %d storage", len(seen["fhir"]), len(seen["storage"]))
	}
	for who, want := range map[string]string{"fhir": "Bearer fhir-token", "storage": "Bearer storage-token"} {
		for _, h := range seen[who] {
			if h != want {
				t.Fatalf("export: %s request with Authorization %q", who, h)
			}
		}
	}
}
