package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"fhirdeid/anonymize"
	"fhirdeid/bulk"
	"fhirdeid/internal/ndjson"
)

// The first pass of "fhirdeid anonymize" for configurations that use the
// scrub method: before anything is de-identified, the input files are read
// once and the resources of anonymize.FirstPassTypes (Patient,
// RelatedPerson, Practitioner, ...) go to an IdentifierCollector, whose
// keyed hashes the scrub method then looks for in each patient's texts (the
// contextual layer). A file named as bulk exports name their files for one
// resource type that the first pass does not need
// (Observation.000.ndjson.gz) is not read; the main pass checks, at no cost
// (it reads every line's resourceType anyway), that such a file holds no
// resource the first pass should have read, and fails on one
// (firstPassError). Any other file is read whatever its name. Standard
// input is not buffered: "anonymize -" scrubs without the contextual layer
// and says so.

// identifierTypeTokens are the JSON strings a line must contain to be a
// resource of an identifier type, for the lines whose top-level
// resourceType the quick scan cannot read (an escaped member name).
var identifierTypeTokens = func() [][]byte {
	var t [][]byte
	for _, typ := range anonymize.FirstPassTypes {
		t = append(t, []byte(`"`+typ+`"`))
	}
	return t
}()

// mayBeIdentifierType reports whether line may be a resource of a
// first-pass type. The collector reads only the top-level resource
// (anonymize.IdentifierCollector.AddNode), so the line's top-level
// resourceType decides: bulk.ResourceType finds it without parsing the line
// (its escapes decoded, as the collector's parser does), usually as the
// first member. Searching the whole line for every type name instead cost
// as much CPU as decompressing the file. A line where the scan finds no
// resourceType (an escaped member name, invalid JSON) is kept when it
// contains one of the type names, and left to the collector's parser.
func mayBeIdentifierType(line []byte) bool {
	if t, err := bulk.ResourceType(line); err == nil {
		return slices.Contains(anonymize.FirstPassTypes, t)
	}
	for _, t := range identifierTypeTokens {
		if bytes.Contains(line, t) {
			return true
		}
	}
	return false
}

// collectIdentifiers runs the first pass over jobs and returns ctx carrying
// the scrub input, or ctx unchanged when the engine does not scrub. Lines
// that cannot be parsed are left to the de-identification pass, which
// reports them; a file that cannot be read is an error.
func (a *anonymizer) collectIdentifiers(ctx context.Context, jobs []job) (context.Context, error) {
	if !a.eng.Config().UsesScrub() {
		return ctx, nil
	}
	t0 := time.Now()
	col := a.eng.NewIdentifierCollector()
	// Files are read a.workers at a time (gunzip is the main cost), each
	// on one goroutine.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, a.workers)
	types := anonymize.ResourceTypes(a.eng.Config().FHIRVersion())
	read := 0
	for i := range jobs {
		j := jobs[i]
		if t := namedType(j.in); j.ndjson && t != "" && slices.Contains(types, t) && !slices.Contains(anonymize.FirstPassTypes, t) {
			// A bulk export's file of one resource type, none that the
			// first pass reads: the main pass checks that it holds none.
			jobs[i].notRead = true
			continue
		}
		read++
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
		fmt.Fprintf(a.stderr, "scrub: identifiers of %d patients collected from %d files (%s)\n", col.Patients(), read, time.Since(t0).Round(time.Millisecond))
	}
	return anonymize.WithScrubInput(ctx, col.Input()), nil
}

func (a *anonymizer) collectFile(ctx context.Context, col *anonymize.IdentifierCollector, j job) error {
	in, err := os.Open(j.in)
	if err != nil {
		return err
	}
	defer in.Close()
	// One reader per file: its parser's memory and its cache of the drug
	// names already added serve the whole file.
	rd := col.NewReader()
	if !j.ndjson {
		data, err := io.ReadAll(io.LimitReader(in, int64(a.maxLine)+1))
		if err != nil {
			return fmt.Errorf("%s: %w", j.in, err)
		}
		if len(data) <= a.maxLine && mayBeIdentifierType(data) {
			_ = rd.Add(data) // an invalid resource is reported by the second pass
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
			_ = rd.Add(line) // an invalid line is reported by the second pass
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

// namedType returns the resource type that the name of an NDJSON file gives
// as bulk exports name their files ("Observation.ndjson",
// "Observation.000.ndjson.gz", "Observation-1.ndjson"): its leading letters,
// when followed by '.', '-' or '_'; "" otherwise. The caller decides
// whether they name a resource type.
func namedType(path string) string {
	base := filepath.Base(path)
	i := 0
	for i < len(base) && (base[i] >= 'A' && base[i] <= 'Z' || base[i] >= 'a' && base[i] <= 'z') {
		i++
	}
	if i == 0 || i == len(base) || base[0] < 'A' || base[0] > 'Z' || (base[i] != '.' && base[i] != '-' && base[i] != '_') {
		return ""
	}
	return base[:i]
}

// firstPassError reports a resource of a type that the scrub method's first
// pass reads (a Patient, say) in a file whose name gives another type, which
// the first pass therefore did not read: the contextual layer would not
// know that resource's names, so the run stops rather than scrub with less.
type firstPassError struct {
	typ, named string
}

func (e *firstPassError) Error() string {
	return fmt.Sprintf("a %s resource in a file named for %s resources: the scrub method's first pass reads the "+
		"identifiers of %s only from files named for the types it needs (%s); name each file of a bulk export "+
		"for the one type it holds, or give the file a name that is not a resource type",
		e.typ, e.named, e.typ, strings.Join(anonymize.FirstPassTypes, ", "))
}
