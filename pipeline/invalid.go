package pipeline

import (
	"errors"
	"fmt"
	"sync"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/fhir/typed"
)

// OnInvalid says what happens to a line that cannot be parsed or typed as a
// FHIR resource: OnInvalidFail (the default) fails the file, OnInvalidSkip
// drops the line — never written, never logged in clear — and records its
// line number and reason; the run is then partial (exit 3).
const (
	OnInvalidFail = "fail"
	OnInvalidSkip = "skip"
)

// InvalidLine is one dropped line: where, and why in words that never quote
// the line.
type InvalidLine struct {
	File   string `json:"file"`
	Line   int64  `json:"line"`
	Reason string `json:"reason"`
}

// maxInvalidListed caps the dropped lines listed per file (all are counted).
const maxInvalidListed = 1000

// InvalidReason describes why line, from a file of resources of type want
// ("" or "Resource": any), is not a valid resource, given err from the
// type check or the de-identifier. ok is false when the line is valid and
// err is another kind of failure (a processing error), which is not
// skipped. The reason never quotes the line.
func InvalidReason(line []byte, want string, err error) (reason string, ok bool) {
	rt, rerr := bulk.ResourceType(line)
	switch {
	case rerr != nil:
		return rerr.Error(), true
	case !typed.IsTypeName(rt):
		return "resourceType is not a resource type name", true
	case want != "" && want != "Resource" && rt != want:
		return "resourceType " + rt + " in a file of " + want, true
	}
	var ie *anonymize.InputError
	if errors.As(err, &ie) {
		// Typing errors name the element path, never a value; the
		// resource id is left out, since the report lands beside the
		// de-identified data.
		var te *typed.Error
		if errors.As(err, &te) {
			if te.Path != "" {
				return "not a valid " + rt + ": " + te.Path + ": " + te.Msg, true
			}
			return "not a valid " + rt + ": " + te.Msg, true
		}
		return "not a valid " + rt + ": not valid JSON", true
	}
	return "", false
}

// invalidTally collects the dropped lines of one file attempt.
type invalidTally struct {
	mu    sync.Mutex
	n     int64
	lines []InvalidLine
}

func (t *invalidTally) add(file string, line int64, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	if len(t.lines) < maxInvalidListed {
		t.lines = append(t.lines, InvalidLine{File: file, Line: line, Reason: reason})
	}
}

func (t *invalidTally) warning() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return ""
	}
	return fmt.Sprintf("%d invalid lines dropped (anonymizer.onInvalid: skip)", t.n)
}
