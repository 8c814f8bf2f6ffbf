package hostiletest

import (
	"net/http"
	"net/url"
	"testing"

	"fhirdeid/bulk"
)

// A manifest with requiresAccessToken true whose files are on another host:
// the download is refused, naming the host, and the token never leaves.
func TestTokenNotSentToFileOnOtherHost(t *testing.T) {
	other := startOther(t, serveString(patients(2)))
	f := &fhir{manifest: func(string) string {
		return Manifest(true, Entry{Type: "Patient", URL: other.URL + "/files/Patient.ndjson", Count: 2},
			Entry{Kind: "error", Type: "OperationOutcome", URL: other.URL + "/files/err.ndjson", Count: -1},
			Entry{Kind: "deleted", Type: "Bundle", URL: other.URL + "/files/del.ndjson", Count: -1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	_, err := e.run(t)
	wantErr(t, err, "refusing to send the FHIR server's access token to "+originOf(other.URL), "trustedHosts")
	noToken(t, other)
	if n := len(other.Requests()); n != 0 {
		t.Errorf("the other host received %d requests: %s", n, other)
	}
}

// With the host trusted, the token goes there.
func TestTokenSentToTrustedHost(t *testing.T) {
	other := startOther(t, serveString(patients(2)))
	f := &fhir{manifest: func(string) string {
		return Manifest(true, Entry{Type: "Patient", URL: other.URL + "/files/Patient.ndjson", Count: 2})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	u, _ := url.Parse(other.URL)
	if err := e.client.TrustHosts(u.Host); err != nil {
		t.Fatal(err)
	}
	if _, err := e.run(t); err != nil {
		t.Fatal(err)
	}
	if n := len(other.WithToken(token)); n != 1 {
		t.Errorf("the trusted host received the token %d times, want 1", n)
	}
}

// requiresAccessToken false: a file on another origin is fetched without the
// token.
func TestNoTokenWhenNotRequired(t *testing.T) {
	other := startOther(t, serveString(patients(2)))
	f := &fhir{manifest: func(string) string {
		return Manifest(false, Entry{Type: "Patient", URL: other.URL + "/files/Patient.ndjson", Count: 2})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	if _, err := e.run(t); err != nil {
		t.Fatal(err)
	}
	noToken(t, other)
	if n := len(other.Requests()); n != 1 {
		t.Errorf("the other host received %d requests, want 1", n)
	}
}

// A Content-Location on another host: the kick-off fails; neither polls nor
// the DELETE reach it with the token.
func TestStatusURLOnOtherHost(t *testing.T) {
	f := &fhir{manifest: func(string) string { return Manifest(true) }}
	other := startOther(t, f)
	fo := startFHIR(t, f, false)
	f.location = other.URL + "/fhir/status"
	e := newExport(t, fo.URL, nil)
	_, err := e.run(t)
	wantErr(t, err, "kick-off: refusing to send", originOf(other.URL), "Content-Location")
	noToken(t, other)
	if n := len(other.Requests()); n != 0 {
		t.Errorf("the other host received %d requests: %s", n, other)
	}
	// Attaching to such a status URL directly, and deleting it, are refused.
	_, err = e.client.Poll(t.Context(), other.URL+"/fhir/status", e.client.Clock.Now())
	wantErr(t, err, "status: refusing", originOf(other.URL))
	err = e.client.Delete(t.Context(), other.URL+"/fhir/status")
	wantErr(t, err, "delete: refusing", originOf(other.URL))
	noToken(t, other)
}

// A redirect from the FHIR server to the same host on another port loses the
// Authorization header (Go compares host names only).
func TestRedirectToOtherPortDropsToken(t *testing.T) {
	f2 := &fhir{manifest: func(string) string { return Manifest(false) }}
	second, err := Start("127.0.0.1", false, f2)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	f2.base = second.URL
	f := &fhir{redirect: second.URL + "/fhir/$export"}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	// The kick-off is redirected to the other port, whose Content-Location
	// (its own status URL) is then refused.
	_, err = e.run(t)
	if err == nil {
		t.Fatal("want an error")
	}
	noToken(t, second)
	if len(second.Requests()) == 0 {
		t.Fatal("the redirect was not followed")
	}
	if n := len(fo.WithToken(token)); n == 0 {
		t.Error("the FHIR server itself did not receive the token")
	}
}

// An https FHIR server whose manifest moves the files to http: the token is
// not sent in clear, even to the same host.
func TestHTTPSToHTTPNoToken(t *testing.T) {
	plain, err := Start("127.0.0.1", false, serveString(patients(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	f := &fhir{manifest: func(string) string {
		return Manifest(true, Entry{Type: "Patient", URL: plain.URL + "/files/P.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, true)
	e := newExport(t, fo.URL, fo.Client())
	_, err = e.run(t)
	wantErr(t, err, "refusing to send", originOf(plain.URL))
	noToken(t, plain)
	// Same host and port, http instead of https, is another origin too.
	u, _ := url.Parse(fo.URL)
	u.Scheme = "http"
	if err := e.client.TrustHosts("http://" + u.Host); err == nil {
		t.Error("TrustHosts accepted an http origin for an https server")
	}
	_, err = e.client.Poll(t.Context(), u.String()+"/fhir/status", e.client.Clock.Now())
	wantErr(t, err, "refusing to send", "http://"+u.Host)
}

// Azure Storage credentials go to Azure blob hosts and trusted origins only.
func TestStorageCredentialsOnlyToStorageHosts(t *testing.T) {
	other := startOther(t, serveString(patients(1)))
	f := &fhir{manifest: func(string) string {
		return Manifest(false, Entry{Type: "Patient", URL: other.URL + "/files/P.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	e.client.StorageAuth = bulk.StaticToken{Value: bulk.NewSecret(token)}
	if _, err := e.run(t); err != nil {
		t.Fatal(err)
	}
	for _, r := range other.Requests() {
		if r.Authorization != "" {
			t.Errorf("a non-storage host received credentials: %s", other)
		}
	}
}

func originOf(u string) string {
	p, _ := url.Parse(u)
	return bulk.Origin(p)
}

// A file download answered 302 to the same host on another port (a typical
// move to blob storage) follows the redirect without the token.
func TestFileRedirectToOtherPortDropsToken(t *testing.T) {
	other, err := Start("127.0.0.1", false, serveString(patients(3)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	f := &fhir{files: func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/blob/p.ndjson", http.StatusFound)
	}, manifest: func(base string) string {
		return Manifest(true, Entry{Type: "Patient", URL: base + "/files/p.ndjson", Count: 3},
			Entry{Kind: "error", Type: "OperationOutcome", URL: base + "/files/e.ndjson", Count: -1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	_, err = e.run(t)
	// The error file redirects to Patient lines too: a validation error,
	// after the redirect was followed without the token.
	wantErr(t, err, "validate error/OperationOutcome.000.ndjson.gz line 1")
	noToken(t, other)
	if len(other.Requests()) < 2 {
		t.Errorf("the redirects were not followed: %s", other)
	}
	if n := len(fo.WithToken(token)); n < 2 {
		t.Errorf("the FHIR server received the token %d times", n)
	}
}
