package views

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

func TestMembers(t *testing.T) {
	obs, err := Builtin("observations")
	if err != nil {
		t.Fatal(err)
	}
	m := MembersOf(obs)
	if m == nil {
		t.Fatal("the observations view reads every member?")
	}
	root, err := jsontree.Parse([]byte(`{"resourceType":"Observation","id":"o","meta":{"security":[{"code":"REDACTED"}]},"status":"final","_status":{"id":"s"},` +
		`"effectiveDateTime":"2020","valueQuantity":{"value":1},"note":[{"text":"n"}],"component":[],"subject":{"reference":"Patient/p"}}`))
	if err != nil {
		t.Fatal(err)
	}
	m.Prune(root)
	var keys []string
	for _, ch := range root.Children() {
		keys = append(keys, ch.Key())
	}
	if got := strings.Join(keys, ","); got != "resourceType,id,status,_status,effectiveDateTime,valueQuantity,component,subject" {
		t.Errorf("kept %s", got)
	}

	for _, view := range []string{
		`{"resource":"Patient","select":[{"column":[{"name":"n","path":"children().count()","type":"integer"}]}]}`,
		`{"resource":"Patient","select":[{"column":[{"name":"n","path":"descendants().count()","type":"integer"}]}]}`,
		`{"resource":"Patient","select":[{"column":[{"name":"r","path":"$this","type":"Patient"}]}]}`,
		`{"resource":"Patient","select":[{"column":[{"name":"r","path":"where(active)"}]}]}`,
		`{"resource":"Patient","select":[{"column":[{"name":"r","path":"name.trace('x').family","type":"string"}]}]}`,
	} {
		v, err := Parse([]byte(view), "v")
		if err != nil {
			t.Fatal(err)
		}
		if MembersOf(v) != nil {
			t.Errorf("%s: members %v, want nil (every member)", view, MembersOf(v))
		}
	}
	v, err := Parse([]byte(`{"resource":"Patient","constant":[{"name":"sys","valueString":"http://x"}],"where":[{"path":"%resource.active = true and birthDate >= @1970-01-01T10:00"}],`+
		`"select":[{"forEach":"name.where(use = 'official')","column":[{"name":"f","path":"family","type":"string"},{"name":"s","path":"%sys","type":"string"}]},{"column":[{"name":"x","path":"`+"`gender`"+`","type":"code"}]}]}`), "v")
	if err != nil {
		t.Fatal(err)
	}
	got := MembersOf(v)
	for _, want := range []string{"active", "birthDate", "name", "family", "use", "gender"} {
		if !got[want] {
			t.Errorf("member %s missing from %v", want, got)
		}
	}
	for _, not := range []string{"official", "sys", "resource", "T10", "http"} {
		if got[not] {
			t.Errorf("%s taken for a member in %v", not, got)
		}
	}
}

// TestPruneKeepsRows evaluates every view of the conformance suite and the
// built-in views (over synthea-100) on resources typed whole and on
// resources pruned to the view's members: the rows must be the same.
func TestPruneKeepsRows(t *testing.T) {
	pruned := 0
	check := func(name string, v *View, raws []json.RawMessage) {
		t.Helper()
		run := func(prune bool) string {
			r := v.NewRunner()
			var out []string
			for _, raw := range raws {
				root, err := jsontree.Parse(raw)
				if err != nil {
					t.Fatal(err)
				}
				if prune {
					n := len(root.Children())
					Members(v.members).Prune(root)
					if len(root.Children()) < n {
						pruned++
					}
				}
				if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
					t.Fatal(err)
				}
				err = r.Eval(root, func(row []Value) error {
					out = append(out, rowJSON(v, row))
					return nil
				})
				if err != nil {
					out = append(out, "error: "+err.Error())
				}
			}
			return strings.Join(out, "\n")
		}
		if a, b := run(false), run(true); a != b {
			t.Errorf("%s: rows differ when pruned:\n%s\n---\n%s", name, a, b)
		}
	}
	dir := sharedDir(t, "conformance/sql-on-fhir-v2/tests")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var sf suiteFile
		if err := json.Unmarshal(data, &sf); err != nil {
			t.Fatal(err)
		}
		for _, tc := range sf.Tests {
			if v, err := Parse(tc.View, "test"); err == nil {
				check(filepath.Base(f)+"/"+tc.Title, v, sf.Resources)
			}
		}
	}
	suite := pruned
	vs, err := Builtins()
	if err != nil {
		t.Fatal(err)
	}
	sdir := sharedDir(t, "data/synthea-100")
	for _, v := range vs {
		lines, _ := readLines(t, filepath.Join(sdir, v.Resource+".000.ndjson.gz"))
		var raws []json.RawMessage
		for _, l := range lines {
			raws = append(raws, l)
		}
		check("builtin:"+v.Name, v, raws)
	}
	if suite == 0 || pruned == suite {
		t.Errorf("pruning removed members of %d suite resources and %d synthea resources: the test checks nothing", suite, pruned-suite)
	}
	t.Logf("resources pruned: %d in the suite's cases, %d in synthea-100", suite, pruned-suite)
}
