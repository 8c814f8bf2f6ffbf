// Package risk measures how identifiable the patients of a de-identified
// (or raw) FHIR data set remain: it groups Patient resources into
// equivalence classes over quasi-identifiers — by default the birth date as
// written (the year under Safe Harbor, a shifted date under date shifting),
// gender, ZIP3 (or the state), deceased status, and the US Core race and
// ethnicity categories — and reports k-anonymity (the smallest class, the
// histogram of class sizes, the share of patients in classes below 5 and
// below 11) and the prosecutor, journalist and marketer risk measures as
// ARX defines them (RiskModelSampleSummary, after El Emam, "Guide to the
// De-Identification of Personal Health Information"):
//
//   - prosecutor: records at risk = share of records in classes of size f
//     with 1/f > threshold; highest risk = 1/min f; success rate = number
//     of classes / number of records;
//   - journalist: the same with the class sizes F of a population the data
//     set is a sample of (Report's pop; without one the data set is its own
//     population and F = f), and success rate = max(classes / ΣF,
//     Σ(f/F) / records);
//   - marketer: success rate = Σ(f/F) / records (= classes / records
//     without a population).
//
// The analysis streams: memory grows with the number of classes, not of
// patients (a class is its key — the quasi-identifier values, each at most
// 64 bytes — and a count).
package risk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"fhirdeid/jsontree"
)

// DefaultQI is the default list of quasi-identifiers.
var DefaultQI = []string{"birthDate", "gender", "zip3", "deceased", "race", "ethnicity"}

// maxValue bounds one quasi-identifier value in a class key.
const maxValue = 64

const (
	raceURL      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	ethnicityURL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
)

// extractor reads one quasi-identifier of a Patient.
type extractor func(p *jsontree.Node) string

// named are the quasi-identifiers with a name; any other name is a dotted
// path of member names in the Patient resource ("maritalStatus.coding.code"),
// whose values (all of them, sorted) form the value.
var named = map[string]extractor{
	"birthDate": func(p *jsontree.Node) string { return str(p.Get("birthDate")) },
	"birthYear": func(p *jsontree.Node) string {
		s := str(p.Get("birthDate"))
		if len(s) >= 4 {
			return s[:4]
		}
		return s
	},
	"gender": func(p *jsontree.Node) string { return str(p.Get("gender")) },
	"zip3": func(p *jsontree.Node) string {
		a := first(p.Get("address"))
		if a == nil {
			return ""
		}
		if z := str(a.Get("postalCode")); len(z) >= 3 {
			return z[:3]
		}
		if s := str(a.Get("state")); s != "" {
			return "state:" + s
		}
		return ""
	},
	"state": func(p *jsontree.Node) string { return str(first(p.Get("address")).Get("state")) },
	"deceased": func(p *jsontree.Node) string {
		if b := p.Get("deceasedBoolean"); b != nil && b.Kind == jsontree.Bool {
			return b.Value()
		}
		if p.Get("deceasedDateTime") != nil {
			return "true"
		}
		return "false"
	},
	"race":      func(p *jsontree.Node) string { return usCoreCategory(p, raceURL) },
	"ethnicity": func(p *jsontree.Node) string { return usCoreCategory(p, ethnicityURL) },
}

func str(n *jsontree.Node) string {
	if n == nil || n.Kind != jsontree.String {
		return ""
	}
	return n.Value()
}

// first returns n's first element if n is an array, else n.
func first(n *jsontree.Node) *jsontree.Node {
	if n != nil && n.Kind == jsontree.Array {
		if len(n.Children()) == 0 {
			return nil
		}
		return n.Children()[0]
	}
	return n
}

// usCoreCategory returns the ombCategory codes of a US Core race or
// ethnicity extension (sorted, joined), or its text when it has no code.
func usCoreCategory(p *jsontree.Node, url string) string {
	ext := p.Get("extension")
	if ext == nil || ext.Kind != jsontree.Array {
		return ""
	}
	for _, e := range ext.Children() {
		if str(e.Get("url")) != url {
			continue
		}
		var codes []string
		text := ""
		if sub := e.Get("extension"); sub != nil && sub.Kind == jsontree.Array {
			for _, s := range sub.Children() {
				switch str(s.Get("url")) {
				case "ombCategory":
					if c := s.Get("valueCoding"); c != nil {
						codes = append(codes, str(c.Get("code")))
					}
				case "text":
					text = str(s.Get("valueString"))
				}
			}
		}
		if len(codes) > 0 {
			sort.Strings(codes)
			return strings.Join(codes, "+")
		}
		return text
	}
	return ""
}

// pathExtractor reads the values at a dotted member path.
func pathExtractor(path string) extractor {
	parts := strings.Split(path, ".")
	return func(p *jsontree.Node) string {
		nodes := []*jsontree.Node{p}
		for _, k := range parts {
			var next []*jsontree.Node
			for _, n := range nodes {
				c := n.Get(k)
				if c == nil {
					continue
				}
				if c.Kind == jsontree.Array {
					next = append(next, c.Children()...)
				} else {
					next = append(next, c)
				}
			}
			nodes = next
		}
		var vals []string
		for _, n := range nodes {
			switch n.Kind {
			case jsontree.String, jsontree.Number, jsontree.Bool:
				vals = append(vals, n.Value())
			}
		}
		sort.Strings(vals)
		return strings.Join(vals, "|")
	}
}

// Analyzer groups patients into equivalence classes. It is not safe for
// concurrent use.
type Analyzer struct {
	qi      []string
	ext     []extractor
	classes map[string]int64
	records int64
	invalid int64
	key     []byte
	// p parses the resources of Add, reusing its memory: no string of a
	// tree outlives the call (the key is copied into classes).
	p jsontree.Parser
}

// New returns an analyzer over the named quasi-identifiers (DefaultQI when
// qi is empty). A name that is not one of the built-in ones (birthDate,
// birthYear, gender, zip3, state, deceased, race, ethnicity) must be a
// dotted path of member names.
func New(qi []string) (*Analyzer, error) {
	if len(qi) == 0 {
		qi = DefaultQI
	}
	a := &Analyzer{qi: append([]string(nil), qi...), classes: map[string]int64{}}
	a.p.ReuseText = true
	for _, q := range qi {
		if e, ok := named[q]; ok {
			a.ext = append(a.ext, e)
			continue
		}
		if !validPath(q) {
			return nil, fmt.Errorf("quasi-identifier %q: not a built-in name nor a dotted path of member names", q)
		}
		a.ext = append(a.ext, pathExtractor(q))
	}
	return a, nil
}

func validPath(p string) bool {
	if p == "" || len(p) > 200 {
		return false
	}
	for _, part := range strings.Split(p, ".") {
		if part == "" {
			return false
		}
		for _, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

var patientMarker = []byte(`"Patient"`)

// Add counts one resource; resources other than Patient are ignored, and
// a line that is not JSON is counted as invalid.
func (a *Analyzer) Add(resource []byte) {
	if !bytes.Contains(resource, patientMarker) {
		return
	}
	root, err := a.p.Parse(resource)
	if err != nil || root.Kind != jsontree.Object {
		a.invalid++
		return
	}
	if str(root.Get("resourceType")) != "Patient" {
		return
	}
	a.AddPatient(root)
}

// AddPatient counts one parsed Patient resource.
func (a *Analyzer) AddPatient(p *jsontree.Node) {
	a.key = a.key[:0]
	for i, e := range a.ext {
		if i > 0 {
			a.key = append(a.key, 0)
		}
		v := e(p)
		if len(v) > maxValue {
			v = v[:maxValue]
		}
		a.key = append(a.key, v...)
	}
	if n, ok := a.classes[string(a.key)]; ok {
		a.classes[string(a.key)] = n + 1
	} else {
		a.classes[string(a.key)] = 1
	}
	a.records++
}

// AddNDJSON counts every Patient of an NDJSON stream; maxLine bounds a
// line (default 64 MiB).
func (a *Analyzer) AddNDJSON(r io.Reader, maxLine int) error {
	if maxLine <= 0 {
		maxLine = 64 << 20
	}
	lr := newLineReader(r, maxLine)
	for lr.next() {
		a.Add(lr.line)
	}
	return lr.err
}

// Records returns the number of patients counted.
func (a *Analyzer) Records() int64 { return a.records }

// Bin is one bar of the class-size histogram.
type Bin struct {
	// Size is the range of class sizes: "1", "2", ..., "5-10", "100+".
	Size    string `json:"size"`
	Classes int64  `json:"classes"`
	Records int64  `json:"records"`
}

// Measures are one attacker model's risks, as fractions in [0, 1].
type Measures struct {
	// RecordsAtRisk is the share of records whose risk exceeds the
	// threshold.
	RecordsAtRisk float64 `json:"recordsAtRisk"`
	// HighestRisk is the largest risk of a single record.
	HighestRisk float64 `json:"highestRisk"`
	// SuccessRate is the share of records re-identified on average.
	SuccessRate float64 `json:"successRate"`
}

// Report is the result of an analysis: counts and shares, never a value.
type Report struct {
	QuasiIdentifiers []string `json:"quasiIdentifiers"`
	Records          int64    `json:"records"`
	Invalid          int64    `json:"invalid,omitempty"`
	Classes          int64    `json:"classes"`
	// MinK is the size of the smallest class (the data set is
	// k-anonymous for every k <= MinK); 0 without records.
	MinK      int64 `json:"minK"`
	Histogram []Bin `json:"histogram"`
	// BelowK5 and BelowK11 are the shares of records in classes smaller
	// than 5 and than 11.
	BelowK5  float64 `json:"shareBelow5"`
	BelowK11 float64 `json:"shareBelow11"`
	// Threshold is the highest acceptable risk of one record for the
	// "records at risk" measures.
	Threshold  float64  `json:"threshold"`
	Prosecutor Measures `json:"prosecutor"`
	Journalist Measures `json:"journalist"`
	Marketer   struct {
		SuccessRate float64 `json:"successRate"`
	} `json:"marketer"`
	// Population is the number of records of the population the
	// journalist and marketer risks were measured against (0: the data
	// set itself).
	Population int64 `json:"population,omitempty"`
}

var bins = []struct {
	label    string
	min, max int64
}{{"1", 1, 1}, {"2", 2, 2}, {"3", 3, 3}, {"4", 4, 4}, {"5-10", 5, 10}, {"11-19", 11, 19},
	{"20-49", 20, 49}, {"50-99", 50, 99}, {"100+", 100, math.MaxInt64}}

// Report computes the measures. threshold is the acceptable risk of one
// record (0 means 0.2, that is classes below 5). pop, if not nil, is the
// population the data set is a sample of (the current snapshot for a run's
// patients), for the journalist and marketer risks; a class missing from
// pop counts with its own size.
func (a *Analyzer) Report(threshold float64, pop *Analyzer) Report {
	if threshold <= 0 {
		threshold = 0.2
	}
	r := Report{QuasiIdentifiers: a.qi, Records: a.records, Invalid: a.invalid, Classes: int64(len(a.classes)), Threshold: threshold}
	r.Histogram = make([]Bin, len(bins))
	for i, b := range bins {
		r.Histogram[i].Size = b.label
	}
	if a.records == 0 {
		return r
	}
	if pop != nil {
		r.Population = pop.records
	}
	n := float64(a.records)
	var (
		minF, minPop        int64 = math.MaxInt64, math.MaxInt64
		atRisk, atRiskPop   int64
		below5, below11     int64
		sumPop, sumFraction float64
	)
	for key, f := range a.classes {
		F := f
		if pop != nil {
			if pf := pop.classes[key]; pf >= f {
				F = pf
			}
		}
		minF = min(minF, f)
		minPop = min(minPop, F)
		if 1/float64(f) > threshold {
			atRisk += f
		}
		if 1/float64(F) > threshold {
			atRiskPop += f
		}
		if f < 5 {
			below5 += f
		}
		if f < 11 {
			below11 += f
		}
		sumPop += float64(F)
		sumFraction += float64(f) / float64(F)
		for i, b := range bins {
			if f >= b.min && f <= b.max {
				r.Histogram[i].Classes++
				r.Histogram[i].Records += f
				break
			}
		}
	}
	classes := float64(len(a.classes))
	r.MinK = minF
	r.BelowK5, r.BelowK11 = float64(below5)/n, float64(below11)/n
	r.Prosecutor = Measures{RecordsAtRisk: float64(atRisk) / n, HighestRisk: 1 / float64(minF), SuccessRate: classes / n}
	r.Journalist = Measures{RecordsAtRisk: float64(atRiskPop) / n, HighestRisk: 1 / float64(minPop),
		SuccessRate: math.Max(classes/sumPop, sumFraction/n)}
	r.Marketer.SuccessRate = sumFraction / n
	return r
}

// ErrLineTooLong is returned for an NDJSON line over the limit.
var ErrLineTooLong = errors.New("line longer than the limit")
