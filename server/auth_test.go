package server_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
)

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.1.2.3:80", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"192.168.1.10:8080", false},
		{"example.org:8080", false},
	}
	for _, tt := range tests {
		got, err := server.IsLoopback(tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, %v; want %v", tt.addr, got, err, tt.want)
		}
	}
	if _, err := server.IsLoopback("nonsense"); err == nil {
		t.Error("IsLoopback of an address without a port: no error")
	}
}

func TestListenNeedsTokenOffLoopback(t *testing.T) {
	e := testenv.New(t, 1)
	jobs := []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)}
	open, err := server.New(server.Options{State: e.DB, Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Listen("0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("listen on every interface without a token: %v", err)
	}
	ln, err := open.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("loopback without a token: %v", err)
	}
	ln.Close()
}

func TestToken(t *testing.T) {
	const token = "tok-9f8e7d6c5b4a"
	e := testenv.New(t, 1)
	s, err := server.New(server.Options{State: e.DB, Token: token, DisableStartup: true,
		Jobs: []*server.Job{e.Job(t, "ehr", mustCron(t, "0 1 * * *"), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	bearer := map[string]string{"Authorization": "Bearer " + token}
	tests := []struct {
		method, path string
		hdr          map[string]string
		code         int
	}{
		{"GET", "/healthz", nil, 200},
		{"GET", "/readyz", nil, 200},
		{"GET", "/static/style.css", nil, 200},
		{"GET", "/login", nil, 200},
		{"GET", "/api/pipelines", nil, 401},
		{"GET", "/api/pipelines", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"GET", "/api/pipelines", map[string]string{"Authorization": "Basic " + token}, 401},
		{"GET", "/api/pipelines", map[string]string{"Authorization": "Bearer " + token + "x"}, 401},
		{"GET", "/api/pipelines", bearer, 200},
		{"GET", "/metrics", nil, 401},
		{"GET", "/metrics", bearer, 200},
		{"GET", "/", map[string]string{"Accept": "text/html"}, 303},
		{"GET", "/", bearer, 200},
		// With a token, any Host is served (the token defeats rebinding).
		{"GET", "/api/runs", map[string]string{"Authorization": "Bearer " + token, "Host": "fhirdeid.internal:8080"}, 200},
		{"POST", "/api/runs/x/cancel", nil, 401},
	}
	for _, tt := range tests {
		code, body, hdr := do(t, h, tt.method, tt.path, tt.hdr, nil)
		if code != tt.code {
			t.Errorf("%s %s %v: %d, want %d (%.200s)", tt.method, tt.path, tt.hdr, code, tt.code, body)
		}
		if code == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", tt.method, tt.path)
		}
		if strings.Contains(body, token) {
			t.Errorf("%s %s: the answer contains the token", tt.method, tt.path)
		}
	}

	// Dashboard login: a wrong token is refused, the right one sets a
	// session cookie that is not the token.
	form := func(v url.Values, hdr map[string]string) (int, string, http.Header) {
		hdr["Content-Type"] = "application/x-www-form-urlencoded"
		return do(t, h, "POST", "/login", hdr, strings.NewReader(v.Encode()))
	}
	same := map[string]string{"Origin": "http://127.0.0.1:8080"}
	if code, _, hdr := form(url.Values{"token": {"nope"}}, map[string]string{"Origin": "http://127.0.0.1:8080"}); code != 303 || hdr.Get("Location") != "/login?failed=1" || hdr.Get("Set-Cookie") != "" {
		t.Errorf("wrong login: %d %v", code, hdr)
	}
	code, _, hdr := form(url.Values{"token": {token}}, same)
	cookie := hdr.Get("Set-Cookie")
	if code != 303 || !strings.HasPrefix(cookie, "fhirdeid_session=") || strings.Contains(cookie, token) ||
		!strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") {
		t.Fatalf("login: %d, cookie %q", code, cookie)
	}
	session := strings.SplitN(cookie, ";", 2)[0]
	code, page, _ := do(t, h, "GET", "/", map[string]string{"Cookie": session}, nil)
	if code != 200 || !strings.Contains(page, "Run now") {
		t.Fatalf("dashboard with the session: %d", code)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if csrf == nil || strings.Contains(page, token) {
		t.Fatalf("the dashboard's form has no CSRF field, or shows the token")
	}
	post := func(v url.Values, hdr map[string]string) int {
		hdr["Content-Type"] = "application/x-www-form-urlencoded"
		code, _, _ := do(t, h, "POST", "/pipelines/ehr/run", hdr, strings.NewReader(v.Encode()))
		return code
	}
	if code := post(url.Values{}, map[string]string{"Cookie": session, "Origin": "http://127.0.0.1:8080"}); code != 403 {
		t.Errorf("run now without the CSRF field: %d, want 403", code)
	}
	if code := post(url.Values{"csrf": {csrf[1]}}, map[string]string{"Cookie": session, "Origin": "http://evil.example"}); code != 403 {
		t.Errorf("run now from another origin: %d, want 403", code)
	}
	if code := post(url.Values{"csrf": {csrf[1]}}, map[string]string{"Cookie": session, "Origin": "http://127.0.0.1:8080"}); code != 303 {
		t.Errorf("run now: %d, want 303", code)
	}
}
