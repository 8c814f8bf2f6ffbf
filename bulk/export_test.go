package bulk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
)

func TestExportLevels(t *testing.T) {
	pop := population(6, 5)
	all := ids(pop)
	isPatientData := func(s string) bool { return !strings.HasPrefix(s, "Organization/") }
	inGroup := func(s string) bool {
		return strings.Contains(s, "p001") || strings.Contains(s, "p004")
	}
	tests := []struct {
		name string
		req  bulk.Request
		want []string
	}{
		{"system GET", bulk.Request{}, all},
		{"system POST", bulk.Request{POST: true}, all},
		{"system _type", bulk.Request{Types: []string{"Patient", "Organization"}}, filterIDs(all, func(s string) bool {
			return strings.HasPrefix(s, "Patient/") || strings.HasPrefix(s, "Organization/")
		})},
		{"system _type repeated", bulk.Request{Types: []string{"Patient", "Encounter"}, RepeatParams: true}, filterIDs(all, func(s string) bool {
			return strings.HasPrefix(s, "Patient/") || strings.HasPrefix(s, "Encounter/")
		})},
		{"patient level", bulk.Request{Level: bulk.PatientLevel}, filterIDs(all, isPatientData)},
		{"patient level POST patient=", bulk.Request{Level: bulk.PatientLevel, Patients: []string{"Patient/p002"}},
			filterIDs(all, func(s string) bool { return strings.Contains(s, "p002") })},
		{"group level", bulk.Request{Level: bulk.GroupLevel, GroupID: "g1"}, filterIDs(all, inGroup)},
		{"group level POST", bulk.Request{Level: bulk.GroupLevel, GroupID: "g1", POST: true}, filterIDs(all, inGroup)},
		{"_since", bulk.Request{Since: "2026-01-01T00:00:00Z"}, filterIDs(all, func(s string) bool {
			// odd patients were updated in 2026; the Organization has no lastUpdated.
			return strings.HasPrefix(s, "Organization/") || strings.Contains(s, "p001") || strings.Contains(s, "p003") || strings.Contains(s, "p005")
		})},
		{"_until", bulk.Request{Until: "2026-01-01T00:00:00Z"}, filterIDs(all, func(s string) bool {
			return strings.HasPrefix(s, "Organization/") || strings.Contains(s, "p000") || strings.Contains(s, "p002") || strings.Contains(s, "p004")
		})},
		{"no data of that type", bulk.Request{Types: []string{"Device"}}, nil},
		{"vendor _till and _container", bulk.Request{Extra: map[string][]string{"_till": {"2026-01-01T00:00:00Z"}, "_container": {"exports"}}},
			filterIDs(all, func(s string) bool {
				return strings.HasPrefix(s, "Organization/") || strings.Contains(s, "p000") || strings.Contains(s, "p002") || strings.Contains(s, "p004")
			})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 4, PollsBeforeComplete: 2, RetryAfter: "1",
				Groups: map[string][]string{"g1": {"p001", "p004"}}})
			res, err := e.run(t, tc.req)
			if err != nil {
				t.Fatalf("export: %v", err)
			}
			got := storedIDs(t, e.dir)
			if !equalStrings(got, tc.want) {
				t.Fatalf("stored resources: %s", diff(got, tc.want))
			}
			st := e.srv.Stats()
			if st.Kickoffs != 1 || st.Deletes != 1 || st.BadHeaders != 0 {
				t.Errorf("server saw %d kick-offs, %d deletes, %d bad headers; want 1, 1, 0", st.Kickoffs, st.Deletes, st.BadHeaders)
			}
			if res.Resources != int64(len(tc.want)) || !res.Checkpoint.Complete {
				t.Errorf("result: %d resources, complete=%v", res.Resources, res.Checkpoint.Complete)
			}
			if _, err := os.Stat(filepath.Join(e.dir, "manifest.json")); err != nil {
				t.Errorf("manifest.json: %v", err)
			}
			if partials, _ := filepath.Glob(filepath.Join(e.dir, ".*partial*")); len(partials) > 0 {
				t.Errorf("partial files left: %v", partials)
			}
			// 2 polls answered 202 with Retry-After 1.
			sleeps := e.clock.Sleeps()
			if len(sleeps) != 2 || sleeps[0] != time.Second {
				t.Errorf("sleeps %v, want two of 1s", sleeps)
			}
		})
	}
}

func TestExportSeveralFilesPerType(t *testing.T) {
	pop := population(10, 12)
	e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 25})
	res, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := filepath.Glob(filepath.Join(e.dir, "Observation.*.ndjson.gz"))
	if len(obs) != 5 { // 120 observations in parts of 25
		t.Errorf("%d Observation files, want 5: %v", len(obs), obs)
	}
	if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
	if res.FilesDownloaded != len(res.Checkpoint.Files) {
		t.Errorf("downloaded %d of %d files", res.FilesDownloaded, len(res.Checkpoint.Files))
	}
}

func TestFaultKickoff429(t *testing.T) {
	pop := population(2, 2)
	e := newEnv(t, bulktest.Options{Resources: pop, Faults: bulktest.Faults{Kickoff429: 2, Kickoff429RetryAfter: "30"}})
	if _, err := e.run(t, bulk.Request{}); err != nil {
		t.Fatal(err)
	}
	if st := e.srv.Stats(); st.Kickoffs != 3 {
		t.Errorf("%d kick-off requests, want 3 (two 429)", st.Kickoffs)
	}
	sleeps := e.clock.Sleeps()
	if len(sleeps) < 2 || sleeps[0] != 30*time.Second || sleeps[1] != 30*time.Second {
		t.Errorf("sleeps %v, want 30s, 30s first", sleeps)
	}
	if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
}

func TestFaultStatus429RetryAfterClamped(t *testing.T) {
	date := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC).Format(http.TimeFormat) // fake now + 2 min
	tests := []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"absolute epoch ms", "1795867492140", 5 * time.Minute},
		{"two hours", "7200", 5 * time.Minute},
		{"HTTP date", date, 2 * time.Minute},
		{"seconds", "3", 3 * time.Second},
		{"past HTTP date", "Fri, 31 Dec 1999 23:59:59 GMT", time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pop := population(2, 1)
			e := newEnv(t, bulktest.Options{Resources: pop, Faults: bulktest.Faults{Status429: 2, Status429RetryAfter: tc.retryAfter}})
			if _, err := e.run(t, bulk.Request{}); err != nil {
				t.Fatal(err)
			}
			// The date is absolute: only the first wait is predictable.
			sleeps := e.clock.Sleeps()
			if len(sleeps) < 2 || sleeps[0] != tc.want || (tc.name != "HTTP date" && sleeps[1] != tc.want) {
				t.Errorf("sleeps %v, want %v first", sleeps, tc.want)
			}
			if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
				t.Fatal(diff(got, want))
			}
		})
	}
}

func TestFaultStatusRetried(t *testing.T) {
	tests := []struct {
		name   string
		faults bulktest.Faults
		polls  int64
	}{
		{"503", bulktest.Faults{Status5xx: 3}, 3 + 2},
		{"transient OperationOutcome", bulktest.Faults{StatusTransient: 2}, 2 + 2},
		{"mixed", bulktest.Faults{Status429: 1, Status5xx: 1, StatusTransient: 1}, 3 + 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pop := population(3, 2)
			e := newEnv(t, bulktest.Options{Resources: pop, Faults: tc.faults})
			if _, err := e.run(t, bulk.Request{}); err != nil {
				t.Fatal(err)
			}
			if st := e.srv.Stats(); st.StatusPolls != tc.polls || st.Kickoffs != 1 {
				t.Errorf("%d polls, %d kick-offs; want %d, 1", st.StatusPolls, st.Kickoffs, tc.polls)
			}
			if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
				t.Fatal(diff(got, want))
			}
			// Backoff without Retry-After grows.
			sleeps := e.clock.Sleeps()
			if len(sleeps) < 2 {
				t.Fatalf("sleeps %v", sleeps)
			}
		})
	}
}

func TestFaultStatusRetriesExhausted(t *testing.T) {
	e := newEnv(t, bulktest.Options{Resources: population(1, 1), Faults: bulktest.Faults{StatusTransient: 50}})
	_, err := e.run(t, bulk.Request{})
	if err == nil {
		t.Fatal("export succeeded despite endless transient errors")
	}
	msg := err.Error()
	if !strings.Contains(msg, "status:") || !strings.Contains(msg, "HTTP 500") || !strings.Contains(msg, "transient") {
		t.Errorf("error %q should name the step, the status and the outcome", msg)
	}
	if st := e.srv.Stats(); st.StatusPolls != 5 { // 1 + 4 retries
		t.Errorf("%d polls, want 5", st.StatusPolls)
	}
	// The checkpoint keeps the status URL for a later resume.
	cp, _ := e.exp.Store.Load()
	if cp == nil || cp.StatusURL == "" || cp.Complete {
		t.Errorf("checkpoint after failure: %+v", cp)
	}
}

func TestFaultStatusFatal(t *testing.T) {
	e := newEnv(t, bulktest.Options{Resources: population(1, 1), Faults: bulktest.Faults{StatusFatal: true}})
	// 500 without transient is retried (5xx), then reported.
	_, err := e.run(t, bulk.Request{})
	if err == nil || !strings.Contains(err.Error(), "export job failed: storage unavailable") {
		t.Fatalf("error %v should carry the server diagnostics", err)
	}
}

func TestFaultDownloadRetried(t *testing.T) {
	tests := []struct {
		name   string
		faults bulktest.Faults
	}{
		{"503 on downloads", bulktest.Faults{Download5xx: 3}},
		{"connection cut mid-file", bulktest.Faults{CutDownloads: 3}},
		{"stalled mid-file", bulktest.Faults{StallDownloads: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pop := population(8, 30)
			e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 50, Faults: tc.faults})
			e.exp.Concurrency = 1 // the faults hit distinct attempts deterministically
			e.exp.Client.IdleTimeout = 200 * time.Millisecond
			res, err := e.run(t, bulk.Request{})
			if err != nil {
				t.Fatal(err)
			}
			got, want := storedIDs(t, e.dir), ids(pop)
			if !equalStrings(got, want) {
				t.Fatal(diff(got, want))
			}
			files := int64(len(res.Checkpoint.Files))
			if st := e.srv.Stats(); st.Downloads != files+3 {
				t.Errorf("%d downloads for %d files, want 3 retries", st.Downloads, files)
			}
		})
	}
}

func TestFaultExpiredLinks(t *testing.T) {
	pop := population(6, 20)
	e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 30, Faults: bulktest.Faults{ExpiredDownloads: 2}})
	res, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
	st := e.srv.Stats()
	files := int64(len(res.Checkpoint.Files))
	if st.Downloads != files+2 {
		t.Errorf("%d downloads for %d files, want 2 retries", st.Downloads, files)
	}
	// 2 polls for the export, 1 or 2 refreshes.
	if st.StatusPolls < 3 || st.StatusPolls > 4 {
		t.Errorf("%d status requests, want 3 or 4 (manifest refreshed)", st.StatusPolls)
	}
	if !strings.Contains(e.logMu.String(), `"eventId":"status_refresh"`) {
		t.Error("no status_refresh event")
	}
}

func TestFaultMismatch(t *testing.T) {
	tests := []struct {
		name      string
		faults    bulktest.Faults
		allow     bool
		wantErr   string
		wantFails bool
	}{
		{"type", bulktest.Faults{MismatchType: true}, false, `line 1: resourceType "Encounter", manifest type "Observation"`, true},
		{"count", bulktest.Faults{MismatchCount: true}, false, "2 resources, manifest count 3", true},
		{"count allowed", bulktest.Faults{MismatchCount: true}, true, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pop := population(2, 1)
			e := newEnv(t, bulktest.Options{Resources: pop, Faults: tc.faults})
			e.exp.AllowCountMismatch = tc.allow
			_, err := e.run(t, bulk.Request{})
			if !tc.wantFails {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(e.logMu.String(), `"warning":true`) {
					t.Error("count mismatch not logged as a warning")
				}
				return
			}
			if err == nil {
				t.Fatal("export succeeded with a file that contradicts the manifest")
			}
			var ve *bulk.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "Encounter.000.ndjson.gz") && !strings.Contains(err.Error(), "Observation.000.ndjson.gz") {
				t.Fatalf("error %q, want a ValidationError containing %q and the file name", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "Secretname") || strings.Contains(err.Error(), "p000") {
				t.Errorf("error quotes resource content: %q", err)
			}
			cp, _ := e.exp.Store.Load()
			if cp.Complete || cp.LastSuccessfulTransactionTime != "" {
				t.Error("a failed export was marked complete")
			}
			if st := e.srv.Stats(); st.Deletes != 0 {
				t.Error("the job was deleted although a file failed")
			}
		})
	}
}

func TestErrorAndDeletedFiles(t *testing.T) {
	pop := population(3, 1)
	e := newEnv(t, bulktest.Options{Resources: pop,
		Deleted: []string{"Patient/gone1", "Observation/gone2"},
		Errors: []bulk.Issue{{Severity: "error", Code: "exception", Diagnostics: "could not export Claim"},
			{Severity: "warning", Code: "informational", Diagnostics: "skipped"}, {Severity: "warning", Code: "informational"}}})
	res, err := e.run(t, bulk.Request{Since: "2000-01-01T00:00:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Severity["error"] != 1 || res.Severity["warning"] != 2 || !res.Partial {
		t.Errorf("severity %v partial %v, want error 1, warning 2, partial", res.Severity, res.Partial)
	}
	del := readGz(t, filepath.Join(e.dir, "deleted", "Bundle.000.ndjson.gz"))
	if len(del) != 2 || !strings.Contains(string(del[0]), `"method":"DELETE"`) {
		t.Errorf("deleted file: %q", del)
	}
	var tomb []string
	for _, l := range del {
		ts, err := bulk.Tombstones(l)
		if err != nil {
			t.Fatal(err)
		}
		tomb = append(tomb, ts...)
	}
	if strings.Join(tomb, ",") != "Patient/gone1,Observation/gone2" {
		t.Errorf("tombstones %v", tomb)
	}
	if errs := readGz(t, filepath.Join(e.dir, "error", "OperationOutcome.000.ndjson.gz")); len(errs) != 3 {
		t.Errorf("%d error lines, want 3", len(errs))
	}
	cp, _ := e.exp.Store.Load()
	if !cp.Complete || cp.LastSuccessfulTransactionTime != "" {
		t.Errorf("partial export: complete=%v, next _since %q (want complete, unchanged _since)", cp.Complete, cp.LastSuccessfulTransactionTime)
	}
}

func TestPagedManifest(t *testing.T) {
	pop := population(6, 6)
	e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 5, ManifestPageSize: 2})
	res, err := e.run(t, bulk.Request{AllowPartialManifests: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
	if n := len(res.Checkpoint.Files); n < 6 {
		t.Errorf("%d files; the paged manifest should list at least 6", n)
	}
	if !strings.Contains(e.logMu.String(), `"totalManifests":`) {
		t.Error("manifest_complete event missing")
	}
}

func TestPartialManifests(t *testing.T) {
	pop := population(6, 6)
	e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 5, ManifestPageSize: 2, PartialManifests: true})
	res, err := e.run(t, bulk.Request{AllowPartialManifests: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
	pages := (len(res.Checkpoint.Files) - 1) / 2 // output files in pages of 2
	if st := e.srv.Stats(); st.StatusPolls < int64(pages) {
		t.Errorf("%d status requests for %d pages", st.StatusPolls, pages)
	}
	if n := strings.Count(e.logMu.String(), `"xProgress":"manifest page`); n < 2 {
		t.Errorf("%d partial manifests seen with 202, want several", n)
	}
}

func TestJobGone(t *testing.T) {
	e := newEnv(t, bulktest.Options{Resources: population(1, 1), PollsBeforeComplete: 3})
	c := e.exp.Client
	ctx := context.Background()
	status, err := c.Kickoff(ctx, &bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.ExpireJobs()
	_, err = c.Poll(ctx, status, e.clock.Now())
	if !errors.Is(err, bulk.ErrJobGone) {
		t.Fatalf("poll of an expired job: %v, want ErrJobGone", err)
	}
}

func TestPollDeadline(t *testing.T) {
	e := newEnv(t, bulktest.Options{Resources: population(1, 1), PollsBeforeComplete: 1000, RetryAfter: "3600"})
	e.exp.Client.Polling.Deadline = 24 * time.Hour
	e.exp.Client.Polling.StuckAfter = 30 * time.Minute
	_, err := e.run(t, bulk.Request{})
	if !errors.Is(err, bulk.ErrDeadline) {
		t.Fatalf("err %v, want ErrDeadline", err)
	}
	// X-Progress stays at "0% complete" for the first 10 polls (50 min).
	if n := strings.Count(e.logMu.String(), `"eventId":"status_stuck"`); n != 1 {
		t.Errorf("%d status_stuck events, want 1", n)
	}
	// Retry-After 3600 is clamped to 5 minutes: 24 h / 5 min = 288 polls.
	if st := e.srv.Stats(); st.StatusPolls < 280 || st.StatusPolls > 300 {
		t.Errorf("%d polls in a day at a 5 min ceiling", st.StatusPolls)
	}
}

func TestResumeAfterInterruption(t *testing.T) {
	pop := population(10, 20)
	for _, stopAfter := range []int{1, 3, 6} {
		e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 30})
		e.exp.Concurrency = 1
		ctx, cancel := context.WithCancel(context.Background())
		done := 0
		e.exp.FileDone = func(bulk.FileState) {
			done++
			if done == stopAfter {
				cancel()
			}
		}
		_, err := e.exp.Run(ctx, bulk.Request{})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted run: %v", err)
		}
		e.exp.FileDone = nil
		res, err := e.run(t, bulk.Request{})
		if err != nil {
			t.Fatalf("resumed run: %v", err)
		}
		if !res.Resumed || res.Kickoffs != 0 {
			t.Errorf("resumed=%v kickoffs=%d", res.Resumed, res.Kickoffs)
		}
		st := e.srv.Stats()
		if st.Kickoffs != 1 {
			t.Errorf("stop after %d: server saw %d kick-offs, want 1", stopAfter, st.Kickoffs)
		}
		if res.FilesDownloaded != len(res.Checkpoint.Files)-stopAfter {
			t.Errorf("stop after %d: resumed run downloaded %d of %d files", stopAfter, res.FilesDownloaded, len(res.Checkpoint.Files))
		}
		if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
			t.Fatal(diff(got, want))
		}
	}
}

func TestSinceAutoCarriesTransactionTime(t *testing.T) {
	e := newEnv(t, bulktest.Options{Resources: population(2, 1)})
	res, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	first := res.Checkpoint.LastSuccessfulTransactionTime
	if first == "" || first != res.Checkpoint.Manifest.TransactionTime {
		t.Fatalf("transactionTime not committed: %q", first)
	}
	cp, resumed, err := e.exp.Prepare(bulk.Request{Since: first})
	if err != nil || resumed || cp.LastSuccessfulTransactionTime != first || len(cp.PreviousFiles) == 0 {
		t.Fatalf("next export: resumed=%v last=%q previous files %d err %v", resumed, cp.LastSuccessfulTransactionTime, len(cp.PreviousFiles), err)
	}
}

func TestDuplicateResources(t *testing.T) {
	pop := population(3, 4)
	dup := append(append([][]byte{}, pop...), pop[2], pop[5]) // two resources served twice
	e := newEnv(t, bulktest.Options{Resources: dup, PartSize: 4})
	e.exp.CheckDuplicates = true
	res, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 2 {
		t.Errorf("%d duplicates, want 2", res.Duplicates)
	}
	if !strings.Contains(e.logMu.String(), `"eventId":"duplicates"`) {
		t.Error("no duplicates event")
	}
	e2 := newEnv(t, bulktest.Options{Resources: pop, PartSize: 4, Faults: bulktest.Faults{CutDownloads: 2}})
	e2.exp.CheckDuplicates = true
	if res, err := e2.run(t, bulk.Request{}); err != nil || res.Duplicates != 0 {
		t.Errorf("retried files counted as duplicates: %d, %v", res.Duplicates, err)
	}
}

// TestManyFiles exports more than 1000 one-resource files (checkpoint saves
// are then throttled) and checks that nothing is lost.
func TestManyFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("1,101 downloads")
	}
	pop := population(22, 48) // 1,101 files
	e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 1})
	e.exp.Concurrency = 8
	e.exp.Sink = bulk.DirSink{Dir: e.dir, NoSync: true}
	res, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Checkpoint.Files); n != len(pop) {
		t.Fatalf("%d files, want %d", n, len(pop))
	}
	if got, want := storedIDs(t, e.dir), ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
	cp, _ := e.exp.Store.Load()
	for _, f := range cp.Files {
		if !f.Done {
			t.Fatalf("file %s not marked done in the saved checkpoint", f.Name)
		}
	}
}

// memLines is a LineHandler that keeps committed lines in memory.
type memLines struct {
	mu        sync.Mutex
	committed map[string][]string
	begun     int
	aborted   int
}

type memWriter struct {
	h     *memLines
	name  string
	lines []string
}

func (h *memLines) Begin(fs bulk.FileState) (bulk.LineWriter, error) {
	h.mu.Lock()
	h.begun++
	h.mu.Unlock()
	return &memWriter{h: h, name: fs.Name}, nil
}

func (w *memWriter) WriteLine(line []byte) error {
	w.lines = append(w.lines, string(line))
	return nil
}

func (w *memWriter) Commit() error {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	if _, dup := w.h.committed[w.name]; dup {
		return fmt.Errorf("%s committed twice", w.name)
	}
	w.h.committed[w.name] = w.lines
	return nil
}

func (w *memWriter) Abort() error {
	w.h.mu.Lock()
	w.h.aborted++
	w.h.mu.Unlock()
	return nil
}

func TestLineHandlerMode(t *testing.T) {
	pop := population(6, 15)
	e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 20, Faults: bulktest.Faults{CutDownloads: 2, Download5xx: 1}})
	h := &memLines{committed: map[string][]string{}}
	e.exp.Sink = nil
	e.exp.Lines = h
	e.exp.Concurrency = 1
	res, err := e.run(t, bulk.Request{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, lines := range h.committed {
		for _, l := range lines {
			var v struct{ ResourceType, ID string }
			_ = json.Unmarshal([]byte(l), &v)
			got = append(got, v.ResourceType+"/"+v.ID)
		}
	}
	sort.Strings(got)
	if want := ids(pop); !equalStrings(got, want) {
		t.Fatal(diff(got, want))
	}
	if h.aborted != 2 || h.begun != len(res.Checkpoint.Files)+2 {
		t.Errorf("begun %d, aborted %d for %d files with 2 cut downloads", h.begun, h.aborted, len(res.Checkpoint.Files))
	}
	if files, _ := filepath.Glob(filepath.Join(e.dir, "*.gz")); len(files) != 0 {
		t.Errorf("files written in line mode: %v", files)
	}
}

func TestOrganizeOutputByPatient(t *testing.T) {
	pop := population(5, 3)
	e := newEnv(t, bulktest.Options{Resources: pop, PartSize: 8})
	res, err := e.run(t, bulk.Request{Level: bulk.PatientLevel, OrganizeOutputBy: "Patient"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoint.Manifest.OutputOrganizedBy != "Patient" || len(res.Checkpoint.Files) < 2 {
		t.Fatalf("manifest organised by %q with %d files", res.Checkpoint.Manifest.OutputOrganizedBy, len(res.Checkpoint.Files))
	}
	var got []string
	headers := 0
	files, _ := filepath.Glob(filepath.Join(e.dir, "output.*.ndjson.gz"))
	for _, f := range files {
		for _, l := range readGz(t, f) {
			var v struct{ ResourceType, ID string }
			_ = json.Unmarshal(l, &v)
			if v.ResourceType == "Parameters" {
				headers++
				continue
			}
			got = append(got, v.ResourceType+"/"+v.ID)
		}
	}
	sort.Strings(got)
	want := filterIDs(ids(pop), func(s string) bool { return !strings.HasPrefix(s, "Organization/") })
	if !equalStrings(got, want) || headers != 5 {
		t.Fatalf("%d headers; %s", headers, diff(got, want))
	}
}
