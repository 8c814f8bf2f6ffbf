package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/synth"
)

// keyedSafeHarbor writes the built-in configuration with fixed keys, so that
// two runs over the same data give the same output.
func keyedSafeHarbor(t *testing.T, dir string) string {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(defaultconfig.SafeHarbor(), &cfg); err != nil {
		t.Fatal(err)
	}
	params, _ := cfg["parameters"].(map[string]any)
	if params == nil {
		params = map[string]any{}
	}
	params["cryptoHashKey"] = "kill-test-hash-key"
	params["dateShiftKey"] = "kill-test-date-key"
	params["encryptKey"] = "0123456789abcdef0123456789abcdef"
	cfg["parameters"] = params
	data, _ := json.Marshal(cfg)
	p := filepath.Join(dir, "anonymizer.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runOutput returns the decompressed data files of the latest committed run
// in lake, by their name inside the run folder.
func runOutput(t *testing.T, lake string) map[string]string {
	t.Helper()
	latest, err := os.ReadFile(filepath.Join(lake, "latest"))
	if err != nil {
		t.Fatalf("no committed run: %v", err)
	}
	run := filepath.Join(lake, strings.TrimSpace(string(latest)))
	if _, err := os.Stat(filepath.Join(run, "_SUCCESS")); err != nil {
		t.Fatalf("latest run %s has no _SUCCESS", run)
	}
	out := map[string]string{}
	for _, pat := range []string{"*.ndjson.gz", "deleted/*.ndjson.gz"} {
		files, _ := filepath.Glob(filepath.Join(run, pat))
		for _, f := range files {
			rel, _ := filepath.Rel(run, f)
			out[rel] = string(gunzipFile(t, f))
		}
	}
	return out
}

// TestRunKillResume kills "fhirdeid run" with SIGKILL at random points of
// fresh exports and checks that re-running finishes each export with output
// identical to an uninterrupted run, without a second kick-off.
func TestRunKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs many exports")
	}
	bin := buildBinary(t)
	pop := synth.Generate(synth.Options{Patients: 60})
	data := t.TempDir()
	for _, typ := range pop.Types() {
		writeNDJSON(t, filepath.Join(data, typ+".000.ndjson"), pop.Resources[typ])
	}
	base := startBulkServer(t, bin, "--data", data, "--part-size", "60", "--download-delay", "20ms",
		"--retry-after", "", "--polls", "1")
	work := t.TempDir()
	anonCfg := keyedSafeHarbor(t, work)
	writeConfig := func(dir string) string {
		cfg := fmt.Sprintf(`state: state.db
pipelines:
  ehr:
    source: {url: %s, maxPollInterval: 200ms}
    anonymizer: {config: %s}
    destination: file://%s
    concurrency: 2
`, base, anonCfg, filepath.ToSlash(filepath.Join(dir, "lake")))
		p := filepath.Join(dir, "fhirdeid.yml")
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	runOnce := func(cfg string, killAfter time.Duration) (killed bool, err error) {
		cmd := exec.Command(bin, "run", "-q", cfg)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if killAfter > 0 {
			select {
			case err := <-done:
				return false, annotate(err, out.String())
			case <-time.After(killAfter):
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				return true, nil
			}
		}
		return false, annotate(<-done, out.String())
	}

	refDir := t.TempDir()
	start := time.Now()
	if _, err := runOnce(writeConfig(refDir), 0); err != nil {
		t.Fatalf("reference run: %v", err)
	}
	full := time.Since(start)
	want := runOutput(t, filepath.Join(refDir, "lake"))
	if len(want) < 10 {
		t.Fatalf("the reference run has only %d files", len(want))
	}
	t.Logf("uninterrupted run: %s, %d files", full.Round(time.Millisecond), len(want))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	iterations := 20
	kills, secondKickoffs := 0, 0
	for i := 0; i < iterations; i++ {
		dir := t.TempDir()
		cfg := writeConfig(dir)
		before := serverStats(t, base).Kickoffs
		// Kill once or twice at random points, then let it finish. An
		// attempt that finishes before its kill time completes the export.
		finished := false
		for k := 0; k < 1+rng.IntN(2) && !finished; k++ {
			killed, err := runOnce(cfg, time.Duration(rng.Int64N(int64(full))))
			if err != nil {
				t.Fatalf("iteration %d: interrupted attempt failed: %v", i, err)
			}
			if killed {
				kills++
			} else {
				finished = true
			}
		}
		if !finished {
			if _, err := runOnce(cfg, 0); err != nil {
				t.Fatalf("iteration %d: resumed run failed: %v", i, err)
			}
		}
		got := runOutput(t, filepath.Join(dir, "lake"))
		if len(got) != len(want) {
			t.Fatalf("iteration %d: %d files, want %d", i, len(got), len(want))
		}
		for name, w := range want {
			if got[name] != w {
				t.Fatalf("iteration %d: %s differs from the uninterrupted run", i, name)
			}
		}
		switch k := serverStats(t, base).Kickoffs - before; {
		case k == 2:
			// Killed between the server accepting the kick-off and the
			// status URL reaching the database: the one window a client
			// cannot close.
			secondKickoffs++
		case k != 1:
			t.Fatalf("iteration %d: %d kick-offs", i, k)
		}
	}
	t.Logf("%d iterations, %d kills, %d exports kicked off twice (kill inside the kick-off window)", iterations, kills, secondKickoffs)
	if secondKickoffs > iterations/4 {
		t.Errorf("%d of %d exports were kicked off twice", secondKickoffs, iterations)
	}
}

func annotate(err error, out string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%v: %s", err, out)
}
