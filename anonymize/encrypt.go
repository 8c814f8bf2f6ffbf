package anonymize

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Encryptor implements the encrypt method (§2.6): AES-CBC with PKCS#7
// padding under the UTF-8 bytes of encryptKey (16, 24 or 32 bytes), a random
// 16-byte IV per value, output base64(IV ‖ ciphertext). It is safe for
// concurrent use if its random source is.
type Encryptor struct {
	block cipher.Block
	rand  io.Reader
}

// ErrKeySize reports an encryption key whose UTF-8 length is not 16, 24 or
// 32 bytes.
var ErrKeySize = errors.New("invalid encrypt key size: provide a key of 128, 192 or 256 bits (16, 24 or 32 UTF-8 bytes)")

// NewEncryptor returns an Encryptor for key. rnd supplies the IVs; nil
// means crypto/rand.
func NewEncryptor(key string, rnd io.Reader) (*Encryptor, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("creating encryptor: %w (got %d bits)", ErrKeySize, 8*len(key))
	}
	b, err := aes.NewCipher([]byte(key))
	if err != nil {
		return nil, fmt.Errorf("creating encryptor: %w", err)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Encryptor{block: b, rand: rnd}, nil
}

// Encrypt returns base64(IV ‖ AES-CBC(PKCS#7(UTF-8(plaintext)))).
func (e *Encryptor) Encrypt(plaintext string) (string, error) {
	bs := aes.BlockSize
	pad := bs - len(plaintext)%bs
	buf := make([]byte, bs+len(plaintext)+pad)
	if _, err := io.ReadFull(e.rand, buf[:bs]); err != nil {
		return "", fmt.Errorf("encrypting: reading IV: %w", err)
	}
	copy(buf[bs:], plaintext)
	for i := bs + len(plaintext); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(e.block, buf[:bs]).CryptBlocks(buf[bs:], buf[bs:])
	return base64.StdEncoding.EncodeToString(buf), nil
}

// ErrCiphertext reports a value that is not an encrypted value of this key:
// bad base64, too short, not a whole number of blocks, or bad padding.
var ErrCiphertext = errors.New("not a valid encrypted value")

// Decrypt reverses Encrypt. Invalid UTF-8 in the plaintext is replaced by
// U+FFFD, as .NET's decoder does.
func (e *Encryptor) Decrypt(ciphertext string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ciphertext))
	if err != nil {
		return "", fmt.Errorf("decrypting: %w: bad base64", ErrCiphertext)
	}
	bs := aes.BlockSize
	if len(raw) < 2*bs || len(raw)%bs != 0 {
		return "", fmt.Errorf("decrypting: %w: length %d is not an IV plus whole blocks", ErrCiphertext, len(raw))
	}
	body := raw[bs:]
	cipher.NewCBCDecrypter(e.block, raw[:bs]).CryptBlocks(body, body)
	pad := int(body[len(body)-1])
	if pad == 0 || pad > bs {
		return "", fmt.Errorf("decrypting: %w: bad padding", ErrCiphertext)
	}
	for _, c := range body[len(body)-pad:] {
		if int(c) != pad {
			return "", fmt.Errorf("decrypting: %w: bad padding", ErrCiphertext)
		}
	}
	body = body[:len(body)-pad]
	if !utf8.Valid(body) {
		return strings.ToValidUTF8(string(body), "\uFFFD"), nil
	}
	return string(body), nil
}
