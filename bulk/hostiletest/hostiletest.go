// Package hostiletest builds small hostile or broken Bulk Data servers on
// 127.0.0.1 and 127.0.0.2 for tests: every request is recorded with the
// origin it reached and the credentials it carried, so a test can assert
// that a token never reached another origin.
package hostiletest

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Request is one request an Origin received.
type Request struct {
	Method, Path string
	// Authorization is the header as received ("" if none).
	Authorization string
}

// Origin is one recorded HTTP server.
type Origin struct {
	// URL is the server's base URL, "http://127.0.0.2:PORT".
	URL string
	srv *httptest.Server

	mu   sync.Mutex
	reqs []Request
}

// Start serves h on host ("127.0.0.1", "127.0.0.2", ...) at a free port,
// with TLS when tls is set (the client must then use Client()). It returns
// an error when the address cannot be bound (127.0.0.2 outside Linux).
func Start(host string, useTLS bool, h http.Handler) (*Origin, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	o := &Origin{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.reqs = append(o.reqs, Request{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization")})
		o.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	_ = srv.Listener.Close()
	srv.Listener = ln
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	o.srv, o.URL = srv, srv.URL
	return o, nil
}

// Client returns an HTTP client that trusts the server's certificate (for
// TLS origins; for plain ones a default client).
func (o *Origin) Client() *http.Client { return o.srv.Client() }

// TLSConfig returns the server's client TLS configuration, to combine
// several origins in one client.
func (o *Origin) TLSConfig() *tls.Config {
	if t, ok := o.srv.Client().Transport.(*http.Transport); ok {
		return t.TLSClientConfig
	}
	return nil
}

// Close stops the server.
func (o *Origin) Close() { o.srv.Close() }

// Requests returns what the server received so far.
func (o *Origin) Requests() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.reqs...)
}

// WithToken returns the requests that carried tok in any form.
func (o *Origin) WithToken(tok string) []Request {
	var out []Request
	for _, r := range o.Requests() {
		if tok != "" && strings.Contains(r.Authorization, tok) {
			out = append(out, r)
		}
	}
	return out
}

// String describes the requests, for failure messages (tokens redacted).
func (o *Origin) String() string {
	var b strings.Builder
	for _, r := range o.Requests() {
		auth := "no auth"
		if r.Authorization != "" {
			auth = "auth"
		}
		fmt.Fprintf(&b, "%s %s (%s); ", r.Method, r.Path, auth)
	}
	return b.String()
}

// Manifest renders a Bulk Data manifest whose entries are given as
// (kind, type, url, count) tuples; count < 0 omits it.
func Manifest(requiresToken bool, entries ...Entry) string {
	var out, del, errs []string
	for _, e := range entries {
		item := fmt.Sprintf(`{"type":%q,"url":%q`, e.Type, e.URL)
		if e.Count >= 0 {
			item += fmt.Sprintf(`,"count":%d`, e.Count)
		}
		item += "}"
		switch e.Kind {
		case "deleted":
			del = append(del, item)
		case "error":
			errs = append(errs, item)
		default:
			out = append(out, item)
		}
	}
	return fmt.Sprintf(`{"transactionTime":"2026-01-01T00:00:00Z","request":"x","requiresAccessToken":%t,"output":[%s],"deleted":[%s],"error":[%s]}`,
		requiresToken, strings.Join(out, ","), strings.Join(del, ","), strings.Join(errs, ","))
}

// Entry is one manifest file entry.
type Entry struct {
	Kind, Type, URL string
	Count           int64
}
