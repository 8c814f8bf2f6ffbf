package pipeline_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/jsontree"
	"fhirdeid/pipeline"
)

func longitudinalDeid(t testing.TB) *pipeline.EngineDeidentifier {
	t.Helper()
	cfg, err := anonymize.ParseConfig(defaultconfig.Longitudinal(), anonymize.Options{FHIRVersion: "R4", Compiler: anonymize.FHIRPathCompiler(),
		Keys: anonymize.Keys{CryptoHashKey: "scrub-test-hash-key-0123456789", DateShiftKey: "scrub-test-shift-key-012345678", EncryptKey: "0123456789abcdef0123456789abcdef"}})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.NewEngineDeidentifier(eng)
}

// runOutput returns the de-identified lines of a run.
func runOutput(t *testing.T, e *env, run string) []string {
	t.Helper()
	return readRun(t, e.dest, run, "")
}

// TestRunScrubDemoPopulation runs the demo population (names, SSNs, MRNs,
// phones, addresses and birth dates in narratives, notes and text
// attachments) through pipeline.Run with the longitudinal profile: the
// identifier files are read first, no planted identifier survives in any
// output, and the notes keep their clinical words.
func TestRunScrubDemoPopulation(t *testing.T) {
	e := newEnv(t, bulktest.Options{})
	p := e.pipeline(t, longitudinalDeid(t))
	// The default checks: a shifted date equal to someone's birth date is
	// no leak, so the run publishes.
	p.Assurance = &pipeline.Assurance{Audit: true, FailOnLeak: true}
	rep, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings: %v", rep.Warnings)
	}
	if a := rep.Audit; a == nil || a.Leaks != 0 || a.IdentifiersCollected == 0 {
		t.Errorf("audit %+v", a)
	}
	lines := runOutput(t, e, rep.Run)
	if len(lines) != e.pop.Count() {
		t.Fatalf("%d resources out, %d in", len(lines), e.pop.Count())
	}
	lc := synth.NewLeakChecker(e.pop.Identifiers)
	kept := map[string]int{}
	for _, l := range lines {
		lc.CheckLine([]byte(l))
		if strings.Contains(l, "reports symptoms since last visit") {
			kept["Condition.note"]++
		}
		if strings.Contains(l, "Take one tablet by mouth daily") {
			kept["dosageInstruction.text"]++
		}
		if strings.Contains(l, `"resourceType":"DocumentReference"`) {
			root, err := jsontree.Parse([]byte(l))
			if err != nil {
				t.Fatal(err)
			}
			root.Walk(func(n *jsontree.Node) bool {
				if n.Kind == jsontree.String && len(n.Value()) > 40 {
					if raw, err := base64.StdEncoding.DecodeString(n.Value()); err == nil && strings.Contains(string(raw), "Clinical note for [NAME]") {
						kept["DocumentReference.attachment"]++
					}
				}
				return true
			})
		}
	}
	if lc.Found() != 0 {
		// Synthetic values: safe to print.
		t.Errorf("%d of %d planted identifiers survive: %v", lc.Found(), len(e.pop.Identifiers), lc.FoundIdentifiers())
	}
	for _, k := range []string{"Condition.note", "dosageInstruction.text", "DocumentReference.attachment"} {
		if kept[k] == 0 {
			t.Errorf("no scrubbed %s kept its clinical words (%v)", k, kept)
		}
	}
	// One export: a full run needs no second one for the identifiers.
	if k := e.srv.Stats().Kickoffs; k != 1 {
		t.Errorf("%d kick-offs, want 1", k)
	}
	t.Logf("%d resources, %d planted identifiers, none survives; texts kept: %v", len(lines), len(e.pop.Identifiers), kept)
}

// TestRunScrubIncremental checks an incremental run whose only new
// resource is a note about a patient who did not change: the run exports
// the identifier types again without _since, so the note loses the
// patient's family name (an English-looking word in an all-capital note,
// which only the contextual layer recognises), and the identifier export
// is deleted afterwards.
func TestRunScrubIncremental(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 5})
	// A patient whose family name is an English word.
	all := [][]byte{[]byte(`{"resourceType":"Patient","id":"p-baker","meta":{"lastUpdated":"2026-01-01T00:00:00Z"},"name":[{"family":"Baker","given":["Wendy"]}],"birthDate":"1970-03-04"}`)}
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	e := newEnv(t, bulktest.Options{Resources: all})
	rep1, err := pipeline.Run(context.Background(), e.pipeline(t, longitudinalDeid(t)))
	if err != nil {
		t.Fatal(err)
	}
	family := "BAKER"
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	obs := fmt.Sprintf(`{"resourceType":"Observation","id":"late-note","meta":{"lastUpdated":%q},"status":"final","code":{"text":"note"},`+
		`"subject":{"reference":"Patient/p-baker"},"valueString":"PT %s SEEN, BP STABLE, TOLERATING DIET."}`, later, family)
	srv2, err := bulktest.New(bulktest.Options{Resources: append(all, []byte(obs)), PartSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	srv2.Start()
	defer srv2.Close()
	e.srv = srv2
	p := e.pipeline(t, longitudinalDeid(t))
	p.Now = func() time.Time { return time.Now().Add(2 * time.Second) }
	rep2, err := pipeline.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Since != rep1.TransactionTime || rep2.Resources != 1 {
		t.Fatalf("second run: since %q, %d resources", rep2.Since, rep2.Resources)
	}
	if len(rep2.Warnings) != 0 {
		t.Errorf("warnings: %v", rep2.Warnings)
	}
	out := runOutput(t, e, rep2.Run)
	if len(out) != 1 || strings.Contains(out[0], family) || !strings.Contains(out[0], "[NAME]") || !strings.Contains(out[0], "TOLERATING DIET") {
		t.Errorf("note of an unchanged patient not scrubbed with its identifiers: %v", out)
	}
	if st := srv2.Stats(); st.Kickoffs != 2 || st.Deletes < 2 {
		t.Errorf("%d kick-offs and %d deletes, want 2 and 2 (the run's export and the identifiers')", st.Kickoffs, st.Deletes)
	}
}

// TestRunScrubIncrementalExportFails drives the steps as an orchestrator
// would: when the identifier export of an incremental run fails (its poll
// hits the deadline), CollectIdentifiers goes on with the run's own files,
// the export is deleted, and the report warns that the contextual layer
// covered only the patients in the run.
func TestRunScrubIncrementalExportFails(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 3})
	var all [][]byte
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	e := newEnv(t, bulktest.Options{Resources: all})
	if _, err := pipeline.Run(context.Background(), e.pipeline(t, longitudinalDeid(t))); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	obs := fmt.Sprintf(`{"resourceType":"Observation","id":"late","meta":{"lastUpdated":%q},"status":"final","code":{"text":"note"},"subject":{"reference":"Patient/x"},"valueString":"stable"}`, later)
	srv2, err := bulktest.New(bulktest.Options{Resources: append(all, []byte(obs)), PartSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	srv2.Start()
	defer srv2.Close()
	e.srv = srv2
	p := e.pipeline(t, longitudinalDeid(t))
	p.Now = func() time.Time { return time.Now().Add(2 * time.Second) }
	ctx := context.Background()
	run, _, err := pipeline.Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.KickOff(ctx, p, run); err != nil {
		t.Fatal(err)
	}
	if err := pipeline.Poll(ctx, p, run); err != nil {
		t.Fatal(err)
	}
	p.Client.Polling.Deadline = time.Nanosecond // the identifier export's poll gives up at once
	if err := pipeline.CollectIdentifiers(ctx, p, run); err != nil {
		t.Fatalf("a failed identifier export failed the run: %v", err)
	}
	files, err := e.db.Files(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := pipeline.ProcessFile(ctx, p, run, f); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := pipeline.Finish(ctx, p, run)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range rep.Warnings {
		if strings.Contains(w, "patients in this run only") {
			found = true
		}
	}
	if !found || rep.Status != "partial" {
		t.Errorf("status %s, warnings %v", rep.Status, rep.Warnings)
	}
	if st := srv2.Stats(); st.Kickoffs != 2 || st.Deletes < 2 {
		t.Errorf("%d kick-offs, %d deletes", st.Kickoffs, st.Deletes)
	}
}

// TestRunScrubResumed: a run stopped after its Patient files were
// processed is resumed by another process (a new de-identifier, nothing
// in memory); the resumed run reads the done Patient files again, so a
// note processed after the resumption still loses the patient's name.
func TestRunScrubResumed(t *testing.T) {
	pop := synth.Generate(synth.Options{Patients: 3})
	all := [][]byte{
		[]byte(`{"resourceType":"Patient","id":"p-baker","name":[{"family":"Baker","given":["Wendy"]}],"birthDate":"1970-03-04"}`),
		[]byte(`{"resourceType":"Observation","id":"o-baker","status":"final","code":{"text":"note"},"subject":{"reference":"Patient/p-baker"},"valueString":"PT BAKER SEEN, BP STABLE, TOLERATING DIET."}`),
	}
	for _, typ := range pop.Types() {
		all = append(all, pop.Resources[typ]...)
	}
	e := newEnv(t, bulktest.Options{Resources: all})
	ctx := context.Background()
	p := e.pipeline(t, longitudinalDeid(t))
	run, _, err := pipeline.Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.KickOff(ctx, p, run); err != nil {
		t.Fatal(err)
	}
	if err := pipeline.Poll(ctx, p, run); err != nil {
		t.Fatal(err)
	}
	if err := pipeline.CollectIdentifiers(ctx, p, run); err != nil {
		t.Fatal(err)
	}
	files, err := e.db.Files(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	patientFiles := 0
	for _, f := range files {
		if f.Type == "Patient" {
			if err := pipeline.ProcessFile(ctx, p, run, f); err != nil {
				t.Fatal(err)
			}
			patientFiles++
		}
	}
	// The process dies here; another one resumes the run.
	before := e.srv.Stats().Downloads
	rep, err := pipeline.Run(ctx, e.pipeline(t, longitudinalDeid(t)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Run != run.ID {
		t.Fatalf("run %s, want the resumed %s", rep.Run, run.ID)
	}
	var note string
	for _, l := range runOutput(t, e, rep.Run) {
		if strings.Contains(l, "TOLERATING DIET") {
			note = l
		}
	}
	if note == "" || strings.Contains(note, "BAKER") || !strings.Contains(note, "[NAME]") {
		t.Errorf("note after the resumption not scrubbed with the patient's name: %q", note)
	}
	// Every file but the done Patient files, plus every file of an
	// first-pass type (done or not) for the first pass.
	want := int64(len(files) - patientFiles)
	for _, f := range files {
		if slices.Contains(anonymize.FirstPassTypes, f.Type) {
			want++
		}
	}
	if dl := e.srv.Stats().Downloads - before; dl != want {
		t.Errorf("%d downloads after resuming, want %d (%d Patient files read again)", dl, want, patientFiles)
	}
}
