package pipeline

// AuditHeld returns the run whose audit state (collected identifiers and
// scans) p holds in memory, "" for none.
func AuditHeld(p *Pipeline) string {
	p.assure.mu.Lock()
	defer p.assure.mu.Unlock()
	if p.assure.collector == nil {
		return ""
	}
	return p.assure.run
}
