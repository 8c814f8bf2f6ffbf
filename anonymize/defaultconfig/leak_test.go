package defaultconfig

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/internal/synth"
	"fhirdeid/internal/testshared"
	"fhirdeid/jsontree"
)

// TestSafeHarborSyntheaNoPatientValueAnywhere de-identifies all 38,472
// resources of synthea-100 with the default configuration and checks that
// no value of any Patient's name, address line, telecom value, identifier
// value or full birth date appears anywhere in the output — in any resource,
// Reference.display and base64 attachments included.
func TestSafeHarborSyntheaNoPatientValueAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("de-identifies all of synthea-100")
	}
	dir := testshared.Dir(t, "data", "synthea-100")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	// Collect the Patients' values.
	var ids []string
	add := func(n *jsontree.Node) {
		if n == nil {
			return
		}
		if n.Kind == jsontree.Array {
			for _, c := range n.Children() {
				if c.Kind == jsontree.String && len(c.Value()) >= 3 {
					ids = append(ids, c.Value())
				}
			}
			return
		}
		if n.Kind == jsontree.String && len(n.Value()) >= 3 {
			ids = append(ids, n.Value())
		}
	}
	for _, line := range readNDJSONB(t, filepath.Join(dir, "Patient.000.ndjson.gz"), 1<<30) {
		p, err := jsontree.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		add(p.Get("birthDate"))
		for _, member := range []string{"name", "address", "telecom", "identifier"} {
			arr := p.Get(member)
			if arr == nil {
				continue
			}
			for _, el := range arr.Children() {
				switch member {
				case "name":
					add(el.Get("family"))
					add(el.Get("given"))
				case "address":
					add(el.Get("line"))
				default:
					add(el.Get("value"))
				}
			}
		}
	}
	if len(ids) < 500 {
		t.Fatalf("only %d Patient values collected", len(ids))
	}
	cfg, err := anonymize.ParseConfig(SafeHarbor(), anonymize.Options{FHIRVersion: "R4", Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := anonymize.WithNow(context.Background(), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	lc := synth.NewLeakChecker(ids)
	n := 0
	var out []byte
	for _, f := range files {
		for i, line := range readNDJSONB(t, f, 1<<30) {
			out, _, err = eng.AppendAnonymizedJSON(ctx, out[:0], line, anonymize.FileContext{FileName: filepath.Base(f)})
			if err != nil {
				t.Fatalf("%s line %d: %v", filepath.Base(f), i+1, err)
			}
			lc.CheckLine(out)
			n++
		}
	}
	if n != 38472 {
		t.Errorf("%d resources de-identified, want 38472", n)
	}
	if lc.Found() != 0 {
		// The values are synthetic (Synthea): printing which ones leaked
		// is safe here and helps fix the configuration.
		t.Errorf("%d of %d Patient values survive: %v", lc.Found(), len(ids), lc.FoundIdentifiers())
	}
	t.Logf("%d resources, %d distinct Patient values checked, none found", n, len(ids))
}
