package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.json")
	k, err := Create(path, nil, time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	if len(k.CryptoHashKey) != 64 || len(k.DateShiftKey) != 64 || len(k.EncryptKey) != 32 || k.CryptoHashKey == k.DateShiftKey {
		t.Errorf("generated keys: lengths %d %d %d", len(k.CryptoHashKey), len(k.DateShiftKey), len(k.EncryptKey))
	}
	got, warns, err := Load(path)
	if err != nil || len(warns) != 0 || got != k {
		t.Fatalf("load: %v %v equal=%v", err, warns, got == k)
	}
	// Never overwritten.
	before, _ := os.ReadFile(path)
	if _, err := Create(path, nil, time.Now()); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("overwrite: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("the key file changed")
	}
	// Two files differ.
	k2, err := Create(filepath.Join(dir, "k2.json"), nil, time.Now())
	if err != nil || k2 == k {
		t.Errorf("second file: %v, same keys %v", err, k2 == k)
	}
	// No temporary file left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the folder", len(entries))
	}
	// Group-readable: loads, with a warning naming the file.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	_, warns, err = Load(path)
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0], path) || !strings.Contains(warns[0], "chmod 600") {
		t.Errorf("group-readable: %v %v", err, warns)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good := `{"fhirdeidKeys":1,"cryptoHashKey":"SECRETSECRETSECRET1","dateShiftKey":"SECRETSECRETSECRET2","encryptKey":"SECRETSECRETSECR"}`
	for _, tc := range []struct {
		name, text, field string
	}{
		{"empty", ``, ""},
		{"not json", `{"fhirdeidKeys":1,"cryptoHashKey":"SECRETSECRETSECRET1"`, ""},
		{"array", `[1]`, ""},
		{"unknown", strings.Replace(good, `"fhirdeidKeys"`, `"hashKey":"SECRETSECRETSECRET9","fhirdeidKeys"`, 1), `"hashKey"`},
		{"duplicate", strings.Replace(good, `"fhirdeidKeys":1`, `"fhirdeidKeys":1,"fhirdeidKeys":1`, 1), `"fhirdeidKeys"`},
		{"version", strings.Replace(good, `"fhirdeidKeys":1`, `"fhirdeidKeys":2`, 1), "fhirdeidKeys"},
		{"no version", strings.Replace(good, `"fhirdeidKeys":1,`, ``, 1), "fhirdeidKeys"},
		{"missing", strings.Replace(good, `"dateShiftKey":"SECRETSECRETSECRET2",`, ``, 1), "dateShiftKey"},
		{"empty key", strings.Replace(good, `"SECRETSECRETSECRET2"`, `""`, 1), "dateShiftKey"},
		{"short key", strings.Replace(good, `"SECRETSECRETSECRET2"`, `"SECRETS"`, 1), "dateShiftKey"},
		{"number key", strings.Replace(good, `"SECRETSECRETSECRET1"`, `12345678901234567890`, 1), "cryptoHashKey"},
		{"aes length", strings.Replace(good, `"SECRETSECRETSECR"`, `"SECRETSECRETSECRET"`, 1), "encryptKey"},
		{"created", strings.Replace(good, `"fhirdeidKeys":1`, `"fhirdeidKeys":1,"created":"SECRETSECRETSECRETX"`, 1), "created"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
		if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(path)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if e.File != path || e.Field != tc.field || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: file %q field %q: %v", tc.name, e.File, e.Field, err)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: the error quotes a key: %v", tc.name, err)
		}
	}
	if _, _, err := Load(filepath.Join(dir, "absent.json")); err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "keys init") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, bytes.Repeat([]byte(" "), maxSize+10), 0o600)
	if _, _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("big file: %v", err)
	}
	if _, _, err := Load(dir); err == nil {
		t.Errorf("a folder loads")
	}
	path := filepath.Join(dir, "good.json")
	os.WriteFile(path, []byte(good), 0o600)
	if k, w, err := Load(path); err != nil || len(w) != 0 || k.EncryptKey != "SECRETSECRETSECR" {
		t.Errorf("good file: %v %v", err, w)
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{EnvCryptoHashKey: "a", EnvEncryptKey: "0123456789abcdef"}
	k, err := FromEnv(func(s string) string { return env[s] })
	if err != nil || k.CryptoHashKey != "a" || k.DateShiftKey != "" || k.EncryptKey != "0123456789abcdef" {
		t.Errorf("%+v %v", k, err)
	}
	env[EnvEncryptKey] = "SECRETSHORT"
	if _, err := FromEnv(func(s string) string { return env[s] }); err == nil || !strings.Contains(err.Error(), EnvEncryptKey) || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("bad encrypt key: %v", err)
	}
}
