package bulk

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Token scope. The FHIR server's credentials (a static token, client
// credentials, Entra ID, SMART) go only to the FHIR server's origin —
// scheme, host and port — and to the origins the user trusts
// (Client.TrustHosts); never over http when the server is https, and never
// past a redirect to another origin. Azure Storage credentials go only to
// Azure blob endpoints over https and to trusted origins. A request that
// would carry the FHIR token elsewhere is refused with an *OriginError.

// Origin returns the origin of u as "scheme://host:port", lower-cased, with
// the scheme's default port made explicit.
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// OriginError is a request refused because it would carry credentials to an
// origin that is not trusted with them. It names the origin, never the
// credentials, and is not retried.
type OriginError struct {
	// Step is the protocol step ("status", "download", "delete", ...).
	Step string
	// Origin is the refused origin.
	Origin string
	// Why says what the request needed the credentials for.
	Why string
}

func (e *OriginError) Error() string {
	s := fmt.Sprintf("%s: refusing to send the FHIR server's access token to %s", e.Step, e.Origin)
	if e.Why != "" {
		s += " (" + e.Why + ")"
	}
	return s + ": it is not the FHIR server's origin; if that host is trusted with the token, list it in source.trustedHosts (export: --trusted-host)"
}

// TrustHosts adds origins that may receive the FHIR server's credentials,
// such as the blob host of a server that stores its export files elsewhere
// and sets requiresAccessToken. An entry is "host", "host:port" or
// "scheme://host[:port]"; without a scheme it takes the FHIR server's. An
// http origin is refused when the FHIR server is https.
func (c *Client) TrustHosts(hosts ...string) error {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		raw := h
		if !strings.Contains(h, "://") {
			raw = c.Base.Scheme + "://" + h
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("trusted host %q: want host, host:port or scheme://host[:port]", oneLine(h))
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("trusted host %q: the scheme must be http or https", oneLine(h))
		}
		if strings.EqualFold(c.Base.Scheme, "https") && u.Scheme != "https" {
			return fmt.Errorf("trusted host %q: the FHIR server is https, so its token is never sent over http", oneLine(h))
		}
		c.trusted = append(c.trusted, Origin(u))
	}
	return nil
}

// trustedOrigin reports whether u may receive the FHIR server's
// credentials.
func (c *Client) trustedOrigin(u *url.URL) bool {
	if strings.EqualFold(c.Base.Scheme, "https") && !strings.EqualFold(u.Scheme, "https") {
		return false
	}
	o := Origin(u)
	if o == Origin(c.Base) {
		return true
	}
	for _, t := range c.trusted {
		if t == o {
			return true
		}
	}
	return false
}

// azureBlobSuffixes are the blob endpoints of the Azure clouds.
var azureBlobSuffixes = []string{".blob.core.windows.net", ".blob.core.usgovcloudapi.net",
	".blob.core.chinacloudapi.cn", ".blob.storage.azure.net"}

// storageOrigin reports whether u may receive Azure Storage credentials:
// an Azure blob endpoint over https, or a trusted origin.
func (c *Client) storageOrigin(u *url.URL) bool {
	if strings.EqualFold(u.Scheme, "https") {
		host := strings.ToLower(u.Hostname())
		for _, s := range azureBlobSuffixes {
			if strings.HasSuffix(host, s) {
				return true
			}
		}
	}
	o := Origin(u)
	for _, t := range c.trusted {
		if t == o {
			return true
		}
	}
	return false
}

// checkOrigin refuses a request that would carry the FHIR credentials to
// an untrusted origin.
func (c *Client) checkOrigin(r request) error {
	if r.auth == nil || r.storage {
		return nil
	}
	u, err := url.Parse(r.url)
	if err != nil {
		return fmt.Errorf("%s: invalid URL", r.step)
	}
	if !c.trustedOrigin(u) {
		return &OriginError{Step: r.step, Origin: Origin(u), Why: r.why}
	}
	return nil
}

// errTooManyRedirects stops a redirect chain.
var errTooManyRedirects = errors.New("stopped after 10 redirects")

// scopedClient returns c.HTTP with a redirect policy that drops the
// Authorization header when a redirect leaves the origin of the first
// request (Go's own rule compares host names only, not schemes or ports).
func (c *Client) scopedClient() *http.Client {
	hc := *c.HTTP
	inner := c.HTTP.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && Origin(req.URL) != Origin(via[0].URL) {
			req.Header.Del("Authorization")
		}
		if inner != nil {
			return inner(req, via)
		}
		if len(via) >= 10 {
			return errTooManyRedirects
		}
		return nil
	}
	return &hc
}
