package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/bulk/bulktest"
)

// runExportCmd runs the command line in-process and returns the exit code,
// stdout and stderr.
func runExportCmd(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	code := run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: getenv}, args)
	return code, out.String(), errb.String()
}

// writeFixture writes a synthetic population as Type.000.ndjson files.
func writeFixture(t *testing.T, patients int) string {
	t.Helper()
	dir := t.TempDir()
	byType := map[string][][]byte{}
	for _, r := range bulktest.Synthetic(patients, 7) {
		var v struct{ ResourceType string }
		if err := json.Unmarshal(r, &v); err != nil {
			t.Fatal(err)
		}
		byType[v.ResourceType] = append(byType[v.ResourceType], r)
	}
	for typ, lines := range byType {
		var buf bytes.Buffer
		for _, l := range lines {
			buf.Write(l)
			buf.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(dir, typ+".000.ndjson"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// exportedData returns the decompressed content of every data file of an
// export directory (Type.NNN.ndjson.gz, deleted/, error/), by name.
func exportedData(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ndjson.gz") || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareExports fails unless two export directories hold the same files
// with the same content, and reports missing or duplicated resources.
func compareExports(t *testing.T, got, want map[string]string) {
	t.Helper()
	var gn, wn []string
	for k := range got {
		gn = append(gn, k)
	}
	for k := range want {
		wn = append(wn, k)
	}
	sort.Strings(gn)
	sort.Strings(wn)
	if strings.Join(gn, ",") != strings.Join(wn, ",") {
		t.Fatalf("files differ:\n got %v\nwant %v", gn, wn)
	}
	for _, k := range wn {
		if got[k] != want[k] {
			t.Errorf("%s differs: %d lines, want %d", k, strings.Count(got[k], "\n"), strings.Count(want[k], "\n"))
		}
	}
}
