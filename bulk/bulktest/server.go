// Package bulktest is a local FHIR Bulk Data server for tests and demos. It
// serves a folder of NDJSON(.gz) files or in-memory resources through the
// whole $export protocol — system, Patient and Group levels, _type, _since,
// delayed completion with Retry-After and X-Progress, gzip, DELETE,
// optional SMART Backend Services or client-secret authorisation — and can
// inject the faults real servers show: 429 with huge or HTTP-date
// Retry-After, 5xx, transient OperationOutcomes, tokens refused mid-run,
// connections cut mid-file, files whose lines disagree with the manifest,
// error and deleted entries, and paged manifests.
//
// It counts kick-offs, polls and downloads so tests can prove that a
// resumed client did not start a second export.
package bulktest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk"
)

// Options configures a Server.
type Options struct {
	// Dir is a folder of {Type}.*.ndjson or .ndjson.gz files to serve.
	Dir string
	// Resources are in-memory resources, one JSON object each, served in
	// addition to Dir.
	Resources [][]byte
	// PartSize is the number of resources per output file (default 1000).
	PartSize int
	// Passthrough serves Dir's files as they are — one output entry per file,
	// gzip bytes sent untouched — when the request needs no per-resource
	// filtering (system level, no _since, _until or patient). It is the fast
	// path for benchmarks.
	Passthrough bool
	// PollsBeforeComplete is the number of 202 answers before the manifest
	// (default 1).
	PollsBeforeComplete int
	// RetryAfter is the Retry-After value of a 202 ("" sends none).
	RetryAfter string
	// DownloadDelay delays every file download before its body.
	DownloadDelay time.Duration
	// Throttle limits each download to this many bytes per second (0: none).
	Throttle int
	// ManifestPageSize pages the manifest: at most this many output entries
	// per page, linked with link next (0: one page).
	ManifestPageSize int
	// PartialManifests, with ManifestPageSize and a request with
	// allowPartialManifests=true, answers every page but the last with 202
	// and the manifest so far (STU3 partial manifests); the last page comes
	// with 200.
	PartialManifests bool
	// Deleted are "Type/id" references reported in a deleted file when the
	// request has _since.
	Deleted []string
	// Errors are issues reported in an error file (OperationOutcome lines).
	Errors []bulk.Issue
	// Groups maps a group id to patient ids; Group resources in the data
	// define groups too (member.entity references).
	Groups map[string][]string
	// Auth, if set, requires bearer tokens from the server's token endpoint
	// and makes manifests say requiresAccessToken true.
	Auth *AuthOptions
	// Faults injects failures.
	Faults Faults
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Changes, if set, is applied once ChangesAfter exports were built
	// (see Apply).
	Changes      *ChangeSet
	ChangesAfter int
}

// Faults lists failures to inject. Counters are consumed in order; each
// fires on the first N matching requests.
type Faults struct {
	// Kickoff429 answers the first N kick-offs with 429 and
	// Kickoff429RetryAfter.
	Kickoff429           int
	Kickoff429RetryAfter string
	// KickoffStatus, if non-zero, answers every kick-off with that status and
	// an OperationOutcome whose diagnostics are KickoffDiagnostics.
	KickoffStatus      int
	KickoffDiagnostics string
	// Status429 answers the first N polls with 429 and Status429RetryAfter
	// (for example "1795867492140", an absolute epoch in ms, or an HTTP date).
	Status429           int
	Status429RetryAfter string
	// Status5xx answers the next N polls with 503 (no OperationOutcome).
	Status5xx int
	// StatusTransient answers the next N polls with 500 and an
	// OperationOutcome whose issue code is transient.
	StatusTransient int
	// StatusFatal answers polls with 500 and a non-transient outcome.
	StatusFatal bool
	// InvalidManifest sends a manifest without transactionTime.
	InvalidManifest bool
	// Download5xx answers the first N downloads with 503.
	Download5xx int
	// CutDownloads cuts the connection halfway through the first N
	// downloads.
	CutDownloads int
	// StallDownloads sends half of the first N downloads and then nothing
	// until the client gives up.
	StallDownloads int
	// ExpiredDownloads answers the first N downloads of links from the
	// first complete manifest with 404, as for an expired link; a manifest
	// fetched again gives new links (with a generation parameter) that work.
	ExpiredDownloads int
	// MismatchType makes the first output entry of the manifest name a
	// type other than that of its lines.
	MismatchType bool
	// MismatchCount makes the first output entry's count one too many.
	MismatchCount bool
	// CountOne makes the first output entry's count 1 whatever its lines.
	CountOne bool
	// ErrorFileCount, if non-zero, is the count of the error file in the
	// manifest instead of its number of lines: the number of resources that
	// failed, as a widely used reference server reports it.
	ErrorFileCount int64
}

// AuthOptions configures authorisation.
type AuthOptions struct {
	// ClientID is the registered client.
	ClientID string
	// JWKS holds the client's public keys for private_key_jwt assertions.
	JWKS *bulk.JWKS
	// ClientSecret allows client_secret_basic and client_secret_post.
	ClientSecret string
	// TokenLifetime is the expires_in of tokens (default 300 s).
	TokenLifetime time.Duration
	// TokenMaxUses refuses a token with 401 after that many uses, as if it
	// expired mid-run (0: no limit).
	TokenMaxUses int
}

// Stats counts requests.
type Stats struct {
	Kickoffs, StatusPolls, Downloads, Deletes, TokenRequests, Unauthorized, BadHeaders int64
	// DownloadBytes is the number of body bytes sent for files.
	DownloadBytes int64
}

// Server is the Bulk Data server.
type Server struct {
	opts Options
	mux  *http.ServeMux

	kickoffs, polls, downloads, deletes, tokenReqs, unauth, badHeaders, dlBytes atomic.Int64

	mu      sync.Mutex
	faults  Faults
	jobs    map[string]*job
	nextJob int
	tokens  map[string]*token
	jtis    map[string]bool
	counts  map[string]int64 // passthrough file → line count
	ts      *httptest.Server
	changes *changeState
	created time.Time
	builds  int
}

type token struct {
	exp  time.Time
	uses int
}

// New returns a server. It fails if Dir cannot be read.
func New(opts Options) (*Server, error) {
	if opts.PartSize <= 0 {
		opts.PartSize = 1000
	}
	if opts.PollsBeforeComplete <= 0 {
		opts.PollsBeforeComplete = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Dir != "" {
		if _, err := sourceFiles(opts.Dir); err != nil {
			return nil, err
		}
	}
	s := &Server{opts: opts, faults: opts.Faults, jobs: map[string]*job{}, tokens: map[string]*token{},
		jtis: map[string]bool{}, counts: map[string]int64{}, created: opts.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/metadata", s.metadata)
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", s.smartConfig)
	mux.HandleFunc("POST /auth/token", s.token)
	mux.HandleFunc("GET /fhir/$export", s.kickoff)
	mux.HandleFunc("POST /fhir/$export", s.kickoff)
	mux.HandleFunc("GET /fhir/Patient/$export", s.kickoff)
	mux.HandleFunc("POST /fhir/Patient/$export", s.kickoff)
	mux.HandleFunc("GET /fhir/Group/{id}/$export", s.kickoff)
	mux.HandleFunc("POST /fhir/Group/{id}/$export", s.kickoff)
	mux.HandleFunc("GET /fhir/bulkstatus/{job}", s.status)
	mux.HandleFunc("DELETE /fhir/bulkstatus/{job}", s.deleteJob)
	mux.HandleFunc("GET /fhir/bulkfiles/{job}/{file}", s.file)
	mux.HandleFunc("GET /_bulktest/stats", s.statsHandler)
	mux.HandleFunc("POST /_bulktest/changes", s.changesHandler)
	mux.HandleFunc("GET /fhir/Group", s.groups)
	s.mux = mux
	return s, nil
}

// Handler returns the server's HTTP handler. The FHIR base is /fhir on
// whatever host the request names.
func (s *Server) Handler() http.Handler { return s.mux }

// Start serves on a loopback port and returns the FHIR base URL.
func (s *Server) Start() string {
	s.ts = httptest.NewServer(s.mux)
	return s.URL()
}

// URL returns the FHIR base URL of a started server.
func (s *Server) URL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL + "/fhir"
}

// TokenURL returns the token endpoint of a started server.
func (s *Server) TokenURL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL + "/auth/token"
}

// Close stops a started server.
func (s *Server) Close() {
	if s.ts != nil {
		s.ts.Close()
	}
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	return Stats{Kickoffs: s.kickoffs.Load(), StatusPolls: s.polls.Load(), Downloads: s.downloads.Load(),
		Deletes: s.deletes.Load(), TokenRequests: s.tokenReqs.Load(), Unauthorized: s.unauth.Load(),
		BadHeaders: s.badHeaders.Load(), DownloadBytes: s.dlBytes.Load()}
}

// groups answers a Group search with the groups the server knows (ids and
// member counts only), so that clients can discover group ids.
func (s *Server) groups(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	type entry struct {
		Resource map[string]any `json:"resource"`
	}
	var entries []entry
	ids := make([]string, 0, len(s.opts.Groups))
	for id := range s.opts.Groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		entries = append(entries, entry{map[string]any{"resourceType": "Group", "id": id, "type": "person", "actual": true,
			"quantity": len(s.opts.Groups[id])}})
	}
	_ = s.eachResource(func(line []byte) error {
		if rt, _ := bulk.ResourceType(line); rt != "Group" {
			return nil
		}
		var info resourceInfo
		if json.Unmarshal(line, &info) == nil && info.ID != "" {
			entries = append(entries, entry{map[string]any{"resourceType": "Group", "id": info.ID, "type": "person", "actual": true,
				"quantity": len(info.Member)}})
		}
		return nil
	})
	w.Header().Set("Content-Type", "application/fhir+json")
	_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})
}

// statsHandler serves Stats as JSON, for tests that run the server in
// another process.
func (s *Server) statsHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Stats())
}

// ExpireJobs forgets every job, as if they expired: their status URLs and
// files answer 404.
func (s *Server) ExpireJobs() {
	s.mu.Lock()
	for _, j := range s.jobs {
		j.deleted = true
	}
	s.mu.Unlock()
}

// IssuedTokens returns every access token the server issued, so that tests
// can check that none leaked into logs or files.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// SetFaults replaces the remaining faults.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

func base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// outcome writes an OperationOutcome.
func outcome(w http.ResponseWriter, status int, severity, code, diag string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome",
		"issue": []map[string]string{{"severity": severity, "code": code, "diagnostics": diag}}})
	_, _ = w.Write(b)
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/fhir+json")
	cs := map[string]any{
		"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
		"date": "2026-01-01", "format": []string{"json"},
		"software":     map[string]string{"name": "fhirdeid bulktest", "version": "1"},
		"instantiates": []string{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"},
		"rest": []map[string]any{{"mode": "server",
			"operation": []map[string]string{{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}},
			"resource": []map[string]any{
				{"type": "Patient", "operation": []map[string]string{{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}}},
				{"type": "Group", "operation": []map[string]string{{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}}},
			}}},
	}
	_ = json.NewEncoder(w).Encode(cs)
}

func (s *Server) smartConfig(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token_endpoint":                                   base(r) + "/auth/token",
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt", "client_secret_basic", "client_secret_post"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported":                                 []string{"system/*.read", "system/*.rs"},
		"capabilities":                                     []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	})
}

// authorized checks the bearer token when auth is on.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Auth == nil {
		return true
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	s.mu.Lock()
	t := s.tokens[tok]
	valid := ok && t != nil && s.opts.Now().Before(t.exp) &&
		(s.opts.Auth.TokenMaxUses == 0 || t.uses < s.opts.Auth.TokenMaxUses)
	if valid {
		t.uses++
	}
	s.mu.Unlock()
	if !valid {
		s.unauth.Add(1)
		outcome(w, http.StatusUnauthorized, "error", "login", "missing, invalid or expired access token")
		return false
	}
	return true
}

// fileInfo is one source file.
type sourceFile struct {
	path, typ string
	gz        bool
}

func sourceFiles(dir string) ([]sourceFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bulktest: read data directory: %w", err)
	}
	var out []sourceFile
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".ndjson") || strings.HasSuffix(name, ".ndjson.gz")) {
			continue
		}
		typ, _, _ := strings.Cut(name, ".")
		out = append(out, sourceFile{path: filepath.Join(dir, name), typ: typ, gz: strings.HasSuffix(name, ".gz")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// resourceInfo is what filtering needs from a resource.
type resourceInfo struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Subject     *ref `json:"subject"`
	Patient     *ref `json:"patient"`
	Beneficiary *ref `json:"beneficiary"`
	Member      []struct {
		Entity ref `json:"entity"`
	} `json:"member"`
}

type ref struct {
	Reference string `json:"reference"`
}

func patientID(r *ref) string {
	if r == nil {
		return ""
	}
	if id, ok := strings.CutPrefix(r.Reference, "Patient/"); ok {
		return id
	}
	return ""
}

// eachResource calls fn for every resource of Dir and Resources.
func (s *Server) eachResource(fn func(line []byte) error) (err error) {
	fn, flush := s.withChanges(fn)
	defer func() {
		if err == nil {
			err = flush()
		}
	}()
	if s.opts.Dir != "" {
		files, err := sourceFiles(s.opts.Dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := eachLine(f, fn); err != nil {
				return err
			}
		}
	}
	for _, r := range s.opts.Resources {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func openSource(f sourceFile) (io.ReadCloser, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	if !f.gz {
		return fh, nil
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(fh, 256<<10))
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("bulktest: %s: %w", filepath.Base(f.path), err)
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, fh}, nil
}

func eachLine(f sourceFile, fn func([]byte) error) error {
	rc, err := openSource(f)
	if err != nil {
		return err
	}
	defer rc.Close()
	lr := bulk.NewLineReader(rc, 256<<20)
	for lr.Next() {
		if err := fn(lr.Line()); err != nil {
			return err
		}
	}
	return lr.Err()
}

// groupMembers returns the patient ids of a group, or nil, false.
func (s *Server) groupMembers(id string) (map[string]bool, bool) {
	if ids, ok := s.opts.Groups[id]; ok {
		set := map[string]bool{}
		for _, p := range ids {
			set[p] = true
		}
		return set, true
	}
	var set map[string]bool
	_ = s.eachResource(func(line []byte) error {
		if rt, _ := bulk.ResourceType(line); rt != "Group" {
			return nil
		}
		var info resourceInfo
		if json.Unmarshal(line, &info) != nil || info.ID != id {
			return nil
		}
		set = map[string]bool{}
		for _, m := range info.Member {
			if p := patientID(&m.Entity); p != "" {
				set[p] = true
			}
		}
		return nil
	})
	return set, set != nil
}

// query is a parsed kick-off.
type query struct {
	level        string
	group        string
	types        map[string]bool
	since, until time.Time
	patients     map[string]bool
	partial      bool
	organize     string
}

// part is one output file of a job.
type part struct {
	kind, typ string
	count     int64
	gz        []byte // materialised file
	source    string // passthrough source path
	sourceGz  bool
}

type job struct {
	id      string
	q       query
	created time.Time
	polls   int
	// manifests counts the complete manifests served (first pages only):
	// links of a later manifest carry its generation and never expire.
	manifests int
	ready     chan struct{}
	err       error
	parts     []part
	deleted   bool
	txTime    string
	request   string
}

// kickoff handles all three levels, GET and POST.
func (s *Server) kickoff(w http.ResponseWriter, r *http.Request) {
	s.kickoffs.Add(1)
	if r.Header.Get("Accept") != "application/fhir+json" || !strings.Contains(r.Header.Get("Prefer"), "respond-async") {
		s.badHeaders.Add(1)
		outcome(w, http.StatusBadRequest, "error", "invalid", "Accept must be application/fhir+json and Prefer must contain respond-async")
		return
	}
	if !s.authorized(w, r) {
		return
	}
	s.mu.Lock()
	f := &s.faults
	if f.KickoffStatus != 0 {
		st, diag := f.KickoffStatus, f.KickoffDiagnostics
		s.mu.Unlock()
		outcome(w, st, "error", "processing", diag)
		return
	}
	if f.Kickoff429 > 0 {
		f.Kickoff429--
		ra := f.Kickoff429RetryAfter
		s.mu.Unlock()
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		outcome(w, http.StatusTooManyRequests, "error", "throttled", "an export is already running for this client")
		return
	}
	s.mu.Unlock()
	lenient := strings.Contains(r.Header.Get("Prefer"), "handling=lenient")
	q, status, diag := s.parseKickoff(r, lenient)
	if status != 0 {
		outcome(w, status, "error", "invalid", diag)
		return
	}
	s.mu.Lock()
	s.nextJob++
	j := &job{id: strconv.Itoa(s.nextJob), q: q, created: s.opts.Now(), ready: make(chan struct{}),
		request: base(r) + r.URL.RequestURI()}
	j.txTime = j.created.UTC().Format(time.RFC3339)
	s.jobs[j.id] = j
	s.mu.Unlock()
	go s.build(j)
	w.Header().Set("Content-Location", base(r)+"/fhir/bulkstatus/"+j.id)
	outcome(w, http.StatusAccepted, "information", "informational", "export started")
}

var knownParams = map[string]bool{"_type": true, "_since": true, "_until": true, "_till": true, "_outputFormat": true,
	"allowPartialManifests": true, "_container": true, "patient": true, "organizeOutputBy": true}

func (s *Server) parseKickoff(r *http.Request, lenient bool) (query, int, string) {
	q := query{level: "system"}
	if strings.Contains(r.URL.Path, "/Patient/") {
		q.level = "patient"
	}
	if id := r.PathValue("id"); id != "" {
		q.level = "group"
		q.group = id
	}
	params := map[string][]string{}
	if r.Method == http.MethodPost {
		var body struct {
			ResourceType string `json:"resourceType"`
			Parameter    []struct {
				Name           string `json:"name"`
				ValueString    string `json:"valueString"`
				ValueInstant   string `json:"valueInstant"`
				ValueBoolean   *bool  `json:"valueBoolean"`
				ValueReference *ref   `json:"valueReference"`
			} `json:"parameter"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.ResourceType != "Parameters" {
			return q, http.StatusBadRequest, "the POST body must be a Parameters resource"
		}
		for _, p := range body.Parameter {
			v := p.ValueString + p.ValueInstant
			if p.ValueBoolean != nil {
				v = strconv.FormatBool(*p.ValueBoolean)
			}
			if p.ValueReference != nil {
				v = p.ValueReference.Reference
			}
			params[p.Name] = append(params[p.Name], v)
		}
	} else {
		for k, v := range r.URL.Query() {
			params[k] = v
		}
		if _, ok := params["patient"]; ok {
			return q, http.StatusBadRequest, "the patient parameter needs a POST kick-off"
		}
	}
	for k := range params {
		if !knownParams[k] && !lenient {
			return q, http.StatusBadRequest, "unsupported parameter " + k
		}
	}
	if v := params["_outputFormat"]; len(v) > 0 {
		switch v[0] {
		case "application/fhir+ndjson", "application/ndjson", "ndjson":
		default:
			return q, http.StatusBadRequest, "unsupported _outputFormat"
		}
	}
	if v := params["_type"]; len(v) > 0 {
		q.types = map[string]bool{}
		for _, item := range v {
			for _, t := range strings.Split(item, ",") {
				if t = strings.TrimSpace(t); t != "" {
					q.types[t] = true
				}
			}
		}
	}
	var err error
	if v := params["_since"]; len(v) > 0 {
		if q.since, err = time.Parse(time.RFC3339, v[0]); err != nil {
			return q, http.StatusBadRequest, "_since is not an instant"
		}
	}
	until := append(params["_until"], params["_till"]...)
	if len(until) > 0 {
		if q.until, err = time.Parse(time.RFC3339, until[0]); err != nil {
			return q, http.StatusBadRequest, "_until is not an instant"
		}
	}
	if v := params["patient"]; len(v) > 0 {
		if q.level == "system" {
			return q, http.StatusBadRequest, "the patient parameter is not allowed at the system level"
		}
		q.patients = map[string]bool{}
		for _, p := range v {
			q.patients[strings.TrimPrefix(p, "Patient/")] = true
		}
	}
	if v := params["allowPartialManifests"]; len(v) > 0 && v[0] == "true" {
		q.partial = true
	}
	if v := params["organizeOutputBy"]; len(v) > 0 {
		if v[0] != "Patient" {
			return q, http.StatusBadRequest, "organizeOutputBy supports only Patient"
		}
		q.organize = "Patient"
	}
	if q.level == "group" {
		members, ok := s.groupMembers(q.group)
		if !ok {
			return q, http.StatusNotFound, "unknown group"
		}
		if q.patients == nil {
			q.patients = members
		} else {
			for p := range q.patients {
				if !members[p] {
					delete(q.patients, p)
				}
			}
		}
	}
	return q, 0, ""
}

// build prepares a job's files.
func (s *Server) build(j *job) {
	defer close(j.ready)
	defer s.afterBuild()
	q := j.q
	if s.opts.Passthrough && !s.changed() && q.level == "system" && q.since.IsZero() && q.until.IsZero() && q.patients == nil && len(s.opts.Resources) == 0 {
		files, err := sourceFiles(s.opts.Dir)
		if err != nil {
			j.err = err
			return
		}
		for _, f := range files {
			if q.types != nil && !q.types[f.typ] {
				continue
			}
			n, err := s.countLines(f)
			if err != nil {
				j.err = err
				return
			}
			j.parts = append(j.parts, part{kind: "output", typ: f.typ, count: n, source: f.path, sourceGz: f.gz})
		}
		s.addExtras(j)
		return
	}
	type acc struct {
		buf   bytes.Buffer
		zw    *gzip.Writer
		count int64
	}
	open := map[string]*acc{}
	var order []string
	byPatient := map[string][][]byte{}
	var patientOrder []string
	flush := func(t string) {
		a := open[t]
		if a == nil || a.count == 0 {
			return
		}
		_ = a.zw.Close()
		j.parts = append(j.parts, part{kind: "output", typ: t, count: a.count, gz: slices.Clone(a.buf.Bytes())})
		delete(open, t)
	}
	err := s.eachResource(func(line []byte) error {
		var info resourceInfo
		if err := json.Unmarshal(line, &info); err != nil || info.ResourceType == "" {
			return errors.New("bulktest: a data line is not a FHIR resource")
		}
		if q.types != nil && !q.types[info.ResourceType] {
			return nil
		}
		if !q.since.IsZero() || !q.until.IsZero() {
			lu, err := time.Parse(time.RFC3339Nano, info.Meta.LastUpdated)
			if err != nil {
				lu, err = s.defaultLastUpdated()
			}
			if err == nil {
				if !q.since.IsZero() && !lu.After(q.since) {
					return nil
				}
				if !q.until.IsZero() && lu.After(q.until) {
					return nil
				}
			}
		}
		if q.level != "system" {
			var pid string
			if info.ResourceType == "Patient" {
				pid = info.ID
			} else {
				pid = patientID(info.Subject)
				if pid == "" {
					pid = patientID(info.Patient)
				}
				if pid == "" {
					pid = patientID(info.Beneficiary)
				}
			}
			if pid == "" || (q.patients != nil && !q.patients[pid]) {
				return nil
			}
		}
		if q.organize == "Patient" {
			pid := info.ID
			if info.ResourceType != "Patient" {
				pid = patientID(info.Subject)
				if pid == "" {
					pid = patientID(info.Patient)
				}
				if pid == "" {
					pid = patientID(info.Beneficiary)
				}
			}
			if pid == "" {
				return nil
			}
			if _, ok := byPatient[pid]; !ok {
				patientOrder = append(patientOrder, pid)
			}
			if info.ResourceType == "Patient" {
				byPatient[pid] = append([][]byte{slices.Clone(line)}, byPatient[pid]...)
			} else {
				byPatient[pid] = append(byPatient[pid], slices.Clone(line))
			}
			return nil
		}
		a := open[info.ResourceType]
		if a == nil {
			a = &acc{}
			a.zw, _ = gzip.NewWriterLevel(&a.buf, gzip.BestSpeed)
			open[info.ResourceType] = a
			if !slices.Contains(order, info.ResourceType) {
				order = append(order, info.ResourceType)
			}
		}
		_, _ = a.zw.Write(line)
		_, _ = a.zw.Write([]byte{'\n'})
		a.count++
		if a.count >= int64(s.opts.PartSize) {
			flush(info.ResourceType)
		}
		return nil
	})
	if err != nil {
		j.err = err
		return
	}
	for _, t := range order {
		flush(t)
	}
	if q.organize == "Patient" {
		// Blocks: a Parameters header naming the patient, then the patient
		// and its resources; files end at block boundaries.
		var a *acc
		end := func() {
			if a != nil && a.count > 0 {
				_ = a.zw.Close()
				j.parts = append(j.parts, part{kind: "output", count: a.count, gz: slices.Clone(a.buf.Bytes())})
			}
			a = nil
		}
		for _, pid := range patientOrder {
			if a == nil {
				a = &acc{}
				a.zw, _ = gzip.NewWriterLevel(&a.buf, gzip.BestSpeed)
			}
			hdr, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []map[string]any{
				{"name": "header", "valueReference": map[string]string{"reference": "Patient/" + pid}}}})
			for _, l := range append([][]byte{hdr}, byPatient[pid]...) {
				_, _ = a.zw.Write(l)
				_, _ = a.zw.Write([]byte{'\n'})
				a.count++
			}
			if a.count >= int64(s.opts.PartSize) {
				end()
			}
		}
		end()
	}
	// Stable order: by type, then by sequence.
	sort.SliceStable(j.parts, func(a, b int) bool { return j.parts[a].typ < j.parts[b].typ })
	s.addExtras(j)
}

// addExtras appends the deleted and error files and applies manifest faults.
func (s *Server) addExtras(j *job) {
	if dels := append(slices.Clone(s.opts.Deleted), s.deletedSince(j.q.since)...); len(dels) > 0 && !j.q.since.IsZero() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		for _, ref := range dels {
			b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction",
				"entry": []map[string]any{{"request": map[string]string{"method": "DELETE", "url": ref}}}})
			_, _ = zw.Write(append(b, '\n'))
		}
		_ = zw.Close()
		j.parts = append(j.parts, part{kind: "deleted", typ: "Bundle", count: int64(len(dels)), gz: buf.Bytes()})
	}
	if len(s.opts.Errors) > 0 {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		for _, is := range s.opts.Errors {
			b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome", "issue": []bulk.Issue{is}})
			_, _ = zw.Write(append(b, '\n'))
		}
		_ = zw.Close()
		j.parts = append(j.parts, part{kind: "error", typ: "OperationOutcome", count: int64(len(s.opts.Errors)), gz: buf.Bytes()})
	}
}

func (s *Server) countLines(f sourceFile) (int64, error) {
	s.mu.Lock()
	n, ok := s.counts[f.path]
	s.mu.Unlock()
	if ok {
		return n, nil
	}
	rc, err := openSource(f)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	buf := make([]byte, 256<<10)
	for {
		k, err := rc.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("bulktest: count %s: %w", filepath.Base(f.path), err)
		}
	}
	s.mu.Lock()
	s.counts[f.path] = n
	s.mu.Unlock()
	return n, nil
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) *job {
	s.mu.Lock()
	j := s.jobs[r.PathValue("job")]
	s.mu.Unlock()
	if j == nil || j.deleted {
		outcome(w, http.StatusNotFound, "error", "not-found", "unknown or deleted export job")
		return nil
	}
	return j
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.polls.Add(1)
	if !s.authorized(w, r) {
		return
	}
	j := s.lookup(w, r)
	if j == nil {
		return
	}
	s.mu.Lock()
	f := &s.faults
	switch {
	case f.Status429 > 0:
		f.Status429--
		ra := f.Status429RetryAfter
		s.mu.Unlock()
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		outcome(w, http.StatusTooManyRequests, "error", "throttled", "polling too often")
		return
	case f.Status5xx > 0:
		f.Status5xx--
		s.mu.Unlock()
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	case f.StatusTransient > 0:
		f.StatusTransient--
		s.mu.Unlock()
		outcome(w, http.StatusInternalServerError, "error", "transient", "temporary failure, try again")
		return
	case f.StatusFatal:
		s.mu.Unlock()
		outcome(w, http.StatusInternalServerError, "fatal", "exception", "export job failed: storage unavailable")
		return
	}
	j.polls++
	polls := j.polls
	invalid := f.InvalidManifest
	mismatchType, mismatchCount, errorCount, countOne := f.MismatchType, f.MismatchCount, f.ErrorFileCount, f.CountOne
	s.mu.Unlock()
	if polls > s.opts.PollsBeforeComplete {
		select {
		case <-j.ready:
		case <-r.Context().Done():
			return
		}
	}
	if polls <= s.opts.PollsBeforeComplete {
		pct := 100 * polls / (s.opts.PollsBeforeComplete + 1)
		w.Header().Set("X-Progress", fmt.Sprintf("%d%% complete", pct))
		if s.opts.RetryAfter != "" {
			w.Header().Set("Retry-After", s.opts.RetryAfter)
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if j.err != nil {
		outcome(w, http.StatusInternalServerError, "error", "exception", "export job failed")
		return
	}
	page := 1
	if p := r.URL.Query().Get("page"); p != "" {
		page, _ = strconv.Atoi(p)
		if page < 1 {
			page = 1
		}
	}
	s.mu.Lock()
	if page == 1 {
		j.manifests++
	}
	gen := ""
	if j.manifests > 1 {
		gen = fmt.Sprintf("?g=%d", j.manifests-1)
	}
	s.mu.Unlock()
	type item struct {
		Type  string `json:"type,omitempty"`
		URL   string `json:"url"`
		Count int64  `json:"count"`
	}
	m := map[string]any{"request": j.request, "requiresAccessToken": s.opts.Auth != nil}
	if j.q.organize != "" {
		m["outputOrganizedBy"] = j.q.organize
	}
	if !invalid {
		m["transactionTime"] = j.txTime
	}
	out, del, errs := []item{}, []item{}, []item{}
	firstOutput := true
	for i, p := range j.parts {
		name := p.typ
		if name == "" {
			name = "output"
		}
		it := item{Type: p.typ, URL: fmt.Sprintf("%s/fhir/bulkfiles/%s/%d.%s.ndjson%s", base(r), j.id, i, name, gen), Count: p.count}
		switch p.kind {
		case "output":
			if firstOutput {
				firstOutput = false
				if mismatchType {
					it.Type = "Observation"
					if p.typ == "Observation" {
						it.Type = "Patient"
					}
				}
				if mismatchCount {
					it.Count++
				}
				if countOne {
					it.Count = 1
				}
			}
			out = append(out, it)
		case "deleted":
			del = append(del, it)
		case "error":
			if errorCount != 0 {
				it.Count = errorCount
			}
			errs = append(errs, it)
		}
	}
	if ps := s.opts.ManifestPageSize; ps > 0 {
		start := (page - 1) * ps
		end := min(start+ps, len(out))
		if start > len(out) {
			start = len(out)
		}
		if end < len(out) {
			m["link"] = []map[string]string{{"relation": "next", "url": fmt.Sprintf("%s/fhir/bulkstatus/%s?page=%d", base(r), j.id, page+1)}}
		}
		out = out[start:end]
		if page > 1 {
			del, errs = []item{}, []item{}
		}
	}
	m["output"], m["deleted"], m["error"] = out, del, errs
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Expires", s.opts.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	if _, more := m["link"]; more && s.opts.PartialManifests && j.q.partial {
		w.Header().Set("X-Progress", fmt.Sprintf("manifest page %d", page))
		w.WriteHeader(http.StatusAccepted)
	}
	_ = json.NewEncoder(w).Encode(m)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	s.deletes.Add(1)
	if !s.authorized(w, r) {
		return
	}
	j := s.lookup(w, r)
	if j == nil {
		return
	}
	s.mu.Lock()
	j.deleted = true
	s.mu.Unlock()
	outcome(w, http.StatusAccepted, "information", "informational", "export deleted")
}

func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	s.downloads.Add(1)
	if s.opts.Auth != nil && !s.authorized(w, r) {
		return
	}
	j := s.lookup(w, r)
	if j == nil {
		return
	}
	name := r.PathValue("file")
	idx, _, _ := strings.Cut(name, ".")
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(j.parts) {
		outcome(w, http.StatusNotFound, "error", "not-found", "unknown file")
		return
	}
	p := j.parts[i]
	s.mu.Lock()
	f := &s.faults
	fail5xx := f.Download5xx > 0
	if fail5xx {
		f.Download5xx--
	}
	cut := !fail5xx && f.CutDownloads > 0
	if cut {
		f.CutDownloads--
	}
	expired := !fail5xx && !cut && f.ExpiredDownloads > 0 && !r.URL.Query().Has("g")
	if expired {
		f.ExpiredDownloads--
	}
	stall := !fail5xx && !cut && !expired && f.StallDownloads > 0
	if stall {
		f.StallDownloads--
	}
	s.mu.Unlock()
	if fail5xx {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	if expired {
		outcome(w, http.StatusNotFound, "error", "not-found", "the file link expired")
		return
	}
	if s.opts.DownloadDelay > 0 {
		select {
		case <-time.After(s.opts.DownloadDelay):
		case <-r.Context().Done():
			return
		}
	}
	var data io.Reader
	var size int64
	gz := false
	switch {
	case p.source != "":
		fh, err := os.Open(p.source)
		if err != nil {
			outcome(w, http.StatusInternalServerError, "error", "exception", "cannot read file")
			return
		}
		defer fh.Close()
		st, _ := fh.Stat()
		data, size, gz = fh, st.Size(), p.sourceGz
	default:
		data, size, gz = bytes.NewReader(p.gz), int64(len(p.gz)), true
	}
	acceptGzip := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	switch {
	case gz && acceptGzip:
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	case gz:
		zr, err := gzip.NewReader(data)
		if err != nil {
			outcome(w, http.StatusInternalServerError, "error", "exception", "cannot read file")
			return
		}
		data, size = zr, -1
	default:
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if cut || stall {
		half := size / 2
		if half <= 0 {
			half = 64
		}
		n, _ := io.CopyN(w, data, half)
		s.dlBytes.Add(n)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		if stall {
			<-r.Context().Done()
			return
		}
		panic(http.ErrAbortHandler)
	}
	var dst io.Writer = w
	if s.opts.Throttle > 0 {
		dst = &throttled{w: w, rate: s.opts.Throttle}
	}
	n, _ := io.Copy(dst, data)
	s.dlBytes.Add(n)
}

// throttled writes at most rate bytes per second.
type throttled struct {
	w    io.Writer
	rate int
}

func (t *throttled) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := min(len(p), max(t.rate/10, 1))
		n, err := t.w.Write(p[:chunk])
		written += n
		if err != nil {
			return written, err
		}
		if fl, ok := t.w.(http.Flusher); ok {
			fl.Flush()
		}
		p = p[chunk:]
		time.Sleep(time.Duration(chunk) * time.Second / time.Duration(t.rate))
	}
	return written, nil
}

// Listen serves on addr (such as 127.0.0.1:8080) until the returned server
// is shut down; it returns the bound listener's FHIR base URL.
func (s *Server) Listen(addr string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("bulktest: listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return hs, "http://" + ln.Addr().String() + "/fhir", nil
}

// PatientIDs lists the ids of the Patient resources that a server with
// opts would serve.
func PatientIDs(opts Options) ([]string, error) {
	s := &Server{opts: opts}
	var out []string
	err := s.eachResource(func(line []byte) error {
		if rt, _ := bulk.ResourceType(line); rt != "Patient" {
			return nil
		}
		var info resourceInfo
		if err := json.Unmarshal(line, &info); err != nil {
			return errors.New("bulktest: a Patient line is not JSON")
		}
		out = append(out, info.ID)
		return nil
	})
	return out, err
}
