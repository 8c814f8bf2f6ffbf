package anonymize

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Keys are the secret keys of a configuration, when they come from outside
// its file: a key file (package anonymize/keys) or the environment. A
// non-empty field replaces the file's parameter of the same name
// (Options.Keys); an empty one leaves it.
type Keys struct {
	CryptoHashKey string
	DateShiftKey  string
	EncryptKey    string
}

// IsZero reports whether no key is set.
func (k Keys) IsZero() bool { return k == Keys{} }

func applyKeys(p *Parameters, k Keys) {
	if k.CryptoHashKey != "" {
		p.CryptoHashKey = k.CryptoHashKey
	}
	if k.DateShiftKey != "" {
		p.DateShiftKey = k.DateShiftKey
	}
	if k.EncryptKey != "" {
		p.EncryptKey = k.EncryptKey
	}
}

// The names of the keys, as in the configuration's parameters.
const (
	CryptoHashKeyName = "cryptoHashKey"
	DateShiftKeyName  = "dateShiftKey"
	EncryptKeyName    = "encryptKey"
)

// UsedKeys returns the names of the keys the configuration's rules use,
// sorted: cryptoHashKey for cryptoHash and perturb (whose noise it keys),
// dateShiftKey for dateShift without a fixed offset, encryptKey for
// encrypt. A key no rule uses does not change the output.
func (c *Config) UsedKeys() []string {
	var out []string
	has := func(m Method) bool {
		return slices.ContainsFunc(c.rules, func(r Rule) bool { return r.Method == m })
	}
	if has(MethodCryptoHash) || has(MethodPerturb) {
		out = append(out, CryptoHashKeyName)
	}
	if has(MethodDateShift) && !c.params.HasFixedOffset {
		out = append(out, DateShiftKeyName)
	}
	if has(MethodEncrypt) {
		out = append(out, EncryptKeyName)
	}
	slices.Sort(out)
	return out
}

// RandomKeys returns the names of the used keys (UsedKeys) that were
// generated at random when the configuration was loaded: their outputs
// (pseudonyms, date offsets, ciphertexts) differ from one load to the next.
func (c *Config) RandomKeys() []string {
	var out []string
	for _, k := range c.UsedKeys() {
		p := c.params
		if (k == CryptoHashKeyName && p.GeneratedCryptoHashKey) || (k == DateShiftKeyName && p.GeneratedDateShiftKey) ||
			(k == EncryptKeyName && p.GeneratedEncryptKey) {
			out = append(out, k)
		}
	}
	return out
}

// KeyFingerprints returns the fingerprints (Fingerprint) of the used keys
// (UsedKeys), by name: what a run report records so that runs made with
// different keys can be told apart without revealing any key.
func (c *Config) KeyFingerprints() map[string]string {
	fps := map[string]string{}
	for _, k := range c.UsedKeys() {
		switch k {
		case CryptoHashKeyName:
			fps[k] = Fingerprint(c.params.CryptoHashKey)
		case DateShiftKeyName:
			fps[k] = Fingerprint(c.params.DateShiftKey)
		case EncryptKeyName:
			fps[k] = Fingerprint(c.params.EncryptKey)
		}
	}
	return fps
}

// Fingerprint identifies a key without revealing it: "sha256:" and the hex
// of the first 8 bytes of SHA-256 over a domain-separated input.
func Fingerprint(key string) string {
	h := sha256.Sum256([]byte("fhirdeid key fingerprint\x00" + key))
	return "sha256:" + hex.EncodeToString(h[:8])
}

// DefaultDateShiftRange is the default of dateShiftRangeInDays.
const DefaultDateShiftRange = 50

// maxDateShiftRange bounds dateShiftRangeInDays (ten years).
const maxDateShiftRange = 3650

// dateShiftRange reads the dateShiftRangeInDays parameter (a fhirdeid
// extension) into p, or sets its default.
func dateShiftRange(m *Member, p *Parameters) error {
	p.DateShiftRangeInDays = DefaultDateShiftRange
	if m == nil || m.Value.Kind == NullValue {
		return nil
	}
	mv := &m.Value
	if mv.Kind != NumberValue && mv.Kind != StringValue {
		return parseErr(mv, "dateShiftRangeInDays must be an integer, not %s", mv.Kind)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(mv.Text), 64)
	if err != nil || f != math.Trunc(f) || f < 1 || f > maxDateShiftRange {
		return parseErr(mv, "dateShiftRangeInDays must be a whole number of days from 1 to %d", maxDateShiftRange)
	}
	p.DateShiftRangeInDays = int(f)
	return nil
}
