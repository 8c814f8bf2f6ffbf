package pipeline

import (
	"encoding/json"
	"errors"
	"strings"

	"fhirdeid/fhir/typed"
)

// A small JSON walker for the snapshot merge: it finds a resource's
// top-level resourceType and id and, when asked, every literal reference
// ("reference": "Type/id") with the path of the element holding it. It never
// builds a tree and never quotes the input in errors.

var errBadJSON = errors.New("invalid JSON")

// maxDepth bounds nesting, so that a hostile line cannot exhaust the stack.
const maxDepth = 100

type jsonWalker struct {
	b    []byte
	path []byte // "Observation.subject" while inside it
	// onRef, if set, receives each literal reference with its path.
	onRef func(path []byte, typ, id string)
	// members is reused from resource to resource.
	members []member
}

// resourceKey returns the top-level resourceType and id of a resource line,
// walking it whole (so that references are reported to w.onRef).
func (w *jsonWalker) resourceKey(line []byte) (typ, id string, err error) {
	w.b = line
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return "", "", errBadJSON
	}
	// First pass over the top-level members: resourceType and id, so that
	// paths can start with the type.
	members, err := w.topMembers(i)
	if err != nil {
		return "", "", err
	}
	for _, m := range members {
		switch string(m.key) {
		case "resourceType":
			typ, _ = w.stringAt(m.val)
		case "id":
			id, _ = w.stringAt(m.val)
		}
	}
	if typ == "" || !typed.IsTypeName(typ) {
		return "", "", errors.New("no valid top-level resourceType")
	}
	if w.onRef == nil {
		return typ, id, nil
	}
	w.path = append(w.path[:0], typ...)
	for _, m := range members {
		if k := string(m.key); k == "resourceType" || k == "id" || k == "contained" {
			// Contained resources' references are local to them.
			continue
		}
		n := len(w.path)
		w.path = append(append(w.path, '.'), m.key...)
		if _, err := w.value(m.val, 1); err != nil {
			return "", "", err
		}
		w.path = w.path[:n]
	}
	return typ, id, nil
}

type member struct {
	key []byte
	val int
}

// topMembers lists the members of the object at b[i].
func (w *jsonWalker) topMembers(i int) ([]member, error) {
	out := w.members[:0]
	defer func() { w.members = out[:0] }()
	b := w.b
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, errBadJSON
		}
		switch b[i] {
		case '}':
			return out, nil
		case ',':
			i++
			continue
		case '"':
		default:
			return nil, errBadJSON
		}
		key, j, err := w.strBytes(i)
		if err != nil {
			return nil, err
		}
		j = skipSpace(b, j)
		if j >= len(b) || b[j] != ':' {
			return nil, errBadJSON
		}
		j = skipSpace(b, j+1)
		out = append(out, member{key: key, val: j})
		if i, err = w.skip(j, 1); err != nil {
			return nil, err
		}
	}
}

// value walks the value at b[i], reporting references; it returns the index
// after the value.
func (w *jsonWalker) value(i, depth int) (int, error) {
	b := w.b
	if depth > maxDepth {
		return 0, errors.New("JSON nested too deeply")
	}
	if i >= len(b) {
		return 0, errBadJSON
	}
	switch b[i] {
	case '[':
		i++
		for {
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, errBadJSON
			}
			switch b[i] {
			case ']':
				return i + 1, nil
			case ',':
				i++
				continue
			}
			var err error
			if i, err = w.value(i, depth+1); err != nil {
				return 0, err
			}
		}
	case '{':
		i++
		for {
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, errBadJSON
			}
			switch b[i] {
			case '}':
				return i + 1, nil
			case ',':
				i++
				continue
			case '"':
			default:
				return 0, errBadJSON
			}
			key, j, err := w.strBytes(i)
			if err != nil {
				return 0, err
			}
			j = skipSpace(b, j)
			if j >= len(b) || b[j] != ':' {
				return 0, errBadJSON
			}
			j = skipSpace(b, j+1)
			if string(key) == "reference" && j < len(b) && b[j] == '"' {
				ref, end, err := w.str(j)
				if err != nil {
					return 0, err
				}
				if typ, id, ok := literalRef(ref); ok {
					w.onRef(w.path, typ, id)
				}
				i = end
				continue
			}
			n := len(w.path)
			if len(w.path) < 512 {
				w.path = append(append(w.path, '.'), key...)
			}
			i, err = w.value(j, depth+1)
			w.path = w.path[:n]
			if err != nil {
				return 0, err
			}
		}
	default:
		return w.skip(i, depth)
	}
}

// skip skips the value at b[i].
func (w *jsonWalker) skip(i, depth int) (int, error) {
	b := w.b
	if i >= len(b) {
		return 0, errBadJSON
	}
	switch b[i] {
	case '"':
		_, j, err := w.strBounds(i)
		return j, err
	case '{', '[':
		d := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				_, e, err := w.strBounds(j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '{', '[':
				d++
				if d+depth > maxDepth {
					return 0, errors.New("JSON nested too deeply")
				}
			case '}', ']':
				d--
				if d == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errBadJSON
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, errBadJSON
		}
		return j, nil
	}
}

// strBounds returns whether the string at b[i] holds escapes and the index
// after its closing quote.
func (w *jsonWalker) strBounds(i int) (esc bool, end int, err error) {
	b := w.b
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return esc, j + 1, nil
		}
	}
	return false, 0, errBadJSON
}

// strBytes returns the content of the string at b[i] (decoded when it holds
// escapes, else a slice of the input) and the index after it.
func (w *jsonWalker) strBytes(i int) ([]byte, int, error) {
	esc, end, err := w.strBounds(i)
	if err != nil {
		return nil, 0, err
	}
	if !esc {
		return w.b[i+1 : end-1], end, nil
	}
	var s string
	if json.Unmarshal(w.b[i:end], &s) != nil {
		return nil, 0, errBadJSON
	}
	return []byte(s), end, nil
}

// str decodes the string at b[i] and returns the index after it.
func (w *jsonWalker) str(i int) (string, int, error) {
	esc, end, err := w.strBounds(i)
	if err != nil {
		return "", 0, err
	}
	if !esc {
		return string(w.b[i+1 : end-1]), end, nil
	}
	var s string
	if json.Unmarshal(w.b[i:end], &s) != nil {
		return "", 0, errBadJSON
	}
	return s, end, nil
}

func (w *jsonWalker) stringAt(i int) (string, bool) {
	if i >= len(w.b) || w.b[i] != '"' {
		return "", false
	}
	s, _, err := w.str(i)
	return s, err == nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// literalRef parses a literal relative reference "Type/id" or
// "Type/id/_history/v". Absolute URLs, fragments, urn: references and
// conditional references are not literal relative references.
func literalRef(ref string) (typ, id string, ok bool) {
	typ, rest, found := strings.Cut(ref, "/")
	if !found || !typed.IsTypeName(typ) {
		return "", "", false
	}
	id, hist, _ := strings.Cut(rest, "/")
	if hist != "" && !strings.HasPrefix(hist, "_history/") {
		return "", "", false
	}
	if !validID(id) {
		return "", "", false
	}
	return typ, id, true
}

// validID reports whether b is a FHIR id: 1–64 of [A-Za-z0-9-.].
func validID(b string) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range []byte(b) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
