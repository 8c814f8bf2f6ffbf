package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"fhirdeid/state"
)

// KeyMismatchError stops a run whose anonymizer keys differ from those of
// the source's last successful run: its pseudonyms and date offsets would
// not join the lake's. It names the keys, never their values or
// fingerprints.
type KeyMismatchError struct {
	Pipeline string
	// Run is the last successful run, whose report holds the fingerprints.
	Run string
	// Keys are the names of the keys that differ ("cryptoHashKey").
	Keys []string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("the anonymizer's %s differ from those of run %s, the last successful run of pipeline %s: "+
		"its pseudonyms and shifted dates would not join the lake's. Use the same keys (the same key file), "+
		"or start a new lake on purpose with --new-keys", strings.Join(e.Keys, " and "), e.Run, e.Pipeline)
}

// CheckKeys compares p.KeyFingerprints with the fingerprints in the report
// of the source's last successful (or partial) run, key by key, for the keys
// both name. A difference is a *KeyMismatchError unless p.NewKeys is set;
// then the new run ignores the incremental cursor (a new lake starts with a
// full export). A
// source without a successful run, or a pipeline without fingerprints,
// passes.
func CheckKeys(ctx context.Context, p *Pipeline) error {
	if len(p.KeyFingerprints) == 0 {
		return nil
	}
	prev, err := lastCommittedRun(ctx, p.State, p.Name)
	if err != nil || prev == nil {
		return err
	}
	var rep Report
	if err := json.Unmarshal(prev.Report, &rep); err != nil {
		return fmt.Errorf("the report of run %s: %w", prev.ID, err)
	}
	rep.Run = prev.ID
	newLake, err := CheckKeysAgainst(p, &rep, p.NewKeys)
	if newLake {
		p.newLake = true
	}
	return err
}

// CheckKeysAgainst is CheckKeys against the report of the source's last
// successful run, prev (nil: none), with newKeys in place of p.NewKeys. It
// reports whether newKeys let different keys through, in which case the
// new run must not be incremental. It does not change p.
func CheckKeysAgainst(p *Pipeline, prev *Report, newKeys bool) (newLake bool, err error) {
	if len(p.KeyFingerprints) == 0 || prev == nil {
		return false, nil
	}
	var differ []string
	for name, fp := range p.KeyFingerprints {
		if old, ok := prev.KeyFingerprints[name]; ok && old != fp {
			differ = append(differ, name)
		}
	}
	if len(differ) == 0 {
		return false, nil
	}
	slices.Sort(differ)
	if newKeys {
		p.Logger.Warn("the anonymizer keys differ from the last successful run's: starting a new lake with a full export (--new-keys)",
			"pipeline", p.Name, "previous_run", prev.Run, "keys", strings.Join(differ, ","))
		return true, nil
	}
	return false, &KeyMismatchError{Pipeline: p.Name, Run: prev.Run, Keys: differ}
}

// lastCommittedRun returns the newest succeeded or partial run of source
// with a report, or nil.
func lastCommittedRun(ctx context.Context, db *state.DB, source string) (*state.Run, error) {
	const page = 50
	runs, err := db.Runs(ctx, source, page)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if (r.Status == state.RunSucceeded || r.Status == state.RunPartial) && len(r.Report) > 0 {
			return r, nil
		}
	}
	if len(runs) < page {
		return nil, nil
	}
	// Fifty runs without success: look at them all.
	runs, err = db.Runs(ctx, source, 0)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if (r.Status == state.RunSucceeded || r.Status == state.RunPartial) && len(r.Report) > 0 {
			return r, nil
		}
	}
	return nil, nil
}
