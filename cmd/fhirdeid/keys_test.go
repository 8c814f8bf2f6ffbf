package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/internal/testshared"
)

func TestKeysInit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	code, _, errs := runCmd(t, "", nil, "keys", "init", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	before, _ := os.ReadFile(path)
	var f map[string]any
	if err := json.Unmarshal(before, &f); err != nil || f["fhirdeidKeys"] != 1.0 || len(f["cryptoHashKey"].(string)) != 64 {
		t.Fatalf("key file: %v %v", err, f["fhirdeidKeys"])
	}
	if strings.Contains(errs, f["cryptoHashKey"].(string)) {
		t.Error("a key was printed")
	}
	code, _, errs = runCmd(t, "", nil, "keys", "init", path)
	if after, _ := os.ReadFile(path); code != 1 || !strings.Contains(errs, "already exists") || !bytes.Equal(before, after) {
		t.Errorf("second init: exit %d, %s", code, errs)
	}
	if code, _, _ := runCmd(t, "", nil, "keys", "init"); code != 2 {
		t.Errorf("no file: exit %d", code)
	}
}

func TestConfigShowProfile(t *testing.T) {
	code, out, _ := runCmd(t, "", nil, "config", "show", "--profile", "longitudinal")
	if code != 0 || out != string(defaultconfig.Longitudinal()) {
		t.Errorf("longitudinal: exit %d", code)
	}
	code, out, _ = runCmd(t, "", nil, "config", "show", "--profile", "safe-harbor")
	if code != 0 || out != string(defaultconfig.SafeHarbor()) {
		t.Errorf("safe-harbor: exit %d", code)
	}
	code, _, errs := runCmd(t, "", nil, "config", "show", "--profile", "expert")
	if code != 2 || !strings.Contains(errs, `unknown profile "expert"`) || !strings.Contains(errs, "longitudinal") {
		t.Errorf("unknown profile: exit %d: %s", code, errs)
	}
}

// readTree returns the decompressed NDJSON lines of every file under dir,
// by file name.
func readTree(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	for _, f := range files {
		out[filepath.Base(f)] = readNDJSON(t, f)
	}
	return out
}

// TestAnonymizeLongitudinalKeys runs "anonymize --profile longitudinal --keys
// K" twice over synthea-100: identical output; with another key file, other
// ids and other date offsets.
func TestAnonymizeLongitudinalKeys(t *testing.T) {
	in := testshared.Dir(t, "data", "synthea-100")
	dir := t.TempDir()
	k1, k2 := filepath.Join(dir, "k1.json"), filepath.Join(dir, "k2.json")
	for _, k := range []string{k1, k2} {
		if code, _, errs := runCmd(t, "", nil, "keys", "init", k); code != 0 {
			t.Fatal(errs)
		}
	}
	anon := func(k, out string) map[string][]string {
		t.Helper()
		code, _, errs := runCmd(t, "", nil, "anonymize", "--profile", "longitudinal", "--keys", k, "-i", in, "-o", out, "-b", "--today", "2026-06-01")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if strings.Contains(errs, "random key") {
			t.Errorf("random keys with a key file: %s", errs)
		}
		return readTree(t, out)
	}
	a := anon(k1, filepath.Join(dir, "a"))
	b := anon(k1, filepath.Join(dir, "b"))
	c := anon(k2, filepath.Join(dir, "c"))
	if len(a) != 17 {
		t.Fatalf("%d output files", len(a))
	}
	n := 0
	for name, lines := range a {
		if !slices.Equal(lines, b[name]) {
			t.Errorf("%s differs between two runs with the same key file", name)
		}
		n += len(lines)
	}
	if n != 38472 {
		t.Errorf("%d resources", n)
	}
	type res struct{ ID, BirthDate string }
	decode := func(l string) res {
		var r res
		json.Unmarshal([]byte(l), &r)
		return r
	}
	sameID, sameBirth := 0, 0
	for name, lines := range a {
		for i, l := range lines {
			ra, rc := decode(l), decode(c[name][i])
			if ra.ID == rc.ID {
				sameID++
			}
			if len(ra.BirthDate) == 10 && ra.BirthDate == rc.BirthDate {
				sameBirth++
			}
		}
	}
	if sameID != 0 || sameBirth > 5 {
		t.Errorf("another key file: %d ids and %d birth dates unchanged", sameID, sameBirth)
	}
}

// TestAnonymizeBadKeys checks that a bad key file or profile stops the
// command with one error naming the file or flag, and writes nothing.
func TestAnonymizeBadKeys(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	os.WriteFile(in, []byte(`{"resourceType":"Patient","id":"p","birthDate":"2000-01-01"}`+"\n"), 0o644)
	malformed := filepath.Join(dir, "malformed.json")
	os.WriteFile(malformed, []byte(`{"fhirdeidKeys":1,"cryptoHashKey":"SECRETSECRETSECRET"`), 0o600)
	wrongField := filepath.Join(dir, "wrong.json")
	os.WriteFile(wrongField, []byte(`{"fhirdeidKeys":1,"cryptoHashKey":"SECRETSECRETSECRET","dateShiftKey":"SECRETSECRETSECRET","encryptKey":"SECRET"}`), 0o600)
	good := filepath.Join(dir, "good.json")
	if code, _, errs := runCmd(t, "", nil, "keys", "init", good); code != 0 {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing", []string{"--keys", filepath.Join(dir, "absent.json")}, []string{"absent.json", "does not exist", "keys init"}},
		{"malformed", []string{"--keys", malformed}, []string{"malformed.json", "not valid JSON"}},
		{"wrong field", []string{"--keys", wrongField}, []string{"wrong.json", "encryptKey"}},
		{"unknown profile", []string{"--profile", "expert", "--keys", good}, []string{`unknown profile "expert"`}},
		{"profile and config", []string{"--profile", "longitudinal", "-c", good}, []string{"not both"}},
	} {
		out := filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-"))
		code, _, errs := runCmd(t, "", nil, append([]string{"anonymize", in, "-o", out}, tc.args...)...)
		if code != 2 {
			t.Errorf("%s: exit %d: %s", tc.name, code, errs)
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%s: error does not say %q: %s", tc.name, w, errs)
			}
		}
		if strings.Contains(errs, "SECRET") {
			t.Errorf("%s: a key in the error: %s", tc.name, errs)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: output written", tc.name)
		}
	}
	// A group-readable key file works, with a warning naming it.
	os.Chmod(good, 0o644)
	out := filepath.Join(dir, "out-ok")
	code, _, errs := runCmd(t, "", nil, "anonymize", in, "-o", out, "--profile", "longitudinal", "--keys", good)
	if code != 0 || !strings.Contains(errs, "good.json: mode 0644") {
		t.Errorf("group-readable: exit %d: %s", code, errs)
	}
	// Keys from the environment.
	env := map[string]string{"FHIRDEID_CRYPTO_HASH_KEY": "env-hash-key-0123456789", "FHIRDEID_DATE_SHIFT_KEY": "env-shift-key-0123456789"}
	line := `{"resourceType":"Patient","id":"p","birthDate":"2000-01-01"}` + "\n"
	_, o1, _ := runCmd(t, line, env, "anonymize", "--profile", "longitudinal", "-", "--today", "2026-06-01")
	_, o2, _ := runCmd(t, line, env, "anonymize", "--profile", "longitudinal", "-", "--today", "2026-06-01")
	env["FHIRDEID_CRYPTO_HASH_KEY"] = "env-hash-key-other-0123"
	_, o3, _ := runCmd(t, line, env, "anonymize", "--profile", "longitudinal", "-", "--today", "2026-06-01")
	if !strings.Contains(o1, `"resourceType":"Patient"`) || o1 != o2 || o1 == o3 {
		t.Errorf("keys from the environment: %q %q %q", o1, o2, o3)
	}
}

// TestRunKeysMismatch runs a pipeline, replaces its key file, and runs it
// again: the run stops with one error naming the keys and the fix, and
// writes no run; with --new-keys it runs.
func TestRunKeysMismatch(t *testing.T) {
	cfgPath, lake, _ := pipelineFixture(t, "")
	if code, out, errs := runExportCmd(t, nil, "run", "-q", cfgPath); code != 0 {
		t.Fatalf("first run: exit %d\n%s%s", code, out, errs)
	}
	runs := func() []string {
		entries, _ := os.ReadDir(lake)
		var names []string
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
		return names
	}
	before := runs()
	kf := filepath.Join(filepath.Dir(cfgPath), "keys.json")
	os.Remove(kf)
	if code, _, errs := runCmd(t, "", nil, "keys", "init", kf); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := runExportCmd(t, nil, "run", "-q", cfgPath)
	if code != 1 || !strings.Contains(errs, "cryptoHashKey differ from those of run "+before[0]) || !strings.Contains(errs, "--new-keys") {
		t.Errorf("mismatched keys: exit %d\n%s%s", code, out, errs)
	}
	if after := runs(); !slices.Equal(after, before) {
		t.Errorf("runs %v after a refused run, %v before", after, before)
	}
	if code, out, errs := runExportCmd(t, nil, "run", "-q", "--new-keys", cfgPath); code != 0 {
		t.Errorf("--new-keys: exit %d\n%s%s", code, out, errs)
	}
	if after := runs(); len(after) != len(before)+1 {
		t.Errorf("runs after --new-keys: %v", after)
	}
}
