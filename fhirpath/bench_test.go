package fhirpath

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

var (
	syntheaOnce  sync.Once
	syntheaRoots []*jsontree.Node
	syntheaLines [][]byte
	syntheaBytes int64
	syntheaErr   error
)

// loadSynthea reads every resource of synthea-100, parsed and typed.
func loadSynthea(b *testing.B) []*jsontree.Node {
	b.Helper()
	dir := testshared.Dir(b, "data", "synthea-100")
	syntheaOnce.Do(func() {
		m := model.Get(model.R4)
		files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				syntheaErr = err
				return
			}
			zr, err := gzip.NewReader(fh)
			if err != nil {
				fh.Close()
				syntheaErr = err
				return
			}
			sc := bufio.NewScanner(zr)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				line := append([]byte(nil), sc.Bytes()...)
				root, err := jsontree.Parse(line)
				if err != nil {
					syntheaErr = err
					break
				}
				if err := typed.Annotate(root, m); err != nil {
					syntheaErr = err
					break
				}
				syntheaLines = append(syntheaLines, line)
				syntheaRoots = append(syntheaRoots, root)
				syntheaBytes += int64(len(line))
			}
			zr.Close()
			fh.Close()
			if syntheaErr != nil {
				return
			}
		}
	})
	if syntheaErr != nil {
		b.Fatalf("loading synthea-100: %v", syntheaErr)
	}
	return syntheaRoots
}

// benchEval evaluates src on every synthea-100 resource per iteration.
func benchEval(b *testing.B, src string) {
	roots := loadSynthea(b)
	e := MustCompile(src, WithModel(model.Get(model.R4)), WithFunctions(AnonymizerFunctions()...))
	b.SetBytes(syntheaBytes)
	b.ReportAllocs()
	b.ResetTimer()
	results := 0
	for b.Loop() {
		results = 0
		for _, r := range roots {
			res, err := e.Evaluate(r, nil)
			if err != nil {
				b.Fatal(err)
			}
			results += len(res)
		}
	}
	b.ReportMetric(float64(len(roots)), "resources/op")
	b.ReportMetric(float64(results), "results/op")
}

// BenchmarkWhereGiven measures a typical path with a filter over all
// resources of synthea-100 (parsing and typing are done once, outside).
func BenchmarkWhereGiven(b *testing.B) {
	benchEval(b, "Patient.name.where(use='official').given")
}

// BenchmarkNodesByTypeDate measures the anonymizer's nodesByType over all
// resources of synthea-100.
func BenchmarkNodesByTypeDate(b *testing.B) {
	benchEval(b, "nodesByType('date')")
}

// BenchmarkNodesByNameValue measures nodesByName.
func BenchmarkNodesByNameValue(b *testing.B) {
	benchEval(b, "nodesByName('value')")
}

// BenchmarkGeneralizeDates measures a generalize-style case evaluated on
// every date and dateTime node of synthea-100, as the anonymizer does.
func BenchmarkGeneralizeDates(b *testing.B) {
	roots := loadSynthea(b)
	m := model.Get(model.R4)
	sel := MustCompile("nodesByType('date') | nodesByType('dateTime')", WithModel(m), WithFunctions(AnonymizerFunctions()...))
	var nodes []Item
	for _, r := range roots {
		res, err := sel.Evaluate(r, nil)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, res...)
	}
	e := MustCompile("$this >= @1990-01-01 and $this < @2000-01-01", WithModel(m))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, n := range nodes {
			if _, err := e.EvaluateBool(n.Node(), nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(nodes)), "nodes/op")
}

// BenchmarkParseAnnotate measures what the benchmarks above leave out:
// parsing and typing every resource of synthea-100.
func BenchmarkParseAnnotate(b *testing.B) {
	loadSynthea(b)
	m := model.Get(model.R4)
	b.SetBytes(syntheaBytes)
	b.ReportAllocs()
	for b.Loop() {
		for _, line := range syntheaLines {
			root, err := jsontree.Parse(line)
			if err != nil {
				b.Fatal(err)
			}
			if err := typed.Annotate(root, m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCompile measures compiling a typical expression with the check
// phase.
func BenchmarkCompile(b *testing.B) {
	m := model.Get(model.R4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile("Patient.name.where(use='official').given.first().matches('^[A-Z]')", WithModel(m), WithContextType("Patient")); err != nil {
			b.Fatal(err)
		}
	}
}

// codingJob is a resource and its Codings, in document order.
type codingJob struct {
	root *jsontree.Node
	head []*jsontree.Node
}

// codingJobs returns the jobs of the resources that have Codings.
func codingJobs(roots []*jsontree.Node) []codingJob {
	var jobs []codingJob
	for _, r := range roots {
		var head []*jsontree.Node
		typed.Walk(r, func(n *jsontree.Node) bool {
			if n.Type() == "Coding" {
				head = append(head, n)
			}
			return true
		})
		if len(head) > 0 {
			jobs = append(jobs, codingJob{r, head})
		}
	}
	return jobs
}

// benchLongitudinalCodings evaluates the longitudinal profile's rule on
// Codings (longitudinalCodings) with EvaluateWithHead, as the anonymizer
// does, the head being a resource's Codings, on each job per iteration.
func benchLongitudinalCodings(b *testing.B, jobs []codingJob, opts ...Option) {
	m := model.Get(model.R4)
	e := MustCompile(longitudinalCodings, append([]Option{WithModel(m), WithFunctions(AnonymizerFunctions()...)}, opts...)...)
	codings := 0
	for _, j := range jobs {
		codings += len(j.head)
	}
	b.ReportAllocs()
	b.ResetTimer()
	results := 0
	for b.Loop() {
		results = 0
		for _, j := range jobs {
			res, err := e.EvaluateWithHead(j.root, j.head, nil)
			if err != nil {
				b.Fatal(err)
			}
			results += len(res)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(codings), "ns/coding")
	b.ReportMetric(float64(codings), "codings/op")
	b.ReportMetric(float64(len(jobs)), "resources/op")
	b.ReportMetric(float64(results), "results/op")
}

// BenchmarkLongitudinalCodings measures the longitudinal rule on Codings
// with the criteria memo and without it, on synthea-100 resources: every
// n-th one, about 256 KB of JSON that stays in the processor's cache as a
// resource does while the anonymizer applies its rules to it (warm), and
// all of them, whose nodes are read from memory each time (all).
func BenchmarkLongitudinalCodings(b *testing.B) {
	roots := loadSynthea(b)
	stride := int((syntheaBytes + 256<<10 - 1) / (256 << 10))
	var sample []*jsontree.Node
	for i := 0; i < len(roots); i += stride {
		sample = append(sample, roots[i])
	}
	for _, set := range []struct {
		name string
		jobs []codingJob
	}{{"warm", codingJobs(sample)}, {"all", codingJobs(roots)}} {
		b.Run(set.name+"/memo", func(b *testing.B) { benchLongitudinalCodings(b, set.jobs) })
		b.Run(set.name+"/nomemo", func(b *testing.B) { benchLongitudinalCodings(b, set.jobs, withoutMemo()) })
	}
}

// BenchmarkLongitudinalCodingsUnique measures the memo's worst case:
// synthetic resources whose 4096 Codings all have another system, more
// than the memo holds, so that every lookup misses.
func BenchmarkLongitudinalCodingsUnique(b *testing.B) {
	var roots []*jsontree.Node
	for r := 0; r < 64; r++ {
		var sb strings.Builder
		sb.WriteString(`{"resourceType":"Observation","status":"final","code":{"coding":[`)
		for i := 0; i < 64; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"system":"http://example.org/fhir/CodeSystem/local-%d","code":"c","display":"d"}`, r*64+i)
		}
		sb.WriteString(`]}}`)
		root, err := jsontree.Parse([]byte(sb.String()))
		if err != nil {
			b.Fatal(err)
		}
		if err := typed.Annotate(root, model.Get(model.R4)); err != nil {
			b.Fatal(err)
		}
		roots = append(roots, root)
	}
	jobs := codingJobs(roots)
	b.Run("memo", func(b *testing.B) { benchLongitudinalCodings(b, jobs) })
	b.Run("nomemo", func(b *testing.B) { benchLongitudinalCodings(b, jobs, withoutMemo()) })
}
