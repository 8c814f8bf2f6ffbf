package model

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedUpToDate runs the generator into a temporary directory and
// compares its output with the committed files byte for byte. It needs npm
// and the npm registry, so it runs only when FHIRDEID_CHECK_GENERATE=1.
func TestGeneratedUpToDate(t *testing.T) {
	if os.Getenv("FHIRDEID_CHECK_GENERATE") != "1" {
		t.Skip("set FHIRDEID_CHECK_GENERATE=1 to re-run the generator (needs npm and the npm registry)")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("FHIRDEID_CHECK_GENERATE=1 but npm is not on PATH: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./internal/gen", "-out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("running the generator: %v\n%s", err, stderr.String())
	}
	for _, name := range []string{"zz_generated_r4.go", "zz_generated_stu3.go"} {
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator's output (%d bytes, committed %d): run go generate ./fhir/model", name, len(got), len(want))
		}
	}
}
