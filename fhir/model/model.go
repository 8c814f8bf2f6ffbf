// Package model holds the FHIR type model for R4 and STU3: for every resource,
// complex type, backbone element and primitive type, its elements with their
// types, cardinality and choice expansions.
//
// The tables in zz_generated_r4.go and zz_generated_stu3.go are generated
// from HL7's StructureDefinitions (profiles-types.json and
// profiles-resources.json of FHIR 4.0.1 and 3.0.1) and committed, so a build
// needs no network; each is one compact string decoded on the first Get. To
// regenerate them, run "go generate ./fhir/model" with npm on PATH and the npm
// registry reachable: the generator in internal/gen fetches the pinned npm
// packages that carry the definitions (listed in NOTICE) into a temporary
// directory with "npm pack", checks their SHA-256, holds the definitions
// against the NLM's fhirpath.js model of the same version and, for R4,
// FHIR.js's parse of the definitions (dropping the non-FHIR additions of the
// R4 package, see NOTICE), and rewrites both files.
// TestGeneratedUpToDate, run with FHIRDEID_CHECK_GENERATE=1, checks that the
// committed files match the generator's output. The package imports only
// the standard library.
//
// The same files hold each version's Patient CompartmentDefinition
// (PatientCompartment): the generator reads it from profiles-resources.json
// and turns every parameter it names into element paths through the search
// parameter's expression (search-parameters.json of the same package),
// checking that each path ends at a Reference.
//
// Elements follow the definitions, with these choices: a primitive type's
// "value" element, which has no JSON key of its own, is left out (see
// PrimitiveSystemType); elements typed with FHIRPath system types in R4 get
// their FHIR types (Resource.id is id, Element.id string, Extension.url uri);
// an element whose type is a profile of a type (SimpleQuantity) has the type
// itself (Quantity); the constraint profiles SimpleQuantity and MoneyQuantity
// are Complex types based on Quantity, without the elements they prohibit.
package model

import (
	"slices"
	"sync"
)

// Version is a FHIR release.
type Version uint8

// The FHIR releases with a model.
const (
	// R4 is FHIR Release 4 (4.0.1).
	R4 Version = iota + 1
	// STU3 is FHIR Release 3 (3.0.1).
	STU3
)

// String returns "R4", "STU3", or "unknown".
func (v Version) String() string {
	switch v {
	case R4:
		return "R4"
	case STU3:
		return "STU3"
	}
	return "unknown"
}

// ParseVersion accepts "R4", "STU3" (any case) and the aliases "4.0", "4.0.1",
// "3.0", "3.0.2".
func ParseVersion(s string) (Version, bool) {
	switch s {
	case "R4", "r4", "4.0", "4.0.1":
		return R4, true
	case "STU3", "stu3", "Stu3", "R3", "r3", "3.0", "3.0.1", "3.0.2":
		return STU3, true
	}
	return 0, false
}

// Kind tells what a Type is.
type Kind uint8

const (
	// Primitive is a FHIR primitive type: boolean, string, date, id, ...
	Primitive Kind = iota + 1
	// Complex is a FHIR complex data type: HumanName, Quantity, Extension, ...
	Complex
	// Resource is a resource type, abstract ones (Resource, DomainResource)
	// included.
	Resource
	// Backbone is an element defined inline in a resource or type
	// (Patient.contact); its Name is its path.
	Backbone
)

// Type is one FHIR type.
type Type struct {
	// Name is the type's name: "Patient", "HumanName", "date", or the path of
	// a backbone element ("Patient.contact").
	Name string
	// Kind tells whether the type is a primitive, complex, resource or
	// backbone type.
	Kind Kind
	// Base is the name of the type this one specializes ("DomainResource",
	// "Element", "BackboneElement"); "" for the roots (Resource, Element, and
	// primitives in STU3 where they derive from Element: "Element").
	Base string
	// Abstract is true for types that have no instances of their own:
	// Resource, DomainResource, Element, BackboneElement.
	Abstract bool
	// Elements are the type's elements, inherited ones included, in
	// definition order.
	Elements []*Element

	byName map[string]*Element
	byKey  map[string]keyRef
}

// Element is one element of a type.
type Element struct {
	// Name is the element name without "[x]": "value" for "value[x]".
	Name string
	// Types are the element's possible types. Exactly one unless Choice. A
	// backbone element's type is its path ("Patient.contact"); an element with
	// a contentReference has the referenced backbone's path
	// ("Questionnaire.item" for Questionnaire.item.item).
	Types []string
	// Choice is true for "name[x]" elements; the JSON key is the name plus the
	// capitalized type ("valueQuantity", "valueString").
	Choice bool
	// Repeats is true when the maximum cardinality is above 1.
	Repeats bool
	// Min is the minimum cardinality.
	Min int
}

type keyRef struct {
	el  *Element
	typ string
}

// Model is the type model of one FHIR version.
type Model struct {
	// Version is the FHIR release the model describes.
	Version Version
	types   map[string]*Type
	// resources lists the concrete resource types, sorted.
	resources []string
	// compartment is the Patient CompartmentDefinition by resource type;
	// compartmentTypes its resource types, sorted.
	compartment      map[string][]CompartmentParam
	compartmentTypes []string
}

var (
	loadersMu sync.Mutex
	loaders   = map[Version]func() *Model{}
	models    = map[Version]*Model{}
)

// register is called by the generated files.
func register(v Version, load func() *Model) {
	loadersMu.Lock()
	defer loadersMu.Unlock()
	loaders[v] = load
}

// Get returns the model of version v, building it on first use. It returns
// nil for a version without a model.
func Get(v Version) *Model {
	loadersMu.Lock()
	defer loadersMu.Unlock()
	if m, ok := models[v]; ok {
		return m
	}
	load, ok := loaders[v]
	if !ok {
		return nil
	}
	m := load()
	m.index()
	models[v] = m
	return m
}

// newModel builds a model from its types; used by the generated files.
func newModel(v Version, types []*Type) *Model {
	m := &Model{Version: v, types: make(map[string]*Type, len(types))}
	for _, t := range types {
		m.types[t.Name] = t
	}
	return m
}

func (m *Model) index() {
	for _, t := range m.types {
		t.byName = make(map[string]*Element, len(t.Elements))
		t.byKey = make(map[string]keyRef, len(t.Elements))
		for _, e := range t.Elements {
			t.byName[e.Name] = e
			if !e.Choice {
				t.byKey[e.Name] = keyRef{e, e.Types[0]}
				continue
			}
			for _, typ := range e.Types {
				t.byKey[e.Name+upperFirst(typ)] = keyRef{e, typ}
			}
		}
		if t.Kind == Resource && !t.Abstract {
			m.resources = append(m.resources, t.Name)
		}
	}
	slices.Sort(m.resources)
}

// Type returns the named type, or nil.
func (m *Model) Type(name string) *Type { return m.types[name] }

// IsResource reports whether name is a concrete or abstract resource type.
func (m *Model) IsResource(name string) bool {
	t := m.types[name]
	return t != nil && t.Kind == Resource
}

// ResourceTypes returns the concrete resource types, sorted. The caller must
// not modify the slice.
func (m *Model) ResourceTypes() []string { return m.resources }

// IsSubtype reports whether typ is base or derives from it
// ("Patient" derives from "DomainResource" and "Resource"; "Age" from
// "Quantity").
func (m *Model) IsSubtype(typ, base string) bool {
	for typ != "" {
		if typ == base {
			return true
		}
		t := m.types[typ]
		if t == nil {
			return false
		}
		typ = t.Base
	}
	return false
}

// Element returns the element called name ("value" for value[x]), or nil.
func (t *Type) Element(name string) *Element { return t.byName[name] }

// Property resolves a JSON member name of an instance of t: "name" gives
// the element and its type; a choice key such as "valueQuantity" gives the
// element "value" and the type "Quantity". ok is false for an unknown key.
// Keys starting with "_" are not resolved here: strip the underscore.
func (t *Type) Property(key string) (el *Element, typ string, ok bool) {
	r, ok := t.byKey[key]
	return r.el, r.typ, ok
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// TypeNames returns the names of all the model's types, backbone elements
// included, sorted.
func (m *Model) TypeNames() []string {
	names := make([]string, 0, len(m.types))
	for name := range m.types {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// systemTypes maps the FHIR primitive types that have a FHIRPath System type
// of their own; the others (code, id, positiveInt, ...) reach one through
// their Base.
var systemTypes = map[string]string{
	"boolean":      "Boolean",
	"string":       "String",
	"uri":          "String",
	"base64Binary": "String",
	"xhtml":        "String",
	"integer":      "Integer",
	"integer64":    "Integer",
	"decimal":      "Decimal",
	"date":         "Date",
	"dateTime":     "DateTime",
	"instant":      "DateTime",
	"time":         "Time",
}

// PrimitiveSystemType returns the FHIRPath System type ("Boolean", "String",
// "Integer", "Decimal", "Date", "DateTime", "Time") of the FHIR primitive
// type name: "code" and "markdown" give "String", "positiveInt" gives
// "Integer", "instant" gives "DateTime". It returns "" when name is not a
// primitive type of the model.
func (m *Model) PrimitiveSystemType(name string) string {
	for name != "" {
		t := m.types[name]
		if t == nil || t.Kind != Primitive {
			return ""
		}
		if s, ok := systemTypes[name]; ok {
			return s
		}
		name = t.Base
	}
	return ""
}
