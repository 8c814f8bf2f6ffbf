package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

func init() {
	register(command{
		name:    "bulkserver",
		summary: "serve a folder of NDJSON files through a local Bulk Data $export server (tests, demos)",
		run:     runBulkServer,
	})
}

const bulkServerUsage = `Usage:
  fhirdeid bulkserver (--data DIR | --synthetic N) [--addr 127.0.0.1:PORT] [flags]

Serves a folder of Type.*.ndjson(.gz) files (or a synthetic in-memory
population) through the FHIR Bulk Data protocol at http://ADDR/fhir:
$export at the system, Patient and Group levels, status polling with
Retry-After and X-Progress, gzip downloads, DELETE, a CapabilityStatement at
/fhir/metadata and, with --client-id, SMART Backend Services or client-secret
authorisation. Fault switches reproduce misbehaving servers. Request counters
are at /_bulktest/stats. It listens on loopback unless told otherwise.

The data can change between exports, so that incremental exports are tested
for real: --changes FILE (NDJSON: resources to add or update, and Bundles of
DELETE entries) or --random-changes UPDATES,DELETES,NEW is applied once
--changes-after exports were prepared; a change set can also be POSTed as
NDJSON to /_bulktest/changes at any time. Changed resources get
meta.lastUpdated = the time of the change, so _since returns them, and
deleted ones are listed in the manifest's deleted array.

Flags:
`

func runBulkServer(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("bulkserver", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), bulkServerUsage)
		fs.PrintDefaults()
	}
	var o bulktest.Options
	data := fs.String("data", "", "folder of Type.*.ndjson or .ndjson.gz files")
	synthetic := fs.Int("synthetic", 0, "serve a synthetic population of N patients generated in memory")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	fs.IntVar(&o.PartSize, "part-size", 1000, "resources per output file")
	fs.BoolVar(&o.Passthrough, "passthrough", false, "serve the data files as they are (one per manifest entry) when no filtering is needed")
	fs.IntVar(&o.PollsBeforeComplete, "polls", 1, "status polls answered 202 before the manifest")
	fs.StringVar(&o.RetryAfter, "retry-after", "1", "Retry-After of 202 answers (empty: none)")
	fs.DurationVar(&o.DownloadDelay, "download-delay", 0, "delay before each file body")
	fs.IntVar(&o.Throttle, "throttle", 0, "bytes per second per download (0: unlimited)")
	fs.IntVar(&o.ManifestPageSize, "page-size", 0, "output entries per manifest page (0: one page)")
	fs.BoolVar(&o.PartialManifests, "partial-manifests", false, "with --page-size and allowPartialManifests=true, answer pages but the last with 202 (STU3)")
	var deleted, groups stringList
	fs.Var(&deleted, "deleted", "Type/id references reported as deleted when _since is given")
	errorsN := fs.Int("errors", 0, "report this many error-severity OperationOutcomes in an error file")
	clientID := fs.String("client-id", "", "require authorisation for this client id")
	jwksFile := fs.String("jwks", "", "the client's public JWKS file (private_key_jwt)")
	secretEnv := fs.String("client-secret-env", "", "environment variable holding the client secret (client_secret_basic/post)")
	tokenLife := fs.Duration("token-lifetime", 300*time.Second, "access token lifetime")
	tokenUses := fs.Int("token-max-uses", 0, "refuse a token after this many uses (simulates expiry mid-run)")
	fs.Var(&groups, "group-of-all", "define these group ids as containing every patient")
	changesFile := fs.String("changes", "", "NDJSON change set to apply after --changes-after exports")
	randomChanges := fs.String("random-changes", "", "UPDATES,DELETES,NEW: a random change set over the data to apply after --changes-after exports")
	fs.IntVar(&o.ChangesAfter, "changes-after", 1, "number of exports prepared before the change set is applied")
	f := &o.Faults
	fs.IntVar(&f.Kickoff429, "fault-kickoff-429", 0, "answer the first N kick-offs with 429")
	fs.IntVar(&f.Status429, "fault-status-429", 0, "answer the first N polls with 429")
	fs.StringVar(&f.Status429RetryAfter, "fault-retry-after", "", "Retry-After of fault 429s (seconds, epoch ms or HTTP date)")
	fs.IntVar(&f.Status5xx, "fault-status-5xx", 0, "answer N polls with 503")
	fs.IntVar(&f.StatusTransient, "fault-transient", 0, "answer N polls with a transient OperationOutcome")
	fs.IntVar(&f.Download5xx, "fault-download-5xx", 0, "answer the first N downloads with 503")
	fs.IntVar(&f.CutDownloads, "fault-cut", 0, "cut the connection halfway through the first N downloads")
	fs.BoolVar(&f.MismatchType, "fault-mismatch-type", false, "give the first output file a wrong type in the manifest")
	fs.BoolVar(&f.MismatchCount, "fault-mismatch-count", false, "give the first output file a wrong count in the manifest")
	fs.BoolVar(&f.InvalidManifest, "fault-invalid-manifest", false, "send a manifest without transactionTime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected argument " + fs.Arg(0)}
	}
	if (*data == "") == (*synthetic == 0) {
		return usageError{"give --data DIR or --synthetic N"}
	}
	f.Kickoff429RetryAfter = f.Status429RetryAfter
	o.Dir = *data
	if *synthetic > 0 {
		o.Resources = bulktest.Synthetic(*synthetic, 1)
	}
	o.Deleted = deleted
	for i := 0; i < *errorsN; i++ {
		o.Errors = append(o.Errors, bulk.Issue{Severity: "error", Code: "exception", Diagnostics: fmt.Sprintf("synthetic export failure %d", i+1)})
	}
	if len(groups) > 0 {
		o.Groups = map[string][]string{}
	}
	if *clientID != "" {
		a := &bulktest.AuthOptions{ClientID: *clientID, TokenLifetime: *tokenLife, TokenMaxUses: *tokenUses}
		if *jwksFile != "" {
			b, err := os.ReadFile(*jwksFile)
			if err != nil {
				return usageError{"--jwks: cannot read the file"}
			}
			var set bulk.JWKS
			if err := json.Unmarshal(b, &set); err != nil {
				return usageError{"--jwks: not a JWKS"}
			}
			a.JWKS = &set
		}
		if *secretEnv != "" {
			a.ClientSecret = e.getenv(*secretEnv)
			if a.ClientSecret == "" {
				return usageError{"--client-secret-env: environment variable " + *secretEnv + " is empty or unset"}
			}
		}
		if a.JWKS == nil && a.ClientSecret == "" {
			return usageError{"--client-id needs --jwks or --client-secret-env"}
		}
		o.Auth = a
	}
	if err := changeSetFlags(&o, *changesFile, *randomChanges); err != nil {
		return err
	}
	srv, err := bulktest.New(o)
	if err != nil {
		return err
	}
	if len(groups) > 0 {
		all := allPatients(o)
		for _, g := range groups {
			o.Groups[g] = all
		}
		if srv, err = bulktest.New(o); err != nil {
			return err
		}
	}
	hs, base, err := srv.Listen(*addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "bulkserver: FHIR base %s\n", base)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	st := srv.Stats()
	fmt.Fprintf(e.stderr, "bulkserver: %d kick-offs, %d polls, %d downloads (%d bytes), %d deletes\n",
		st.Kickoffs, st.StatusPolls, st.Downloads, st.DownloadBytes, st.Deletes)
	return nil
}

// allPatients lists the Patient ids of the options' data.
func allPatients(o bulktest.Options) []string {
	ids, _ := bulktest.PatientIDs(o)
	return ids
}

// changeSetFlags sets o.Changes from --changes or --random-changes.
func changeSetFlags(o *bulktest.Options, file, random string) error {
	switch {
	case file != "" && random != "":
		return usageError{"give --changes or --random-changes, not both"}
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return usageError{"--changes: cannot read the file"}
		}
		defer f.Close()
		cs, err := bulktest.ReadChangeSet(f)
		if err != nil {
			return fmt.Errorf("--changes %s: %w", file, err)
		}
		o.Changes = &cs
	case random != "":
		var u, d, n int
		if _, err := fmt.Sscanf(random, "%d,%d,%d", &u, &d, &n); err != nil || u < 0 || d < 0 || n < 0 {
			return usageError{"--random-changes wants UPDATES,DELETES,NEW (three counts)"}
		}
		all, err := bulktest.AllResources(*o)
		if err != nil {
			return err
		}
		cs, err := bulktest.RandomChanges(all, 1, u, d, n)
		if err != nil {
			return fmt.Errorf("--random-changes: %w", err)
		}
		o.Changes = &cs
	}
	if o.Changes != nil && o.ChangesAfter < 1 {
		return usageError{"--changes-after must be at least 1"}
	}
	return nil
}
