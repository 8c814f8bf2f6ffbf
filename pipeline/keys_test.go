package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
)

// TestKeysMustMatchLastRun runs a pipeline with keys A, then with keys B: the
// second run stops before kicking off an export or writing anything, naming
// the key and the fix; with NewKeys it runs, as a full export.
func TestKeysMustMatchLastRun(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 5})
	var all [][]byte
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	e := newEnv(t, bulktest.Options{Resources: all})
	ctx := context.Background()
	keysA := map[string]string{"cryptoHashKey": "sha256:aaaa", "dateShiftKey": "sha256:bbbb"}
	p := e.pipeline(t, &fakeDeid{})
	p.KeyFingerprints = keysA
	rep1, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep1.KeyFingerprints["dateShiftKey"] != "sha256:bbbb" {
		t.Fatalf("report fingerprints %v", rep1.KeyFingerprints)
	}
	runsBefore, _ := e.db.Runs(ctx, "ehr", 0)
	kickoffs := e.srv.Stats().Kickoffs

	// Same keys, and a key the last run did not use: fine.
	p = e.pipeline(t, &fakeDeid{})
	p.KeyFingerprints = map[string]string{"cryptoHashKey": "sha256:aaaa", "encryptKey": "sha256:cccc"}
	if err := pipeline.CheckKeys(ctx, p); err != nil {
		t.Errorf("same keys: %v", err)
	}

	// Another date-shift key: refused before anything happens.
	p = e.pipeline(t, &fakeDeid{})
	p.Now = func() time.Time { return time.Now().Add(2 * time.Second) }
	p.KeyFingerprints = map[string]string{"cryptoHashKey": "sha256:aaaa", "dateShiftKey": "sha256:dddd"}
	_, err = pipeline.Run(ctx, p)
	var km *pipeline.KeyMismatchError
	if !errors.As(err, &km) || len(km.Keys) != 1 || km.Keys[0] != "dateShiftKey" || km.Run != rep1.Run {
		t.Fatalf("mismatched keys: %v", err)
	}
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Outcome != pipeline.Fatal {
		t.Errorf("not a fatal pipeline error: %#v", err)
	}
	msg := err.Error()
	for _, w := range []string{"dateShiftKey", rep1.Run, "--new-keys", "ehr"} {
		if !strings.Contains(msg, w) {
			t.Errorf("the error does not say %q: %s", w, msg)
		}
	}
	if strings.Contains(msg, "dddd") || strings.Contains(msg, "bbbb") {
		t.Errorf("the error shows fingerprints: %s", msg)
	}
	runsAfter, _ := e.db.Runs(ctx, "ehr", 0)
	if len(runsAfter) != len(runsBefore) || e.srv.Stats().Kickoffs != kickoffs {
		t.Errorf("a refused run left %d runs (was %d) and %d kick-offs (was %d)", len(runsAfter), len(runsBefore), e.srv.Stats().Kickoffs, kickoffs)
	}
	if latest, _ := e.store.Latest(ctx); latest != rep1.Run {
		t.Errorf("latest moved to %s", latest)
	}

	// --new-keys: a new lake, from a full export.
	p.NewKeys = true
	rep2, err := pipeline.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Since != "" || rep2.Resources != rep1.Resources || rep2.KeyFingerprints["dateShiftKey"] != "sha256:dddd" {
		t.Errorf("new lake: since %q, %d resources (first run %d), fingerprints %v", rep2.Since, rep2.Resources, rep1.Resources, rep2.KeyFingerprints)
	}
	// The next run compares with the new lake's keys.
	p = e.pipeline(t, &fakeDeid{})
	p.KeyFingerprints = keysA
	if err := pipeline.CheckKeys(ctx, p); !errors.As(err, &km) || km.Run != rep2.Run {
		t.Errorf("after the new lake: %v", err)
	}
}
