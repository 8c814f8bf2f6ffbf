package anonymize

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// msConformance totals the Microsoft anonymizer conformance cases (every
// resource case per FHIR build, and every configuration case per build with
// the real FHIRPath compiler) for the summary line TestMain prints.
var msConformance conformanceTally

type conformanceTally struct {
	mu                  sync.Mutex
	pass, fail, skipped int
}

func (c *conformanceTally) count(ok, skipped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case skipped:
		c.skipped++
	case ok:
		c.pass++
	default:
		c.fail++
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	c := &msConformance
	if total := c.pass + c.fail + c.skipped; total > 0 {
		fmt.Printf("MS anonymizer conformance: %d passed, %d failed, %d skipped (of %d)\n", c.pass, c.fail, c.skipped, total)
	}
	os.Exit(code)
}
