package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// DefaultSchedule is the cron schedule of a pipeline that names none: 01:00
// every day, the Azure template's time.
const DefaultSchedule = "0 1 * * *"

// check validates a pipeline's settings without touching any server, and
// fills in defaults and absolute paths.
func (pc *Pipeline) check(field, dir string) *Error {
	name := strings.TrimPrefix(field, "pipelines.")
	if !validName.MatchString(name) {
		return &Error{Field: field, Msg: "a pipeline name has letters, digits, '.', '_' and '-' only"}
	}
	s := &pc.Source
	if s.URL == "" {
		return &Error{Field: field + ".source.url", Msg: "missing"}
	}
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &Error{Field: field + ".source.url", Msg: "must be an http or https URL"}
	}
	switch s.Level {
	case "", "system", "patient":
		if s.Group != "" {
			return &Error{Field: field + ".source.group", Msg: "only with level: group"}
		}
	case "group":
		if s.Group == "" {
			return &Error{Field: field + ".source.group", Msg: "level group needs a group id"}
		}
	default:
		return &Error{Field: field + ".source.level", Msg: "must be system, patient or group"}
	}
	if s.Since != "" && s.Since != "auto" {
		if _, err := time.Parse(time.RFC3339, s.Since); err != nil {
			return &Error{Field: field + ".source.since", Msg: "must be auto or an instant such as 2026-01-01T00:00:00Z"}
		}
	}
	for _, d := range []struct{ name, v string }{{"deadline", s.Deadline}, {"maxPollInterval", s.MaxPollInterval}} {
		if d.v == "" {
			continue
		}
		if _, err := ParseDuration(d.v); err != nil {
			return &Error{Field: field + ".source." + d.name, Msg: "must be a duration such as 30s, 5m, 12h or 30d"}
		}
	}
	if err := pc.Source.Auth.Check(field+".source.auth", dir); err != nil {
		return err
	}
	if err := pc.Source.StorageAuth.Check(field+".source.storageAuth", &pc.Source.Auth); err != nil {
		return err
	}
	if err := pc.checkHostile(field); err != nil {
		return err
	}
	if pc.Destination == "" {
		return &Error{Field: field + ".destination", Msg: "missing (a storage URL: file:///path, s3://bucket, azblob://container, gs://bucket)"}
	}
	if pc.Anonymizer.Config != "" && !filepath.IsAbs(pc.Anonymizer.Config) {
		pc.Anonymizer.Config = filepath.Join(dir, pc.Anonymizer.Config)
	}
	if err := pc.Anonymizer.check(field+".anonymizer", dir); err != nil {
		return err
	}
	if pc.Schedule == "" {
		pc.Schedule = DefaultSchedule
	}
	if pc.Timezone != "" {
		if _, err := time.LoadLocation(pc.Timezone); err != nil {
			return &Error{Field: field + ".timezone", Msg: "unknown time zone"}
		}
	}
	if pc.Concurrency < 0 || pc.Workers < 0 {
		return &Error{Field: field + ".concurrency", Msg: "must not be negative"}
	}
	if err := pc.checkAssurance(field); err != nil {
		return err
	}
	if err := pc.checkViews(field, dir); err != nil {
		return err
	}
	return nil
}

// Location is the pipeline's time zone (UTC when none is set).
func (pc *Pipeline) Location() *time.Location {
	if pc.Timezone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(pc.Timezone)
	if err != nil { // checked by Load
		return time.UTC
	}
	return loc
}

// ParseDuration accepts Go durations plus a "d" suffix for days.
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days float64
		if _, err := fmt.Sscanf(n, "%g", &days); err != nil || days < 0 {
			return 0, errors.New("invalid duration")
		}
		return time.Duration(days * 24 * float64(time.Hour)), nil
	}
	return time.ParseDuration(s)
}
