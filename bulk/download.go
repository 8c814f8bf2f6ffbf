package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// bodyError is a failure while reading a response body (a cut connection,
// a truncated gzip stream); the whole file is worth retrying.
type bodyError struct {
	url string
	err error
}

func (e *bodyError) Error() string { return fmt.Sprintf("download: read %s: %v", e.url, e.err) }
func (e *bodyError) Unwrap() error { return e.err }

// bodyReader turns read errors into *bodyError.
type bodyReader struct {
	r   io.Reader
	url string
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		var be *bodyError
		var se *sinkError
		var le *LimitError
		var ve *ValidationError
		if !errors.As(err, &be) && !errors.As(err, &se) && !errors.As(err, &le) && !errors.As(err, &ve) {
			err = &bodyError{url: b.url, err: cleanNetErr(err)}
		}
	}
	return n, err
}

// azureVersion is the x-ms-version sent with Azure Storage tokens.
const azureVersion = "2021-08-06"

// fileRequest builds the download exchange of f: the FHIR token when the
// manifest requires it (send refuses it for an untrusted origin), else the
// storage credentials for files on an Azure Storage or trusted origin other
// than the FHIR server's (Azure mode), else none.
func (c *Client) fileRequest(m *Manifest, f File) request {
	r := request{step: "download", method: http.MethodGet, url: f.URL,
		headers: map[string]string{"Accept": fhirNDJSON, "Accept-Encoding": "gzip"}}
	if m != nil && m.RequiresAccessToken {
		r.auth = c.Auth
		r.why = "the manifest sets requiresAccessToken"
		return r
	}
	if c.StorageAuth == nil && c.StorageSigner == nil {
		return r
	}
	if u, err := url.Parse(f.URL); err == nil && Origin(u) != Origin(c.Base) && c.storageOrigin(u) {
		r.headers["x-ms-version"] = azureVersion
		r.auth, r.signer, r.storage = c.StorageAuth, c.StorageSigner, true
	}
	return r
}

// openRaw GETs a file, retrying failures before the body within the retry
// policy. It returns the response with its wire body. The body is guarded
// by the client's idle timeout: when no byte arrives for that long, the
// request is cancelled and reads fail with a retryable error.
func (c *Client) openRaw(ctx context.Context, m *Manifest, f File) (*http.Response, error) {
	req := c.fileRequest(m, f)
	rt := retrier{c: c}
	for {
		rctx, cancel := context.WithCancel(ctx)
		w := newWatchdog(c.IdleTimeout, cancel)
		lim := c.Limits.withDefaults()
		resp, err := c.send(rctx, req)
		if err != nil && w.fired() && ctx.Err() == nil {
			err = &netError{step: "download", method: http.MethodGet, url: redactURL(f.URL),
				err: fmt.Errorf("no response within %s", c.IdleTimeout)}
		}
		if err == nil && resp.StatusCode == http.StatusOK {
			resp.Body = &idleBody{rc: resp.Body, w: w, cancel: cancel, idle: c.IdleTimeout, url: redactURL(f.URL),
				rate: newRateGuard(lim.MinBytes, lim.RateInterval, cancel)}
			return resp, nil
		}
		retryAfter := ""
		if err == nil {
			retryAfter = resp.Header.Get("Retry-After")
			err = httpError("download", resp)
		}
		w.stop()
		cancel()
		if werr := rt.waitFor(ctx, err, retryAfter); werr != nil {
			return nil, werr
		}
	}
}

// watchdog cancels a request when it is not fed for a while.
type watchdog struct {
	t    *time.Timer
	d    time.Duration
	fire atomic.Bool
}

func newWatchdog(d time.Duration, cancel func()) *watchdog {
	w := &watchdog{d: d}
	if d > 0 {
		w.t = time.AfterFunc(d, func() { w.fire.Store(true); cancel() })
	}
	return w
}

func (w *watchdog) feed() {
	if w.t != nil {
		w.t.Reset(w.d)
	}
}

func (w *watchdog) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

func (w *watchdog) fired() bool { return w.fire.Load() }

// idleBody feeds the watchdog and the stalled-transfer rule on every read
// and reports a stall (retried) or a trickle (terminal).
type idleBody struct {
	rc     io.ReadCloser
	w      *watchdog
	cancel func()
	idle   time.Duration
	rate   *rateGuard
	url    string
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.feed()
		b.rate.add(n)
	}
	if err != nil && err != io.EOF {
		switch {
		case b.rate.tripped.Load():
			err = &LimitError{File: b.url, Limit: "minBytes",
				Msg: fmt.Sprintf("fewer than %d bytes in %s: the transfer trickles", b.rate.min, b.rate.every)}
		case b.w.fired():
			err = fmt.Errorf("no data for %s", b.idle)
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.rate.close()
	b.w.stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// Open downloads f and returns its decompressed NDJSON as a stream. Failures
// before the body are retried within the retry policy; a failure while
// reading the stream is returned by Read, and the caller may retry the
// whole file (Fetch does that). The caller must Close the stream. Wrap it in
// NewLineReader and a Validator to check it line by line.
func (c *Client) Open(ctx context.Context, m *Manifest, f File) (io.ReadCloser, error) {
	resp, err := c.openRaw(ctx, m, f)
	if err != nil {
		return nil, err
	}
	body := &bodyReader{r: resp.Body, url: redactURL(f.URL)}
	r, closeDec, err := c.Decode(body, resp.Header.Get("Content-Encoding"), redactURL(f.URL))
	if err != nil {
		_ = resp.Body.Close()
		return nil, err
	}
	return readCloser{Reader: &bodyReader{r: r, url: redactURL(f.URL)}, close: func() error {
		err := closeDec()
		if cerr := resp.Body.Close(); err == nil {
			err = cerr
		}
		return err
	}}, nil
}

// Fetch downloads f and hands its wire stream and Content-Encoding to
// consume, retrying the whole file — consume is called again from the
// start — on network errors, cut connections, 429 and 5xx within the retry
// policy. Errors returned by consume that are not read errors of the stream
// (a validation error, a full disk) are not retried.
func (c *Client) Fetch(ctx context.Context, m *Manifest, f File, consume func(raw io.Reader, encoding string) error) error {
	rt := retrier{c: c}
	for {
		resp, err := c.openRaw(ctx, m, f)
		if err != nil {
			return err
		}
		err = consume(&bodyReader{r: resp.Body, url: redactURL(f.URL)}, resp.Header.Get("Content-Encoding"))
		_ = resp.Body.Close()
		if err == nil {
			return nil
		}
		var be *bodyError
		if !errors.As(err, &be) || ctx.Err() != nil {
			return err
		}
		c.emit("download_error", map[string]any{"fileUrl": redactURL(f.URL), "message": err.Error(), "willRetry": rt.n < c.Retries.MaxRetries})
		if werr := rt.wait(ctx, err, ""); werr != nil {
			return werr
		}
	}
}
