// Package keys reads and writes fhirdeid key files: the secret keys of the
// anonymizer (cryptoHashKey, dateShiftKey, encryptKey) kept apart from its
// configuration, so that every run of a pipeline, and every "fhirdeid
// anonymize", pseudonymises and shifts dates the same way.
//
// A key file is a small JSON document:
//
//	{
//	  "fhirdeidKeys": 1,
//	  "created": "2026-12-07T01:00:00Z",
//	  "cryptoHashKey": "<64 hex digits>",
//	  "dateShiftKey": "<64 hex digits>",
//	  "encryptKey": "<32 characters>"
//	}
//
// "fhirdeidKeys" is the format's version. The keys are used as the
// anonymizer uses its parameters of the same names: cryptoHashKey and
// dateShiftKey as strings (any length), encryptKey as AES key bytes (16, 24
// or 32 characters). Generate writes 256-bit random cryptoHash and dateShift
// keys and a 32-character encryption key (192 random bits, base64url).
//
// Load refuses anything else: a missing file, a file over 64 KiB, invalid
// JSON, unknown or duplicate fields, a missing or empty key, an encryptKey
// of the wrong length. A file that its group or others may read loads with
// a warning. Errors name the file and the field and never contain a key.
//
// FromEnv reads the same keys from the environment variables
// FHIRDEID_CRYPTO_HASH_KEY, FHIRDEID_DATE_SHIFT_KEY and FHIRDEID_ENCRYPT_KEY.
package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"fhirdeid/anonymize"
)

// Version is the key file format's version ("fhirdeidKeys").
const Version = 1

// maxSize bounds a key file.
const maxSize = 64 << 10

// The environment variables FromEnv reads.
const (
	EnvCryptoHashKey = "FHIRDEID_CRYPTO_HASH_KEY"
	EnvDateShiftKey  = "FHIRDEID_DATE_SHIFT_KEY"
	EnvEncryptKey    = "FHIRDEID_ENCRYPT_KEY"
)

// Error is a problem with a key file: the file, the field ("" for the file
// as a whole) and what is wrong. It never holds a key.
type Error struct {
	File  string
	Field string
	Msg   string
	Err   error
}

func (e *Error) Error() string {
	s := "key file " + e.File
	if e.Field != "" {
		s += ": " + e.Field
	}
	s += ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// file is the JSON form.
type file struct {
	FhirdeidKeys  int    `json:"fhirdeidKeys"`
	Created       string `json:"created,omitempty"`
	CryptoHashKey string `json:"cryptoHashKey"`
	DateShiftKey  string `json:"dateShiftKey"`
	EncryptKey    string `json:"encryptKey"`
}

var fields = []string{"fhirdeidKeys", "created", "cryptoHashKey", "dateShiftKey", "encryptKey"}

// Generate returns fresh random keys from rnd (nil: crypto/rand).
func Generate(rnd io.Reader) (anonymize.Keys, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [32 + 32 + 24]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return anonymize.Keys{}, fmt.Errorf("generating keys: %w", err)
	}
	return anonymize.Keys{
		CryptoHashKey: hex.EncodeToString(b[:32]),
		DateShiftKey:  hex.EncodeToString(b[32:64]),
		EncryptKey:    base64.RawURLEncoding.EncodeToString(b[64:]),
	}, nil
}

// Marshal returns the key file text of k.
func Marshal(k anonymize.Keys, created time.Time) []byte {
	f := file{FhirdeidKeys: Version, CryptoHashKey: k.CryptoHashKey, DateShiftKey: k.DateShiftKey, EncryptKey: k.EncryptKey}
	if !created.IsZero() {
		f.Created = created.UTC().Format(time.RFC3339)
	}
	out, _ := json.MarshalIndent(f, "", "  ")
	return append(out, '\n')
}

// Create writes a new key file with fresh random keys at path, readable by
// its owner only (mode 0600). It refuses to overwrite an existing file, and
// writes under a temporary name renamed into place only when complete.
func Create(path string, rnd io.Reader, now time.Time) (anonymize.Keys, error) {
	k, err := Generate(rnd)
	if err != nil {
		return k, &Error{File: path, Msg: "cannot generate keys", Err: err}
	}
	if _, err := os.Lstat(path); err == nil {
		return anonymize.Keys{}, &Error{File: path, Msg: "already exists: a key file is never overwritten (its keys are what links the lake's runs); choose another name"}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot check the path", Err: pathErr(err)}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot create the file", Err: pathErr(err)}
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot restrict the file's permissions", Err: pathErr(err)}
	}
	if _, err := tmp.Write(Marshal(k, now)); err != nil {
		tmp.Close()
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot write the file", Err: pathErr(err)}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot write the file", Err: pathErr(err)}
	}
	if err := tmp.Close(); err != nil {
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot write the file", Err: pathErr(err)}
	}
	// A hard link fails if path appeared meanwhile: never overwrite.
	err = os.Link(tmp.Name(), path)
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, fs.ErrExist):
		return anonymize.Keys{}, &Error{File: path, Msg: "already exists: a key file is never overwritten"}
	}
	// A file system without hard links: create the file exclusively.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return anonymize.Keys{}, &Error{File: path, Msg: "already exists: a key file is never overwritten"}
		}
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot create the file", Err: pathErr(err)}
	}
	_, werr := f.Write(Marshal(k, now))
	if serr := f.Sync(); werr == nil {
		werr = serr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return anonymize.Keys{}, &Error{File: path, Msg: "cannot write the file", Err: pathErr(werr)}
	}
	return k, nil
}

// pathErr drops the path from an *fs.PathError (the Error already names it).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// Load reads the key file at path. warnings holds what is suspicious but
// allowed (permissions that let the group or others read the file).
func Load(path string) (k anonymize.Keys, warnings []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		msg := "cannot open the file"
		if errors.Is(err, fs.ErrNotExist) {
			msg = "does not exist (create one with: fhirdeid keys init " + path + ")"
		}
		return k, nil, &Error{File: path, Msg: msg, Err: pathErrUnlessNotExist(err)}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return k, nil, &Error{File: path, Msg: "cannot read the file", Err: pathErr(err)}
	}
	if !st.Mode().IsRegular() {
		return k, nil, &Error{File: path, Msg: "is not a regular file"}
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		warnings = append(warnings, fmt.Sprintf("key file %s: mode %04o lets the group or others read the keys; restrict it with: chmod 600 %s", path, perm, path))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return k, warnings, &Error{File: path, Msg: "cannot read the file", Err: pathErr(err)}
	}
	if len(data) > maxSize {
		return k, warnings, &Error{File: path, Msg: fmt.Sprintf("is larger than %d KiB: not a key file", maxSize>>10)}
	}
	k, err = Parse(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = path
		}
		return anonymize.Keys{}, warnings, err
	}
	return k, warnings, nil
}

func pathErrUnlessNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return pathErr(err)
}

// Parse reads key file text. Its errors have an empty File.
func Parse(data []byte) (anonymize.Keys, error) {
	var k anonymize.Keys
	// Check the structure first, with messages that quote no content.
	var raw map[string]json.RawMessage
	if !json.Valid(data) {
		return k, &Error{Msg: "not valid JSON"}
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return k, &Error{Msg: "not a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := checkDuplicates(dec); err != nil {
		return k, err
	}
	for name := range raw {
		known := false
		for _, f := range fields {
			known = known || f == name
		}
		if !known {
			return k, &Error{Field: fmt.Sprintf("%q", name), Msg: "unknown field (a key file has fhirdeidKeys, created, cryptoHashKey, dateShiftKey and encryptKey)"}
		}
	}
	var f file
	for _, name := range fields {
		v, ok := raw[name]
		if !ok {
			if name == "created" {
				continue
			}
			return k, &Error{Field: name, Msg: "missing"}
		}
		var dst any
		switch name {
		case "fhirdeidKeys":
			dst = &f.FhirdeidKeys
		case "created":
			dst = &f.Created
		case "cryptoHashKey":
			dst = &f.CryptoHashKey
		case "dateShiftKey":
			dst = &f.DateShiftKey
		case "encryptKey":
			dst = &f.EncryptKey
		}
		if err := json.Unmarshal(v, dst); err != nil {
			want := "a string"
			if name == "fhirdeidKeys" {
				want = "an integer"
			}
			return k, &Error{Field: name, Msg: "must be " + want}
		}
	}
	if f.FhirdeidKeys != Version {
		return k, &Error{Field: "fhirdeidKeys", Msg: fmt.Sprintf("unsupported version %d (this fhirdeid reads version %d)", f.FhirdeidKeys, Version)}
	}
	for _, c := range []struct{ name, v string }{{"cryptoHashKey", f.CryptoHashKey}, {"dateShiftKey", f.DateShiftKey}, {"encryptKey", f.EncryptKey}} {
		if c.v == "" {
			return k, &Error{Field: c.name, Msg: "is empty"}
		}
		if len(c.v) < 16 {
			return k, &Error{Field: c.name, Msg: fmt.Sprintf("is %d characters long: too short to be secret (at least 16)", len(c.v))}
		}
	}
	if n := len(f.EncryptKey); n != 16 && n != 24 && n != 32 {
		return k, &Error{Field: "encryptKey", Msg: fmt.Sprintf("is %d bytes long; an AES key has 16, 24 or 32", n)}
	}
	if f.Created != "" {
		if _, err := time.Parse(time.RFC3339, f.Created); err != nil {
			return k, &Error{Field: "created", Msg: "must be an RFC 3339 time"}
		}
	}
	return anonymize.Keys{CryptoHashKey: f.CryptoHashKey, DateShiftKey: f.DateShiftKey, EncryptKey: f.EncryptKey}, nil
}

// checkDuplicates rejects an object with a member twice (which JSON
// decoders resolve silently to the last one).
func checkDuplicates(dec *json.Decoder) error {
	if _, err := dec.Token(); err != nil { // {
		return &Error{Msg: "not a JSON object"}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return &Error{Msg: "not valid JSON"}
		}
		name, _ := tok.(string)
		if seen[name] {
			return &Error{Field: fmt.Sprintf("%q", name), Msg: "appears twice"}
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return &Error{Msg: "not valid JSON"}
		}
	}
	return nil
}

// FromEnv returns the keys set in the environment (FHIRDEID_CRYPTO_HASH_KEY,
// FHIRDEID_DATE_SHIFT_KEY, FHIRDEID_ENCRYPT_KEY); unset ones are empty. An
// encryption key of the wrong length is an error naming the variable.
func FromEnv(getenv func(string) string) (anonymize.Keys, error) {
	k := anonymize.Keys{CryptoHashKey: getenv(EnvCryptoHashKey), DateShiftKey: getenv(EnvDateShiftKey), EncryptKey: getenv(EnvEncryptKey)}
	if n := len(k.EncryptKey); n != 0 && n != 16 && n != 24 && n != 32 {
		return anonymize.Keys{}, fmt.Errorf("environment variable %s: %d bytes long; an AES key has 16, 24 or 32", EnvEncryptKey, n)
	}
	return k, nil
}
