package bulk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Manifest is the body of a complete status response. It accepts every
// published shape: STU1/STU2 (error, request, extension as an object),
// STU3 (link paging, outputOrganizedBy) and the STU4 build (outcome instead
// of error, no request, extension as an array). Decoded manifests always
// hold the error files in Error.
type Manifest struct {
	// TransactionTime is the server's time when the query ran; the next
	// incremental export uses it as _since.
	TransactionTime string `json:"transactionTime"`
	// Request is the kick-off URL as the server saw it (absent in STU4).
	Request string `json:"request,omitempty"`
	// RequiresAccessToken says whether file downloads need the bearer token.
	RequiresAccessToken bool `json:"requiresAccessToken"`
	// OutputOrganizedBy is set when organizeOutputBy was used (STU3).
	OutputOrganizedBy string `json:"outputOrganizedBy,omitempty"`
	// Output lists the data files.
	Output []File `json:"output"`
	// Deleted lists files of transaction Bundles whose entries delete
	// resources (STU2+).
	Deleted []File `json:"deleted,omitempty"`
	// Error lists files of OperationOutcome resources ("error" up to STU3,
	// "outcome" in STU4).
	Error []File `json:"error"`
	// Link holds paging links of partial manifests (STU3).
	Link []Link `json:"link,omitempty"`
	// Extension is vendor data: an object (STU2/3) or an array (STU4).
	Extension json.RawMessage `json:"extension,omitempty"`
}

// File is one entry of a manifest's output, deleted or error array.
type File struct {
	// Type is the resource type of every line (absent with organizeOutputBy).
	Type string `json:"type,omitempty"`
	// URL is the absolute download URL.
	URL string `json:"url"`
	// Count is the number of resources, when the server gave it.
	Count *int64 `json:"count,omitempty"`
	// ContinuesInFile names the file that continues this one (STU3).
	ContinuesInFile string `json:"continuesInFile,omitempty"`
	// Extension is vendor data.
	Extension json.RawMessage `json:"extension,omitempty"`
}

// Link is a manifest paging link.
type Link struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// Next returns the URL of the next manifest page, or "".
func (m *Manifest) Next() string {
	for _, l := range m.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// wireManifest is the decoding shape: both error and outcome.
type wireManifest struct {
	Manifest
	Outcome []File `json:"outcome"`
}

// DecodeManifest decodes and checks a manifest. base resolves relative file
// URLs (servers should send absolute ones); it may be nil.
func DecodeManifest(data []byte, base *url.URL) (*Manifest, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("manifest: empty body")
	}
	var w wireManifest
	if err := json.Unmarshal(data, &w); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("manifest: invalid JSON at byte %d", se.Offset)
		case errors.As(err, &te):
			return nil, fmt.Errorf("manifest: field %q has the wrong JSON type (%s)", strings.TrimPrefix(te.Field, "Manifest."), te.Value)
		}
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m := w.Manifest
	m.Error = append(m.Error, w.Outcome...)
	if m.TransactionTime == "" {
		return nil, errors.New("manifest: transactionTime missing")
	}
	if _, err := parseInstant(m.TransactionTime); err != nil {
		return nil, errors.New("manifest: transactionTime is not a FHIR instant")
	}
	if len(m.Extension) > 0 && m.Extension[0] != '{' && m.Extension[0] != '[' && string(m.Extension) != "null" {
		return nil, errors.New("manifest: extension is neither an object nor an array")
	}
	for _, list := range []struct {
		name  string
		files []File
	}{{"output", m.Output}, {"deleted", m.Deleted}, {"error", m.Error}} {
		for i := range list.files {
			f := &list.files[i]
			if f.URL == "" {
				return nil, fmt.Errorf("manifest: %s[%d].url missing", list.name, i)
			}
			u, err := url.Parse(f.URL)
			if err != nil {
				return nil, fmt.Errorf("manifest: %s[%d].url is not a URL", list.name, i)
			}
			if !u.IsAbs() {
				if base == nil {
					return nil, fmt.Errorf("manifest: %s[%d].url is not absolute", list.name, i)
				}
				u = base.ResolveReference(u)
				f.URL = u.String()
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return nil, fmt.Errorf("manifest: %s[%d].url has scheme %q, want http or https", list.name, i, u.Scheme)
			}
			if u.Host == "" {
				return nil, fmt.Errorf("manifest: %s[%d].url has no host", list.name, i)
			}
			if f.Type == "" && list.name == "output" && m.OutputOrganizedBy == "" {
				return nil, fmt.Errorf("manifest: output[%d].type missing", i)
			}
			if f.Count != nil && *f.Count < 0 {
				return nil, fmt.Errorf("manifest: %s[%d].count is negative", list.name, i)
			}
		}
	}
	return &m, nil
}

// appendPage adds the files of a further manifest page to m.
func (m *Manifest) appendPage(p *Manifest) {
	m.Output = append(m.Output, p.Output...)
	m.Deleted = append(m.Deleted, p.Deleted...)
	m.Error = append(m.Error, p.Error...)
}

// parseInstant parses a FHIR instant (or the dateTime forms servers send in
// _since and transactionTime).
func parseInstant(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not an instant")
}
