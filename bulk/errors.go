package bulk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrJobGone reports that the server no longer knows the export job: the
// status URL answered 404 or 410 because the job expired or was deleted.
// The export must be started again.
var ErrJobGone = errors.New("export job gone: the status URL answered 404/410 (expired or deleted)")

// ErrDeadline reports that the export did not complete within the poll
// policy's deadline. The job is left on the server and the checkpoint kept.
var ErrDeadline = errors.New("export not complete before the deadline")

// HTTPError is a failed exchange with the server. It names the step, the
// method, the URL without its query (which may carry a signature) and the
// status, and summarises the server's OperationOutcome if it sent one.
type HTTPError struct {
	// Step is the protocol step: "kick-off", "status", "download", "delete",
	// "token", "discovery".
	Step string
	// Method and URL locate the request; URL has no query and no user info.
	Method, URL string
	// StatusCode is the HTTP status.
	StatusCode int
	// Outcome summarises the OperationOutcome (or OAuth error) in the body,
	// "" if none could be read.
	Outcome string
	// Transient is true when every issue had a code of the transient
	// family (transient, lock-error, no-store, exception, timeout,
	// incomplete, throttled).
	Transient bool
	// Permanent is true when the body was an OperationOutcome with an
	// error or fatal issue outside the transient family: a 5xx carrying it
	// is not retried.
	Permanent bool
}

// Error returns the one-line description: step, method, URL, status and
// the server's outcome.
func (e *HTTPError) Error() string {
	s := fmt.Sprintf("%s: %s %s: HTTP %d", e.Step, e.Method, e.URL, e.StatusCode)
	if e.Outcome != "" {
		s += ": " + e.Outcome
	}
	return s
}

// ValidationError is a problem found in the content of a downloaded file.
// It never quotes the content: it names the file, the line and what was
// expected.
type ValidationError struct {
	// File is the local name of the file (for example "Patient.000.ndjson.gz")
	// or its redacted URL.
	File string
	// Line is the 1-based line number, 0 for a whole-file problem.
	Line int64
	// Msg describes the problem.
	Msg string
}

// Error returns the one-line description: file, line and problem.
func (e *ValidationError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("validate %s line %d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("validate %s: %s", e.File, e.Msg)
}

// redactURL returns u without user info, query and fragment, for logs and
// errors: a query may carry a SAS signature or search values.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			u = u[:i]
		}
		return u
	}
	p.User = nil
	p.RawQuery = ""
	p.ForceQuery = false
	p.Fragment = ""
	p.RawFragment = ""
	return p.String()
}

// OperationOutcome is the part of a FHIR OperationOutcome the client reads.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string `json:"severity"`
	Code        string `json:"code"`
	Diagnostics string `json:"diagnostics,omitempty"`
	Details     *struct {
		Text string `json:"text,omitempty"`
	} `json:"details,omitempty"`
}

// transientCodes is the transient family of the FHIR issue-type codes.
var transientCodes = map[string]bool{"transient": true, "lock-error": true, "no-store": true, "exception": true,
	"timeout": true, "incomplete": true, "throttled": true}

// parseOutcomeKind reads an OperationOutcome, or an OAuth error object, from
// a response body. It returns a one-line summary, whether every issue is
// transient, and whether an error or fatal issue lies outside the transient
// family (a permanent failure).
func parseOutcomeKind(body []byte) (summary string, transient, permanent bool) {
	var oo OperationOutcome
	if json.Unmarshal(body, &oo) == nil && oo.ResourceType == "OperationOutcome" && len(oo.Issue) > 0 {
		parts := make([]string, 0, len(oo.Issue))
		transient = true
		for _, is := range oo.Issue {
			if !transientCodes[is.Code] {
				transient = false
				if is.Severity == "error" || is.Severity == "fatal" {
					permanent = true
				}
			}
			text := is.Diagnostics
			if text == "" && is.Details != nil {
				text = is.Details.Text
			}
			p := is.Severity + "/" + is.Code
			if text != "" {
				p += " " + text
			}
			parts = append(parts, p)
			if len(parts) == 3 {
				break
			}
		}
		return oneLine(strings.Join(parts, "; ")), transient, permanent
	}
	var oauth struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &oauth) == nil && oauth.Error != "" {
		s := oauth.Error
		if oauth.Description != "" {
			s += ": " + oauth.Description
		}
		return oneLine(s), false, false
	}
	return "", false, false
}

// oneLine flattens s to a single line of at most 300 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
