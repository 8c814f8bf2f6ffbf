// Package bulk is a FHIR Bulk Data Access ($export) client: kick-off at the
// system, patient and group levels, status polling with clamped Retry-After
// and backoff, manifest decoding (STU1 to STU4 shapes), streamed and
// validated NDJSON downloads, authentication (bearer, OAuth2 client
// credentials, SMART Backend Services), checkpoints to resume an export
// after a crash, and the log.ndjson event log of the SMART bulk-data-client.
//
// Servers, manifests and files are untrusted: the credentials go only to
// the FHIR server's origin and trusted hosts (origin.go), manifest types are
// checked against the FHIR model (manifestcheck.go), and lines, files,
// decompression, manifests and transfer rates are bounded (limits.go); a
// violation is a terminal error, never retried (see RetryPolicy for the
// retry taxonomy).
//
// All HTTP goes through an injected *http.Client, and time through a Clock,
// so tests run against a local server in milliseconds.
package bulk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Media types and header values the protocol fixes.
const (
	fhirJSON   = "application/fhir+json"
	fhirNDJSON = "application/fhir+ndjson"
)

// Clock is the source of time: tests inject one whose Sleep returns at once.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, returning ctx.Err() then.
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep waits for d or until ctx is done.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PollPolicy governs status polling.
type PollPolicy struct {
	// InitialDelay is the first wait when the server sends no Retry-After.
	InitialDelay time.Duration
	// MinDelay and MaxDelay clamp every wait, Retry-After included.
	MinDelay, MaxDelay time.Duration
	// Factor multiplies the wait after each poll without Retry-After.
	Factor float64
	// Jitter is the fraction (0..1) by which a computed backoff is randomly
	// shortened or lengthened. Server-given Retry-After values are not
	// jittered.
	Jitter float64
	// Deadline bounds the whole export from its kick-off.
	Deadline time.Duration
	// StuckAfter warns (a status_stuck event and a Progress message) once
	// when X-Progress has not changed for this long (0: never).
	StuckAfter time.Duration
}

// DefaultPollPolicy returns the defaults: 2 s first wait, clamps of 1 s and
// 5 min, factor 1.5, 20 % jitter, a 30-day deadline, a warning after 6 h
// without progress.
func DefaultPollPolicy() PollPolicy {
	return PollPolicy{InitialDelay: 2 * time.Second, MinDelay: time.Second, MaxDelay: 5 * time.Minute,
		Factor: 1.5, Jitter: 0.2, Deadline: 30 * 24 * time.Hour, StuckAfter: 6 * time.Hour}
}

// RetryPolicy governs retries of transient failures.
//
// Retried: network errors (connection refused or reset, a cut or stalled
// transfer), 429, and 500, 502, 503, 504 unless the body is an
// OperationOutcome with an error outside the transient issue-type family
// (transient, lock-error, no-store, exception, timeout, incomplete,
// throttled); any status with an all-transient OperationOutcome.
//
// Terminal, at once: other 4xx, a 5xx with a non-transient
// OperationOutcome, resource limits (*LimitError), validation errors, count
// mismatches unless allowed, credentials refused for another origin
// (*OriginError).
//
// Waits grow exponentially from BaseDelay, with jitter, clamped to
// MaxDelay (Retry-After replaces the computed wait, clamped too), and all
// the waits of one operation together stay within Budget.
type RetryPolicy struct {
	// MaxRetries is the number of retries after the first attempt.
	MaxRetries int
	// BaseDelay is the first wait; it doubles on each retry up to MaxDelay.
	// A Retry-After header replaces the computed wait (clamped to MaxDelay).
	BaseDelay, MaxDelay time.Duration
	// Budget caps the total wait of one operation's retries (0: no cap).
	Budget time.Duration
}

// DefaultRetryPolicy returns the defaults: 5 retries, 5 s doubling to
// 5 min, within a 30 min budget.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxRetries: 5, BaseDelay: 5 * time.Second, MaxDelay: 5 * time.Minute, Budget: 30 * time.Minute}
}

// Client talks to one FHIR server's bulk export endpoints.
type Client struct {
	// HTTP sends every request. It must not add Accept-Encoding itself
	// (http.Transport does not when the header is set, as here).
	HTTP *http.Client
	// Base is the FHIR base URL, with a trailing slash.
	Base *url.URL
	// Auth authorises requests to the FHIR server; nil means none.
	Auth Authenticator
	// StorageAuth, when set, authorises downloads of manifests with
	// requiresAccessToken false whose URLs are on another host than the FHIR
	// server (Azure mode: an Entra token for https://storage.azure.com/).
	// x-ms-version is added.
	StorageAuth Authenticator
	// StorageSigner, when set, signs those same downloads instead (Azure
	// shared key or SAS). Without either, such files are fetched with no
	// credentials, as Bulk Data STU3 requires.
	StorageSigner RequestSigner
	// Polling and Retries are the polling and retry policies.
	Polling PollPolicy
	Retries RetryPolicy
	// Clock is the time source.
	Clock Clock
	// Events receives the log.ndjson events; nil drops them.
	Events EventSink
	// UserAgent is sent on every request.
	UserAgent string
	// MaxLineBytes caps an NDJSON line (default 64 MiB).
	MaxLineBytes int
	// Limits bound manifests and files (zero values: the defaults).
	Limits Limits
	// IdleTimeout cancels a download that receives no byte for this long
	// (real time, not Clock); the file is then retried (default 5 min,
	// 0: none).
	IdleTimeout time.Duration
	// LenientRetry sends a kick-off refused with 400 once more with
	// Prefer: handling=lenient, asking the server to ignore parameters it
	// does not support.
	LenientRetry bool
	// Progress, if set, is called with each X-Progress value and with
	// warnings such as a job that makes no progress.
	Progress func(xProgress string)

	mu      sync.Mutex
	rng     *rand.Rand
	server  *ServerInfo
	trusted []string // origins trusted with the FHIR credentials (TrustHosts)
}

// NewClient returns a client for the FHIR base URL with default policies,
// the system clock and no authentication.
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("client: the FHIR base URL must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("client: the FHIR base URL must not have a query or fragment")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{HTTP: hc, Base: u, Polling: DefaultPollPolicy(), Retries: DefaultRetryPolicy(),
		Clock: SystemClock{}, UserAgent: "fhirdeid", MaxLineBytes: DefaultMaxLineBytes, Limits: DefaultLimits(),
		IdleTimeout: 5 * time.Minute}, nil
}

func (c *Client) clock() Clock {
	if c.Clock == nil {
		return SystemClock{}
	}
	return c.Clock
}

func (c *Client) emit(id string, detail map[string]any) {
	if c.Events != nil {
		c.Events.Event(id, detail)
	}
}

// jitter returns d randomly changed by up to ±frac.
func (c *Client) jitter(d time.Duration, frac float64) time.Duration {
	if frac <= 0 || d <= 0 {
		return d
	}
	c.mu.Lock()
	if c.rng == nil {
		c.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6268))
	}
	f := 1 + frac*(2*c.rng.Float64()-1)
	c.mu.Unlock()
	return time.Duration(float64(d) * f)
}

// request is one HTTP exchange description.
type request struct {
	step    string
	method  string
	url     string
	body    []byte
	headers map[string]string
	// auth selects the authenticator: nil for none.
	auth Authenticator
	// signer, if set, signs the request after its headers are set.
	signer RequestSigner
	// storage marks auth as Azure Storage credentials, whose origin
	// fileRequest checked, rather than the FHIR server's.
	storage bool
	// why says, in an *OriginError, what needed the credentials.
	why string
}

// send performs r once, authorising it and, on a 401, invalidating the
// token and trying once more with a fresh one. The caller closes the body.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	if err := c.checkOrigin(r); err != nil {
		return nil, err
	}
	hc := c.HTTP
	if r.auth != nil || r.signer != nil {
		hc = c.scopedClient()
	}
	for attempt := 0; ; attempt++ {
		var body io.Reader
		if r.body != nil {
			body = bytes.NewReader(r.body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
		if err != nil {
			return nil, fmt.Errorf("%s: build request for %s: %w", r.step, redactURL(r.url), cleanNetErr(err))
		}
		for k, v := range r.headers {
			req.Header.Set(k, v)
		}
		if c.UserAgent != "" {
			req.Header.Set("User-Agent", c.UserAgent)
		}
		var tok Secret
		if r.auth != nil {
			tok, err = r.auth.Token(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: get access token: %w", r.step, err)
			}
			if !tok.IsZero() {
				req.Header.Set("Authorization", "Bearer "+tok.Reveal())
			}
		}
		if r.signer != nil {
			if err := r.signer.Sign(req); err != nil {
				return nil, fmt.Errorf("%s: sign request for %s: %w", r.step, redactURL(r.url), err)
			}
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, &netError{step: r.step, method: r.method, url: redactURL(r.url), err: cleanNetErr(err)}
		}
		if resp.StatusCode == http.StatusUnauthorized && r.auth != nil && attempt == 0 && !tok.IsZero() {
			drain(resp)
			r.auth.Invalidate(tok)
			continue
		}
		return resp, nil
	}
}

// netError is a transport failure; it is retryable.
type netError struct {
	step, method, url string
	err               error
}

func (e *netError) Error() string {
	return fmt.Sprintf("%s: %s %s: %v", e.step, e.method, e.url, e.err)
}
func (e *netError) Unwrap() error { return e.err }

// cleanNetErr strips the URL that *url.Error adds (it may carry a query).
func cleanNetErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// drain discards and closes a response body so the connection is reused.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

// readSmall reads at most 4 MiB of a body (status, errors, manifests).
func readSmall(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &tooLarge{limit}
	}
	return b, nil
}

// tooLarge is a body over readSmall's limit.
type tooLarge struct{ limit int64 }

func (e *tooLarge) Error() string { return fmt.Sprintf("response body larger than %d bytes", e.limit) }

// httpError builds an *HTTPError from a response, reading its body.
func httpError(step string, resp *http.Response) *HTTPError {
	body, _ := readSmall(resp, 1<<20)
	summary, transient, permanent := parseOutcomeKind(body)
	he := &HTTPError{Step: step, Method: resp.Request.Method, URL: redactURL(resp.Request.URL.String()),
		StatusCode: resp.StatusCode, Outcome: summary, Transient: transient, Permanent: permanent}
	// A server may echo what it was sent: never repeat the credentials.
	if tok, ok := strings.CutPrefix(resp.Request.Header.Get("Authorization"), "Bearer "); ok {
		_ = scrub(he, tok)
	}
	if _, pw, ok := resp.Request.BasicAuth(); ok {
		_ = scrub(he, pw)
	}
	return he
}

// retryableStatus reports whether an HTTP status is worth retrying.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// isRetryable reports whether err (from send or from a body read) is worth
// retrying.
func isRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	var be *bodyError
	if errors.As(err, &be) {
		return true
	}
	var he *HTTPError
	if errors.As(err, &he) {
		if he.StatusCode == http.StatusTooManyRequests || he.Transient {
			return true
		}
		return retryableStatus(he.StatusCode) && !he.Permanent
	}
	var op *net.OpError
	return errors.As(err, &op)
}

// RetryAfter parses a Retry-After value — delay seconds or an HTTP date —
// relative to now. ok is false when the value is absent or unreadable.
// Values that look like epoch times (more than 10^7 seconds) come back as
// such; callers clamp them.
func RetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 {
			return 0, true
		}
		if n > 1e9 { // absolute epoch-ms or absurd: return huge, caller clamps
			return time.Duration(1<<62 - 1), true
		}
		return time.Duration(n * float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d = t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// clamp limits d to [lo, hi].
func clamp(d, lo, hi time.Duration) time.Duration {
	if hi > 0 && d > hi {
		d = hi
	}
	if d < lo {
		d = lo
	}
	return d
}

// retrier counts retries for one operation.
type retrier struct {
	c     *Client
	n     int
	delay time.Duration
	spent time.Duration
}

// wait sleeps before the next retry of err, or returns err when the policy
// is exhausted. resp, if not nil, may carry Retry-After.
func (r *retrier) wait(ctx context.Context, err error, retryAfter string) error {
	p := r.c.Retries
	if r.n >= p.MaxRetries {
		return err
	}
	r.n++
	if r.delay == 0 {
		r.delay = p.BaseDelay
	} else {
		r.delay *= 2
	}
	d := r.c.jitter(r.delay, r.c.Polling.Jitter)
	if ra, ok := RetryAfter(retryAfter, r.c.clock().Now()); ok {
		d = ra
	}
	d = clamp(d, r.c.Polling.MinDelay, p.MaxDelay)
	if p.Budget > 0 && r.spent+d > p.Budget {
		return fmt.Errorf("%w (gave up: the retry budget of %s is spent after %d retries)", err, p.Budget, r.n-1)
	}
	r.spent += d
	return r.c.clock().Sleep(ctx, d)
}
