// Package defaultconfig holds fhirdeid's built-in de-identification
// configurations ("profiles"), written in the Microsoft FHIR anonymizer's
// configuration format so that users can copy and edit them:
//
//   - safe-harbor (the default): HIPAA Safe Harbor (45 CFR 164.514(b)(2))
//     for every FHIR R4 resource type;
//   - longitudinal: the same, but dates shifted per patient instead of cut
//     to the year, the displays of published terminologies kept, and free
//     text scrubbed (method scrub) instead of removed. It is not Safe
//     Harbor: it is meant for Expert Determination or a data use agreement.
//
// README.md explains what each keeps and why.
package defaultconfig

import (
	_ "embed"
	"slices"
)

//go:embed safe-harbor.json
var safeHarbor []byte

//go:embed longitudinal.json
var longitudinal []byte

// Name is the file name of the default configuration.
const Name = "safe-harbor.json"

// The built-in profiles' names.
const (
	SafeHarborProfile   = "safe-harbor"
	LongitudinalProfile = "longitudinal"
	// DefaultProfile is the profile used when none is named.
	DefaultProfile = SafeHarborProfile
)

// SafeHarbor returns a copy of the default configuration's JSON text.
func SafeHarbor() []byte {
	return append([]byte(nil), safeHarbor...)
}

// Longitudinal returns a copy of the longitudinal profile's JSON text.
func Longitudinal() []byte {
	return append([]byte(nil), longitudinal...)
}

// Profiles returns the names of the built-in profiles, the default first.
func Profiles() []string { return []string{SafeHarborProfile, LongitudinalProfile} }

// Profile returns a copy of the named profile's JSON text; ok is false for
// an unknown name ("" is the default profile).
func Profile(name string) (data []byte, ok bool) {
	switch name {
	case "", SafeHarborProfile:
		return SafeHarbor(), true
	case LongitudinalProfile:
		return Longitudinal(), true
	}
	return nil, false
}

// IsProfile reports whether name is a built-in profile.
func IsProfile(name string) bool { return slices.Contains(Profiles(), name) }
