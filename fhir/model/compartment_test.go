package model

import (
	"slices"
	"strings"
	"testing"
)

// TestPatientCompartment checks the generated Patient compartments against
// facts of the CompartmentDefinitions, and every path against the model.
func TestPatientCompartment(t *testing.T) {
	for _, tc := range []struct {
		v    Version
		want map[string][]CompartmentParam
		none []string
	}{
		{R4, map[string][]CompartmentParam{
			"Observation":          {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
			"Encounter":            {{"patient", []string{"subject"}}},
			"Claim":                {{"patient", []string{"patient"}}, {"payee", []string{"payee.party"}}},
			"Appointment":          {{"actor", []string{"participant.actor"}}},
			"AuditEvent":           {{"patient", []string{"agent.who", "entity.what"}}},
			"ExplanationOfBenefit": {{"patient", []string{"patient"}}, {"payee", []string{"payee.party"}}},
		}, []string{"Organization", "Practitioner", "Medication", "Location", "Device"}},
		{STU3, map[string][]CompartmentParam{
			"Observation": {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
			"Encounter":   {{"patient", []string{"subject"}}},
			"Claim":       {{"patient", []string{"patient"}}, {"payee", []string{"payee.party"}}},
			"AuditEvent":  {{"patient", []string{"agent.reference", "entity.reference"}}},
		}, []string{"Organization", "Practitioner", "Medication"}},
	} {
		m := Get(tc.v)
		for typ, want := range tc.want {
			got := m.PatientCompartment(typ)
			if !slices.EqualFunc(got, want, func(a, b CompartmentParam) bool {
				return a.Name == b.Name && slices.Equal(a.Paths, b.Paths)
			}) {
				t.Errorf("%s %s: got %v, want %v", tc.v, typ, got, want)
			}
		}
		for _, typ := range tc.none {
			if got := m.PatientCompartment(typ); got != nil {
				t.Errorf("%s %s: in the compartment through %v", tc.v, typ, got)
			}
		}
		if n := len(m.CompartmentTypes()); n < 50 {
			t.Errorf("%s: only %d compartment types", tc.v, n)
		}
		for _, typ := range m.CompartmentTypes() {
			if !m.IsResource(typ) {
				t.Errorf("%s: %s is not a resource type", tc.v, typ)
			}
			for _, p := range m.PatientCompartment(typ) {
				for _, path := range p.Paths {
					cur := typ
					for _, step := range strings.Split(path, ".") {
						el := m.Type(cur).Element(step)
						if el == nil {
							t.Fatalf("%s %s %s: no element %s in %s", tc.v, typ, path, step, cur)
						}
						cur = el.Types[0]
					}
					if cur != "Reference" {
						t.Errorf("%s %s %s: ends at %s", tc.v, typ, path, cur)
					}
				}
			}
		}
	}
}

func TestParseCompartmentErrors(t *testing.T) {
	for _, table := range []string{"Observation\n", "Observation subject\n", "Observation =subject\n", "A x=y\nA x=y\n"} {
		if _, _, err := parseCompartment(table); err == nil {
			t.Errorf("%q: no error", table)
		}
	}
}
