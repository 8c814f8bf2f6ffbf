// Command memresource measures the peak memory of de-identifying one large
// resource with the built-in default configuration: the peak resident set
// size (VmHWM of /proc/self/status, reset through /proc/self/clear_refs)
// above the process's baseline, once the input line is in memory, as a
// multiple of the resource's size. Linux only.
//
// Usage: go run ./bench/memresource [-mb 64] [-shape document|patient|all] [-memprofile file]
//
// Shapes: "document" is a DocumentReference whose attachment holds the
// bulk of the size as base64 (the usual large resource: PDFs, images);
// "patient" is a Patient made of tens of thousands of small telecom,
// identifier and address entries (the worst case for a parse tree: one node
// per few bytes of input).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
)

func main() {
	mb := flag.Int("mb", 64, "size of the resource in MB")
	shape := flag.String("shape", "all", "document, patient or all")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the large resources to `file`")
	flag.Parse()
	cfg, err := anonymize.ParseConfig(defaultconfig.SafeHarbor(), anonymize.Options{Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		fail(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		fail(err)
	}
	ctx := anonymize.WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	// Warm the engine up on a small resource, so that the baseline holds
	// its code and pools.
	if _, _, err := eng.AnonymizeJSON(ctx, document(1<<10), anonymize.FileContext{}); err != nil {
		fail(err)
	}
	if *memprofile != "" {
		// Count the allocations of the large resources only.
		runtime.MemProfileRate = 64 << 10
		runtime.GC()
		runtime.MemProfile(nil, true)
	}
	for _, s := range []string{"document", "patient"} {
		if *shape != "all" && *shape != s {
			continue
		}
		var in []byte
		if s == "document" {
			in = document(*mb << 20)
		} else {
			in = patient(*mb << 20)
		}
		runtime.GC()
		debug.FreeOSMemory()
		base := resetPeak()
		t0 := time.Now()
		out, _, err := eng.AnonymizeJSON(ctx, in, anonymize.FileContext{})
		el := time.Since(t0)
		if err != nil {
			fail(err)
		}
		peak := status("VmHWM")
		runtime.KeepAlive(in)
		fmt.Printf("%-9s %6.1f MB in, %8d bytes out, %6.2fs: baseline RSS %6.1f MB, peak %6.1f MB, %.2fx the resource above baseline (GOGC %s)\n",
			s, float64(len(in))/(1<<20), len(out), el.Seconds(), float64(base)/(1<<20), float64(peak)/(1<<20),
			float64(peak-base)/float64(len(in)), gogc())
	}
	if *memprofile != "" {
		runtime.GC() // publish the last allocations in the profile
		f, err := os.Create(*memprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fail(err)
		}
		if err := f.Close(); err != nil {
			fail(err)
		}
	}
}

func gogc() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	return "100"
}

// document returns a DocumentReference of about size bytes, most of it one
// base64 attachment.
func document(size int) []byte {
	raw := make([]byte, size*3/4)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	var b bytes.Buffer
	b.Grow(size + 512)
	b.WriteString(`{"resourceType":"DocumentReference","id":"doc","status":"current","subject":{"reference":"Patient/p1"},` +
		`"date":"2020-01-02T10:00:00Z","content":[{"attachment":{"contentType":"application/pdf","title":"Discharge summary","data":"`)
	b.WriteString(base64.StdEncoding.EncodeToString(raw))
	b.WriteString(`"}}]}`)
	return b.Bytes()
}

// patient returns a Patient of about size bytes of telecom, identifier and
// address entries.
func patient(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 256)
	b.WriteString(`{"resourceType":"Patient","id":"big","gender":"female","telecom":[`)
	n := size / 3
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"system":"phone","value":"555-%07d","use":"home","rank":%d}`, i, i%9+1)
	}
	b.WriteString(`],"identifier":[`)
	for i := 0; b.Len() < 2*n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"system":"urn:oid:1.2.36.146.595.217.0.1","value":"%d","use":"official"}`, 100000+i)
	}
	b.WriteString(`],"address":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"line":["%d Main St"],"city":"Springfield","district":"Hampden","use":"home"}`, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// resetPeak resets the peak RSS to the current RSS and returns it.
func resetPeak() int64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		fail(fmt.Errorf("resetting the peak RSS: %w", err))
	}
	return status("VmRSS")
}

// status returns a field of /proc/self/status in bytes.
func status(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				fail(err)
			}
			return kb << 10
		}
	}
	fail(fmt.Errorf("no %s in /proc/self/status", field))
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "memresource:", err)
	os.Exit(1)
}
