package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// KickoffURL returns the absolute kick-off URL of r, with its query for a
// GET kick-off.
func (c *Client) KickoffURL(r *Request) string {
	_, target, _ := c.kickoffRequest(r, r.UsesPOST(), r.Lenient)
	return target
}

// Kickoff starts an export and returns the absolute status URL. It retries
// 429, 5xx, transient outcomes and network errors within the retry policy
// and refreshes the token once on a 401. A GET kick-off answered 405 is
// sent again as a POST with a Parameters body; with LenientRetry, a 400 is
// sent again once with Prefer: handling=lenient. Other failures come back
// as *HTTPError naming the server's OperationOutcome.
func (c *Client) Kickoff(ctx context.Context, r *Request) (string, error) {
	if err := r.Validate(); err != nil {
		return "", fmt.Errorf("kick-off: %w", err)
	}
	post, lenient := r.UsesPOST(), r.Lenient
	rt := retrier{c: c}
	for {
		req, target, err := c.kickoffRequest(r, post, lenient)
		if err != nil {
			return "", err
		}
		resp, err := c.send(ctx, req)
		if err != nil {
			if !isRetryable(err) {
				return "", err
			}
			if werr := rt.wait(ctx, err, ""); werr != nil {
				return "", werr
			}
			continue
		}
		status, err := c.kickoffResponse(r, target, resp)
		if err == nil {
			return status, nil
		}
		var he *HTTPError
		if !errors.As(err, &he) {
			return "", err
		}
		switch {
		case he.StatusCode == http.StatusMethodNotAllowed && !post:
			post = true
			continue
		case he.StatusCode == http.StatusBadRequest && c.LenientRetry && !lenient:
			lenient = true
			continue
		}
		if werr := rt.waitFor(ctx, err, resp.Header.Get("Retry-After")); werr != nil {
			return "", werr
		}
	}
}

// kickoffRequest builds the kick-off exchange.
func (c *Client) kickoffRequest(r *Request, post, lenient bool) (request, string, error) {
	u := *c.Base
	u.Path += r.Path()
	u.RawPath = ""
	if !post {
		u.RawQuery = r.Query().Encode()
	}
	target := u.String()
	prefer := "respond-async"
	if r.SeparateExportStatus {
		prefer += ", separate-export-status"
	}
	if lenient {
		prefer += ", handling=lenient"
	}
	req := request{step: "kick-off", method: http.MethodGet, url: target, auth: c.Auth,
		headers: map[string]string{"Accept": fhirJSON, "Prefer": prefer}}
	if post {
		body, err := r.Parameters()
		if err != nil {
			return req, "", fmt.Errorf("kick-off: encode Parameters: %w", err)
		}
		req.method = http.MethodPost
		req.body = body
		req.headers["Content-Type"] = fhirJSON
	}
	return req, target, nil
}

// waitFor is wait for an error that may not be retryable.
func (r *retrier) waitFor(ctx context.Context, err error, retryAfter string) error {
	if !isRetryable(err) {
		return err
	}
	return r.wait(ctx, err, retryAfter)
}

func (c *Client) kickoffResponse(r *Request, target string, resp *http.Response) (string, error) {
	detail := map[string]any{"exportUrl": redactURL(target), "requestParameters": r.loggedParameters()}
	c.mu.Lock()
	if si := c.server; si != nil {
		detail["softwareName"], detail["softwareVersion"] = si.SoftwareName, si.SoftwareVersion
		detail["softwareReleaseDate"], detail["fhirVersion"] = si.SoftwareReleaseDate, si.FHIRVersion
	}
	c.mu.Unlock()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		he := httpError("kick-off", resp)
		detail["errorCode"] = resp.StatusCode
		detail["errorBody"] = he.Outcome
		c.emit("kickoff", detail)
		return "", he
	}
	drain(resp)
	loc := resp.Header.Values("Content-Location")
	if len(loc) != 1 || loc[0] == "" {
		detail["errorCode"] = resp.StatusCode
		detail["errorBody"] = "no single Content-Location header"
		c.emit("kickoff", detail)
		return "", fmt.Errorf("kick-off: %s %s: HTTP %d without a single Content-Location header", resp.Request.Method, redactURL(target), resp.StatusCode)
	}
	u, err := url.Parse(loc[0])
	if err != nil {
		return "", fmt.Errorf("kick-off: Content-Location is not a URL")
	}
	u = resp.Request.URL.ResolveReference(u)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("kick-off: Content-Location has scheme %q", u.Scheme)
	}
	if c.Auth != nil && !c.trustedOrigin(u) {
		detail["errorCode"] = resp.StatusCode
		detail["errorBody"] = "Content-Location on another origin"
		c.emit("kickoff", detail)
		return "", &OriginError{Step: "kick-off", Origin: Origin(u), Why: "the status URL (Content-Location) polled with the token"}
	}
	detail["errorCode"] = nil
	detail["responseHeaders"] = map[string]string{"content-location": redactURL(u.String())}
	c.emit("kickoff", detail)
	return u.String(), nil
}

// Poll waits for the export at statusURL to complete and returns its
// manifest, with every page of a paged manifest merged. started is the
// kick-off time, from which the policy's deadline counts. A 404 or 410
// returns ErrJobGone.
func (c *Client) Poll(ctx context.Context, statusURL string, started time.Time) (*Manifest, error) {
	p := c.Polling
	clk := c.clock()
	delay := p.InitialDelay
	rt := retrier{c: c}
	// Pages by URL, in order: a partial manifest (STU3) may be returned
	// again, unchanged or with a link added, so it replaces its earlier copy.
	var order []string
	byURL := map[string]*Manifest{}
	addPage := func(u string, pg *Manifest) {
		if _, ok := byURL[u]; !ok {
			order = append(order, u)
		}
		byURL[u] = pg
	}
	lim := c.Limits.withDefaults()
	// readManifest reads one manifest page within the size limit.
	readManifest := func(resp *http.Response) ([]byte, error) {
		body, err := readSmall(resp, lim.MaxManifestBytes)
		var tl *tooLarge
		if errors.As(err, &tl) {
			return nil, &LimitError{File: "manifest " + redactURL(statusURL), Limit: "maxManifestBytes",
				Msg: fmt.Sprintf("manifest larger than %d bytes", lim.MaxManifestBytes)}
		}
		return body, err
	}
	countFiles := func() error {
		files := 0
		for _, pg := range byURL {
			files += len(pg.Output) + len(pg.Deleted) + len(pg.Error)
		}
		if files > lim.MaxManifestFiles {
			return &LimitError{File: "manifest " + redactURL(statusURL), Limit: "maxManifestFiles",
				Msg: fmt.Sprintf("more than %d files listed", lim.MaxManifestFiles)}
		}
		return nil
	}
	next := statusURL
	lastProgress, lastChange, warned := "", clk.Now(), false
	for {
		if p.Deadline > 0 && clk.Now().Sub(started) > p.Deadline {
			c.emit("status_error", map[string]any{"message": ErrDeadline.Error()})
			return nil, fmt.Errorf("status: %w (%s after kick-off)", ErrDeadline, p.Deadline)
		}
		resp, err := c.send(ctx, request{step: "status", method: http.MethodGet, url: next, auth: c.Auth, why: "status polling",
			headers: map[string]string{"Accept": "application/json"}})
		if err != nil {
			if !isRetryable(err) {
				return nil, err
			}
			c.emit("status_error", map[string]any{"message": err.Error(), "willRetry": true})
			if werr := rt.wait(ctx, err, ""); werr != nil {
				return nil, werr
			}
			continue
		}
		code := resp.StatusCode
		if xs := resp.Header.Get("X-Export-Status"); xs != "" && code == http.StatusOK {
			if n, err := strconv.Atoi(strings.TrimSpace(strings.Fields(xs + " ")[0])); err == nil {
				code = n
			}
		}
		switch {
		case code == http.StatusAccepted:
			followed := false
			if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); strings.Contains(ct, "json") {
				// STU3 allowPartialManifests: a 202 may carry a manifest of
				// the files ready so far.
				body, err := readManifest(resp)
				if IsLimit(err) {
					return nil, err
				}
				if err == nil && bytes.Contains(body, []byte(`"transactionTime"`)) {
					pg, err := DecodeManifest(body, resp.Request.URL)
					if err != nil {
						return nil, fmt.Errorf("status: partial %w", err)
					}
					addPage(next, pg)
					if err := countFiles(); err != nil {
						return nil, err
					}
					if n := pg.Next(); n != "" {
						u, err := url.Parse(n)
						if err != nil {
							return nil, errors.New("status: manifest link next is not a URL")
						}
						nu := resp.Request.URL.ResolveReference(u).String()
						if _, seen := byURL[nu]; !seen {
							next, followed = nu, true
						}
					}
				}
			} else {
				drain(resp)
			}
			if len(order) > 10000 {
				return nil, errors.New("status: more than 10000 manifest pages")
			}
			xp := resp.Header.Get("X-Progress")
			ra := resp.Header.Get("Retry-After")
			c.emit("status_progress", map[string]any{"xProgress": xp, "retryAfter": ra})
			if xp != "" && c.Progress != nil {
				c.Progress(oneLine(xp))
			}
			if xp != lastProgress {
				lastProgress, lastChange = xp, clk.Now()
			} else if p.StuckAfter > 0 && !warned && clk.Now().Sub(lastChange) >= p.StuckAfter {
				warned = true
				msg := fmt.Sprintf("no progress for %s", clk.Now().Sub(lastChange).Round(time.Second))
				c.emit("status_stuck", map[string]any{"message": msg, "xProgress": xp})
				if c.Progress != nil {
					c.Progress("warning: export job made " + msg)
				}
			}
			wait := c.jitter(delay, p.Jitter)
			if d, ok := RetryAfter(ra, clk.Now()); ok {
				wait = d
			} else if p.Factor > 1 {
				delay = time.Duration(float64(delay) * p.Factor)
			}
			wait = clamp(wait, p.MinDelay, p.MaxDelay)
			delay = clamp(delay, p.MinDelay, p.MaxDelay)
			rt.n = 0 // progress resets the retry budget
			if followed {
				continue // the next page may be ready already
			}
			if err := clk.Sleep(ctx, wait); err != nil {
				return nil, err
			}
		case code == http.StatusOK:
			body, err := readManifest(resp)
			if IsLimit(err) {
				return nil, err
			}
			if err != nil {
				return nil, fmt.Errorf("status: read manifest: %w", cleanNetErr(err))
			}
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				if mt, _, _ := mime.ParseMediaType(ct); mt != "" && !strings.Contains(mt, "json") {
					return nil, fmt.Errorf("status: manifest has Content-Type %q, want application/json", mt)
				}
			}
			pg, err := DecodeManifest(body, resp.Request.URL)
			if err != nil {
				c.emit("status_error", map[string]any{"message": err.Error()})
				return nil, fmt.Errorf("status: %w", err)
			}
			c.emit("status_page_complete", map[string]any{"transactionTime": pg.TransactionTime,
				"outputFileCount": len(pg.Output), "deletedFileCount": len(pg.Deleted), "errorFileCount": len(pg.Error)})
			addPage(next, pg)
			if err := countFiles(); err != nil {
				return nil, err
			}
			if n := pg.Next(); n != "" {
				u, err := url.Parse(n)
				if err != nil {
					return nil, errors.New("status: manifest link next is not a URL")
				}
				nu := resp.Request.URL.ResolveReference(u).String()
				if _, seen := byURL[nu]; seen {
					return nil, errors.New("status: the manifest's next links form a loop")
				}
				next = nu
				if len(order) > 10000 {
					return nil, errors.New("status: more than 10000 manifest pages")
				}
				continue
			}
			pages := len(order)
			m := *byURL[order[0]]
			m.Output = append([]File(nil), m.Output...)
			m.Deleted = append([]File(nil), m.Deleted...)
			m.Error = append([]File(nil), m.Error...)
			for _, u := range order[1:] {
				m.appendPage(byURL[u])
			}
			m.Link = nil
			if err := CheckManifest(&m, c.serverFHIRVersion()); err != nil {
				c.emit("status_error", map[string]any{"message": err.Error()})
				return nil, fmt.Errorf("status: %w", err)
			}
			c.emit("status_complete", map[string]any{"transactionTime": m.TransactionTime})
			c.emit("manifest_complete", map[string]any{"transactionTime": m.TransactionTime,
				"totalOutputFileCount": len(m.Output), "totalDeletedFileCount": len(m.Deleted),
				"totalErrorFileCount": len(m.Error), "totalManifests": pages})
			return &m, nil
		case code == http.StatusNotFound || code == http.StatusGone:
			he := httpError("status", resp)
			c.emit("status_error", map[string]any{"code": code, "message": he.Error()})
			return nil, fmt.Errorf("status: %s: %w", redactURL(next), ErrJobGone)
		default:
			he := httpError("status", resp)
			he.StatusCode = code
			retry := isRetryable(he)
			c.emit("status_error", map[string]any{"code": code, "message": he.Error(), "willRetry": retry})
			if !retry {
				return nil, he
			}
			if werr := rt.wait(ctx, he, resp.Header.Get("Retry-After")); werr != nil {
				return nil, werr
			}
		}
	}
}

// Delete sends DELETE to the status URL: it cancels a running export or
// tells the server the files may be removed. A 404 counts as success.
func (c *Client) Delete(ctx context.Context, statusURL string) error {
	resp, err := c.send(ctx, request{step: "delete", method: http.MethodDelete, url: statusURL, auth: c.Auth, why: "DELETE of the export job",
		headers: map[string]string{"Accept": fhirJSON}})
	if err != nil {
		return err
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		drain(resp)
		return nil
	}
	return httpError("delete", resp)
}

// ServerInfo is what the CapabilityStatement says about the server.
type ServerInfo struct {
	SoftwareName, SoftwareVersion, SoftwareReleaseDate, FHIRVersion string
}

// Metadata reads [base]metadata. The kick-off log event then names the
// server software.
func (c *Client) Metadata(ctx context.Context) (*ServerInfo, error) {
	u := c.Base.JoinPath("metadata").String()
	resp, err := c.send(ctx, request{step: "metadata", method: http.MethodGet, url: u, auth: c.Auth,
		headers: map[string]string{"Accept": fhirJSON}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, httpError("metadata", resp)
	}
	body, err := readSmall(resp, 16<<20)
	if err != nil {
		return nil, fmt.Errorf("metadata: read: %w", cleanNetErr(err))
	}
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
		Software     struct {
			Name        string `json:"name"`
			Version     string `json:"version"`
			ReleaseDate string `json:"releaseDate"`
		} `json:"software"`
	}
	if json.Unmarshal(body, &cs) != nil || cs.ResourceType != "CapabilityStatement" {
		return nil, errors.New("metadata: not a CapabilityStatement")
	}
	info := &ServerInfo{SoftwareName: oneLine(cs.Software.Name), SoftwareVersion: oneLine(cs.Software.Version),
		SoftwareReleaseDate: oneLine(cs.Software.ReleaseDate), FHIRVersion: oneLine(cs.FHIRVersion)}
	c.mu.Lock()
	c.server = info
	c.mu.Unlock()
	return info, nil
}
