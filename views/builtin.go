package views

import (
	"embed"
	"fmt"
	"path"
	"sort"
	"strings"
)

//go:embed builtin/*.json
var builtinFS embed.FS

// BuiltinNames returns the names of the built-in views: the common research
// tables (patient_demographics, encounters, conditions, observations,
// medication_requests, procedures, immunizations).
func BuiltinNames() []string {
	ents, _ := builtinFS.ReadDir("builtin")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(names)
	return names
}

// BuiltinJSON returns the ViewDefinition of a built-in view.
func BuiltinJSON(name string) ([]byte, error) {
	data, err := builtinFS.ReadFile(path.Join("builtin", name+".json"))
	if err != nil || strings.ContainsAny(name, "/\\.") {
		return nil, fmt.Errorf("no built-in view %q (there are: %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	return data, nil
}

// Builtin returns a compiled built-in view.
func Builtin(name string) (*View, error) {
	data, err := BuiltinJSON(name)
	if err != nil {
		return nil, err
	}
	return Parse(data, "builtin:"+name)
}

// Builtins returns every built-in view, compiled.
func Builtins() ([]*View, error) {
	var out []*View
	for _, n := range BuiltinNames() {
		v, err := Builtin(n)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
