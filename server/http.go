package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// sessionCookie is the dashboard's session cookie, set by the login form
// when a token is configured. Its value is derived from the token, never the
// token itself.
const sessionCookie = "fhirdeid_session"

// routes builds the server's handler.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics.handler())

	mux.HandleFunc("GET /api/pipelines", s.apiPipelines)
	mux.HandleFunc("GET /api/runs", s.apiRuns)
	mux.HandleFunc("GET /api/runs/{id}", s.apiRun)
	mux.HandleFunc("GET /api/runs/{id}/log", s.apiRunLog)
	mux.HandleFunc("POST /api/pipelines/{name}/run", s.apiTrigger)
	mux.HandleFunc("POST /api/runs/{id}/cancel", s.apiCancel)

	mux.HandleFunc("GET /{$}", s.pageIndex)
	mux.HandleFunc("GET /runs/{id}", s.pageRun)
	mux.HandleFunc("POST /pipelines/{name}/run", s.formTrigger)
	mux.HandleFunc("POST /runs/{id}/cancel", s.formCancel)
	mux.HandleFunc("GET /login", s.pageLogin)
	mux.HandleFunc("POST /login", s.formLogin)
	mux.Handle("GET /static/", http.FileServerFS(staticFS))
	return s.guard(mux)
}

// public reports whether path is served without a token.
func public(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/login" || strings.HasPrefix(path, "/static/")
}

// guard applies the security checks that come before every handler: the
// Host check against DNS rebinding when no token is set, the token, the
// same-origin check of state-changing requests, and response headers.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("Cache-Control", "no-store")
		if s.token == "" && !loopbackHost(r.Host) && !public(r.URL.Path) {
			// Without a token the server trusts only loopback clients; a
			// foreign Host is a DNS-rebinding attempt.
			httpError(w, r, http.StatusForbidden, "host not allowed")
			return
		}
		if s.token != "" && !public(r.URL.Path) && !s.authorized(r) {
			if wantsHTML(r) {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			h.Set("WWW-Authenticate", `Bearer realm="fhirdeid"`)
			httpError(w, r, http.StatusUnauthorized, "missing or wrong token")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
			httpError(w, r, http.StatusForbidden, "cross-origin request refused")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// wantsHTML reports whether r is a browser navigation to a dashboard page.
func wantsHTML(r *http.Request) bool {
	return !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/metrics" &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}

// loopbackHost reports whether a Host header names the loopback interface.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameOrigin checks that a state-changing request comes from the server's
// own pages: its Origin, or failing that its Referer, must name r.Host. A
// request with neither is accepted only on the API (curl and scripts send
// neither; browsers send Origin with every cross-origin POST).
func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" || src == "null" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("Origin") == ""
	}
	u, err := url.Parse(src)
	if err != nil {
		return false
	}
	return u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// authorized reports whether r carries the token, as a bearer token or as
// the session cookie. Comparisons take constant time.
func (s *Server) authorized(r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		a := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		b := sha256.Sum256([]byte(s.token))
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.derived("session"))) == 1
	}
	return false
}

// derived returns a value derived from the token for purpose ("session",
// "csrf"), or "" without a token.
func (s *Server) derived(purpose string) string {
	if s.token == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(s.token))
	m.Write([]byte("fhirdeid dashboard " + purpose))
	return hex.EncodeToString(m.Sum(nil))
}

// checkCSRF checks the CSRF field of a dashboard form when a token is
// configured (the same-origin check has run already).
func (s *Server) checkCSRF(r *http.Request) bool {
	if s.token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.derived("csrf"))) == 1
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.db.Runs(ctx, "", 1); err != nil {
		s.log.Warn("readiness check", "err", err)
		http.Error(w, errNotReady.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ready\n"))
}

// httpError answers an error as JSON on the API and as text elsewhere.
func httpError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	http.Error(w, msg, code)
}

// writeJSON writes v as indented JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
