package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"fhirdeid/anonymize"
)

func init() {
	register(command{
		name:    "decrypt",
		summary: "decrypt values of the encrypt method, for authorised re-identification",
		run:     runDecrypt,
	})
}

const decryptUsage = `Usage:
  fhirdeid decrypt (-k KEY | --key-env VAR | -c CONFIG) [FILE|-]
  fhirdeid decrypt (-k KEY | --key-env VAR | -c CONFIG) --value BASE64

Decrypts the values that the "encrypt" method produced (AES-CBC, base64 of
IV and ciphertext) under the configuration's encryptKey.

With FILE (a JSON resource or NDJSON; - or nothing for standard input) every
JSON string value that decrypts under the key is replaced by its plaintext and
the document is written to standard output; everything else is copied byte
for byte. With --value, one value is decrypted and printed.

Prefer --key-env or -c (the encryptKey of a de-identification
configuration): a key given with -k is visible to other users in the
process list.

Flags:
`

func runDecrypt(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("decrypt", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), decryptUsage)
		fs.PrintDefaults()
	}
	key := fs.String("k", "", "the encryptKey (16, 24 or 32 bytes)")
	keyEnv := fs.String("key-env", "", "name of the environment variable holding the encryptKey")
	configFile := fs.String("c", "", "take the encryptKey from this de-identification configuration (JSON or YAML)")
	value := fs.String("value", "", "decrypt this one base64 value and print it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := 0
	for _, s := range []string{*key, *keyEnv, *configFile} {
		if s != "" {
			given++
		}
	}
	switch {
	case given > 1:
		return usageError{"give only one of -k, --key-env and -c"}
	case *configFile != "":
		k, err := encryptKeyFromConfig(*configFile)
		if err != nil {
			return err
		}
		*key = k
	case *keyEnv != "":
		*key = e.getenv(*keyEnv)
		if *key == "" {
			return usageError{fmt.Sprintf("environment variable %s is empty or not set", *keyEnv)}
		}
	case *key == "":
		return usageError{"missing key: give -k KEY or --key-env VAR"}
	}
	enc, err := anonymize.NewEncryptor(*key, nil)
	if err != nil {
		return usageError{err.Error()}
	}
	if *value != "" {
		if fs.NArg() != 0 {
			return usageError{"--value takes no FILE"}
		}
		pt, err := enc.Decrypt(*value)
		if err != nil {
			return fmt.Errorf("--value is not an encrypted value of this key: %w", errors.Unwrap(err))
		}
		_, err = fmt.Fprintln(e.stdout, pt)
		return err
	}
	if fs.NArg() > 1 {
		return usageError{"give at most one FILE"}
	}
	in := e.stdin
	name := "standard input"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		name = fs.Arg(0)
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("opening input: %w", err)
		}
		defer f.Close()
		in = f
	}
	w := bufio.NewWriter(e.stdout)
	n, err := decryptStream(ctx, bufio.NewReaderSize(in, 64<<10), w, enc)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("decrypting %s: %w", name, err)
	}
	fmt.Fprintf(e.stderr, "fhirdeid decrypt: %d values decrypted\n", n)
	return nil
}

// encryptKeyFromConfig reads the encryptKey of a configuration file.
func encryptKeyFromConfig(name string) (string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("reading configuration: %w", err)
	}
	// Paths are not compiled: only the parameters matter here.
	cfg, err := anonymize.ParseConfig(data, anonymize.Options{})
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	p := cfg.Parameters()
	if p.GeneratedEncryptKey {
		return "", usageError{fmt.Sprintf("%s has no encryptKey: values encrypted with a generated key cannot be decrypted", name)}
	}
	return p.EncryptKey, nil
}

// decryptStream copies JSON text (one document or NDJSON) from r to w,
// replacing every string value (not member names) that decrypts under enc by
// its plaintext. It scans tokens itself, so numbers, spacing and member order
// are kept exactly. It returns the number of values replaced. Errors give the
// byte offset, never content.
func decryptStream(ctx context.Context, r *bufio.Reader, w *bufio.Writer, enc *anonymize.Encryptor) (int, error) {
	var (
		n      int
		offset int64
		lit    []byte // a string literal, quotes included
		ws     []byte // white space after it
	)
	for {
		c, err := r.ReadByte()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		offset++
		if c != '"' {
			if err := w.WriteByte(c); err != nil {
				return n, err
			}
			if c == '\n' && ctx.Err() != nil {
				return n, ctx.Err()
			}
			continue
		}
		start := offset
		lit = append(lit[:0], '"')
		escaped := false
		for {
			c, err := r.ReadByte()
			if err != nil {
				if err == io.EOF {
					return n, fmt.Errorf("byte %d: unterminated string", start)
				}
				return n, err
			}
			offset++
			lit = append(lit, c)
			if escaped {
				escaped = false
				continue
			}
			if c == '\\' {
				escaped = true
			} else if c == '"' {
				break
			}
		}
		// A member name is followed by ':' after optional white space.
		ws = ws[:0]
		isKey := false
		for {
			b, err := r.Peek(1)
			if err != nil {
				break
			}
			if b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n' {
				ws = append(ws, b[0])
				r.ReadByte()
				offset++
				continue
			}
			isKey = b[0] == ':'
			break
		}
		out := lit
		if !isKey {
			if pt, ok := tryDecrypt(lit, enc); ok {
				out = pt
				n++
			}
		}
		if _, err := w.Write(out); err != nil {
			return n, err
		}
		if _, err := w.Write(ws); err != nil {
			return n, err
		}
	}
}

// tryDecrypt returns the JSON string literal of the plaintext of lit (a JSON
// string literal) when lit holds a value encrypted under enc whose plaintext
// is text.
func tryDecrypt(lit []byte, enc *anonymize.Encryptor) ([]byte, bool) {
	var s string
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		s = string(body)
	} else if json.Unmarshal(lit, &s) != nil {
		return nil, false
	}
	// IV plus at least one block, base64 with padding.
	if len(s) < 44 || len(s)%4 != 0 || strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != "" {
		return nil, false
	}
	pt, err := enc.Decrypt(s)
	if err != nil || strings.ContainsRune(pt, utf8.RuneError) {
		return nil, false
	}
	for _, r := range pt {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' {
			return nil, false
		}
	}
	var b bytes.Buffer
	je := json.NewEncoder(&b)
	je.SetEscapeHTML(false)
	if je.Encode(pt) != nil {
		return nil, false
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), true
}
