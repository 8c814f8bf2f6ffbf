package audit

// NewNaiveCollector returns a collector without the matching rules, to
// measure the false positives they prevent.
func NewNaiveCollector() *Collector {
	c := NewCollector()
	c.naive = true
	return c
}
