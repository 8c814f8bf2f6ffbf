package anonymize

import (
	"errors"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// parseYAML reads a YAML configuration into the same Value tree as
// parseJSON, with the same rules: duplicate keys are an error, member order
// is kept. Anchors and aliases are expanded; tags other than the core schema
// are read as strings.
func parseYAML(data []byte) (Value, error) {
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		data = data[3:]
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml errors quote neither values nor keys beyond "line N: ...",
		// but they can echo a scalar; keep only the line information.
		return Value{}, &SyntaxError{Line: yamlErrorLine(err), Col: 0, Msg: "malformed YAML"}
	}
	if doc.Kind == 0 {
		return Value{}, &SyntaxError{Line: 1, Col: 1, Msg: "empty document"}
	}
	return yamlValue(&doc, 0)
}

// yamlErrorLine extracts "line N" from a yaml error, or 0.
func yamlErrorLine(err error) int {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return 0
	}
	s := err.Error()
	i := strings.Index(s, "line ")
	if i < 0 {
		return 0
	}
	n := 0
	for _, c := range s[i+5:] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func yamlValue(n *yaml.Node, depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, &SyntaxError{Line: n.Line, Col: n.Column, Msg: fmt.Sprintf("nesting deeper than %d", maxDepth)}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return Value{Kind: NullValue, Line: n.Line, Col: n.Column}, nil
		}
		return yamlValue(n.Content[0], depth+1)
	case yaml.AliasNode:
		return yamlValue(n.Alias, depth+1)
	case yaml.SequenceNode:
		v := Value{Kind: ArrayValue, Items: make([]Value, 0, len(n.Content)), Line: n.Line, Col: n.Column}
		for _, c := range n.Content {
			it, err := yamlValue(c, depth+1)
			if err != nil {
				return Value{}, err
			}
			v.Items = append(v.Items, it)
		}
		return v, nil
	case yaml.MappingNode:
		v := Value{Kind: ObjectValue, Members: make([]Member, 0, len(n.Content)/2), Line: n.Line, Col: n.Column}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return Value{}, &SyntaxError{Line: k.Line, Col: k.Column, Msg: "a mapping key must be a scalar"}
			}
			if k.Tag == "!!merge" {
				return Value{}, &SyntaxError{Line: k.Line, Col: k.Column, Msg: "merge keys (<<) are not supported"}
			}
			if seen[k.Value] {
				return Value{}, &SyntaxError{Line: k.Line, Col: k.Column, Msg: fmt.Sprintf("duplicate key %q", k.Value)}
			}
			seen[k.Value] = true
			mv, err := yamlValue(val, depth+1)
			if err != nil {
				return Value{}, err
			}
			v.Members = append(v.Members, Member{Key: k.Value, Value: mv, Line: k.Line, Col: k.Column})
		}
		return v, nil
	case yaml.ScalarNode:
		v := Value{Text: n.Value, Line: n.Line, Col: n.Column}
		switch n.ShortTag() {
		case "!!null":
			v.Kind, v.Text = NullValue, ""
		case "!!bool":
			v.Kind = BoolValue
			if strings.EqualFold(n.Value, "true") {
				v.Text = "true"
			} else {
				v.Text = "false"
			}
		case "!!int", "!!float":
			v.Kind = NumberValue
		default:
			v.Kind = StringValue
		}
		return v, nil
	}
	return Value{}, &SyntaxError{Line: n.Line, Col: n.Column, Msg: "unsupported YAML node"}
}
