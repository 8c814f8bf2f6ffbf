package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const templateSecret = "Q~template-secret-never-copied-7c1f"

// fhirdeid init --azure-parameters on the template's parameters file gives
// a configuration that validate accepts once the variables it names are
// set, without the secret in it.
func TestInitAzureParameters(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "fhirdeid.yml")
	code, stdout, stderr := runCmd(t, "", nil, "init", "--azure-parameters", "testdata/arm_template_parameters.json", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout: %q", stdout)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, bad := range []string{templateSecret, "never-copied"} {
		if strings.Contains(text, bad) || strings.Contains(stderr, bad) {
			t.Fatalf("the secret reached the output")
		}
	}
	for _, want := range []string{`url: "https://contoso-fhir.azurehealthcareapis.com"`, "type: entra", `clientID: "2a6f3c1e-8d4b-4f7a-9c2e-5b1d0e7f3a94"`,
		"tenant: ${AZURE_TENANT_ID}", "clientSecret: ${FHIR_CLIENT_SECRET}", `scope: "https://contoso-fhir.azurehealthcareapis.com/.default"`,
		`destination: "azblob://deidentified?storage_account=contosofhirexport"`, `schedule: "0 1 * * *"`, "storageAuth:"} {
		if !strings.Contains(text, want) {
			t.Errorf("configuration lacks %q:\n%s", want, text)
		}
	}
	for _, want := range []string{"FHIR_CLIENT_SECRET", "AZURE_TENANT_ID", "it was not copied"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the to-do list lacks %q:\n%s", want, stderr)
		}
	}
	// validate: refused until the variables exist, then accepted.
	code, _, stderr = runCmd(t, "", nil, "validate", out)
	if code != 2 || !strings.Contains(stderr, "is not set") {
		t.Fatalf("validate without the variables: exit %d: %s", code, stderr)
	}
	vars := map[string]string{"FHIR_CLIENT_SECRET": "s", "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001"}
	code, stdout, stderr = runCmd(t, "", vars, "validate", out)
	if code != 0 {
		t.Fatalf("validate: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "configuration OK") {
		t.Fatal(stdout)
	}
	// A Key Vault reference in the variable: accepted offline.
	vars["FHIR_CLIENT_SECRET"] = "azurekeyvault://contoso-kv/fhir-client-secret"
	code, stdout, stderr = runCmd(t, "", vars, "validate", out)
	if code != 0 || !strings.Contains(stdout, "Key Vault reference azurekeyvault://contoso-kv/fhir-client-secret (not contacted") {
		t.Fatalf("validate with a reference: exit %d: %s%s", code, stdout, stderr)
	}
	vars["FHIR_CLIENT_SECRET"] = "azurekeyvault://contoso-kv/bad_name"
	if code, _, stderr = runCmd(t, "", vars, "validate", out); code != 2 || !strings.Contains(stderr, "source.auth.clientSecret") {
		t.Fatalf("validate with a malformed reference: exit %d: %s", code, stderr)
	}
	// -o never overwrites.
	if err := os.WriteFile(out, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd(t, "", nil, "init", "--azure-parameters", "testdata/arm_template_parameters.json", "-o", out)
	if code == 0 || !strings.Contains(stderr, "not overwritten") {
		t.Fatalf("overwrite: exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "mine" {
		t.Fatal("the existing file was changed")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".fhirdeid-init-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// Without a client id (or with --azure-identity) the configuration uses
// the managed identity and validate needs no secret at all.
func TestInitAzureIdentity(t *testing.T) {
	dir := t.TempDir()
	params := filepath.Join(dir, "params.json")
	doc := map[string]any{"parameters": map[string]any{
		"fhirserver-url":      map[string]string{"value": "https://ws-fhir.fhir.azurehealthcareapis.com"},
		"fhirserver-clientid": map[string]string{"value": "<<FHIR SERVER CLIENT ID>>"}, "fhirserver-clientSecret": map[string]string{"value": ""},
		"fhirauth-tenantid": map[string]string{"value": ""}, "IntegrationStorageAccount": map[string]string{"value": ""}}}
	b, _ := json.Marshal(doc)
	if err := os.WriteFile(params, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "p.yml")
	code, _, stderr := runCmd(t, "", nil, "init", "--azure-parameters", params, "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	text, _ := os.ReadFile(out)
	for _, want := range []string{"type: azure-identity", "storageAuth:", "storage_account=${AZURE_STORAGE_ACCOUNT}"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(string(text), "clientSecret") {
		t.Error("a secret key in an identity configuration")
	}
	code, stdout, stderr := runCmd(t, "", map[string]string{"AZURE_STORAGE_ACCOUNT": "lake01"}, "validate", out)
	if code != 0 || !strings.Contains(stdout, "configuration OK") {
		t.Fatalf("validate: exit %d: %s%s", code, stdout, stderr)
	}
	// --azure-identity with the template's file keeps the client id as
	// the user-assigned identity.
	out2 := filepath.Join(dir, "p2.yml")
	if code, _, stderr := runCmd(t, "", nil, "init", "--azure-parameters", "testdata/arm_template_parameters.json", "--azure-identity", "-o", out2); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code, stdout, stderr := runCmd(t, "", nil, "validate", out2); code != 0 {
		t.Fatalf("validate: exit %d: %s%s", code, stdout, stderr)
	}
}

func TestInitPlainAndBadInput(t *testing.T) {
	code, stdout, stderr := runCmd(t, "", nil, "init")
	if code != 0 || !strings.Contains(stdout, "url: ${FHIR_URL}") || !strings.Contains(stderr, "FHIR_URL") {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "p.yml")
	if err := os.WriteFile(p, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(t, "", map[string]string{"FHIR_URL": "https://fhir.example.org/r4"}, "validate", p); code != 0 {
		t.Fatalf("validate: %s", stderr)
	}
	for _, tc := range []struct {
		file, want string
	}{
		{`{"parameters": {"fhirserver-url": {"value": "ftp://x"}}}`, "fhirserver-url"},
		{`{"parameters": {"IntegrationStorageAccount": {"value": "Bad_Name"}}}`, "IntegrationStorageAccount"},
		{`{"parameters": {"other": {"value": "x"}}}`, "none of the template's parameters"},
		{`not json`, "not an ARM parameters file"},
		{`{"parameters": {"fhirserver-url": {"value": 3}}}`, "not a string"},
	} {
		f := filepath.Join(dir, "bad.json")
		os.WriteFile(f, []byte(tc.file), 0o644)
		code, _, stderr := runCmd(t, "", nil, "init", "--azure-parameters", f)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d: %s", tc.file, code, stderr)
		}
		if strings.Contains(stderr, "Bad_Name") || strings.Contains(stderr, "ftp://x") {
			t.Errorf("the error quotes the file: %s", stderr)
		}
	}
}

// A Key Vault reference that cannot be read stops run and validate
// --online with one error naming the reference, before anything is
// written.
func TestKeyVaultUnreachableWritesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.yml")
	ref := "azurekeyvault://127.0.0.1:1/fhir-client-secret"
	text := `state: ` + filepath.Join(dir, "state", "state.db") + `
pipelines:
  nightly:
    source:
      url: https://fhir.example.org/fhir
      auth: {type: entra, tenant: t1, clientID: c1, clientSecret: "${FHIR_CLIENT_SECRET}"}
    destination: file://` + filepath.Join(dir, "lake") + `
`
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"FHIR_CLIENT_SECRET": ref}
	for _, args := range [][]string{{"run", cfg}, {"validate", "--online", cfg}} {
		code, _, stderr := runCmd(t, "", vars, args...)
		if code == 0 {
			t.Fatalf("%v: exit 0", args)
		}
		if !strings.Contains(stderr, ref) || !strings.Contains(stderr, "unreachable") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("%v: %q", args, stderr)
		}
	}
	for _, p := range []string{"state", "lake"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s was created", p)
		}
	}
}
