package bulk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Level is the scope of an export.
type Level string

// The three export levels.
const (
	// SystemLevel exports everything: [base]/$export.
	SystemLevel Level = "system"
	// PatientLevel exports all patients' compartments: [base]/Patient/$export.
	PatientLevel Level = "patient"
	// GroupLevel exports a group's members: [base]/Group/{id}/$export.
	GroupLevel Level = "group"
)

// Request is an export kick-off: the level and every parameter of Bulk Data
// STU2 and STU3, plus vendor parameters. It is stored in checkpoints, so a
// resumed run can tell whether it continues the same export.
type Request struct {
	// Level is system, patient or group; "" means system.
	Level Level `json:"level"`
	// GroupID is the Group's logical id for GroupLevel.
	GroupID string `json:"groupId,omitempty"`
	// Types restricts the resource types (_type).
	Types []string `json:"types,omitempty"`
	// Since is an instant: only resources changed after it (_since).
	Since string `json:"since,omitempty"`
	// Until is an instant: only resources changed before it (_until, STU3).
	Until string `json:"until,omitempty"`
	// TypeFilters are FHIR search queries such as
	// "Observation?category=laboratory" (_typeFilter).
	TypeFilters []string `json:"typeFilters,omitempty"`
	// Elements restricts the elements returned (_elements).
	Elements []string `json:"elements,omitempty"`
	// Patients are references ("Patient/123") limiting a patient or group
	// export (patient; POST only, so setting it selects POST).
	Patients []string `json:"patients,omitempty"`
	// IncludeAssociatedData asks for associated data such as
	// LatestProvenanceResources (includeAssociatedData).
	IncludeAssociatedData []string `json:"includeAssociatedData,omitempty"`
	// OutputFormat is _outputFormat; "" leaves the server's default.
	OutputFormat string `json:"outputFormat,omitempty"`
	// OrganizeOutputBy is a resource type (organizeOutputBy, STU3).
	OrganizeOutputBy string `json:"organizeOutputBy,omitempty"`
	// AllowPartialManifests lets the server page the manifest (STU3).
	AllowPartialManifests bool `json:"allowPartialManifests,omitempty"`
	// Extra holds vendor parameters sent as they are, such as Microsoft's
	// _container or _till.
	Extra map[string][]string `json:"extra,omitempty"`
	// POST sends the kick-off as a POST with a Parameters body instead of
	// a GET with a query.
	POST bool `json:"post,omitempty"`
	// RepeatParams sends repeated values as repeated query parameters
	// instead of one comma-joined value (some servers need commas).
	// _typeFilter values are always repeated, because they contain commas.
	RepeatParams bool `json:"repeatParams,omitempty"`
	// Lenient adds handling=lenient to the Prefer header.
	Lenient bool `json:"lenient,omitempty"`
	// SeparateExportStatus adds separate-export-status to the Prefer header
	// (STU3): status answers are then 200 with the job state in
	// X-Export-Status, which the client reads either way.
	SeparateExportStatus bool `json:"separateExportStatus,omitempty"`
}

// Validate checks the request's consistency.
func (r *Request) Validate() error {
	switch r.Level {
	case "", SystemLevel, PatientLevel:
		if r.GroupID != "" {
			return errors.New("request: a group id needs the group level")
		}
	case GroupLevel:
		if r.GroupID == "" {
			return errors.New("request: the group level needs a group id")
		}
		if strings.ContainsAny(r.GroupID, "/?#") {
			return errors.New("request: the group id contains '/', '?' or '#'")
		}
	default:
		return fmt.Errorf("request: unknown level %q", r.Level)
	}
	if len(r.Patients) > 0 && (r.Level == "" || r.Level == SystemLevel) {
		return errors.New("request: the patient parameter is not allowed at the system level")
	}
	for _, t := range r.Types {
		if t == "" || strings.ContainsAny(t, ",/?&= ") {
			return errors.New("request: a _type value is not a resource type name")
		}
	}
	for _, v := range []struct{ name, val string }{{"_since", r.Since}, {"_until", r.Until}} {
		if v.val != "" {
			if _, err := parseInstant(v.val); err != nil {
				return fmt.Errorf("request: %s is not a FHIR instant", v.name)
			}
		}
	}
	return nil
}

// Path returns the kick-off path relative to the FHIR base:
// "$export", "Patient/$export" or "Group/{id}/$export".
func (r *Request) Path() string {
	switch r.Level {
	case PatientLevel:
		return "Patient/$export"
	case GroupLevel:
		return "Group/" + r.GroupID + "/$export"
	}
	return "$export"
}

// UsesPOST reports whether the kick-off is a POST: when asked for, or when
// patient references must be sent.
func (r *Request) UsesPOST() bool { return r.POST || len(r.Patients) > 0 }

// Query returns the GET kick-off query.
func (r *Request) Query() url.Values {
	q := url.Values{}
	multi := func(name string, vals []string, repeat bool) {
		if len(vals) == 0 {
			return
		}
		if repeat {
			q[name] = append(q[name], vals...)
		} else {
			q.Set(name, strings.Join(vals, ","))
		}
	}
	if r.OutputFormat != "" {
		q.Set("_outputFormat", r.OutputFormat)
	}
	if r.Since != "" {
		q.Set("_since", r.Since)
	}
	if r.Until != "" {
		q.Set("_until", r.Until)
	}
	multi("_type", r.Types, r.RepeatParams)
	multi("_elements", r.Elements, r.RepeatParams)
	multi("_typeFilter", r.TypeFilters, true)
	multi("includeAssociatedData", r.IncludeAssociatedData, r.RepeatParams)
	if r.OrganizeOutputBy != "" {
		q.Set("organizeOutputBy", r.OrganizeOutputBy)
	}
	if r.AllowPartialManifests {
		q.Set("allowPartialManifests", "true")
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		q[k] = append(q[k], r.Extra[k]...)
	}
	return q
}

// Parameters returns the POST kick-off body: a FHIR Parameters resource with
// one entry per value.
func (r *Request) Parameters() ([]byte, error) {
	type param struct {
		Name           string          `json:"name"`
		ValueString    *string         `json:"valueString,omitempty"`
		ValueInstant   *string         `json:"valueInstant,omitempty"`
		ValueBoolean   *bool           `json:"valueBoolean,omitempty"`
		ValueReference json.RawMessage `json:"valueReference,omitempty"`
	}
	var ps []param
	str := func(name string, vals ...string) {
		for _, v := range vals {
			ps = append(ps, param{Name: name, ValueString: &v})
		}
	}
	inst := func(name, v string) {
		if v != "" {
			ps = append(ps, param{Name: name, ValueInstant: &v})
		}
	}
	if r.OutputFormat != "" {
		str("_outputFormat", r.OutputFormat)
	}
	inst("_since", r.Since)
	inst("_until", r.Until)
	str("_type", r.Types...)
	str("_elements", r.Elements...)
	str("_typeFilter", r.TypeFilters...)
	str("includeAssociatedData", r.IncludeAssociatedData...)
	for _, p := range r.Patients {
		ref, err := json.Marshal(map[string]string{"reference": p})
		if err != nil {
			return nil, err
		}
		ps = append(ps, param{Name: "patient", ValueReference: ref})
	}
	if r.OrganizeOutputBy != "" {
		str("organizeOutputBy", r.OrganizeOutputBy)
	}
	if r.AllowPartialManifests {
		t := true
		ps = append(ps, param{Name: "allowPartialManifests", ValueBoolean: &t})
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		str(k, r.Extra[k]...)
	}
	if ps == nil {
		ps = []param{}
	}
	return json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Parameter    []param `json:"parameter"`
	}{"Parameters", ps})
}

// loggedParameters returns the request parameters for the kick-off log
// event, without patient references.
func (r *Request) loggedParameters() map[string]any {
	out := map[string]any{}
	for k, v := range r.Query() {
		out[k] = strings.Join(v, ",")
	}
	return out
}

// Equal reports whether two requests ask for the same export.
func (r *Request) Equal(o *Request) bool {
	a, _ := json.Marshal(r)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// ForMicrosoft adapts the request to the Microsoft FHIR server (Azure API
// for FHIR, Azure Health Data Services), which rejects parameters it does
// not know and accepts only GET: _until becomes Microsoft's _till, and
// parameters it does not support are refused here with a clear error
// instead of a 400 from the server.
func (r Request) ForMicrosoft() (Request, error) {
	var unsupported []string
	if r.UsesPOST() {
		unsupported = append(unsupported, "POST kick-off / patient")
	}
	if len(r.Elements) > 0 {
		unsupported = append(unsupported, "_elements")
	}
	if r.OrganizeOutputBy != "" {
		unsupported = append(unsupported, "organizeOutputBy")
	}
	if r.AllowPartialManifests {
		unsupported = append(unsupported, "allowPartialManifests")
	}
	if r.SeparateExportStatus {
		unsupported = append(unsupported, "Prefer: separate-export-status")
	}
	if len(r.TypeFilters) > 0 && len(r.Types) == 0 {
		unsupported = append(unsupported, "_typeFilter without _type")
	}
	if len(unsupported) > 0 {
		return r, fmt.Errorf("request: the Microsoft FHIR server does not support %s", strings.Join(unsupported, ", "))
	}
	if r.Until != "" {
		extra := map[string][]string{}
		for k, v := range r.Extra {
			extra[k] = v
		}
		extra["_till"] = []string{r.Until}
		r.Extra, r.Until = extra, ""
	}
	return r, nil
}
