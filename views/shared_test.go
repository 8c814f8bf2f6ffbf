package views

import (
	"testing"

	"fhirdeid/internal/testshared"
)

// sharedDir returns a part of the project's shared material, skipping the
// test when it is absent.
func sharedDir(t testing.TB, sub string) string {
	t.Helper()
	return testshared.Dir(t, sub)
}
