package hostiletest

import (
	"os"
	"path/filepath"
	"testing"

	"fhirdeid/bulk"
)

// A manifest type that is a path, or not a type of the server's release, is
// a terminal error naming the entry, even for an empty file, and nothing is
// written anywhere.
func TestManifestTypeIsData(t *testing.T) {
	for _, typ := range []string{"../../x", "a/b", "Patient/../..", "NotAType", "Bundle\n"} {
		t.Run(typ, func(t *testing.T) {
			f := &fhir{files: serveString(""), manifest: func(base string) string {
				return Manifest(false, Entry{Type: "Patient", URL: base + "/files/ok.ndjson", Count: 0},
					Entry{Type: typ, URL: base + "/files/empty.ndjson", Count: 0})
			}}
			fo := startFHIR(t, f, false)
			e := newExport(t, fo.URL, nil)
			parent := filepath.Dir(e.dir)
			before, _ := os.ReadDir(parent)
			_, err := e.run(t)
			wantErr(t, err, "manifest: output[1].type", "is not a resource type of FHIR")
			after, _ := os.ReadDir(parent)
			if len(after) != len(before) {
				t.Errorf("files appeared beside the output directory")
			}
			for _, r := range fo.Requests() {
				if r.Path == "/files/empty.ndjson" || r.Path == "/files/ok.ndjson" {
					t.Errorf("a file was downloaded despite the invalid manifest: %s", r.Path)
				}
			}
		})
	}
}

// Two entries with the same URL are reported, not merged.
func TestManifestDuplicateURL(t *testing.T) {
	f := &fhir{files: serveString(patients(1)), manifest: func(base string) string {
		return Manifest(false, Entry{Type: "Patient", URL: base + "/files/p.ndjson", Count: 1},
			Entry{Type: "Patient", URL: base + "/files/p.ndjson", Count: 1})
	}}
	fo := startFHIR(t, f, false)
	e := newExport(t, fo.URL, nil)
	_, err := e.run(t)
	wantErr(t, err, "output[1].url repeats output[0].url")
}

func TestCheckManifestVersions(t *testing.T) {
	m := &bulk.Manifest{Output: []bulk.File{{Type: "ProcedureRequest", URL: "https://h/1"}}}
	if err := bulk.CheckManifest(m, "3.0.2"); err != nil {
		t.Errorf("STU3 type refused for STU3: %v", err)
	}
	if err := bulk.CheckManifest(m, "4.0.1"); err == nil {
		t.Error("STU3-only type accepted for R4")
	}
	if err := bulk.CheckManifest(m, ""); err != nil {
		t.Errorf("unknown release: %v", err)
	}
	m.Output[0].Type = "Transport" // R5
	if err := bulk.CheckManifest(m, "5.0.0"); err != nil {
		t.Errorf("a well-formed name for a release without a model: %v", err)
	}
}
