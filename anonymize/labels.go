package anonymize

import "strings"

// Operation is what a method did to a value; each maps to a security label
// (§4).
type Operation uint8

// The operations, in the order their labels are added.
const (
	OpRedact Operation = iota
	OpAbstract
	OpCryptoHash
	OpEncrypt
	OpPerturb
	OpSubstitute
	OpGeneralize
	numOps
)

// Coding is a meta.security Coding.
type Coding struct {
	System  string
	Code    string
	Display string
}

const v3ObservationValue = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"

// securityLabels are the Codings of §4, indexed by Operation. PERTURBED,
// SUBSTITUTED and GENERALIZED have no system, and CRYTOHASH is misspelled,
// exactly as the reference implementation writes them.
var securityLabels = [numOps]Coding{
	OpRedact:     {v3ObservationValue, "REDACTED", "redacted"},
	OpAbstract:   {v3ObservationValue, "ABSTRED", "abstracted"},
	OpCryptoHash: {v3ObservationValue, "CRYTOHASH", "cryptographic hash function"},
	OpEncrypt:    {v3ObservationValue, "MASKED", "masked"},
	OpPerturb:    {"", "PERTURBED", "exact value is replaced with another exact value"},
	OpSubstitute: {"", "SUBSTITUTED", "exact value is replaced with a predefined value"},
	OpGeneralize: {"", "GENERALIZED", "exact value is replaced with a general value"},
}

// Label returns the security label Coding of an operation.
func (o Operation) Label() Coding {
	if o < numOps {
		return securityLabels[o]
	}
	return Coding{}
}

// String returns the label's code.
func (o Operation) String() string { return o.Label().Code }

// Operations is a set of operations, the record of what was done to a
// resource and its nested resources.
type Operations uint8

// Add returns the set with op added.
func (s Operations) Add(op Operation) Operations { return s | 1<<op }

// Has reports whether op is in the set.
func (s Operations) Has(op Operation) bool { return s&(1<<op) != 0 }

// SecurityLabels returns the Codings to append to a resource's meta.security
// for the operations in s (§4): in the fixed order REDACTED, ABSTRED,
// CRYTOHASH, MASKED, PERTURBED, SUBSTITUTED, GENERALIZED, leaving out any
// whose code already appears in existingCodes (compared case-insensitively,
// ignoring the system). It returns nil for an empty set, in which case meta
// must not be touched.
func SecurityLabels(s Operations, existingCodes []string) []Coding {
	var out []Coding
	for op := range numOps {
		if !s.Has(op) {
			continue
		}
		c := securityLabels[op]
		dup := false
		for _, e := range existingCodes {
			if strings.EqualFold(e, c.Code) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

// AppendJSON appends the Coding as a JSON object with members system (when
// not empty), code and display, the form the reference implementation
// writes.
func (c Coding) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	if c.System != "" {
		b = append(b, `"system":`...)
		b = appendJSONString(b, c.System)
		b = append(b, ',')
	}
	b = append(b, `"code":`...)
	b = appendJSONString(b, c.Code)
	b = append(b, `,"display":`...)
	b = appendJSONString(b, c.Display)
	return append(b, '}')
}
