package bulk

import (
	"fmt"
	"slices"
	"strings"

	"fhirdeid/fhir/model"
)

// Manifest values are data, not paths: every entry's type must be a
// resource type name of the server's FHIR release before it names a file,
// a key or a URL, and no file URL may be listed twice.

// CheckManifest checks the values of a decoded manifest against the FHIR
// release fhirVersion (a CapabilityStatement fhirVersion such as "4.0.1",
// or "R4"; "" accepts the types of R4 and STU3; a release without a model
// accepts well-formed type names). It reports the first entry whose type is
// not a resource type and every URL listed more than once, naming the
// entries; it never changes m.
func CheckManifest(m *Manifest, fhirVersion string) error {
	valid := typeChecker(fhirVersion)
	seen := map[string]string{}
	for _, list := range []struct {
		name  string
		files []File
	}{{"output", m.Output}, {"deleted", m.Deleted}, {"error", m.Error}} {
		for i, f := range list.files {
			entry := fmt.Sprintf("%s[%d]", list.name, i)
			if f.Type != "" && !valid(f.Type) {
				return fmt.Errorf("manifest: %s.type %s is not a resource type of FHIR %s", entry, quoteType(f.Type), versionName(fhirVersion))
			}
			if prev, ok := seen[f.URL]; ok {
				return fmt.Errorf("manifest: %s.url repeats %s.url (%s): a file listed twice would be read twice", entry, prev, redactURL(f.URL))
			}
			seen[f.URL] = entry
		}
	}
	return nil
}

// typeChecker returns the resource-type test of a FHIR release.
func typeChecker(fhirVersion string) func(string) bool {
	in := func(m *model.Model) func(string) bool {
		return func(t string) bool {
			_, ok := slices.BinarySearch(m.ResourceTypes(), t)
			return ok
		}
	}
	if fhirVersion == "" {
		r4, stu3 := in(model.Get(model.R4)), in(model.Get(model.STU3))
		return func(t string) bool { return r4(t) || stu3(t) }
	}
	if v, ok := parseFHIRVersion(fhirVersion); ok {
		return in(model.Get(v))
	}
	return func(t string) bool { return safeName(t) == t && t[0] >= 'A' && t[0] <= 'Z' }
}

// parseFHIRVersion maps a release name or a CapabilityStatement
// fhirVersion ("4.0.1") to a model version.
func parseFHIRVersion(s string) (model.Version, bool) {
	if v, ok := model.ParseVersion(s); ok {
		return v, true
	}
	switch {
	case strings.HasPrefix(s, "4.0."):
		return model.R4, true
	case strings.HasPrefix(s, "3.0."):
		return model.STU3, true
	}
	return 0, false
}

func versionName(s string) string {
	if s == "" {
		return "R4 or STU3"
	}
	if v, ok := parseFHIRVersion(s); ok {
		return v.String()
	}
	return oneLine(s)
}

// quoteType quotes a manifest type for an error: short and printable, or
// only its length.
func quoteType(t string) string {
	if len(t) <= 64 && !strings.ContainsFunc(t, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return fmt.Sprintf("%q", t)
	}
	return fmt.Sprintf("(%d bytes)", len(t))
}

// serverFHIRVersion returns the fhirVersion of the CapabilityStatement read
// by Metadata, or "".
func (c *Client) serverFHIRVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil {
		return ""
	}
	return c.server.FHIRVersion
}
