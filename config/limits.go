package config

import (
	"fhirdeid/bulk"
)

// Limits are the resource limits of a source (source.limits); zero values
// keep the defaults of bulk.DefaultLimits and bulk.DefaultMaxLineBytes.
type Limits struct {
	// MaxLineBytes caps one NDJSON line (default 64 MiB).
	MaxLineBytes int `yaml:"maxLineBytes"`
	// MaxFileBytes caps the decompressed bytes of one file (default 64 GiB).
	MaxFileBytes int64 `yaml:"maxFileBytes"`
	// MaxRatio caps the decompressed-to-compressed ratio (default 200).
	MaxRatio float64 `yaml:"maxRatio"`
	// MaxManifestBytes caps one manifest page (default 64 MiB).
	MaxManifestBytes int64 `yaml:"maxManifestBytes"`
	// MaxManifestFiles caps the files of a manifest (default 50,000).
	MaxManifestFiles int `yaml:"maxManifestFiles"`
	// MinBytes per RateInterval is the stalled-transfer rule (default 1024
	// bytes per 1m).
	MinBytes     int64  `yaml:"minBytes"`
	RateInterval string `yaml:"rateInterval"`
}

// checkHostile validates source.trustedHosts, source.limits and
// anonymizer.onInvalid.
func (pc *Pipeline) checkHostile(field string) *Error {
	c, err := bulk.NewClient(pc.Source.URL, nil)
	if err == nil {
		if err := c.TrustHosts(pc.Source.TrustedHosts...); err != nil {
			return &Error{Field: field + ".source.trustedHosts", Msg: err.Error()}
		}
	}
	l := pc.Source.Limits
	if l.MaxLineBytes < 0 || l.MaxFileBytes < 0 || l.MaxManifestBytes < 0 || l.MaxManifestFiles < 0 || l.MinBytes < 0 ||
		(l.MaxRatio != 0 && l.MaxRatio <= 1) {
		return &Error{Field: field + ".source.limits", Msg: "limits must be positive (maxRatio above 1)"}
	}
	if l.RateInterval != "" {
		if d, err := ParseDuration(l.RateInterval); err != nil || d <= 0 {
			return &Error{Field: field + ".source.limits.rateInterval", Msg: "must be a duration such as 30s or 1m"}
		}
	}
	switch pc.Anonymizer.OnInvalid {
	case "", "fail", "skip":
	default:
		return &Error{Field: field + ".anonymizer.onInvalid", Msg: "must be fail or skip"}
	}
	return nil
}

// apply sets the source's trusted hosts and limits on a client.
func (s *Source) apply(c *bulk.Client) error {
	if err := c.TrustHosts(s.TrustedHosts...); err != nil {
		return err
	}
	l := s.Limits
	if l.MaxLineBytes > 0 {
		c.MaxLineBytes = l.MaxLineBytes
	}
	if l.MaxFileBytes > 0 {
		c.Limits.MaxFileBytes = l.MaxFileBytes
	}
	if l.MaxRatio > 0 {
		c.Limits.MaxRatio = l.MaxRatio
	}
	if l.MaxManifestBytes > 0 {
		c.Limits.MaxManifestBytes = l.MaxManifestBytes
	}
	if l.MaxManifestFiles > 0 {
		c.Limits.MaxManifestFiles = l.MaxManifestFiles
	}
	if l.MinBytes > 0 {
		c.Limits.MinBytes = l.MinBytes
	}
	if l.RateInterval != "" {
		if d, err := ParseDuration(l.RateInterval); err == nil && d > 0 {
			c.Limits.RateInterval = d
		}
	}
	return nil
}
