package views

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedDir returns the project's shared material (../shared or
// $FHIRDEID_SHARED), skipping the test when it is absent.
func sharedDir(t testing.TB, sub string) string {
	t.Helper()
	dirs := []string{os.Getenv("FHIRDEID_SHARED"), filepath.Join("..", "..", "shared"), filepath.Join("..", "shared")}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, sub)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("shared material %s not found in ../shared or $FHIRDEID_SHARED: skipping", sub)
	return ""
}
