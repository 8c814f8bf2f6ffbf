package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/internal/ndjson"
)

// The first pass of "fhirdeid anonymize" for configurations that use the
// scrub method: before anything is de-identified, every input file is read
// once and the resources of anonymize.FirstPassTypes (Patient,
// RelatedPerson, Practitioner, ..., and the medication and immunization
// types whose coded drug names become safe words) go to an
// IdentifierCollector, whose keyed hashes the scrub method then looks for in
// each patient's texts (the contextual layer). Files are read whatever their names say, because an
// export's file names are only a convention. Standard input is not
// buffered: "anonymize -" scrubs without the contextual layer and says so.

// firstPassTypes are the resource types of the first pass.
var firstPassTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, typ := range anonymize.FirstPassTypes {
		m[typ] = true
	}
	return m
}()

var resourceTypeKey = []byte(`"resourceType"`)

// mayBeIdentifierType reports whether line may be a resource of a
// first-pass type: a "resourceType" key of the line (the resource's or a
// contained one's) has one of those types as its value. One scan for the
// key, whatever the number of types, so most lines of other types are
// skipped without being parsed. A server that escapes letters of the key or
// the value ("\u0050atient") hides the resource from the first pass: its
// texts are then scrubbed without that resource's identifiers (patterns and
// vocabulary still apply).
func mayBeIdentifierType(line []byte) bool {
	rest := line
	for {
		i := bytes.Index(rest, resourceTypeKey)
		if i < 0 {
			return false
		}
		rest = rest[i+len(resourceTypeKey):]
		j := skipSpace(rest, 0)
		if j >= len(rest) || rest[j] != ':' {
			continue
		}
		j = skipSpace(rest, j+1)
		if j >= len(rest) || rest[j] != '"' {
			continue
		}
		if k := bytes.IndexByte(rest[j+1:], '"'); k >= 0 && firstPassTypes[string(rest[j+1:j+1+k])] {
			return true
		}
	}
}

func skipSpace(b []byte, j int) int {
	for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
		j++
	}
	return j
}

// collectIdentifiers runs the first pass over jobs and returns ctx carrying
// the scrub input, or ctx unchanged when the engine does not scrub. Lines
// that cannot be parsed are left to the de-identification pass, which
// reports them; a file that cannot be read is an error.
func (a *anonymizer) collectIdentifiers(ctx context.Context, jobs []job) (context.Context, error) {
	if !a.eng.Config().UsesScrub() {
		return ctx, nil
	}
	col := a.eng.NewIdentifierCollector()
	// Files are read a.workers at a time (gunzip is the main cost), each
	// on one goroutine.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, a.workers)
	for _, j := range jobs {
		sem <- struct{}{}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func(j job) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := a.collectFile(ctx, col, j); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(j)
	}
	wg.Wait()
	if firstErr != nil {
		return ctx, fmt.Errorf("reading identifiers for the scrub method: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return ctx, err
	}
	if a.verbose {
		fmt.Fprintf(a.stderr, "scrub: identifiers of %d patients collected from %d files\n", col.Patients(), len(jobs))
	}
	return anonymize.WithScrubInput(ctx, col.Input()), nil
}

func (a *anonymizer) collectFile(ctx context.Context, col *anonymize.IdentifierCollector, j job) error {
	in, err := os.Open(j.in)
	if err != nil {
		return err
	}
	defer in.Close()
	if !j.ndjson {
		data, err := io.ReadAll(io.LimitReader(in, int64(a.maxLine)+1))
		if err != nil {
			return fmt.Errorf("%s: %w", j.in, err)
		}
		if len(data) <= a.maxLine && mayBeIdentifierType(data) {
			_ = col.Add(data) // an invalid resource is reported by the second pass
		}
		return nil
	}
	var r io.Reader = in
	if j.gz {
		zr, err := gzip.NewReader(in)
		if err != nil {
			return fmt.Errorf("%s: gunzip: %w", j.in, err)
		}
		defer zr.Close()
		r = zr
	}
	_, err = ndjson.Transform(ctx, r, io.Discard, func(_ int, _ int64, line, dst []byte) ([]byte, error) {
		if mayBeIdentifierType(line) {
			_ = col.Add(line) // an invalid line is reported by the second pass
		}
		return dst, nil
	}, ndjson.Options{Workers: 1, MaxLine: a.maxLine})
	if err != nil {
		return fmt.Errorf("%s:%w", j.in, lineSep(err))
	}
	return nil
}

// stdinScrubWarning is printed when "anonymize -" runs a configuration
// that scrubs: standard input is read once, so there is no first pass.
const stdinScrubWarning = "warning: the configuration scrubs free text, but standard input is read only once: " +
	"the contextual layer (the patients' own names, addresses, phones and identifiers) is not used, " +
	"only patterns and vocabulary; give files or a folder (-i) for the first pass"
