package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/config"
)

func init() {
	register(command{
		name:    "export",
		summary: "run a FHIR Bulk Data $export into a directory (resumable)",
		run:     runExport,
	})
}

const exportUsage = `Usage:
  fhirdeid export --url BASE [--group ID | --patient] [--type T,...] [--since INSTANT|auto] --out DIR [auth flags]

Kicks off a Bulk Data export at the system level (default), for all patients
(--patient) or for a group (--group ID), polls until it completes and downloads
every file into DIR in bulk layout: Type.NNN.ndjson.gz, deleted/, error/,
manifest.json and log.ndjson. Each file is written under a temporary name and
renamed when complete and validated (resourceType and count against the
manifest).

The state is kept in DIR/.fhirdeid-export.json: running the same command again
after a crash or kill continues the same export (no new kick-off) and skips the
files already stored. --since auto uses the transactionTime of the last fully
successful export into DIR.

Authentication (secrets are read from environment variables or files only):
  --token-env VAR                         a static bearer token
  --client-id ID --client-secret-env VAR  OAuth2 client credentials (also
       or --client-secret-file FILE       --token-url, --auth-style, --scope;
                                          Entra ID: --tenant and --resource or --scope)
  --client-id ID --key FILE               SMART Backend Services (PEM or JWKS key,
                                          --kid, --alg RS384|ES384; the token URL is
                                          discovered unless --token-url is given)
  --azure-identity [--client-id ID]       Azure managed or workload identity, no secret
  --storage-auth entra|azure-identity|connection-string|sas
                                          Azure mode: credentials for files on an Azure
                                          blob host (or a --trusted-host) when
                                          requiresAccessToken is false

The token is sent only to the FHIR server's origin (scheme, host, port) and to
each --trusted-host; never over http when the server is https, never after a
redirect to another origin. A file that needs the token on another origin is
refused with an error naming that origin.

Limits (--max-line-bytes, --max-file-bytes, --max-ratio, --max-manifest-bytes,
--max-manifest-files, --min-bytes per --rate-interval) bound what a server may
cost; a violation stops at once with an error naming the file, the line and
the limit. A 5xx answer with a non-transient OperationOutcome is not retried.

Exit status: 0 success, 1 failure, 2 usage error, 3 complete but the server
reported errors (see error/).

Flags:
`

// stringList is a repeatable, comma-splitting flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// rawList is a repeatable flag that keeps commas.
type rawList []string

func (s *rawList) String() string { return strings.Join(*s, " ") }

func (s *rawList) Set(v string) error { *s = append(*s, v); return nil }

const checkpointName = ".fhirdeid-export.json"

type exportFlags struct {
	url, group, since, until, out                 string
	patientLevel, post, lenient, restart, keepJob bool
	allowCountMismatch, repeat, quiet             bool
	types, elements, patients, include            stringList
	typeFilters, params                           rawList
	outputFormat, organizeBy                      string
	partial                                       bool
	concurrency                                   int
	maxWait, minWait, deadline, idle              time.Duration
	retries                                       int
	tokenEnv, clientID, secretEnv, secretFile     string
	tokenURL, authStyle, scope, resource, tenant  string
	keyFile, kid, alg                             string
	storageAuth, storageConnEnv, storageSASEnv    string
	azureIdentity                                 bool
	statusURL                                     string
	separateStatus                                bool
	vendor                                        string
	trustedHosts                                  stringList
	maxLine, maxManifestFiles                     int
	maxManifestBytes, maxFileBytes, minBytes      int64
	maxRatio                                      float64
	rateInterval                                  time.Duration
}

func runExport(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), exportUsage)
		fs.PrintDefaults()
	}
	var f exportFlags
	fs.StringVar(&f.url, "url", "", "FHIR base URL of the server (required)")
	fs.StringVar(&f.group, "group", "", "export the members of this Group id")
	fs.BoolVar(&f.patientLevel, "patient", false, "export all patients (Patient/$export)")
	fs.Var(&f.types, "type", "resource types to export (_type), comma-separated or repeated")
	fs.StringVar(&f.since, "since", "", "export resources changed after this instant (_since); auto = last successful export into --out")
	fs.StringVar(&f.until, "until", "", "export resources changed before this instant (_until)")
	fs.Var(&f.typeFilters, "type-filter", "a _typeFilter search such as Observation?category=laboratory (repeatable)")
	fs.Var(&f.elements, "elements", "elements to include (_elements)")
	fs.Var(&f.patients, "patient-ref", "restrict to these patients (patient=, e.g. Patient/123; sends a POST)")
	fs.Var(&f.include, "include-associated-data", "includeAssociatedData values")
	fs.StringVar(&f.outputFormat, "output-format", "", "_outputFormat (default: the server's)")
	fs.StringVar(&f.organizeBy, "organize-output-by", "", "organizeOutputBy resource type (STU3)")
	fs.BoolVar(&f.partial, "allow-partial-manifests", false, "send allowPartialManifests=true (STU3)")
	fs.Var(&f.params, "param", "a vendor parameter NAME=VALUE sent as is, e.g. _container=exports or _till=... (repeatable)")
	fs.StringVar(&f.vendor, "vendor", "generic", "server quirks: generic or microsoft (GET only, _until sent as _till, unsupported parameters refused)")
	fs.BoolVar(&f.post, "post", false, "kick off with POST and a Parameters body instead of GET")
	fs.BoolVar(&f.repeat, "repeat-params", false, "repeat multi-valued parameters instead of joining them with commas")
	fs.BoolVar(&f.lenient, "lenient", false, "send Prefer: handling=lenient")
	fs.BoolVar(&f.separateStatus, "separate-export-status", false, "send Prefer: separate-export-status (STU3)")
	fs.StringVar(&f.out, "out", "", "output directory (required)")
	fs.StringVar(&f.statusURL, "status-url", "", "attach to an export already kicked off elsewhere: poll this status URL instead of kicking off")
	fs.BoolVar(&f.restart, "restart", false, "abandon an unfinished export in --out (DELETE its job) and start anew")
	fs.BoolVar(&f.keepJob, "keep-job", false, "do not DELETE the export job on the server after success")
	fs.BoolVar(&f.allowCountMismatch, "allow-count-mismatch", false, "warn instead of failing when a file's line count differs from the manifest")
	fs.IntVar(&f.concurrency, "concurrency", 4, "parallel downloads per host")
	fs.DurationVar(&f.minWait, "min-wait", time.Second, "shortest wait between status polls")
	fs.DurationVar(&f.maxWait, "max-wait", 5*time.Minute, "longest wait between polls or retries (clamps Retry-After)")
	fs.DurationVar(&f.deadline, "deadline", 30*24*time.Hour, "give up polling this long after the kick-off")
	fs.DurationVar(&f.idle, "idle-timeout", 5*time.Minute, "retry a download that receives no data for this long")
	fs.IntVar(&f.retries, "retries", 5, "retries of transient failures (429, 5xx, network) per request or file")
	fs.BoolVar(&f.quiet, "quiet", false, "do not print progress")
	fs.StringVar(&f.tokenEnv, "token-env", "", "environment variable holding a static bearer token")
	fs.StringVar(&f.clientID, "client-id", "", "OAuth2 / SMART client id")
	fs.BoolVar(&f.azureIdentity, "azure-identity", false, "Azure managed or workload identity (no secret; --client-id selects a user-assigned identity, --scope defaults to <origin>/.default)")
	fs.StringVar(&f.secretEnv, "client-secret-env", "", "environment variable holding the client secret")
	fs.StringVar(&f.secretFile, "client-secret-file", "", "file holding the client secret")
	fs.StringVar(&f.tokenURL, "token-url", "", "token endpoint (SMART: discovered from .well-known/smart-configuration when empty)")
	fs.StringVar(&f.authStyle, "auth-style", "basic", "how the client secret is sent: basic or post")
	fs.StringVar(&f.scope, "scope", "", "requested scope (SMART default: system/T.read for each --type, else system/*.read; plus system/Group.read with --group)")
	fs.StringVar(&f.resource, "resource", "", "Entra ID v1 resource (the FHIR URL); with --tenant selects the v1 endpoint")
	fs.StringVar(&f.tenant, "tenant", "", "Microsoft Entra tenant id: token URL login.microsoftonline.com/TENANT/...")
	fs.StringVar(&f.keyFile, "key", "", "SMART Backend Services private key file (PEM or JWKS)")
	fs.StringVar(&f.kid, "kid", "", "key id (JWT kid header; selects the key in a JWKS)")
	fs.StringVar(&f.alg, "alg", "", "signing algorithm RS384 or ES384 (default from the key)")
	fs.Var(&f.trustedHosts, "trusted-host", "another origin (host[:port] or https://host[:port]) trusted with the FHIR server's token, e.g. the blob host of a server whose manifest sets requiresAccessToken (repeatable)")
	lim := bulk.DefaultLimits()
	fs.IntVar(&f.maxLine, "max-line-bytes", bulk.DefaultMaxLineBytes, "longest accepted NDJSON line")
	fs.Int64Var(&f.maxFileBytes, "max-file-bytes", lim.MaxFileBytes, "most decompressed bytes of one file")
	fs.Float64Var(&f.maxRatio, "max-ratio", lim.MaxRatio, "highest decompressed-to-compressed ratio of a gzip file (checked past 8 MiB)")
	fs.Int64Var(&f.maxManifestBytes, "max-manifest-bytes", lim.MaxManifestBytes, "largest manifest page")
	fs.IntVar(&f.maxManifestFiles, "max-manifest-files", lim.MaxManifestFiles, "most files a manifest may list")
	fs.Int64Var(&f.minBytes, "min-bytes", lim.MinBytes, "stalled-transfer rule: a download receiving fewer bytes than this per --rate-interval fails (0: off)")
	fs.DurationVar(&f.rateInterval, "rate-interval", lim.RateInterval, "interval of the stalled-transfer rule")
	fs.StringVar(&f.storageAuth, "storage-auth", "", "Azure mode, for files on another host when requiresAccessToken is false: entra (a storage token from the same client credentials), connection-string or sas")
	fs.StringVar(&f.storageConnEnv, "storage-connection-string-env", "", "environment variable holding an Azure Storage connection string (AccountName/AccountKey or SharedAccessSignature)")
	fs.StringVar(&f.storageSASEnv, "storage-sas-env", "", "environment variable holding an Azure Storage SAS token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected argument " + fs.Arg(0)}
	}
	if f.url == "" || f.out == "" {
		return usageError{"--url and --out are required"}
	}
	if f.group != "" && f.patientLevel {
		return usageError{"give either --group or --patient, not both"}
	}
	if f.concurrency < 1 {
		return usageError{"--concurrency must be at least 1"}
	}
	req := bulk.Request{Types: f.types, Until: f.until, TypeFilters: f.typeFilters, Elements: f.elements,
		Patients: f.patients, IncludeAssociatedData: f.include, OutputFormat: f.outputFormat,
		OrganizeOutputBy: f.organizeBy, AllowPartialManifests: f.partial, POST: f.post,
		RepeatParams: f.repeat, Lenient: f.lenient, SeparateExportStatus: f.separateStatus}
	switch {
	case f.group != "":
		req.Level, req.GroupID = bulk.GroupLevel, f.group
	case f.patientLevel:
		req.Level = bulk.PatientLevel
	default:
		req.Level = bulk.SystemLevel
	}
	for _, p := range f.params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return usageError{"--param wants NAME=VALUE"}
		}
		if req.Extra == nil {
			req.Extra = map[string][]string{}
		}
		req.Extra[k] = append(req.Extra[k], v)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("export: create output directory: %w", err)
	}
	store := bulk.FileCheckpointStore{Path: filepath.Join(f.out, checkpointName)}
	prev, err := store.Load()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if f.since == "auto" {
		req.Since = ""
		if prev != nil {
			req.Since = prev.LastSuccessfulTransactionTime
		}
		if req.Since == "" && !f.quiet {
			fmt.Fprintln(e.stderr, "fhirdeid export: --since auto: no previous successful export in the output directory; exporting everything")
		}
	} else {
		req.Since = f.since
	}
	switch f.vendor {
	case "generic":
	case "microsoft":
		if req, err = req.ForMicrosoft(); err != nil {
			return usageError{err.Error()}
		}
	default:
		return usageError{"--vendor must be generic or microsoft"}
	}
	if err := req.Validate(); err != nil {
		return usageError{err.Error()}
	}

	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: f.concurrency + 2,
		ResponseHeaderTimeout: 10 * time.Minute, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 30 * time.Second}}
	client, err := bulk.NewClient(f.url, hc)
	if err != nil {
		return usageError{"--url: " + err.Error()}
	}
	client.UserAgent = "fhirdeid/" + Version
	client.Polling.MinDelay = f.minWait
	client.Polling.MaxDelay = f.maxWait
	if client.Polling.InitialDelay < f.minWait {
		client.Polling.InitialDelay = f.minWait
	}
	client.Polling.Deadline = f.deadline
	client.Retries.MaxRetries = f.retries
	client.IdleTimeout = f.idle
	if f.maxLine <= 0 || f.maxFileBytes <= 0 || f.maxRatio <= 1 || f.maxManifestBytes <= 0 || f.maxManifestFiles <= 0 || f.rateInterval <= 0 {
		return usageError{"the --max-* limits must be positive (--max-ratio above 1) and --rate-interval positive"}
	}
	client.MaxLineBytes = f.maxLine
	client.Limits = bulk.Limits{MaxManifestBytes: f.maxManifestBytes, MaxManifestFiles: f.maxManifestFiles, MaxRatio: f.maxRatio,
		RatioFloor: 8 << 20, MaxFileBytes: f.maxFileBytes, MinBytes: f.minBytes, RateInterval: f.rateInterval}
	client.Retries.MaxDelay = f.maxWait
	if client.Retries.BaseDelay > f.maxWait {
		client.Retries.BaseDelay = f.maxWait
	}
	if err := client.TrustHosts(f.trustedHosts...); err != nil {
		return usageError{"--trusted-host: " + err.Error()}
	}
	auth, err := exportAuth(e, &f, hc, client.Base.String())
	if err != nil {
		return err
	}
	client.Auth = auth
	if err := storageAuth(e, &f, hc, auth, client); err != nil {
		return err
	}
	if !f.quiet {
		client.Progress = func(p string) { fmt.Fprintln(e.stderr, "fhirdeid export: server progress:", p) }
	}

	sink := bulk.DirSink{Dir: f.out}
	if err := sink.CleanPartials(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	exp := &bulk.Exporter{Client: client, Store: store, Sink: sink, Concurrency: f.concurrency,
		AllowCountMismatch: f.allowCountMismatch, KeepJob: f.keepJob, CheckDuplicates: true}
	if f.restart && prev != nil && !prev.Complete {
		if prev.StatusURL != "" {
			if err := client.Delete(ctx, prev.StatusURL); err != nil && !f.quiet {
				fmt.Fprintln(e.stderr, "fhirdeid export: --restart: could not delete the old job:", err)
			}
		}
		fresh := &bulk.Checkpoint{Version: 1, ExportID: bulk.NewExportID(), Request: req,
			LastSuccessfulTransactionTime: prev.LastSuccessfulTransactionTime, PreviousFiles: prev.PreviousFiles}
		if err := store.Save(fresh); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if f.statusURL != "" {
		if prev != nil && !prev.Complete && prev.StatusURL != "" && !f.restart {
			return usageError{"--status-url: the output directory holds an unfinished export; finish it or add --restart"}
		}
		attached := &bulk.Checkpoint{Version: 1, ExportID: bulk.NewExportID(), Request: req, StatusURL: f.statusURL,
			KickedOffAt: time.Now().UTC()}
		if prev != nil {
			attached.LastSuccessfulTransactionTime = prev.LastSuccessfulTransactionTime
			attached.PreviousFiles = prev.PreviousFiles
			if prev.Complete {
				attached.PreviousFiles = nil
				for _, pf := range prev.Files {
					attached.PreviousFiles = append(attached.PreviousFiles, pf.Name)
				}
			}
		}
		if err := store.Save(attached); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if prev != nil && !prev.Complete && prev.StatusURL == "" && !prev.KickoffStarted.IsZero() && !f.quiet {
		fmt.Fprintln(e.stderr, "fhirdeid export: warning: the previous run was interrupted during its kick-off; if the server accepted it, an orphaned export job may be left on the server")
	}
	cp, resumed, err := exp.Prepare(req)
	if errors.Is(err, bulk.ErrOtherExport) {
		return &exitError{code: 1, err: fmt.Errorf("export: %w in %s; rerun with the same flags to finish it, or add --restart", err, f.out)}
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(f.out, "log.ndjson"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("export: open log.ndjson: %w", err)
	}
	defer logFile.Close()
	log := bulk.NewNDJSONLog(logFile, cp.ExportID)
	client.Events, exp.Events = log, log
	if resumed && !f.quiet {
		state := "polling"
		if cp.Manifest != nil {
			done := 0
			for _, fs := range cp.Files {
				if fs.Done {
					done++
				}
			}
			state = fmt.Sprintf("downloading (%d of %d files already stored)", done, len(cp.Files))
		}
		fmt.Fprintf(e.stderr, "fhirdeid export: resuming export %s: %s\n", cp.ExportID, state)
	}
	if !f.quiet {
		exp.FileDone = func(fs bulk.FileState) {
			fmt.Fprintf(e.stderr, "fhirdeid export: stored %s (%d resources)\n", fs.Name, fs.Resources)
		}
	}
	res, err := exp.RunCheckpoint(ctx, cp, resumed)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{code: 1, err: errors.New("interrupted; run the same command again to resume")}
		}
		return err
	}
	if err := log.Err(); err != nil {
		return fmt.Errorf("export: write log.ndjson: %w", err)
	}
	var total int64
	for _, fs := range res.Checkpoint.Files {
		total += fs.Resources
	}
	mbps := 0.0
	if s := res.DownloadDuration.Seconds(); s > 0 {
		mbps = float64(res.Bytes) / 1e6 / s
	}
	fmt.Fprintf(e.stdout, "exported %d resources in %d files to %s (transactionTime %s); this run downloaded %d files, %.1f MB NDJSON in %.2fs (%.1f MB/s)\n",
		total, len(res.Checkpoint.Files), f.out, res.Checkpoint.TransactionTime, res.FilesDownloaded,
		float64(res.Bytes)/1e6, res.DownloadDuration.Seconds(), mbps)
	if res.Duplicates > 0 && !f.quiet {
		fmt.Fprintf(e.stderr, "fhirdeid export: warning: %d resources appear more than once (same type and id) in this run's files\n", res.Duplicates)
	}
	if res.Partial {
		return &exitError{code: 3, err: fmt.Errorf("the server reported errors (%d error, %d fatal issues; see %s)",
			res.Severity["error"], res.Severity["fatal"], filepath.Join(f.out, "error"))}
	}
	return nil
}

// exportAuth builds the authenticator from the flags, reading secrets from
// the environment or files. The flags become a config.Auth, so that export
// and the pipelines build authenticators the same way.
func exportAuth(e *env, f *exportFlags, hc *http.Client, base string) (bulk.Authenticator, error) {
	modes := 0
	for _, on := range []bool{f.tokenEnv != "", f.secretEnv != "" || f.secretFile != "", f.keyFile != "", f.azureIdentity} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return nil, usageError{"give one of --token-env, --client-secret-env/--client-secret-file, --key, --azure-identity"}
	}
	var a config.Auth
	switch {
	case f.tokenEnv != "":
		tok := strings.TrimSpace(e.getenv(f.tokenEnv))
		if tok == "" {
			return nil, usageError{"--token-env: environment variable " + f.tokenEnv + " is empty or unset"}
		}
		a = config.Auth{Type: "bearer", Token: tok}
	case f.secretEnv != "" || f.secretFile != "":
		if f.secretEnv != "" && f.secretFile != "" {
			return nil, usageError{"give either --client-secret-env or --client-secret-file"}
		}
		a = config.Auth{Type: "client-credentials", ClientID: f.clientID, ClientSecretFile: f.secretFile,
			TokenURL: f.tokenURL, Tenant: f.tenant, Scope: f.scope, Resource: f.resource}
		if f.secretEnv != "" {
			if a.ClientSecret = e.getenv(f.secretEnv); a.ClientSecret == "" {
				return nil, usageError{"--client-secret-env: environment variable " + f.secretEnv + " is empty or unset"}
			}
		}
		if f.clientID == "" {
			return nil, usageError{"a client secret needs --client-id"}
		}
		if f.tokenURL == "" && f.tenant == "" {
			return nil, usageError{"a client secret needs --token-url or --tenant"}
		}
		switch f.authStyle {
		case "basic", "post":
			a.Style = f.authStyle
		default:
			return nil, usageError{"--auth-style must be basic or post"}
		}
		if f.tenant != "" {
			a.Style = "post" // Entra ID takes client_secret_post
		}
	case f.keyFile != "":
		if f.clientID == "" {
			return nil, usageError{"--key needs --client-id"}
		}
		a = config.Auth{Type: "smart", ClientID: f.clientID, PrivateKeyFile: f.keyFile, KeyID: f.kid, Alg: f.alg,
			TokenURL: f.tokenURL, Scope: f.scope}
		if a.Scope == "" {
			a.Scope = defaultScope(f)
		}
	case f.azureIdentity:
		a = config.Auth{Type: config.AzureIdentity, ClientID: f.clientID, Scope: f.scope}
	default:
		return nil, nil
	}
	if err := a.Check("auth", ""); err != nil {
		return nil, flagError(err)
	}
	auth, err := a.Authenticator("auth", hc, base)
	if err != nil {
		return nil, flagError(err)
	}
	return auth, nil
}

// exportAuthFlags names the flag of each authentication field.
var exportAuthFlags = map[string]string{
	"auth":                  "authentication flags",
	"auth.clientID":         "--client-id",
	"auth.clientSecretFile": "--client-secret-file",
	"auth.tokenURL":         "--token-url",
	"auth.style":            "--auth-style",
	"auth.privateKeyFile":   "--key",
	"auth.keyID":            "--kid",
	"auth.alg":              "--alg",
}

// flagError rewords a configuration error of the authentication fields as
// a usage error naming the flag.
func flagError(err error) error {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return err
	}
	name, ok := exportAuthFlags[ce.Field]
	if !ok {
		name = ce.Field
	}
	return usageError{name + ": " + ce.Msg}
}

// storageAuth sets the Azure Storage credentials of Azure mode.
func storageAuth(e *env, f *exportFlags, hc *http.Client, fhirAuth bulk.Authenticator, client *bulk.Client) error {
	switch f.storageAuth {
	case "":
		if f.storageConnEnv != "" || f.storageSASEnv != "" {
			return usageError{"--storage-connection-string-env and --storage-sas-env need --storage-auth"}
		}
		return nil
	case "entra":
		cc, ok := fhirAuth.(*bulk.ClientCredentials)
		if !ok {
			return usageError{"--storage-auth entra needs client-secret authentication (--client-id, --client-secret-env or -file, --tenant)"}
		}
		st := &bulk.ClientCredentials{HTTP: hc, TokenURL: cc.TokenURL, ClientID: cc.ClientID, Secret: cc.Secret, Style: cc.Style}
		if cc.Resource != "" {
			st.Resource = bulk.AzureStorageResource
		} else {
			st.Scope = bulk.AzureStorageScope
		}
		client.StorageAuth = st
	case config.AzureIdentity:
		st, _, err := (&config.StorageAuth{Type: config.AzureIdentity}).Build("storage-auth", hc, fhirAuth)
		if err != nil {
			return usageError{err.Error()}
		}
		client.StorageAuth = st
	case "connection-string":
		v := e.getenv(f.storageConnEnv)
		if f.storageConnEnv == "" || v == "" {
			return usageError{"--storage-auth connection-string needs --storage-connection-string-env naming a set variable"}
		}
		signer, err := bulk.ParseAzureConnectionString(bulk.NewSecret(v))
		if err != nil {
			return usageError{err.Error()}
		}
		client.StorageSigner = signer
	case "sas":
		v := e.getenv(f.storageSASEnv)
		if f.storageSASEnv == "" || v == "" {
			return usageError{"--storage-auth sas needs --storage-sas-env naming a set variable"}
		}
		client.StorageSigner = bulk.AzureSAS{Token: bulk.NewSecret(strings.TrimSpace(v))}
	default:
		return usageError{"--storage-auth must be entra, azure-identity, connection-string or sas"}
	}
	return nil
}

// defaultScope is the SMART v1 scope for the exported types: per-type
// scopes are granted more often than wildcards.
func defaultScope(f *exportFlags) string {
	var scopes []string
	if len(f.types) == 0 {
		scopes = append(scopes, "system/*.read")
	}
	for _, t := range f.types {
		scopes = append(scopes, "system/"+t+".read")
	}
	if f.group != "" && len(f.types) > 0 {
		scopes = append(scopes, "system/Group.read")
	}
	return strings.Join(scopes, " ")
}
