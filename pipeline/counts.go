package pipeline

import (
	"fhirdeid/anonymize"
)

// Counts says what de-identification did to a set of resources: how many
// resources went through each operation (by security label code: REDACTED,
// CRYTOHASH, PERTURBED, ...), how many values were changed or removed, and
// how many resources a processing error replaced by an empty one
// (processingErrors: skip). It holds no values.
type Counts struct {
	Operations    map[string]int64 `json:"operations,omitempty"`
	ValuesChanged int64            `json:"valuesChanged"`
	Skipped       int64            `json:"skipped,omitempty"`
	// Invalid counts the lines dropped as invalid (onInvalid: skip).
	Invalid int64 `json:"invalid,omitempty"`
	// InvalidLines lists them (per file only; moved to the report's
	// invalidLines).
	InvalidLines []InvalidLine `json:"invalidLines,omitempty"`
	// Tables counts the rows written to the research tables (views), by
	// table (per file only; moved to the report's tables).
	Tables map[string]int64 `json:"tables,omitempty"`
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	for k, v := range o.Operations {
		if c.Operations == nil {
			c.Operations = map[string]int64{}
		}
		c.Operations[k] += v
	}
	c.ValuesChanged += o.ValuesChanged
	c.Skipped += o.Skipped
	c.Invalid += o.Invalid
}

// allOperations are the operations counted, in label order.
var allOperations = [...]anonymize.Operation{anonymize.OpRedact, anonymize.OpAbstract, anonymize.OpCryptoHash,
	anonymize.OpEncrypt, anonymize.OpPerturb, anonymize.OpSubstitute, anonymize.OpGeneralize}

// opCounts is one worker's tally, without maps on the hot path.
type opCounts struct {
	ops     [len(allOperations)]int64
	changed int64
	skipped int64
}

func (c *opCounts) add(st anonymize.Stats) {
	for i, op := range allOperations {
		if st.Operations.Has(op) {
			c.ops[i]++
		}
	}
	c.changed += int64(st.Changed)
	if st.Skipped {
		c.skipped++
	}
}

func (c *opCounts) merge(o *opCounts) {
	for i := range c.ops {
		c.ops[i] += o.ops[i]
	}
	c.changed += o.changed
	c.skipped += o.skipped
}

func (c *opCounts) counts() Counts {
	out := Counts{ValuesChanged: c.changed, Skipped: c.skipped}
	for i, op := range allOperations {
		if c.ops[i] > 0 {
			if out.Operations == nil {
				out.Operations = map[string]int64{}
			}
			out.Operations[op.String()] = c.ops[i]
		}
	}
	return out
}
