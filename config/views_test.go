package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseViews(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "views"), 0o755)
	os.WriteFile(filepath.Join(dir, "views", "ids.json"), []byte(`{"name":"ids","resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}`), 0o644)
	src := minimal + "    views: [\"builtin:encounters\", views/ids.json]\n    viewsCSV: true\n"
	cfg, err := Parse(filepath.Join(dir, "p.yml"), []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.Pipelines["nightly"]
	if pc.Views[1] != filepath.Join(dir, "views", "ids.json") || !pc.ViewsCSV {
		t.Fatalf("views %v csv %v", pc.Views, pc.ViewsCSV)
	}
	vs, err := pc.LoadViews("pipelines.nightly")
	if err != nil || len(vs) != 2 || vs[0].Name != "encounters" || vs[1].Name != "ids" {
		t.Fatalf("LoadViews: %v %v", vs, err)
	}

	bad := []struct{ views, field, msg string }{
		{`[views/bad.json]`, "pipelines.nightly.views[0]", "view bad.json: select[0].column[0].path: fhirpath: 1:1: unknown element nmae on Patient"},
		{`[views/missing.json]`, "pipelines.nightly.views[0]", "cannot read the ViewDefinition file"},
		{`["builtin:nope"]`, "pipelines.nightly.views[0]", `no built-in view "nope"`},
		{`[builtin, views/enc.json]`, "pipelines.nightly.views[1]", "view encounters is also defined by pipelines.nightly.views[0]"},
		{`[""]`, "pipelines.nightly.views[0]", "empty"},
	}
	os.WriteFile(filepath.Join(dir, "views", "bad.json"), []byte(`{"resource":"Patient","select":[{"column":[{"name":"id","path":"nmae"}]}]}`), 0o644)
	os.WriteFile(filepath.Join(dir, "views", "enc.json"), []byte(`{"name":"encounters","resource":"Encounter","select":[{"column":[{"name":"id","path":"id"}]}]}`), 0o644)
	for _, b := range bad {
		_, err := Parse(filepath.Join(dir, "p.yml"), []byte(minimal+"    views: "+b.views+"\n"), env(nil))
		var ce *Error
		if !errors.As(err, &ce) || ce.Field != b.field || !strings.Contains(ce.Msg, b.msg) {
			t.Errorf("views %s: got %v, want field %s and %q", b.views, err, b.field, b.msg)
		}
	}
}
