package config

import (
	"fhirdeid/pipeline"
	"fhirdeid/risk"
)

// Audit is a pipeline's leak audit: on by default, it collects the direct
// identifiers of the raw input while de-identifying it and looks for them
// in the output before the run commits.
type Audit struct {
	// Enabled turns the audit off with false.
	Enabled *bool `yaml:"enabled"`
	// FailOn "leak" fails a run with any leak before it is published;
	// without it a leak makes the run partial.
	FailOn string `yaml:"failOn"`
}

// Risk is a pipeline's re-identification risk analysis of each run's
// patients: on by default, gated by MinK when set.
type Risk struct {
	Enabled          *bool    `yaml:"enabled"`
	QuasiIdentifiers []string `yaml:"quasiIdentifiers"`
	// MinK is the smallest acceptable equivalence class (0: no check).
	MinK int `yaml:"minK"`
	// Action is what a class below MinK does: warn (the run is partial,
	// the default) or fail (the run is not published).
	Action string `yaml:"action"`
}

func (pc *Pipeline) checkAssurance(field string) *Error {
	switch pc.Audit.FailOn {
	case "", "leak", "never":
	default:
		return &Error{Field: field + ".audit.failOn", Msg: "must be leak or never"}
	}
	switch pc.Risk.Action {
	case "", "warn", "fail":
	default:
		return &Error{Field: field + ".risk.action", Msg: "must be warn or fail"}
	}
	if pc.Risk.MinK < 0 {
		return &Error{Field: field + ".risk.minK", Msg: "must not be negative"}
	}
	if _, err := risk.New(pc.Risk.QuasiIdentifiers); err != nil {
		return &Error{Field: field + ".risk.quasiIdentifiers", Msg: "a name is not a built-in quasi-identifier (birthDate, birthYear, gender, zip3, state, deceased, race, ethnicity) nor a dotted member path"}
	}
	return nil
}

// Assurance returns the pipeline's privacy checks.
func (pc *Pipeline) Assurance() *pipeline.Assurance {
	on := func(b *bool) bool { return b == nil || *b }
	return &pipeline.Assurance{
		Audit:            on(pc.Audit.Enabled),
		FailOnLeak:       pc.Audit.FailOn == "leak",
		Risk:             on(pc.Risk.Enabled),
		QuasiIdentifiers: pc.Risk.QuasiIdentifiers,
		MinK:             pc.Risk.MinK,
		RiskFail:         pc.Risk.Action == "fail",
	}
}
