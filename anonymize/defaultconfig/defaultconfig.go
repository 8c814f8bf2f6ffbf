// Package defaultconfig holds fhirdeid's own default de-identification
// configuration: HIPAA Safe Harbor (45 CFR 164.514(b)(2)) for every FHIR R4
// resource type, written in the Microsoft FHIR anonymizer's configuration
// format so that users can copy and edit it. README.md explains what it
// keeps and why.
package defaultconfig

import _ "embed"

//go:embed safe-harbor.json
var safeHarbor []byte

// Name is the file name of the default configuration.
const Name = "safe-harbor.json"

// SafeHarbor returns a copy of the default configuration's JSON text.
func SafeHarbor() []byte {
	return append([]byte(nil), safeHarbor...)
}
