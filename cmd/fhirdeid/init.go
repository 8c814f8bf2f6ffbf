package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"fhirdeid/config"
)

func init() {
	register(command{name: "init", summary: "write an annotated pipeline configuration (--azure-parameters: from the Azure template's parameters)", run: runInit})
}

const initUsage = `Usage: fhirdeid init [--azure-parameters FILE] [-o FILE] [flags]

Writes an annotated pipeline configuration with what you chose, to stdout or
to -o FILE (never overwritten), and prints what you must still set before
"fhirdeid validate FILE" accepts it.

--azure-parameters FILE fills it from the arm_template_parameters.json of
Microsoft's "FHIR Export with Anonymization" template: fhirserver-url,
fhirserver-clientid, fhirauth-tenantid and IntegrationStorageAccount. The
client secret (fhirserver-clientSecret) is never copied: the configuration
reads it from ${FHIR_CLIENT_SECRET}, which may hold the secret or an Azure Key
Vault reference (azurekeyvault://VAULT/NAME). Without a client id, or with
--azure-identity, the pipeline uses the managed or workload identity it runs
with, and needs no secret at all.

Flags:
`

// initChoices is what the generated configuration holds.
type initChoices struct {
	name, url, auth, clientID, tenant, account, destination, schedule string
	from                                                              string
	secretInFile                                                      bool
}

func runInit(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("fhirdeid init", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(e.stderr, initUsage)
		fs.PrintDefaults()
	}
	params := fs.String("azure-parameters", "", "the Azure template's `arm_template_parameters.json`")
	out := fs.String("o", "", "write the configuration to `FILE` (refuses to overwrite)")
	var c initChoices
	fs.StringVar(&c.name, "name", "nightly", "the pipeline's name")
	fs.StringVar(&c.url, "url", "", "the FHIR server's base URL (default: from the parameters, else ${FHIR_URL})")
	fs.StringVar(&c.auth, "auth", "", "none, entra, client-credentials, smart or azure-identity (default: from the parameters, else none)")
	fs.StringVar(&c.clientID, "client-id", "", "the client id (entra, client-credentials, smart; azure-identity: a user-assigned identity)")
	fs.StringVar(&c.tenant, "tenant", "", "the Microsoft Entra tenant (entra)")
	fs.StringVar(&c.destination, "destination", "", "where de-identified runs land (default: azblob:// on the parameters' storage account, else file:///var/lib/fhirdeid/lake)")
	fs.StringVar(&c.schedule, "schedule", config.DefaultSchedule, "cron schedule for fhirdeid serve")
	identity := fs.Bool("azure-identity", false, "use the managed or workload identity (auth azure-identity) even when the parameters have a client id")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return usageError{"init takes no arguments"}
	}
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`).MatchString(c.name) {
		return usageError{"--name: letters, digits, '.', '_' and '-' only"}
	}
	if *params != "" {
		p, err := readAzureParameters(*params)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		c.from = filepath.Base(*params)
		c.secretInFile = p["fhirserver-clientSecret"] != ""
		if c.url == "" {
			c.url = strings.TrimRight(p["fhirserver-url"], "/")
		}
		if c.clientID == "" {
			c.clientID = p["fhirserver-clientid"]
		}
		if c.tenant == "" {
			c.tenant = p["fhirauth-tenantid"]
		}
		c.account = p["IntegrationStorageAccount"]
		if c.auth == "" {
			c.auth = "entra"
			if c.clientID == "" {
				c.auth = config.AzureIdentity
			}
		}
	}
	if *identity {
		c.auth = config.AzureIdentity
	}
	if c.auth == "" {
		c.auth = "none"
	}
	if err := c.check(); err != nil {
		return err
	}
	text, todo := c.yaml()
	if *out == "" {
		if _, err := io.WriteString(e.stdout, text); err != nil {
			return err
		}
	} else if err := writeNew(*out, []byte(text)); err != nil {
		return &exitError{code: 1, err: err}
	}
	where := "the configuration"
	if *out != "" {
		where = *out
	}
	fmt.Fprintf(e.stderr, "fhirdeid init: wrote %s (pipeline %s", where, c.name)
	if c.from != "" {
		fmt.Fprintf(e.stderr, ", from %s", c.from)
	}
	fmt.Fprintln(e.stderr, ")")
	if len(todo) > 0 {
		fmt.Fprintln(e.stderr, "Still to do:")
		for _, t := range todo {
			fmt.Fprintln(e.stderr, "  - "+t)
		}
	}
	check := "FILE"
	if *out != "" {
		check = *out
	}
	fmt.Fprintf(e.stderr, "Then: fhirdeid validate %s\n", check)
	return nil
}

var (
	storageAccountName = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	tenantName         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$`)
	plainID            = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,254}$`)
)

// check validates the choices; errors name the parameter or flag, not its
// value.
func (c *initChoices) check() error {
	bad := func(what, msg string) error { return usageError{what + ": " + msg} }
	src := func(param, flag string) string {
		if c.from != "" {
			return c.from + ": " + param + " (or " + flag + ")"
		}
		return flag
	}
	if c.url != "" {
		u, err := url.Parse(c.url)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return bad(src("fhirserver-url", "--url"), "not an http(s) URL without query")
		}
	}
	switch c.auth {
	case "none", "smart", "client-credentials", "entra", config.AzureIdentity:
	default:
		return bad("--auth", "must be none, entra, client-credentials, smart or azure-identity")
	}
	if c.clientID != "" && !plainID.MatchString(c.clientID) {
		return bad(src("fhirserver-clientid", "--client-id"), "not a client id")
	}
	if c.tenant != "" && !tenantName.MatchString(c.tenant) {
		return bad(src("fhirauth-tenantid", "--tenant"), "not a tenant id or domain")
	}
	if c.account != "" && !storageAccountName.MatchString(c.account) {
		return bad(src("IntegrationStorageAccount", "--destination"), "a storage account name has 3 to 24 lower-case letters and digits")
	}
	return nil
}

// q quotes a value for YAML (a JSON string is a YAML double-quoted scalar).
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// yaml renders the annotated configuration and the list of what the user
// must still set.
func (c *initChoices) yaml() (string, []string) {
	var todo []string
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# fhirdeid pipeline configuration, written by \"fhirdeid init\"")
	if c.from != "" {
		w(" from %s", c.from)
	}
	w(".\n#\n")
	w("#   fhirdeid validate FILE   # check it (contacts no server; --online also reads Key Vault)\n")
	w("#   fhirdeid run FILE        # run the pipeline once (a container job)\n")
	w("#   fhirdeid serve FILE      # run it on its schedule, with a dashboard\n#\n")
	w("# \"${NAME}\" is replaced by the environment variable NAME, which must be set.\n")
	w("# A secret may also be an Azure Key Vault reference, azurekeyvault://VAULT/NAME,\n")
	w("# read at start-up with the Azure identity the process runs with. Every key\n")
	w("# is described in etc/fhirdeid.yml of the fhirdeid source.\n\n")
	w("# Runs, progress and the incremental cursor; a killed run resumes from here.\n")
	w("state: /var/lib/fhirdeid/state.db\n\npipelines:\n  %s:\n    source:\n", c.name)
	w("      # The FHIR server's base URL.\n")
	if c.url == "" {
		w("      url: ${FHIR_URL}\n")
		todo = append(todo, "set FHIR_URL to the FHIR server's base URL (or write it into the file)")
	} else {
		w("      url: %s\n", q(c.url))
	}
	w("      # Everything is exported at every run, as the Azure template did; with\n")
	w("      # \"since: auto\" only what changed since the last successful run is\n")
	w("      # (it needs stable anonymizer keys: keysFile below).\n")
	w("      # since: auto\n")
	azureFiles := c.from != "" // only Azure services get Azure Storage tokens
	switch c.auth {
	case "none":
		w("      # No authentication. Others: entra, client-credentials, smart,\n")
		w("      # azure-identity (see etc/fhirdeid.yml).\n")
		w("      auth:\n        type: none\n")
	case config.AzureIdentity:
		w("      # The Azure managed identity (Container Apps, App Service, VM) or\n")
		w("      # workload identity (AKS) the process runs with: no secret. It needs\n")
		w("      # the FHIR Data Exporter role on the FHIR service. The token's scope\n")
		w("      # is <origin of url>/.default unless scope: is given.\n")
		w("      auth:\n        type: azure-identity\n")
		if c.clientID != "" {
			w("        # A user-assigned identity, by client id.\n")
			w("        clientID: %s\n", q(c.clientID))
		}
	case "entra", "client-credentials":
		w("      # Microsoft Entra ID client credentials (the template's app\n")
		w("      # registration). The secret is never written here.\n")
		w("      auth:\n        type: %s\n", c.auth)
		if c.auth == "entra" {
			if c.tenant == "" {
				w("        tenant: ${AZURE_TENANT_ID}\n")
				todo = append(todo, "set AZURE_TENANT_ID to the Entra tenant of the FHIR service's app registration")
			} else {
				w("        tenant: %s\n", q(c.tenant))
			}
		} else {
			w("        tokenURL: ${FHIR_TOKEN_URL}\n")
			todo = append(todo, "set FHIR_TOKEN_URL to the token endpoint")
		}
		if c.clientID == "" {
			w("        clientID: ${FHIR_CLIENT_ID}\n")
			todo = append(todo, "set FHIR_CLIENT_ID to the client id")
		} else {
			w("        clientID: %s\n", q(c.clientID))
		}
		w("        # The environment variable may hold the secret or azurekeyvault://VAULT/NAME.\n")
		w("        clientSecret: ${FHIR_CLIENT_SECRET}\n")
		if c.url != "" && c.auth == "entra" {
			w("        scope: %s\n", q(strings.TrimRight(c.url, "/")+"/.default"))
		}
		msg := "set FHIR_CLIENT_SECRET to the client secret, or to a Key Vault reference azurekeyvault://VAULT/NAME"
		if c.secretInFile {
			msg += " (the parameters file has a secret: it was not copied; consider moving it to Key Vault and removing it from the file)"
		}
		todo = append(todo, msg)
	case "smart":
		w("      # SMART Backend Services: a PEM or JWKS private key (or azurekeyvault://VAULT/NAME).\n")
		w("      auth:\n        type: smart\n")
		if c.clientID == "" {
			w("        clientID: ${FHIR_CLIENT_ID}\n")
			todo = append(todo, "set FHIR_CLIENT_ID to the client id")
		} else {
			w("        clientID: %s\n", q(c.clientID))
		}
		w("        privateKeyFile: ${FHIR_PRIVATE_KEY_FILE}\n")
		todo = append(todo, "set FHIR_PRIVATE_KEY_FILE to the private key's path (the key's kid is read from a JWKS, or give keyID)")
	}
	if azureFiles && (c.auth == config.AzureIdentity || c.auth == "entra") {
		w("      # Azure API for FHIR and Azure Health Data Services write the export to\n")
		w("      # the storage account linked to the service and say requiresAccessToken\n")
		w("      # false: these files are read with this identity (Storage Blob Data\n")
		w("      # Reader on that account).\n")
		if c.auth == config.AzureIdentity {
			w("      storageAuth:\n        type: azure-identity\n")
			if c.clientID != "" {
				w("        clientID: %s\n", q(c.clientID))
			}
		} else {
			w("      storageAuth:\n        type: entra\n")
		}
	}
	w("\n    anonymizer:\n")
	w("      # Empty: the built-in HIPAA Safe Harbor configuration (fhirdeid config\n")
	w("      # show), as the template's default anonymizer settings; or a file in\n")
	w("      # the format of Microsoft's FHIR anonymizer.\n")
	w("      # config: anonymizer.json\n")
	w("      # Without a key file, each run draws new keys and ids and dates do not\n")
	w("      # line up between runs. \"fhirdeid keys init keys.json\" makes one; it\n")
	w("      # may live in Key Vault: keysFile: azurekeyvault://VAULT/NAME.\n")
	w("      # keysFile: keys.json\n")
	w("      fhirVersion: R4\n\n")
	w("    # Where de-identified runs land: one folder per run, \"latest\" names the\n")
	w("    # newest complete one.\n")
	switch {
	case c.destination != "":
		w("    destination: %s\n", q(c.destination))
	case c.from != "":
		w("    # Azure Blob / ADLS Gen2, container \"deidentified\" of the storage\n")
		w("    # account; written with the process's Azure identity (Storage Blob\n")
		w("    # Data Contributor), or AZURE_STORAGE_KEY.\n")
		if c.account == "" {
			w("    destination: azblob://deidentified?storage_account=${AZURE_STORAGE_ACCOUNT}\n")
			todo = append(todo, "set AZURE_STORAGE_ACCOUNT to the storage account that receives the de-identified data")
		} else {
			w("    destination: %s\n", q("azblob://deidentified?storage_account="+c.account))
		}
		if c.auth == "entra" {
			todo = append(todo, "for the azblob destination, give the process an Azure identity with Storage Blob Data Contributor (managed identity, or AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET), or set AZURE_STORAGE_KEY")
		}
	default:
		w("    destination: file:///var/lib/fhirdeid/lake\n")
	}
	w("\n    # For \"fhirdeid serve\": cron schedule and time zone")
	if c.schedule == config.DefaultSchedule {
		w(" (01:00 UTC, the template's time)")
	}
	w(".\n    schedule: %s\n    timezone: UTC\n", q(c.schedule))
	if !c.secretInFile && c.from != "" && c.auth == config.AzureIdentity {
		todo = append(todo, "grant the identity FHIR Data Exporter on the FHIR service and Storage Blob Data Contributor on the storage account (deploy/azure/azuredeploy.json does both)")
	}
	return b.String(), todo
}

// readAzureParameters reads the "value" of each parameter of an ARM
// parameters file. Such files are often edited by hand from the template's
// sample, whose descriptions are not valid JSON (line breaks and unescaped
// quotes in strings): when strict JSON fails, each parameter's value is read
// where it stands, first in its object. Values that are still the sample's
// placeholders ("<<...>>") count as empty. Errors never quote the file.
func readAzureParameters(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--azure-parameters: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("--azure-parameters: %w", err)
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("--azure-parameters: %s is larger than 1 MiB", path)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	out := map[string]string{}
	var doc struct {
		Parameters map[string]struct {
			Value json.RawMessage `json:"value"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(data, &doc); err == nil {
		if doc.Parameters == nil {
			return nil, fmt.Errorf("--azure-parameters: %s has no \"parameters\" object", path)
		}
		for k, v := range doc.Parameters {
			var s string
			if len(v.Value) > 0 && json.Unmarshal(v.Value, &s) != nil {
				return nil, fmt.Errorf("--azure-parameters: %s: parameter %s: the value is not a string", path, k)
			}
			out[k] = s
		}
	} else {
		if !bytes.Contains(data, []byte(`"parameters"`)) {
			return nil, fmt.Errorf("--azure-parameters: %s is not an ARM parameters file", path)
		}
		for _, k := range azureParameterNames {
			re := regexp.MustCompile(`"` + regexp.QuoteMeta(k) + `"\s*:\s*\{\s*"value"\s*:\s*("(?:[^"\\\n]|\\.)*")`)
			m := re.FindSubmatch(data)
			if m == nil {
				continue
			}
			s, err := strconv.Unquote(string(m[1]))
			if err != nil {
				if err := json.Unmarshal(m[1], &s); err != nil {
					return nil, fmt.Errorf("--azure-parameters: %s: parameter %s: the value is not a JSON string", path, k)
				}
			}
			out[k] = s
		}
	}
	for k, v := range out {
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, "<<") && strings.HasSuffix(v, ">>") {
			v = ""
		}
		out[k] = v
	}
	known := false
	for _, k := range azureParameterNames {
		if _, ok := out[k]; ok {
			known = true
		}
	}
	if !known {
		return nil, fmt.Errorf("--azure-parameters: %s has none of the template's parameters (%s)", path, strings.Join(azureParameterNames, ", "))
	}
	return out, nil
}

// azureParameterNames are the parameters of the template's
// arm_template_parameters.json (and of deploy/azure/azuredeploy.json).
var azureParameterNames = []string{"fhirserver-url", "fhirserver-clientid", "fhirserver-clientSecret", "fhirauth-tenantid", "IntegrationStorageAccount"}

// writeNew writes data to path, which must not exist: the data goes to a
// temporary file first, linked to path only when complete.
func writeNew(path string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists: not overwritten", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fhirdeid-init-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: not overwritten", path)
		}
		return err
	}
	return nil
}
