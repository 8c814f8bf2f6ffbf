package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// compartmentParam is one parameter of a resource type in the Patient
// CompartmentDefinition: its search parameter's name and the element paths
// (relative to the resource, "participant.actor") its expression selects.
type compartmentParam struct {
	name  string
	paths []string
}

// compartmentEntry is one resource type of the Patient compartment, with its
// parameters in the definition's order.
type compartmentEntry struct {
	resource string
	params   []compartmentParam
}

// where(resolve() is Patient) restricts a search parameter to references to
// a Patient; the element path is what comes before it.
var resolveFilter = regexp.MustCompile(`\.where\(resolve\(\) is [A-Za-z]+\)$`)

// addPatientCompartment reads the Patient CompartmentDefinition from the
// profiles-resources.json bundle in folder of p, and the search parameters
// it names from search-parameters.json, and records for every resource type
// the element paths that put a resource in a patient's compartment. Every
// path is checked against the model: each step must be an element, and the
// last one a Reference. Chained parameters ("agent.patient" in STU3), which
// need the referenced resource, are left out and listed in the table's
// comment.
func (m *model) addPatientCompartment(p pkg, folder, dir string) error {
	files, err := readFiles(p, dir, folder+"profiles-resources.json", folder+"search-parameters.json")
	if err != nil {
		return err
	}
	var bundle struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	var def struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Code         string `json:"code"`
		Resource     []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(files[folder+"profiles-resources.json"], &bundle); err != nil {
		return fmt.Errorf("profiles-resources.json: %w", err)
	}
	found := false
	for _, e := range bundle.Entry {
		var head struct {
			ResourceType, ID string
		}
		if json.Unmarshal(e.Resource, &head) != nil || head.ResourceType != "CompartmentDefinition" || head.ID != "patient" {
			continue
		}
		if err := json.Unmarshal(e.Resource, &def); err != nil {
			return fmt.Errorf("CompartmentDefinition/patient: %w", err)
		}
		found = true
	}
	if !found || def.Code != "Patient" {
		return fmt.Errorf("profiles-resources.json has no Patient CompartmentDefinition")
	}
	var sps struct {
		Entry []struct {
			Resource struct {
				ResourceType string   `json:"resourceType"`
				Code         string   `json:"code"`
				Base         []string `json:"base"`
				Expression   string   `json:"expression"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(files[folder+"search-parameters.json"], &sps); err != nil {
		return fmt.Errorf("search-parameters.json: %w", err)
	}
	exprs := map[string]string{} // "Type code" → expression
	for _, e := range sps.Entry {
		r := e.Resource
		if r.ResourceType != "SearchParameter" {
			continue
		}
		for _, b := range r.Base {
			exprs[b+" "+r.Code] = r.Expression
		}
	}
	for _, res := range def.Resource {
		if len(res.Param) == 0 {
			continue
		}
		if t := m.types[res.Code]; t == nil || t.kind != "resource" {
			return fmt.Errorf("compartment: %s is not a resource type of the model", res.Code)
		}
		entry := compartmentEntry{resource: res.Code}
		for _, param := range res.Param {
			if param == "{def}" {
				// The Patient itself; the runtime keys it on its own id.
				continue
			}
			if strings.Contains(param, ".") {
				m.chained = append(m.chained, res.Code+"."+param)
				continue
			}
			expr, ok := exprs[res.Code+" "+param]
			if !ok {
				return fmt.Errorf("compartment: %s parameter %s has no search parameter", res.Code, param)
			}
			cp := compartmentParam{name: param}
			for _, part := range strings.Split(expr, "|") {
				part = strings.TrimSpace(part)
				path, ok := strings.CutPrefix(part, res.Code+".")
				if !ok {
					continue // another resource type's part of a shared parameter
				}
				path = resolveFilter.ReplaceAllString(path, "")
				if err := m.checkReferencePath(res.Code, path); err != nil {
					return fmt.Errorf("compartment: %s parameter %s (%s): %w", res.Code, param, part, err)
				}
				if !slices.Contains(cp.paths, path) {
					cp.paths = append(cp.paths, path)
				}
			}
			if len(cp.paths) == 0 {
				return fmt.Errorf("compartment: %s parameter %s: no path of %s in %q", res.Code, param, res.Code, expr)
			}
			entry.params = append(entry.params, cp)
		}
		if len(entry.params) > 0 {
			m.compartment = append(m.compartment, entry)
		}
	}
	slices.SortFunc(m.compartment, func(a, b compartmentEntry) int { return strings.Compare(a.resource, b.resource) })
	slices.Sort(m.chained)
	return nil
}

// checkReferencePath checks that path ("participant.actor") names elements
// of resource, step by step, and ends at a Reference.
func (m *model) checkReferencePath(resource, path string) error {
	cur := resource
	steps := strings.Split(path, ".")
	for i, step := range steps {
		t := m.types[cur]
		if t == nil {
			return fmt.Errorf("type %s not in the model", cur)
		}
		var el *element
		for _, e := range t.elements {
			if e.name == step {
				el = e
			}
		}
		if el == nil || el.choice || len(el.types) != 1 {
			return fmt.Errorf("%s has no single-typed element %s", cur, step)
		}
		cur = el.types[0]
		if i == len(steps)-1 && cur != "Reference" {
			return fmt.Errorf("%s.%s is a %s, not a Reference", t.name, step, cur)
		}
	}
	return nil
}

// compartmentTable renders the compartment in the syntax that model's
// decodeCompartment reads: one line per resource type, "Type param=path,path
// param=path ...".
func (m *model) compartmentTable() string {
	var b strings.Builder
	for _, e := range m.compartment {
		b.WriteString(e.resource)
		for _, p := range e.params {
			fmt.Fprintf(&b, " %s=%s", p.name, strings.Join(p.paths, ","))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
