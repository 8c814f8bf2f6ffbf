package anonymize

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Method is a built-in anonymization method.
type Method uint8

// The built-in methods of the Microsoft anonymizer. MethodCustom marks a rule
// whose method is not built in: it loads with a warning and fails when it
// applies to a resource.
const (
	MethodCustom Method = iota
	MethodKeep
	MethodRedact
	MethodDateShift
	MethodCryptoHash
	MethodEncrypt
	MethodSubstitute
	MethodPerturb
	MethodGeneralize
)

var methodNames = [...]string{"custom", "keep", "redact", "dateShift", "cryptoHash", "encrypt", "substitute", "perturb", "generalize"}

// String returns the method's canonical spelling ("dateShift").
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "invalid"
}

// parseMethod matches a method name case-insensitively.
func parseMethod(s string) Method {
	for i := MethodKeep; int(i) < len(methodNames); i++ {
		if strings.EqualFold(s, methodNames[i]) {
			return i
		}
	}
	return MethodCustom
}

// ProcessingErrors says what happens to a resource whose processing fails
// with a processing error (§2.10 of the specification).
type ProcessingErrors uint8

const (
	// Raise fails the resource (the default).
	Raise ProcessingErrors = iota
	// Skip replaces the whole top-level resource by an empty one labelled
	// REDACTED.
	Skip
)

// String returns "raise" or "skip".
func (p ProcessingErrors) String() string {
	if p == Skip {
		return "skip"
	}
	return "raise"
}

// DateShiftScope selects the prefix that keys the date-shift offset.
type DateShiftScope uint8

const (
	// ScopeResource keys the offset on the id of the root resource of the
	// document (the default).
	ScopeResource DateShiftScope = iota
	// ScopeFile keys it on the input file's name.
	ScopeFile
	// ScopeFolder keys it on the input folder's last path segment.
	ScopeFolder
	// ScopePatient (a fhirdeid extension) keys it on the id of the patient
	// whose compartment the resource is in, and keeps times of day: see
	// patientshift.go.
	ScopePatient
)

// String returns "resource", "file" or "folder".
func (s DateShiftScope) String() string {
	switch s {
	case ScopeFile:
		return "file"
	case ScopeFolder:
		return "folder"
	case ScopePatient:
		return "patient"
	}
	return "resource"
}

// RangeType is how a perturb rule's span is interpreted.
type RangeType uint8

const (
	// Fixed uses the span as an absolute width.
	Fixed RangeType = iota
	// Proportional multiplies the span by the value.
	Proportional
)

// String returns "fixed" or "proportional".
func (r RangeType) String() string {
	if r == Proportional {
		return "proportional"
	}
	return "fixed"
}

// OtherValues is what a generalize rule does to a value that no case
// matches.
type OtherValues uint8

const (
	// OtherRedact removes the value (the default).
	OtherRedact OtherValues = iota
	// OtherKeep keeps it unchanged.
	OtherKeep
)

// String returns "redact" or "keep".
func (o OtherValues) String() string {
	if o == OtherKeep {
		return "keep"
	}
	return "redact"
}

// Compiled is a compiled FHIRPath expression, as returned by a PathCompiler.
// This package does not look inside it; the rule engine hands it back to the
// FHIRPath evaluator.
type Compiled any

// PathCompiler compiles one FHIRPath expression of a configuration. For a
// rule path it receives the resource type prefix split off by §3.1 ("" when
// there is none) and the rest of the path; for the key and the value of a
// generalize case it receives "" and the expression, which is evaluated with
// the element as its focus ($this).
//
// An error that has a method Column() int is reported with that column
// (1-based, within expr).
type PathCompiler func(resourceType, expr string) (Compiled, error)

// Format is the syntax of a configuration file.
type Format uint8

const (
	// AutoFormat reads JSON when the first significant character is '{',
	// and YAML otherwise.
	AutoFormat Format = iota
	// JSON reads JSON (comments and trailing commas tolerated, as by the
	// Microsoft anonymizer).
	JSON
	// YAML reads YAML with the same keys and semantics.
	YAML
)

// Options control LoadConfig.
type Options struct {
	// FHIRVersion is the FHIR release the engine is built for, "R4" (the
	// default) or "STU3". The file's fhirVersion must match it.
	FHIRVersion string
	// Compiler compiles every rule path and every generalize case. When it
	// is nil paths are only split, not checked, and Rule.Compiled is nil.
	Compiler PathCompiler
	// Rand is the source of the keys generated when dateShiftKey,
	// cryptoHashKey or encryptKey are empty. Nil means crypto/rand.
	Rand io.Reader
	// Format is the file's syntax.
	Format Format
	// Keys, when its fields are set, replace the file's keys (from a key
	// file or the environment; see Keys).
	Keys Keys
}

// Parameters are the configuration's "parameters", with defaults filled in
// (§1.4).
type Parameters struct {
	// DateShiftKey keys the date-shift offsets. Generated (32 hex
	// characters) when the file leaves it empty.
	DateShiftKey string
	// DateShiftScope selects the offset's prefix.
	DateShiftScope DateShiftScope
	// DateShiftFixedOffsetInDays, when HasFixedOffset, replaces the derived
	// offset.
	DateShiftFixedOffsetInDays int
	// HasFixedOffset reports whether dateShiftFixedOffsetInDays was set.
	HasFixedOffset bool
	// DateShiftRangeInDays bounds the offsets of scope "patient" (and of
	// its resource fallback): they lie in [-range, -1] ∪ [1, range].
	// Default 50, as the Microsoft anonymizer's range.
	DateShiftRangeInDays int
	// CryptoHashKey keys cryptoHash (HMAC-SHA256) and the deterministic
	// noise of perturb. Generated when empty.
	CryptoHashKey string
	// EncryptKey is the AES key (its UTF-8 bytes: 16, 24 or 32). Generated
	// when empty, with the same value as a generated CryptoHashKey.
	EncryptKey string
	// EnablePartialAgesForRedact keeps ages up to 89 when redacting Age.
	EnablePartialAgesForRedact bool
	// EnablePartialDatesForRedact keeps the year of redacted dates unless
	// it indicates an age over 89.
	EnablePartialDatesForRedact bool
	// EnablePartialZipCodesForRedact keeps the first three characters of a
	// redacted postalCode unless restricted.
	EnablePartialZipCodesForRedact bool
	// RestrictedZipCodeTabulationAreas are the ZIP prefixes that are zeroed
	// entirely.
	RestrictedZipCodeTabulationAreas []string
	// CustomSettings is the raw "customSettings" object, or a null Value.
	CustomSettings Value
	// GeneratedDateShiftKey, GeneratedCryptoHashKey and GeneratedEncryptKey
	// report which keys were generated at load time.
	GeneratedDateShiftKey, GeneratedCryptoHashKey, GeneratedEncryptKey bool
}

func (p Parameters) clone() Parameters {
	c := p
	c.RestrictedZipCodeTabulationAreas = slices.Clone(p.RestrictedZipCodeTabulationAreas)
	c.CustomSettings = p.CustomSettings.clone()
	return c
}

// Rule is one entry of fhirPathRules.
type Rule struct {
	// Index is the rule's 1-based position in fhirPathRules.
	Index int
	// Path is the rule's path as written.
	Path string
	// ResourceType is the resource type prefix of Path ("" when none).
	ResourceType string
	// Expression is the part of Path after the prefix (Path itself for a
	// bare resource type).
	Expression string
	// IsResourceTypeRule reports a bare resource type path ("Patient",
	// "Resource"): the rule matches the resource node itself.
	IsResourceTypeRule bool
	// Method is the built-in method, or MethodCustom.
	Method Method
	// MethodName is the method as written in the file.
	MethodName string
	// Compiled is the compiled Expression (nil without a compiler).
	Compiled Compiled

	// Perturb settings.
	Span      float64
	RangeType RangeType
	RoundTo   int

	// Generalize setting (the cases are returned by Cases).
	OtherValues OtherValues

	cases       []GeneralizeCase
	replaceWith Value
	settings    Value
}

// GeneralizeCase is one case of a generalize rule, in file order.
type GeneralizeCase struct {
	// Condition is the case's key, a FHIRPath predicate on $this.
	Condition string
	// Value is the FHIRPath expression whose result replaces the value.
	Value string
	// CompiledCondition and CompiledValue are their compiled forms (nil
	// without a compiler).
	CompiledCondition, CompiledValue Compiled
}

// Cases returns a copy of a generalize rule's cases, in file order.
func (r Rule) Cases() []GeneralizeCase { return slices.Clone(r.cases) }

// ReplaceWith returns a copy of a substitute rule's replaceWith value (a
// null Value when it is null).
func (r Rule) ReplaceWith() Value { return r.replaceWith.clone() }

// Settings returns a copy of the whole rule object, which custom methods
// receive as their settings.
func (r Rule) Settings() Value { return r.settings.clone() }

// AppliesTo reports whether the rule applies to a resource of the given
// type (§2.2): its prefix is that type, empty, "Resource" or
// "DomainResource". The comparison is case-sensitive.
func (r Rule) AppliesTo(resourceType string) bool {
	switch r.ResourceType {
	case resourceType, "", "Resource", "DomainResource":
		return true
	}
	return false
}

func (r Rule) clone() Rule {
	c := r
	c.cases = slices.Clone(r.cases)
	c.replaceWith = r.replaceWith.clone()
	c.settings = r.settings.clone()
	return c
}

// Config is a loaded and validated configuration. It is immutable: its
// accessors return copies.
type Config struct {
	release          string
	fhirVersion      string
	processingErrors ProcessingErrors
	rules            []Rule
	params           Parameters
	warnings         []string
}

// Release returns the FHIR release the configuration was loaded for
// (Options.FHIRVersion: "R4" or "STU3").
func (c *Config) Release() string { return c.release }

// FHIRVersion returns the file's fhirVersion ("" when absent).
func (c *Config) FHIRVersion() string { return c.fhirVersion }

// ProcessingErrors returns the processingErrors setting.
func (c *Config) ProcessingErrors() ProcessingErrors { return c.processingErrors }

// Rules returns a copy of the rules, in file order.
func (c *Config) Rules() []Rule {
	out := make([]Rule, len(c.rules))
	for i, r := range c.rules {
		out[i] = r.clone()
	}
	return out
}

// NumRules returns the number of rules.
func (c *Config) NumRules() int { return len(c.rules) }

// Rule returns a copy of the i-th rule (0-based).
func (c *Config) Rule(i int) Rule { return c.rules[i].clone() }

// Parameters returns a copy of the parameters, defaults filled in.
func (c *Config) Parameters() Parameters { return c.params.clone() }

// Warnings returns the load-time warnings: unknown keys, unknown methods,
// missing fhirVersion, generated keys. They never contain a key's value.
func (c *Config) Warnings() []string { return slices.Clone(c.warnings) }

// ConfigError is a configuration that cannot be loaded. It says where the
// problem is (file line, rule number, method, expression column) but never
// contains a key or a resource value.
type ConfigError struct {
	// Line and Col locate the problem in the file when known (1-based).
	Line, Col int
	// Rule is the 1-based rule number, 0 when the problem is not in a rule.
	Rule int
	// Method is the rule's method as written.
	Method string
	// Path is the rule's path.
	Path string
	// ExprColumn is the column reported by the path compiler, 0 if none.
	ExprColumn int
	// Msg describes the problem.
	Msg string
	// Err is the underlying error, if any.
	Err error
}

// Error implements the error interface.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("anonymizer config")
	if e.Line > 0 {
		fmt.Fprintf(&b, ": line %d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, " column %d", e.Col)
		}
	}
	if e.Rule > 0 {
		fmt.Fprintf(&b, ": rule %d", e.Rule)
		if e.Method != "" {
			fmt.Fprintf(&b, " (%s)", e.Method)
		}
		if e.Path != "" {
			fmt.Fprintf(&b, " path %q", e.Path)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.ExprColumn > 0 {
		fmt.Fprintf(&b, " at column %d", e.ExprColumn)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads a configuration from r. See ParseConfig.
func LoadConfig(r io.Reader, opts Options) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, &ConfigError{Msg: "failed to read configuration file", Err: err}
	}
	return ParseConfig(data, opts)
}

// ParseConfig parses and validates a configuration in the Microsoft
// anonymizer's format (JSON, or YAML with the same keys), following §1 of
// the specification: top-level and parameters keys are matched
// case-insensitively, unknown keys are ignored with a warning, duplicate
// keys are rejected, enum values are case-insensitive; then the checks of
// §1.5 run in order and the default parameters of §1.4 are filled in.
func ParseConfig(data []byte, opts Options) (*Config, error) {
	format := opts.Format
	if format == AutoFormat {
		format = sniffFormat(data)
	}
	var root Value
	var err error
	if format == YAML {
		root, err = parseYAML(data)
	} else {
		root, err = parseJSON(data)
	}
	if err != nil {
		ce := &ConfigError{Msg: "failed to parse configuration file", Err: err}
		var se *SyntaxError
		if errors.As(err, &se) {
			ce.Line, ce.Col, ce.Err = se.Line, se.Col, errors.New(se.Msg)
		}
		return nil, ce
	}
	l := &loader{opts: opts}
	return l.load(root)
}

func sniffFormat(data []byte) Format {
	data = bytes.TrimPrefix(data, []byte{0xEF, 0xBB, 0xBF})
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) > 0 && (data[0] == '{' || data[0] == '/') {
		return JSON
	}
	return YAML
}

type loader struct {
	opts     Options
	warnings []string
}

func (l *loader) warnf(format string, args ...any) {
	l.warnings = append(l.warnings, fmt.Sprintf(format, args...))
}

func parseErr(v *Value, format string, args ...any) error {
	return &ConfigError{Line: v.Line, Col: v.Col, Msg: "failed to parse configuration file: " + fmt.Sprintf(format, args...)}
}

// foldMembers finds the members of obj whose key equals one of known
// case-insensitively. Two members naming the same setting are an error.
func foldMembers(obj *Value, where string, known []string) (map[string]*Member, []*Member, error) {
	found := map[string]*Member{}
	var unknown []*Member
	for i := range obj.Members {
		m := &obj.Members[i]
		name := ""
		for _, k := range known {
			if strings.EqualFold(m.Key, k) {
				name = k
				break
			}
		}
		if name == "" {
			unknown = append(unknown, m)
			continue
		}
		if prev, dup := found[name]; dup {
			return nil, nil, &ConfigError{Line: m.Line, Col: m.Col, Msg: fmt.Sprintf("failed to parse configuration file: keys %q and %q %s name the same setting", prev.Key, m.Key, where)}
		}
		found[name] = m
	}
	return found, unknown, nil
}

var topKeys = []string{"fhirVersion", "processingErrors", "fhirPathRules", "parameters"}

var paramKeys = []string{
	"dateShiftKey", "dateShiftScope", "dateShiftFixedOffsetInDays", "dateShiftRangeInDays", "cryptoHashKey", "encryptKey",
	"enablePartialAgesForRedact", "enablePartialDatesForRedact", "enablePartialZipCodesForRedact",
	"restrictedZipCodeTabulationAreas", "customSettings",
}

func (l *loader) load(root Value) (*Config, error) {
	if root.Kind != ObjectValue {
		return nil, parseErr(&root, "the configuration must be a JSON object, not %s", root.Kind)
	}
	top, unknown, err := foldMembers(&root, "at the top level", topKeys)
	if err != nil {
		return nil, err
	}
	for _, m := range unknown {
		l.warnf("line %d: unknown top-level key %q is ignored%s", m.Line, m.Key, suggest(m.Key, topKeys))
	}
	c := &Config{release: strings.ToUpper(l.opts.FHIRVersion)}
	if c.release == "" {
		c.release = "R4"
	}

	// Deserialization (Newtonsoft ToObject): types and enums.
	if m := top["fhirVersion"]; m != nil {
		s, ok, err := stringSetting(&m.Value, "fhirVersion")
		if err != nil {
			return nil, err
		}
		if ok {
			c.fhirVersion = s
		}
	}
	if m := top["processingErrors"]; m != nil && m.Value.Kind != NullValue {
		s, _, err := stringSetting(&m.Value, "processingErrors")
		if err != nil {
			return nil, err
		}
		switch {
		case strings.EqualFold(s, "raise"):
			c.processingErrors = Raise
		case strings.EqualFold(s, "skip"):
			c.processingErrors = Skip
		default:
			return nil, parseErr(&m.Value, "processingErrors must be \"raise\" or \"skip\"")
		}
	}
	var rulesVal *Value
	if m := top["fhirPathRules"]; m != nil && m.Value.Kind != NullValue {
		if m.Value.Kind != ArrayValue {
			return nil, parseErr(&m.Value, "fhirPathRules must be an array, not %s", m.Value.Kind)
		}
		rulesVal = &m.Value
		for i := range rulesVal.Items {
			if it := &rulesVal.Items[i]; it.Kind != ObjectValue {
				return nil, parseErr(it, "rule %d must be an object, not %s", i+1, it.Kind)
			}
		}
	}
	if m := top["parameters"]; m != nil && m.Value.Kind != NullValue {
		if err := l.parameters(&m.Value, &c.params); err != nil {
			return nil, err
		}
	}

	// Validation, in the order of §1.5.
	if err := l.checkVersion(c.fhirVersion); err != nil {
		return nil, err
	}
	if rulesVal == nil {
		return nil, &ConfigError{Msg: "the configuration is invalid, please specify any fhirPathRules"}
	}
	c.rules = make([]Rule, 0, len(rulesVal.Items))
	for i := range rulesVal.Items {
		r, err := l.rule(i+1, &rulesVal.Items[i])
		if err != nil {
			return nil, err
		}
		c.rules = append(c.rules, r)
	}
	applyKeys(&c.params, l.opts.Keys)
	if k := c.params.EncryptKey; k != "" {
		if n := len(k) * 8; n != 128 && n != 192 && n != 256 {
			return nil, &ConfigError{Msg: fmt.Sprintf("invalid encrypt key size : %d bits! Please provide key sizes of 128, 192 or 256 bits.", n)}
		}
	}

	if err := l.defaults(&c.params); err != nil {
		return nil, err
	}
	for _, m := range []struct {
		method    Method
		generated bool
		msg       string
	}{
		{MethodDateShift, c.params.GeneratedDateShiftKey, "dateShiftKey is empty: a random key was generated, so date offsets will differ on every load"},
		{MethodCryptoHash, c.params.GeneratedCryptoHashKey, "cryptoHashKey is empty: a random key was generated for this run, so hashes will not match other runs"},
		{MethodPerturb, c.params.GeneratedCryptoHashKey, "cryptoHashKey is empty: perturb noise is keyed on a random key, so it will differ on every run"},
		{MethodEncrypt, c.params.GeneratedEncryptKey, "encryptKey is empty: a random key was generated, so encrypted values can never be decrypted"},
	} {
		if m.generated && slices.ContainsFunc(c.rules, func(r Rule) bool { return r.Method == m.method }) {
			l.warnf("%s", m.msg)
		}
	}
	c.warnings = l.warnings
	return c, nil
}

func (l *loader) checkVersion(v string) error {
	want := l.opts.FHIRVersion
	if want == "" {
		want = "R4"
	}
	if v == "" {
		l.warnf("version is not specified in configuration file")
		return nil
	}
	if !strings.EqualFold(v, want) {
		return &ConfigError{Msg: fmt.Sprintf("configuration of fhirVersion %q is not supported. Expected fhirVersion: %s", v, want)}
	}
	return nil
}

// stringSetting reads a string setting: a string, a number or a boolean is
// converted to its text as Newtonsoft does; null reports ok=false.
func stringSetting(v *Value, name string) (string, bool, error) {
	switch v.Kind {
	case NullValue:
		return "", false, nil
	case StringValue, NumberValue:
		return v.Text, true, nil
	case BoolValue:
		s, _ := v.CSharpString()
		return s, true, nil
	}
	return "", false, parseErr(v, "%s must be a string, not %s", name, v.Kind)
}

func boolSetting(v *Value, name string) (bool, error) {
	switch v.Kind {
	case NullValue:
		return false, nil
	case BoolValue:
		return v.Text == "true", nil
	case StringValue:
		switch {
		case strings.EqualFold(v.Text, "true"):
			return true, nil
		case strings.EqualFold(v.Text, "false"):
			return false, nil
		}
	}
	return false, parseErr(v, "%s must be true or false", name)
}

func (l *loader) parameters(v *Value, p *Parameters) error {
	if v.Kind != ObjectValue {
		return parseErr(v, "parameters must be an object, not %s", v.Kind)
	}
	found, unknown, err := foldMembers(v, "in parameters", paramKeys)
	if err != nil {
		return err
	}
	for _, m := range unknown {
		l.warnf("line %d: unknown parameter %q is ignored%s", m.Line, m.Key, suggest(m.Key, paramKeys))
	}
	str := func(name string, dst *string) error {
		if m := found[name]; m != nil {
			s, _, err := stringSetting(&m.Value, name)
			if err != nil {
				return err
			}
			*dst = s
		}
		return nil
	}
	boolean := func(name string, dst *bool) error {
		if m := found[name]; m != nil {
			b, err := boolSetting(&m.Value, name)
			if err != nil {
				return err
			}
			*dst = b
		}
		return nil
	}
	for _, s := range []struct {
		name string
		dst  *string
	}{{"dateShiftKey", &p.DateShiftKey}, {"cryptoHashKey", &p.CryptoHashKey}, {"encryptKey", &p.EncryptKey}} {
		if err := str(s.name, s.dst); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		name string
		dst  *bool
	}{
		{"enablePartialAgesForRedact", &p.EnablePartialAgesForRedact},
		{"enablePartialDatesForRedact", &p.EnablePartialDatesForRedact},
		{"enablePartialZipCodesForRedact", &p.EnablePartialZipCodesForRedact},
	} {
		if err := boolean(s.name, s.dst); err != nil {
			return err
		}
	}
	if m := found["dateShiftScope"]; m != nil && m.Value.Kind != NullValue {
		s, _, err := stringSetting(&m.Value, "dateShiftScope")
		if err != nil {
			return err
		}
		switch {
		case strings.EqualFold(s, "resource"):
			p.DateShiftScope = ScopeResource
		case strings.EqualFold(s, "file"):
			p.DateShiftScope = ScopeFile
		case strings.EqualFold(s, "folder"):
			p.DateShiftScope = ScopeFolder
		case strings.EqualFold(s, "patient"):
			p.DateShiftScope = ScopePatient
		default:
			return parseErr(&m.Value, "dateShiftScope must be \"resource\", \"file\", \"folder\" or \"patient\"")
		}
	}
	if err := dateShiftRange(found["dateShiftRangeInDays"], p); err != nil {
		return err
	}
	if m := found["dateShiftFixedOffsetInDays"]; m != nil && m.Value.Kind != NullValue {
		mv := &m.Value
		if mv.Kind != NumberValue && mv.Kind != StringValue {
			return parseErr(mv, "dateShiftFixedOffsetInDays must be an integer, not %s", mv.Kind)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(mv.Text), 10, 32)
		if err != nil {
			// Newtonsoft accepts integral floats such as 7.0.
			f, ferr := strconv.ParseFloat(strings.TrimSpace(mv.Text), 64)
			if ferr != nil || f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
				return parseErr(mv, "dateShiftFixedOffsetInDays must be a 32-bit integer")
			}
			n = int64(f)
		}
		p.DateShiftFixedOffsetInDays, p.HasFixedOffset = int(n), true
	}
	if m := found["restrictedZipCodeTabulationAreas"]; m != nil && m.Value.Kind != NullValue {
		mv := &m.Value
		if mv.Kind != ArrayValue {
			return parseErr(mv, "restrictedZipCodeTabulationAreas must be an array of strings, not %s", mv.Kind)
		}
		p.RestrictedZipCodeTabulationAreas = make([]string, 0, len(mv.Items))
		for i := range mv.Items {
			s, ok, err := stringSetting(&mv.Items[i], "restrictedZipCodeTabulationAreas item")
			if err != nil {
				return err
			}
			if ok {
				p.RestrictedZipCodeTabulationAreas = append(p.RestrictedZipCodeTabulationAreas, s)
			}
		}
	}
	if m := found["customSettings"]; m != nil {
		p.CustomSettings = m.Value.clone()
	}
	return nil
}

// defaults fills in the generated keys of §1.4. The date-shift key is fresh
// for every load; the crypto-hash and encryption keys share one generated
// value, as in the Microsoft anonymizer.
func (l *loader) defaults(p *Parameters) error {
	rnd := l.opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	gen := func() (string, error) {
		var b [16]byte
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return "", &ConfigError{Msg: "generating a default key", Err: err}
		}
		return hex.EncodeToString(b[:]), nil
	}
	var err error
	if p.DateShiftKey == "" && !p.HasFixedOffset {
		if p.DateShiftKey, err = gen(); err != nil {
			return err
		}
		p.GeneratedDateShiftKey = true
	}
	if p.CryptoHashKey == "" || p.EncryptKey == "" {
		shared, err := gen()
		if err != nil {
			return err
		}
		if p.CryptoHashKey == "" {
			p.CryptoHashKey, p.GeneratedCryptoHashKey = shared, true
		}
		if p.EncryptKey == "" {
			p.EncryptKey, p.GeneratedEncryptKey = shared, true
		}
	}
	return nil
}

// The keys of a rule object the built-in methods read. Rule keys are matched
// case-sensitively, as the Microsoft anonymizer reads them from a
// dictionary.
var methodKeys = map[Method][]string{
	MethodKeep:       {},
	MethodRedact:     {},
	MethodDateShift:  {},
	MethodCryptoHash: {},
	MethodEncrypt:    {},
	MethodSubstitute: {"replaceWith"},
	MethodPerturb:    {"span", "rangeType", "roundTo"},
	MethodGeneralize: {"cases", "otherValues"},
}

func (l *loader) rule(n int, v *Value) (Rule, error) {
	r := Rule{Index: n, settings: v.clone()}
	pathV, hasPath := v.Get("path")
	methodV, hasMethod := v.Get("method")
	if hasPath && pathV.Kind == NullValue {
		hasPath = false
	}
	if hasMethod && methodV.Kind == NullValue {
		hasMethod = false
	}
	if !hasPath || !hasMethod {
		msg := "missing path or method in Fhir path rule config"
		for _, m := range v.Members {
			if (!hasPath && strings.EqualFold(m.Key, "path") && m.Key != "path") ||
				(!hasMethod && strings.EqualFold(m.Key, "method") && m.Key != "method") {
				msg += fmt.Sprintf(" (rule keys are case-sensitive: found %q)", m.Key)
			}
		}
		return r, &ConfigError{Line: v.Line, Col: v.Col, Rule: n, Msg: msg}
	}
	var err error
	if r.Path, _, err = stringSetting(pathV, "path"); err != nil {
		return r, withRule(err, n, "", "")
	}
	if r.MethodName, _, err = stringSetting(methodV, "method"); err != nil {
		return r, withRule(err, n, "", r.Path)
	}
	r.Method = parseMethod(r.MethodName)
	r.ResourceType, r.Expression = SplitPath(r.Path)
	r.IsResourceTypeRule = r.Path == r.ResourceType && r.Path != ""

	cerr := func(line, col int, msg string, err error) error {
		return &ConfigError{Line: line, Col: col, Rule: n, Method: r.MethodName, Path: r.Path, Msg: msg, Err: err}
	}
	if c := l.opts.Compiler; c != nil {
		comp, err := c(r.ResourceType, r.Expression)
		if pw := (*PathWarnings)(nil); errors.As(err, &pw) && comp != nil {
			for _, w := range pw.Warnings {
				l.warnf("rule %d (%s) path %q: %s", n, r.MethodName, r.Path, w)
			}
			err = nil
		}
		if err != nil {
			e := cerr(pathV.Line, pathV.Col, "invalid FHIR path", err).(*ConfigError)
			e.ExprColumn = exprColumn(err)
			if e.ExprColumn > 0 && r.ResourceType != "" && !r.IsResourceTypeRule {
				// Report the column within the whole path.
				e.ExprColumn += len(r.Path) - len(r.Expression)
			}
			return r, e
		}
		r.Compiled = comp
	}

	if r.Method == MethodCustom {
		if !isScrub(r.MethodName) {
			l.warnf("rule %d: anonymization method %q is not a built-in method; the rule fails when it applies to a resource", n, r.MethodName)
		}
	} else {
		known := methodKeys[r.Method]
		for _, m := range v.Members {
			if m.Key == "path" || m.Key == "method" || slices.Contains(known, m.Key) {
				continue
			}
			hint := ""
			for _, k := range known {
				if strings.EqualFold(k, m.Key) {
					hint = fmt.Sprintf(" (rule keys are case-sensitive: did you mean %q?)", k)
				}
			}
			if hint == "" {
				for other, keys := range methodKeys {
					for _, k := range keys {
						if strings.EqualFold(k, m.Key) {
							hint = fmt.Sprintf(" (did you mean %q, a setting of %s?)", k, other)
						}
					}
				}
			}
			l.warnf("rule %d (%s): key %q is ignored by this method%s", n, r.MethodName, m.Key, hint)
		}
	}

	switch r.Method {
	case MethodSubstitute:
		rw, ok := v.Get("replaceWith")
		if !ok {
			return r, cerr(v.Line, v.Col, "missing replaceWith value in substitution rule", nil)
		}
		r.replaceWith = rw.clone()
	case MethodPerturb:
		span, ok := v.Get("span")
		if !ok {
			return r, cerr(v.Line, v.Col, "span value is required in perturb rule", nil)
		}
		f, ok := numberSetting(span)
		if !ok || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			return r, cerr(span.Line, span.Col, "span value is invalid", nil)
		}
		r.Span = f
		if rt, ok := v.Get("rangeType"); ok {
			s, _ := rt.CSharpString()
			switch {
			case rt.Kind == StringValue && strings.EqualFold(s, "fixed"):
				r.RangeType = Fixed
			case rt.Kind == StringValue && strings.EqualFold(s, "proportional"):
				r.RangeType = Proportional
			default:
				return r, cerr(rt.Line, rt.Col, "rangeType value is invalid", nil)
			}
		}
		r.RoundTo = 2
		if rt, ok := v.Get("roundTo"); ok {
			f, ok := numberSetting(rt)
			if !ok || f != math.Trunc(f) || f < 0 || f > 28 {
				return r, cerr(rt.Line, rt.Col, "roundTo value is invalid", nil)
			}
			r.RoundTo = int(f)
		}
	case MethodGeneralize:
		cases, ok := v.Get("cases")
		if !ok || cases.Kind == NullValue {
			return r, cerr(v.Line, v.Col, "missing cases in FHIR path rule config", nil)
		}
		if cases.Kind != ObjectValue {
			return r, cerr(cases.Line, cases.Col, "invalid Json format: cases must be an object", nil)
		}
		for _, m := range cases.Members {
			gc := GeneralizeCase{Condition: m.Key}
			s, ok := m.Value.CSharpString()
			if !ok || m.Value.Kind == ObjectValue || m.Value.Kind == ArrayValue {
				return r, cerr(m.Line, m.Col, "invalid cases expression: a case's value must be a FHIRPath expression string", nil)
			}
			gc.Value = s
			if c := l.opts.Compiler; c != nil {
				for _, e := range []struct {
					expr string
					dst  *Compiled
					line int
					col  int
					what string
				}{{gc.Condition, &gc.CompiledCondition, m.Line, m.Col, "condition"}, {gc.Value, &gc.CompiledValue, m.Value.Line, m.Value.Col, "value"}} {
					comp, err := c("", e.expr)
					if pw := (*PathWarnings)(nil); errors.As(err, &pw) && comp != nil {
						for _, w := range pw.Warnings {
							l.warnf("rule %d (%s) case %d %s: %s", n, r.MethodName, len(r.cases)+1, e.what, w)
						}
						err = nil
					}
					if err != nil {
						ce := cerr(e.line, e.col, fmt.Sprintf("invalid cases expression (case %d %s)", len(r.cases)+1, e.what), err).(*ConfigError)
						ce.ExprColumn = exprColumn(err)
						return r, ce
					}
					*e.dst = comp
				}
			}
			r.cases = append(r.cases, gc)
		}
		if ov, ok := v.Get("otherValues"); ok {
			s, _ := ov.CSharpString()
			switch {
			case ov.Kind == StringValue && strings.EqualFold(s, "redact"):
				r.OtherValues = OtherRedact
			case ov.Kind == StringValue && strings.EqualFold(s, "keep"):
				r.OtherValues = OtherKeep
			default:
				return r, cerr(ov.Line, ov.Col, "otherValues setting is invalid", nil)
			}
		}
	}
	return r, nil
}

// numberSetting converts a setting as .NET's Convert.ToDouble(value.ToString())
// does: a number, or a string holding one.
func numberSetting(v *Value) (float64, bool) {
	if v.Kind != NumberValue && v.Kind != StringValue {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v.Text), 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

func withRule(err error, n int, method, path string) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.Rule, ce.Method, ce.Path = n, method, path
	}
	return err
}

// exprColumn returns the column an error reports through a Column() int
// method, or 0.
func exprColumn(err error) int {
	var c interface{ Column() int }
	if errors.As(err, &c) {
		return c.Column()
	}
	return 0
}

// suggest proposes a known key close to an unknown one (same letters
// ignoring case, or one letter missing or added).
func suggest(key string, known []string) string {
	lk := strings.ToLower(key)
	for _, k := range known {
		lkk := strings.ToLower(k)
		if lk+"s" == lkk || lkk+"s" == lk || editDistance1(lk, lkk) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
	}
	return ""
}

func editDistance1(a, b string) bool {
	if a == b {
		return false
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(b)-len(a) > 1 {
		return false
	}
	i := 0
	for i < len(a) && a[i] == b[i] {
		i++
	}
	if len(a) == len(b) {
		return a[i+1:] == b[i+1:]
	}
	return a[i:] == b[i+1:]
}

var pathRegexp = regexp.MustCompile(`^([A-Z][a-zA-Z]*)?(\.)?(.*?)$`)

// SplitPath splits a rule path into its resource type prefix and the
// FHIRPath expression that follows (§3.1): "Patient.address" gives
// ("Patient", "address"), "nodesByType('Address')" gives ("",
// "nodesByType('Address')"), and a bare type "Patient" gives ("Patient",
// "Patient").
func SplitPath(path string) (resourceType, expression string) {
	m := pathRegexp.FindStringSubmatch(path)
	if m != nil {
		resourceType, expression = m[1], m[3]
	}
	if expression == "" {
		expression = path
	}
	return resourceType, expression
}
