package model

import (
	"fmt"
	"strconv"
	"strings"
)

// The generated files hold each version's model as one string, a table that
// decode turns into Types on the first Get. A table is a sequence of lines:
//
//	@Name kind base [abstract]
//	element min max type[,type...]
//
// A line starting with "@" opens a type: kind is one of "primitive",
// "complex", "resource" or "backbone"; base is "-" for a root; the word
// "abstract" marks an abstract type. Every other line is an element of the
// type opened last, in definition order: a choice element's name ends in
// "[x]"; max is a number or "*". Names never contain spaces or commas.

// decode builds the model of version v from its table. The table is
// generated and tested, so a malformed one is a programming error: decode
// panics, naming the line.
func decode(v Version, table, compartment string) *Model {
	m, err := parseTable(v, table)
	if err != nil {
		panic(fmt.Sprintf("model: decoding the %s table: %v", v, err))
	}
	if m.compartment, m.compartmentTypes, err = parseCompartment(compartment); err != nil {
		panic(fmt.Sprintf("model: decoding the %s compartment table: %v", v, err))
	}
	return m
}

// parseTable is decode returning its error.
func parseTable(v Version, table string) (*Model, error) {
	nTypes, nElems, nTypeRefs := 0, 0, 0
	for rest := table; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		switch {
		case line == "":
		case line[0] == '@':
			nTypes++
		default:
			nElems++
			nTypeRefs += strings.Count(line, ",") + 1
		}
	}
	types := make([]Type, nTypes)
	elems := make([]Element, nElems)
	refs := make([]string, 0, nTypeRefs)
	ptrs := make([]*Type, 0, nTypes)
	elemPtrs := make([]*Element, nElems)
	var cur *Type
	ti, ei, lineNo := 0, 0, 0
	for rest := table; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		lineNo++
		if line == "" {
			continue
		}
		if line[0] == '@' {
			t := &types[ti]
			ti++
			if err := parseTypeLine(t, line[1:]); err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
			if cur != nil {
				cur.Elements = cur.Elements[:len(cur.Elements):len(cur.Elements)]
			}
			cur = t
			cur.Elements = elemPtrs[ei:ei]
			ptrs = append(ptrs, t)
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: element before the first type", lineNo)
		}
		e := &elems[ei]
		elemPtrs[ei] = e
		ei++
		var err error
		if refs, err = parseElementLine(e, line, refs); err != nil {
			return nil, fmt.Errorf("line %d (type %s): %w", lineNo, cur.Name, err)
		}
		cur.Elements = cur.Elements[:len(cur.Elements)+1]
	}
	if cur != nil {
		cur.Elements = cur.Elements[:len(cur.Elements):len(cur.Elements)]
	}
	return newModel(v, ptrs), nil
}

func parseTypeLine(t *Type, line string) error {
	name, rest, _ := strings.Cut(line, " ")
	kind, rest, _ := strings.Cut(rest, " ")
	base, flag, _ := strings.Cut(rest, " ")
	if name == "" || base == "" {
		return fmt.Errorf("type line needs a name, a kind and a base")
	}
	t.Name = name
	switch kind {
	case "primitive":
		t.Kind = Primitive
	case "complex":
		t.Kind = Complex
	case "resource":
		t.Kind = Resource
	case "backbone":
		t.Kind = Backbone
	default:
		return fmt.Errorf("type %s: unknown kind %q", name, kind)
	}
	if base != "-" {
		t.Base = base
	}
	switch flag {
	case "":
	case "abstract":
		t.Abstract = true
	default:
		return fmt.Errorf("type %s: unknown flag %q", name, flag)
	}
	return nil
}

func parseElementLine(e *Element, line string, refs []string) ([]string, error) {
	name, rest, _ := strings.Cut(line, " ")
	minS, rest, _ := strings.Cut(rest, " ")
	maxS, typs, _ := strings.Cut(rest, " ")
	if name == "" || typs == "" {
		return refs, fmt.Errorf("element line needs a name, min, max and types")
	}
	if n, ok := strings.CutSuffix(name, "[x]"); ok {
		e.Name, e.Choice = n, true
	} else {
		e.Name = name
	}
	lo, err := strconv.Atoi(minS)
	if err != nil || lo < 0 {
		return refs, fmt.Errorf("element %s: bad min", e.Name)
	}
	e.Min = lo
	if maxS != "*" {
		hi, err := strconv.Atoi(maxS)
		if err != nil || hi < 1 {
			return refs, fmt.Errorf("element %s: bad max", e.Name)
		}
		e.Repeats = hi > 1
	} else {
		e.Repeats = true
	}
	start := len(refs)
	for typs != "" {
		var typ string
		typ, typs, _ = strings.Cut(typs, ",")
		if typ == "" {
			return refs, fmt.Errorf("element %s: empty type", e.Name)
		}
		refs = append(refs, typ)
	}
	e.Types = refs[start:len(refs):len(refs)]
	if !e.Choice && len(e.Types) != 1 {
		return refs, fmt.Errorf("element %s: %d types on a non-choice element", e.Name, len(e.Types))
	}
	return refs, nil
}
