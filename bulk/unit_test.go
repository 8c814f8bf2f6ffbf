package bulk

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"120", 120 * time.Second, true},
		{" 5 ", 5 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"-3", 0, true},
		{"1795867492140", time.Duration(1<<62 - 1), true},
		{"Sun, 01 Mar 2026 12:02:00 GMT", 2 * time.Minute, true},
		{"Sunday, 01-Mar-26 12:00:30 GMT", 30 * time.Second, true},
		{"Sun Mar  1 12:00:10 2026", 10 * time.Second, true},
		{"Fri, 31 Dec 1999 23:59:59 GMT", 0, true},
		{"soon", 0, false},
	}
	for _, tc := range tests {
		got, ok := RetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestResourceType(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{`{"resourceType":"Patient","id":"1"}`, "Patient", ""},
		{`  { "id" : "1", "meta": {"resourceType":"X"}, "resourceType" : "Observation" }`, "Observation", ""},
		{`{"a":[1,{"resourceType":"No"},"x\"y"],"b":"}","resourceType":"Encounter"}`, "Encounter", ""},
		{`{"contained":[{"resourceType":"Medication"}],"resourceType":"MedicationRequest"}`, "MedicationRequest", ""},
		{`{"resourceType":"Pat\u0069ent"}`, "Patient", ""},
		{`{"a":"x\\","b":"q\"}\\\"","resourceType":"Claim"}`, "Claim", ""},
		{`{"id":"1"}`, "", "no top-level resourceType"},
		{`[{"resourceType":"Patient"}]`, "", "not a JSON object"},
		{`{"resourceType":7}`, "", "resourceType is not a string"},
		{`{"resourceType":"Pat`, "", "unterminated JSON string"},
		{`{"id":"1",`, "", "truncated JSON object"},
		{``, "", "not a JSON object"},
	}
	for _, tc := range tests {
		got, err := ResourceType([]byte(tc.in))
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ResourceType(%s) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ResourceType(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 3<<20) // longer than the 1 MiB buffer
	tests := []struct {
		name    string
		in      string
		max     int
		want    []string
		wantErr string
	}{
		{"plain", "a\nb\n", 0, []string{"a", "b"}, ""},
		{"no final newline", "a\nb", 0, []string{"a", "b"}, ""},
		{"blank and CRLF", "a\r\n\n  \nb\r\n", 0, []string{"a", "b"}, ""},
		{"long line", "a\n" + long + "\nb\n", 4 << 20, []string{"a", long, "b"}, ""},
		{"too long", "a\n" + long + "\nb\n", 2 << 20, []string{"a"}, "limit: line 2: longer than 2097152 bytes (limit maxLineBytes; raise it in source.limits or with the matching flag if the data is genuine)"},
		{"too long at the end", "a\n" + long, 1 << 20, []string{"a"}, "limit: line 2: longer than 1048576 bytes (limit maxLineBytes; raise it in source.limits or with the matching flag if the data is genuine)"},
		{"two long lines", long + "\n" + strings.Repeat("y", 2<<20+7) + "\n", 4 << 20, []string{long, strings.Repeat("y", 2<<20+7)}, ""},
		{"exactly at the limit", long + "\n" + long, 3 << 20, []string{long, long}, ""},
		{"one over the limit", long + "z\n", 3 << 20, nil, "limit: line 1: longer than 3145728 bytes (limit maxLineBytes; raise it in source.limits or with the matching flag if the data is genuine)"},
		{"one over at the end", "a\n" + long + "z", 3 << 20, []string{"a"}, "limit: line 2: longer than 3145728 bytes (limit maxLineBytes; raise it in source.limits or with the matching flag if the data is genuine)"},
		{"empty", "", 0, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lr := NewLineReader(strings.NewReader(tc.in), tc.max)
			var got []string
			for lr.Next() {
				got = append(got, string(lr.Line()))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d lines, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("line %d differs (len %d vs %d)", i+1, len(got[i]), len(tc.want[i]))
				}
			}
			if errStr(lr.Err()) != tc.wantErr {
				t.Errorf("error %v, want %q", lr.Err(), tc.wantErr)
			}
		})
	}
}

func errStr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestDecodeManifest(t *testing.T) {
	base, _ := url.Parse("https://srv.example/fhir/bulkstatus/1")
	tests := []struct {
		name      string
		in        string
		out, errs int
		deleted   int
		next      string
		wantErr   string
	}{
		{"STU2", `{"transactionTime":"2021-01-01T00:00:00Z","request":"https://x/$export","requiresAccessToken":true,
			"output":[{"type":"Patient","url":"https://x/1.ndjson","count":3}],"deleted":[{"type":"Bundle","url":"https://x/d"}],
			"error":[{"type":"OperationOutcome","url":"https://x/e"}],"extension":{"https://x/p":true}}`, 1, 1, 1, "", ""},
		{"STU4 outcome, no request, extension array", `{"transactionTime":"2026-01-01T00:00:00.123+01:00","requiresAccessToken":false,
			"output":[],"outcome":[{"type":"OperationOutcome","url":"https://x/e"}],"extension":[{"url":"u","valueString":"v"}],
			"manifestType":"full","outputFormat":"application/fhir+ndjson"}`, 0, 1, 0, "", ""},
		{"Microsoft issues", `{"transactionTime":"2026-01-01T00:00:00+00:00","request":"r","requiresAccessToken":false,
			"output":[{"type":"Patient","url":"https://acct.blob.core.windows.net/c/Patient-1.ndjson","count":10}],"error":[],
			"issues":[{"severity":"warning","code":"informational"}]}`, 1, 0, 0, "", ""},
		{"paged", `{"transactionTime":"2026-01-01T00:00:00Z","requiresAccessToken":false,"output":[{"type":"A","url":"f/1"}],
			"error":[],"link":[{"relation":"next","url":"https://srv.example/fhir/bulkstatus/1?page=2"}]}`, 1, 0, 0, "https://srv.example/fhir/bulkstatus/1?page=2", ""},
		{"organizeOutputBy typeless", `{"transactionTime":"2026-01-01T00:00:00Z","outputOrganizedBy":"Patient","output":[{"url":"https://x/1"}],"error":[]}`, 1, 0, 0, "", ""},
		{"missing transactionTime", `{"output":[],"error":[]}`, 0, 0, 0, "", "manifest: transactionTime missing"},
		{"bad transactionTime", `{"transactionTime":"yesterday","output":[]}`, 0, 0, 0, "", "manifest: transactionTime is not a FHIR instant"},
		{"not JSON", `<html>`, 0, 0, 0, "", "manifest: invalid JSON at byte 1"},
		{"output not array", `{"transactionTime":"2026-01-01T00:00:00Z","output":{}}`, 0, 0, 0, "", `manifest: field "output" has the wrong JSON type (object)`},
		{"no url", `{"transactionTime":"2026-01-01T00:00:00Z","output":[{"type":"A"}]}`, 0, 0, 0, "", "manifest: output[0].url missing"},
		{"no type", `{"transactionTime":"2026-01-01T00:00:00Z","output":[{"url":"https://x/1"}]}`, 0, 0, 0, "", "manifest: output[0].type missing"},
		{"ftp", `{"transactionTime":"2026-01-01T00:00:00Z","output":[{"type":"A","url":"ftp://x/1"}]}`, 0, 0, 0, "", `manifest: output[0].url has scheme "ftp", want http or https`},
		{"extension scalar", `{"transactionTime":"2026-01-01T00:00:00Z","output":[],"extension":5}`, 0, 0, 0, "", "manifest: extension is neither an object nor an array"},
		{"empty", ``, 0, 0, 0, "", "manifest: empty body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeManifest([]byte(tc.in), base)
			if tc.wantErr != "" {
				if errStr(err) != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Output) != tc.out || len(m.Error) != tc.errs || len(m.Deleted) != tc.deleted || m.Next() != tc.next {
				t.Errorf("output %d error %d deleted %d next %q", len(m.Output), len(m.Error), len(m.Deleted), m.Next())
			}
			for _, f := range m.Output {
				if !strings.HasPrefix(f.URL, "https://") {
					t.Errorf("url %q not resolved", f.URL)
				}
			}
		})
	}
}

func TestRequestEncoding(t *testing.T) {
	r := Request{Level: GroupLevel, GroupID: "g 1", Types: []string{"Patient", "Observation"}, Since: "2026-01-01T00:00:00Z",
		Until: "2026-02-01T00:00:00Z", TypeFilters: []string{"Observation?category=laboratory,vital-signs", "Patient?active=true"},
		Elements: []string{"id", "meta"}, IncludeAssociatedData: []string{"LatestProvenanceResources"}, OutputFormat: "ndjson",
		OrganizeOutputBy: "Patient", AllowPartialManifests: true, Extra: map[string][]string{"_container": {"c1"}}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "group id contains") {
		// "g 1" has no forbidden characters; fix the id and continue.
		if err != nil {
			t.Fatal(err)
		}
	}
	q := r.Query()
	wantQ := "_container=c1&_elements=id%2Cmeta&_outputFormat=ndjson&_since=2026-01-01T00%3A00%3A00Z&_type=Patient%2CObservation" +
		"&_typeFilter=Observation%3Fcategory%3Dlaboratory%2Cvital-signs&_typeFilter=Patient%3Factive%3Dtrue&_until=2026-02-01T00%3A00%3A00Z" +
		"&allowPartialManifests=true&includeAssociatedData=LatestProvenanceResources&organizeOutputBy=Patient"
	if got := q.Encode(); got != wantQ {
		t.Errorf("query\n got %s\nwant %s", got, wantQ)
	}
	r.RepeatParams = true
	if got := r.Query()["_type"]; len(got) != 2 {
		t.Errorf("repeated _type = %v", got)
	}
	r.Patients = []string{"Patient/1"}
	body, err := r.Parameters()
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		ResourceType string
		Parameter    []map[string]any
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("Parameters body %s: %v", body, err)
	}
	count := map[string]int{}
	for _, e := range p.Parameter {
		count[e["name"].(string)]++
	}
	if count["_type"] != 2 || count["_typeFilter"] != 2 || count["patient"] != 1 || count["_since"] != 1 || count["allowPartialManifests"] != 1 {
		t.Errorf("parameter counts %v", count)
	}
	if !strings.Contains(string(body), `{"name":"patient","valueReference":{"reference":"Patient/1"}}`) ||
		!strings.Contains(string(body), `{"name":"_since","valueInstant":"2026-01-01T00:00:00Z"}`) {
		t.Errorf("Parameters body %s", body)
	}
	if !r.UsesPOST() {
		t.Error("patient references must select POST")
	}
	bad := []Request{
		{Level: GroupLevel},
		{Level: SystemLevel, Patients: []string{"Patient/1"}},
		{Level: "world"},
		{Types: []string{"Patient,Observation"}},
		{Since: "last week"},
		{Level: GroupLevel, GroupID: "a/b"},
	}
	for i, b := range bad {
		if b.Validate() == nil {
			t.Errorf("bad request %d validated", i)
		}
	}
}

// recorder is an httptest server that records request headers and answers
// a scripted kick-off, status and file.
type recorder struct {
	mu      sync.Mutex
	headers map[string]http.Header
	methods map[string]string
}

func newRecorder(t *testing.T, gzipFile bool, statusHeader string) (*recorder, *httptest.Server) {
	rec := &recorder{headers: map[string]http.Header{}, methods: map[string]string{}}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		step := "file"
		switch {
		case strings.HasSuffix(r.URL.Path, "$export"):
			step = "kickoff"
		case strings.HasPrefix(r.URL.Path, "/status"):
			step = "status"
		}
		if r.Method == http.MethodDelete {
			step = "delete"
		}
		rec.headers[step] = r.Header.Clone()
		rec.methods[step] = r.Method
		rec.mu.Unlock()
		switch step {
		case "kickoff":
			w.Header().Set("Content-Location", "/status/1") // relative: resolved defensively
			w.WriteHeader(http.StatusAccepted)
		case "status":
			if statusHeader != "" {
				w.Header().Set("X-Export-Status", statusHeader)
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"transactionTime":"2026-01-01T00:00:00Z","requiresAccessToken":true,"output":[{"type":"Patient","url":"%s/f/1","count":2}],"error":[]}`, srv.URL)
		case "delete":
			w.WriteHeader(http.StatusAccepted)
		case "file":
			data := "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n"
			if gzipFile {
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				_, _ = io.WriteString(zw, data)
				_ = zw.Close()
				return
			}
			_, _ = io.WriteString(w, data)
		}
	}))
	t.Cleanup(srv.Close)
	return rec, srv
}

type fixedClock struct{ now time.Time }

func (c *fixedClock) Now() time.Time { return c.now }
func (c *fixedClock) Sleep(ctx context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	return ctx.Err()
}

func TestWireHeaders(t *testing.T) {
	for _, gz := range []bool{true, false} {
		rec, srv := newRecorder(t, gz, "")
		c, err := NewClient(srv.URL+"/fhir", srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		c.Clock = &fixedClock{now: time.Now()}
		c.Auth = StaticToken{Value: NewSecret("tok")}
		ctx := context.Background()
		status, err := c.Kickoff(ctx, &Request{Types: []string{"Patient"}, Lenient: true, SeparateExportStatus: true})
		if err != nil {
			t.Fatal(err)
		}
		if status != srv.URL+"/status/1" {
			t.Errorf("status URL %q not resolved against the request", status)
		}
		m, err := c.Poll(ctx, status, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		rc, err := c.Open(ctx, m, m.Output[0])
		if err != nil {
			t.Fatal(err)
		}
		lr := NewLineReader(rc, 0)
		v := Validator{File: "f", Type: "Patient", Count: m.Output[0].Count}
		for lr.Next() {
			if err := v.Check(lr.Line(), lr.LineNumber()); err != nil {
				t.Fatal(err)
			}
		}
		if err := errors.Join(lr.Err(), v.Finish(), rc.Close()); err != nil {
			t.Fatalf("gzip=%v: %v", gz, err)
		}
		if err := c.Delete(ctx, status); err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string]string{
			"kickoff": {"Accept": "application/fhir+json", "Prefer": "respond-async, separate-export-status, handling=lenient", "Authorization": "Bearer tok"},
			"status":  {"Accept": "application/json", "Authorization": "Bearer tok"},
			"file":    {"Accept": "application/fhir+ndjson", "Accept-Encoding": "gzip", "Authorization": "Bearer tok"},
			"delete":  {"Authorization": "Bearer tok"},
		}
		for step, hs := range want {
			for k, v := range hs {
				if got := rec.headers[step].Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s header %s = %q, want exactly %q", step, k, got, v)
				}
			}
		}
		if rec.methods["kickoff"] != http.MethodGet || rec.methods["delete"] != http.MethodDelete {
			t.Errorf("methods %v", rec.methods)
		}
	}
}

func TestXExportStatus(t *testing.T) {
	_, srv := newRecorder(t, false, "500")
	c, _ := NewClient(srv.URL+"/fhir", srv.Client())
	c.Clock = &fixedClock{now: time.Now()}
	c.Retries.MaxRetries = 0
	_, err := c.Poll(context.Background(), srv.URL+"/status/1", time.Now())
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 500 {
		t.Fatalf("X-Export-Status 500 not honoured: %v", err)
	}
}

func TestTokenRefreshBeforeExpiry(t *testing.T) {
	clk := &fixedClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var forms []url.Values
	var basics []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		forms = append(forms, r.PostForm)
		u, p, _ := r.BasicAuth()
		basics = append(basics, u+":"+p)
		fmt.Fprintf(w, `{"access_token":"t%d","token_type":"Bearer","expires_in":"300"}`, len(forms))
	}))
	defer srv.Close()
	cc := &ClientCredentials{HTTP: srv.Client(), TokenURL: srv.URL, ClientID: "id", Secret: NewSecret("s e"), Clock: clk,
		Resource: "https://fhir.example"}
	ctx := context.Background()
	steps := []struct {
		advance time.Duration
		want    string
	}{{0, "t1"}, {200 * time.Second, "t1"}, {41 * time.Second, "t2"}, {10 * time.Second, "t2"}}
	for i, s := range steps {
		clk.now = clk.now.Add(s.advance)
		tok, err := cc.Token(ctx)
		if err != nil || tok.Reveal() != s.want {
			t.Fatalf("step %d: token %q, %v; want %s", i, tok.Reveal(), err, s.want)
		}
	}
	cc.Invalidate(NewSecret("t2"))
	if tok, _ := cc.Token(ctx); tok.Reveal() != "t3" {
		t.Errorf("after Invalidate: %q", tok.Reveal())
	}
	if forms[0].Get("resource") != "https://fhir.example" || forms[0].Get("grant_type") != "client_credentials" || basics[0] != "id:s+e" {
		t.Errorf("form %v basic %q", forms[0], basics[0])
	}
	post := &ClientCredentials{HTTP: srv.Client(), TokenURL: srv.URL, ClientID: "id", Secret: NewSecret("sec"), Style: AuthPost,
		Scope: "https://fhir.example/.default"}
	if _, err := post.Token(ctx); err != nil {
		t.Fatal(err)
	}
	last := forms[len(forms)-1]
	if last.Get("client_id") != "id" || last.Get("client_secret") != "sec" || last.Get("scope") != "https://fhir.example/.default" || basics[len(basics)-1] != ":" {
		t.Errorf("client_secret_post form %v", last)
	}
	if got := EntraTokenURL("tenant-1", 1); got != "https://login.microsoftonline.com/tenant-1/oauth2/token" {
		t.Error(got)
	}
	if got := EntraTokenURL("tenant-1", 2); got != "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token" {
		t.Error(got)
	}
}

func TestSecretRedacted(t *testing.T) {
	s := NewSecret("hunter2")
	type wrapper struct {
		Token Secret
		Ptr   *Secret
	}
	w := wrapper{s, &s}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		if out := fmt.Sprintf(f, s) + fmt.Sprintf(f, w); strings.Contains(out, "hunter2") || strings.Contains(out, "68756e74657232") {
			t.Errorf("%s leaks: %s", f, out)
		}
	}
	b, _ := json.Marshal(w)
	if bytes.Contains(b, []byte("hunter2")) || !bytes.Contains(b, []byte(`"[redacted]"`)) {
		t.Errorf("JSON %s", b)
	}
	if s.Reveal() != "hunter2" {
		t.Error("Reveal")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@acct.blob.core.windows.net/c/f.ndjson?sv=1&sig=SECRET": "https://acct.blob.core.windows.net/c/f.ndjson",
		"http://x/fhir/$export?_type=Patient#frag":                          "http://x/fhir/$export",
		"%zz?sig=1": "%zz",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKickoffFallbacks(t *testing.T) {
	tests := []struct {
		name         string
		lenientRetry bool
		answer       func(r *http.Request) int
		wantSeq      string
		wantErr      bool
	}{
		{"405 on GET switches to POST", false, func(r *http.Request) int {
			if r.Method == http.MethodGet {
				return http.StatusMethodNotAllowed
			}
			return http.StatusAccepted
		}, "GET|respond-async POST|respond-async", false},
		{"400 retried lenient", true, func(r *http.Request) int {
			if !strings.Contains(r.Header.Get("Prefer"), "lenient") {
				return http.StatusBadRequest
			}
			return http.StatusAccepted
		}, "GET|respond-async GET|respond-async, handling=lenient", false},
		{"400 fatal without LenientRetry", false, func(r *http.Request) int { return http.StatusBadRequest },
			"GET|respond-async", true},
		{"405 on POST is fatal", false, func(r *http.Request) int { return http.StatusMethodNotAllowed },
			"GET|respond-async POST|respond-async", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seq []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seq = append(seq, r.Method+"|"+r.Header.Get("Prefer"))
				code := tc.answer(r)
				if code == http.StatusAccepted {
					w.Header().Set("Content-Location", "http://"+r.Host+"/status/9")
				} else {
					w.Header().Set("Content-Type", "application/fhir+json")
				}
				w.WriteHeader(code)
				if code != http.StatusAccepted {
					_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","diagnostics":"nope"}]}`)
				}
			}))
			defer srv.Close()
			c, _ := NewClient(srv.URL, srv.Client())
			c.Clock = &fixedClock{now: time.Now()}
			c.LenientRetry = tc.lenientRetry
			_, err := c.Kickoff(context.Background(), &Request{Types: []string{"Patient"}})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if got := strings.Join(seq, " "); got != tc.wantSeq {
				t.Errorf("requests %q, want %q", got, tc.wantSeq)
			}
		})
	}
}

func TestFileReader(t *testing.T) {
	three := int64(3)
	two, four := int64(2), int64(4)
	data := "{\"resourceType\":\"Patient\",\"id\":\"1\"}\n{\"resourceType\":\"Patient\",\"id\":\"2\"}\n\n{\"resourceType\":\"Patient\",\"id\":\"3\"}\n"
	tests := []struct {
		name  string
		in    string
		f     File
		lines int
		err   string
	}{
		{"valid", data, File{Type: "Patient", Count: &three}, 3, ""},
		{"no count", data, File{Type: "Patient"}, 3, ""},
		// More lines than the count: stopped at the first extra line.
		{"count exceeded", data, File{Type: "Patient", Count: &two}, 2, "validate P.ndjson line 4: more resources than the manifest count 2; " +
			"if the server's counts are known to be wrong, --allow-count-mismatch (allowCountMismatch: true) accepts the file"},
		{"count not reached", data, File{Type: "Patient", Count: &four}, 3, "validate P.ndjson: 3 resources, manifest count 4; " +
			"if the server's counts are known to be wrong, --allow-count-mismatch (allowCountMismatch: true) accepts the file"},
		{"type mismatch", data, File{Type: "Observation"}, 0, `validate P.ndjson line 1: resourceType "Patient", manifest type "Observation"`},
		{"not JSON", "{\"resourceType\":\"Patient\"}\nnot json\n", File{Type: "Patient"}, 1, "validate P.ndjson line 2: not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fr := NewFileReader(strings.NewReader(tc.in), tc.f, "P.ndjson", 0)
			n := 0
			for fr.Next() {
				n++
			}
			if n != tc.lines || errStr(fr.Err()) != tc.err {
				t.Errorf("%d lines, err %v; want %d, %q", n, fr.Err(), tc.lines, tc.err)
			}
			if IsRetryable(fr.Err()) {
				t.Error("a validation error is not retryable")
			}
		})
	}
}

func TestDiscoverTokenURL(t *testing.T) {
	tests := []struct {
		name     string
		wk, meta string
		want     string
		wantErr  bool
	}{
		{"well-known", `{"token_endpoint":"https://auth.example/token"}`, "", "https://auth.example/token", false},
		{"CapabilityStatement fallback", "", `{"resourceType":"CapabilityStatement","rest":[{"security":{"extension":[{"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris","extension":[{"url":"authorize","valueUri":"https://a/authz"},{"url":"token","valueUri":"https://a/token"}]}]}}]}`, "https://a/token", false},
		{"relative endpoint", `{"token_endpoint":"/token"}`, "", "", true},
		{"nothing", "", `{"resourceType":"CapabilityStatement"}`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.HasSuffix(r.URL.Path, "/.well-known/smart-configuration") && tc.wk != "":
					_, _ = io.WriteString(w, tc.wk)
				case strings.HasSuffix(r.URL.Path, "/metadata") && tc.meta != "":
					_, _ = io.WriteString(w, tc.meta)
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			got, err := DiscoverTokenURL(context.Background(), srv.Client(), srv.URL+"/fhir/")
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("got %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestReauthRetriesSpurious400(t *testing.T) {
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		if n == 2 { // the first re-authorisation fails once
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_request"}`)
			return
		}
		fmt.Fprintf(w, `{"access_token":"t%d","token_type":"bearer","expires_in":60}`, n)
	}))
	defer srv.Close()
	cc := &ClientCredentials{HTTP: srv.Client(), TokenURL: srv.URL, ClientID: "a", Secret: NewSecret("b")}
	ctx := context.Background()
	if tok, err := cc.Token(ctx); err != nil || tok.Reveal() != "t1" {
		t.Fatalf("first token %q %v", tok.Reveal(), err)
	}
	cc.Invalidate(NewSecret("t1"))
	if tok, err := cc.Token(ctx); err != nil || tok.Reveal() != "t3" {
		t.Fatalf("re-auth token %q %v (want a retry after the spurious 400)", tok.Reveal(), err)
	}
}

func TestEchoedCredentialsScrubbed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		if strings.HasSuffix(r.URL.Path, "/token") {
			_, pw, _ := r.BasicAuth()
			fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s / %s"}`, pw, r.PostForm.Get("client_secret"))
			return
		}
		fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"header was %s"}]}`, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	for _, style := range []AuthStyle{AuthBasic, AuthPost} {
		cc := &ClientCredentials{HTTP: srv.Client(), TokenURL: srv.URL + "/token", ClientID: "id", Secret: NewSecret("s3cretvalue"), Style: style}
		_, err := cc.Token(context.Background())
		if err == nil || strings.Contains(err.Error(), "s3cretvalue") || !strings.Contains(err.Error(), "[redacted]") {
			t.Errorf("style %d: %v", style, err)
		}
	}
	c, _ := NewClient(srv.URL+"/fhir", srv.Client())
	c.Auth = StaticToken{Value: NewSecret("tok-abcdef")}
	_, err := c.Kickoff(context.Background(), &Request{})
	if err == nil || strings.Contains(err.Error(), "tok-abcdef") || !strings.Contains(err.Error(), "header was Bearer [redacted]") {
		t.Errorf("kick-off error %v", err)
	}
	key, _, _, _ := ParsePrivateKey([]byte(testECKeyJWKS), "")
	sb := &SMARTBackend{ClientID: "c", Key: key, KeyID: "k", TokenURL: "https://a/token?x=1"}
	out := fmt.Sprintf("%v %+v %s", sb, sb, cc0())
	if strings.Contains(out, "ecdsa") || strings.Contains(out, "s3") || !strings.Contains(out, "Key:[redacted]") {
		t.Errorf("printed configuration: %s", out)
	}
}

func cc0() *ClientCredentials {
	return &ClientCredentials{ClientID: "x", Secret: NewSecret("s3cret")}
}

// testECKeyJWKS is a P-384 private key generated for these tests only.
const testECKeyJWKS = `{"keys":[{"kty":"EC","crv":"P-384","kid":"k","d":"` + testD + `","x":"","y":""}]}`
const testD = "O-b41m_Ik_KMupsE9tN7rf8PLsTwu1vQSh7JMV2em6EPBV7hOKmqSxtechVmFR8m"

func TestManifestLinkLoop(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		next := "/status?page=2"
		if r.URL.Query().Get("page") == "2" {
			next = "/status" // back to the first page
		}
		fmt.Fprintf(w, `{"transactionTime":"2026-01-01T00:00:00Z","output":[],"error":[],"link":[{"relation":"next","url":%q}]}`, next)
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, srv.Client())
	c.Clock = &fixedClock{now: time.Now()}
	_, err := c.Poll(context.Background(), srv.URL+"/status", time.Now())
	if err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("looping manifest links: %v", err)
	}
}

// TestManifestFixtures decodes the manifests in testdata/manifests: the
// STU2 example, the SMART reference server's quirks, an STU4 manifest, a
// Microsoft manifest, a page of a paged manifest and an invalid one.
func TestManifestFixtures(t *testing.T) {
	base, _ := url.Parse("https://srv.example/fhir/bulkstatus/7")
	tests := []struct {
		file                      string
		output, deleted, errs     int
		requiresToken             bool
		firstCount                int64
		next, firstURL, wantError string
	}{
		{"stu2.json", 2, 1, 1, true, -1, "", "https://example.com/output/patient_file_1.ndjson", ""},
		{"smart-reference.json", 3, 0, 0, false, 100, "", "http://127.0.0.1:9443/fhir/bulkfiles/2.Patient.ndjson", ""},
		{"stu4.json", 1, 0, 1, true, 3, "", "https://ehr.example/files/p1.ndjson", ""},
		{"microsoft.json", 2, 0, 0, false, 1000, "", "https://acct.blob.core.windows.net/exports/20260821T010000-abc/Patient-1.ndjson", ""},
		{"paged-page1.json", 1, 0, 0, false, -1, "https://srv.example/fhir/bulkstatus/7?page=2", "https://srv.example/fhir/bulkstatus/files/1.ndjson", ""},
		{"invalid-no-transaction-time.json", 0, 0, 0, false, -1, "", "", "manifest: transactionTime missing"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "manifests", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := DecodeManifest(b, base)
			if tc.wantError != "" {
				if errStr(err) != tc.wantError {
					t.Fatalf("error %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Output) != tc.output || len(m.Deleted) != tc.deleted || len(m.Error) != tc.errs || m.RequiresAccessToken != tc.requiresToken || m.Next() != tc.next {
				t.Errorf("output %d deleted %d error %d token %v next %q", len(m.Output), len(m.Deleted), len(m.Error), m.RequiresAccessToken, m.Next())
			}
			if m.Output[0].URL != tc.firstURL {
				t.Errorf("first url %q, want %q", m.Output[0].URL, tc.firstURL)
			}
			got := int64(-1)
			if m.Output[0].Count != nil {
				got = *m.Output[0].Count
			}
			if got != tc.firstCount {
				t.Errorf("first count %d, want %d", got, tc.firstCount)
			}
		})
	}
}

func TestForMicrosoft(t *testing.T) {
	r, err := Request{Types: []string{"Patient"}, Until: "2026-01-01T00:00:00Z", Extra: map[string][]string{"_container": {"c"}}}.ForMicrosoft()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Query().Encode(); got != "_container=c&_till=2026-01-01T00%3A00%3A00Z&_type=Patient" {
		t.Errorf("query %s", got)
	}
	for _, bad := range []Request{{POST: true}, {Elements: []string{"id"}}, {AllowPartialManifests: true}, {TypeFilters: []string{"Observation?x=1"}},
		{Level: PatientLevel, Patients: []string{"Patient/1"}}} {
		if _, err := bad.ForMicrosoft(); err == nil || !strings.Contains(err.Error(), "Microsoft FHIR server does not support") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
