package model

import (
	"fmt"
	"strings"
)

// CompartmentParam is one parameter of a resource type in the Patient
// CompartmentDefinition: a resource is in the compartment of the Patient
// that one of Paths references.
type CompartmentParam struct {
	// Name is the search parameter's name ("subject", "performer").
	Name string
	// Paths are the element paths the parameter selects, relative to the
	// resource, each ending at a Reference: "subject",
	// "participant.actor".
	Paths []string
}

// PatientCompartment returns the parameters that put a resource of type
// resourceType in a patient's compartment, in the CompartmentDefinition's
// order, or nil when the type is in no patient's compartment through its own
// elements (Organization, Medication...). Patient itself is in its own
// compartment by its id ({def}), which is not listed (its "link" parameter,
// Patient.link.other, puts it in the linked patients' compartments too). The
// caller must not
// modify the result.
func (m *Model) PatientCompartment(resourceType string) []CompartmentParam {
	return m.compartment[resourceType]
}

// CompartmentTypes returns the resource types that have compartment
// parameters, sorted.
func (m *Model) CompartmentTypes() []string { return m.compartmentTypes }

// parseCompartment reads the generated compartment table: one line per
// resource type, "Type param=path,path param=path".
func parseCompartment(table string) (map[string][]CompartmentParam, []string, error) {
	out := map[string][]CompartmentParam{}
	var types []string
	for n, line := range strings.Split(table, "\n") {
		if line == "" {
			continue
		}
		fields := strings.Fields(line)
		typ := fields[0]
		if len(fields) < 2 {
			return nil, nil, fmt.Errorf("compartment line %d (%s): no parameter", n+1, typ)
		}
		if _, dup := out[typ]; dup {
			return nil, nil, fmt.Errorf("compartment line %d: %s listed twice", n+1, typ)
		}
		params := make([]CompartmentParam, 0, len(fields)-1)
		for _, f := range fields[1:] {
			name, paths, ok := strings.Cut(f, "=")
			if !ok || name == "" || paths == "" {
				return nil, nil, fmt.Errorf("compartment line %d (%s): bad parameter %q", n+1, typ, f)
			}
			params = append(params, CompartmentParam{Name: name, Paths: strings.Split(paths, ",")})
		}
		out[typ] = params
		types = append(types, typ)
	}
	return out, types, nil
}
