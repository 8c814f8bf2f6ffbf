// Package testshared locates the project's shared test material (specs,
// conformance suites and Synthea data) for tests and benchmarks.
//
// The material lives in ../shared beside the repository, or wherever
// $FHIRDEID_SHARED points. A user's clone does not have it, so tests that need
// it call Dir, which skips the test with a clear message when it is absent.
package testshared

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Path returns the shared directory, or "" when it cannot be found.
func Path() string {
	if d := os.Getenv("FHIRDEID_SHARED"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
		return ""
	}
	// This file is <repo>/internal/testshared/testshared.go.
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	d := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return filepath.Clean(d)
	}
	return ""
}

// Dir returns the shared directory joined with elem, skipping tb when the
// shared material (or the named part of it) is not available.
func Dir(tb testing.TB, elem ...string) string {
	tb.Helper()
	d := Path()
	if d == "" {
		tb.Skip("shared test material not found: put it at ../shared beside the repository or set FHIRDEID_SHARED")
	}
	p := filepath.Join(append([]string{d}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared test material %s not found", filepath.Join(elem...))
	}
	return p
}
