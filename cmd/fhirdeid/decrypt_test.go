package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirdeid/anonymize"
)

const testKey = "704ab12c8e3e46d4bea600ef62a6bec7"

func TestDecryptValue(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout string
		stderr string
	}{
		{"key flag", []string{"decrypt", "-k", testKey, "--value", "qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY="}, nil, 0, "abc\n", ""},
		{"key env", []string{"decrypt", "--key-env", "K", "--value", "zrFYnZ2cIwcfmjCVybP1ZC+LaD7gwGXBHR2bZjuutzA="}, map[string]string{"K": testKey}, 0, "测试\n", ""},
		{"wrong key", []string{"decrypt", "-k", "1234567890123456", "--value", "qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY="}, nil, 1, "", "not an encrypted value of this key"},
		{"not base64", []string{"decrypt", "-k", testKey, "--value", "YWJj"}, nil, 1, "", "not an encrypted value"},
		{"no key", []string{"decrypt", "--value", "YWJj"}, nil, 2, "", "missing key"},
		{"both keys", []string{"decrypt", "-k", testKey, "--key-env", "K", "--value", "YWJj"}, nil, 2, "", "only one of"},
		{"empty env", []string{"decrypt", "--key-env", "K", "--value", "YWJj"}, nil, 2, "", "K is empty"},
		{"bad key size", []string{"decrypt", "-k", "short", "--value", "YWJj"}, nil, 2, "", "invalid encrypt key size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCmd(t, "", tt.env, tt.args...)
			if code != tt.code || out != tt.stdout || !strings.Contains(errs, tt.stderr) {
				t.Errorf("exit %d stdout %q stderr %q; want %d %q %q", code, out, errs, tt.code, tt.stdout, tt.stderr)
			}
			if strings.Contains(errs, "short") || strings.Contains(errs, testKey) {
				t.Errorf("stderr contains the key: %q", errs)
			}
		})
	}
}

func TestDecryptConfigKey(t *testing.T) {
	dir := t.TempDir()
	withKey := filepath.Join(dir, "with.json")
	without := filepath.Join(dir, "without.json")
	os.WriteFile(withKey, []byte(`{"fhirPathRules":[],"parameters":{"encryptKey":"`+testKey+`"}}`), 0o600)
	os.WriteFile(without, []byte(`{"fhirPathRules":[]}`), 0o600)
	code, out, errs := runCmd(t, "", nil, "decrypt", "-c", withKey, "--value", "qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY=")
	if code != 0 || out != "abc\n" {
		t.Errorf("-c with a key: exit %d stdout %q stderr %q", code, out, errs)
	}
	code, _, errs = runCmd(t, "", nil, "decrypt", "-c", without, "--value", "qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY=")
	if code != 2 || !strings.Contains(errs, "has no encryptKey") {
		t.Errorf("-c without a key: exit %d stderr %q", code, errs)
	}
	code, _, errs = runCmd(t, "", nil, "decrypt", "-c", filepath.Join(dir, "missing.json"), "--value", "x")
	if code != 1 || !strings.Contains(errs, "reading configuration") {
		t.Errorf("-c missing file: exit %d stderr %q", code, errs)
	}
}

func TestDecryptStream(t *testing.T) {
	enc, err := anonymize.NewEncryptor(testKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := func(s string) string {
		c, err := enc.Encrypt(s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The encrypted city also appears as a member name, which stays.
	city := e("Springfield <&>")
	in := `{"resourceType":"Patient","id":"` + e("p1") + `","address":[{"city" : "` + city + `", "` + city + `":1.50}],` +
		`"note":"not encrypted","data":"qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY=","esc":"a\"b"}` + "\n" +
		`{"resourceType":"Patient","name":[{"family":"` + strings.ReplaceAll(e(`O"Brien`), "/", `\/`) + `"}]}` + "\n"
	want := `{"resourceType":"Patient","id":"p1","address":[{"city" : "Springfield <&>", "` + city + `":1.50}],` +
		`"note":"not encrypted","data":"abc","esc":"a\"b"}` + "\n" +
		`{"resourceType":"Patient","name":[{"family":"O\"Brien"}]}` + "\n"
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	n, err := decryptStream(context.Background(), bufio.NewReader(strings.NewReader(in)), w, enc)
	w.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if n != 4 {
		t.Errorf("%d values decrypted, want 4", n)
	}

	code, stdout, stderr := runCmd(t, in, map[string]string{"K": testKey}, "decrypt", "--key-env", "K")
	if code != 0 || stdout != want || !strings.Contains(stderr, "4 values decrypted") {
		t.Errorf("command: exit %d stdout %q stderr %q", code, stdout, stderr)
	}

	_, err = decryptStream(context.Background(), bufio.NewReader(strings.NewReader(`{"a":"unterminated`)), bufio.NewWriter(&bytes.Buffer{}), enc)
	if err == nil || strings.Contains(err.Error(), "unterminated\"") {
		t.Errorf("unterminated string: %v", err)
	}
}
