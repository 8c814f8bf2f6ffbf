// Package browsertest drives fhirdeid's dashboard in headless Chromium: it
// starts the server against an in-process Bulk Data server, presses "Run
// now", waits for the run to finish and saves screenshots.
package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
	"fhirdeid/state"
)

// chromium is where Debian's chromium package installs the browser.
const chromium = "/usr/bin/chromium"

// artifactDir is where screenshots go: $FHIRDEID_ARTIFACTS, or the system's
// temporary folder.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("FHIRDEID_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "fhirdeid-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts a headless Chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("browser test skipped: %s not found (install the Debian packages chromium and chromium-driver)", chromium)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", chromium, err)
	}
	return ctx
}

func TestDashboardRunNow(t *testing.T) {
	ctx := browser(t)
	e := testenv.New(t, 20)
	cron, err := server.ParseCron("0 1 * * *", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The privacy checks on, so that the run page shows the leak audit
	// and the risk histogram.
	assure := func(p *pipeline.Pipeline) { p.Assurance = &pipeline.Assurance{Audit: true, Risk: true} }
	s, err := server.New(server.Options{State: e.DB, Jobs: []*server.Job{e.Job(t, "ehr", cron, assure)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()

	// One earlier run, so that the chart has a line.
	if err := s.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	waitRuns(t, e.DB, 1)
	// The run's record ends a moment before the scheduler lets the
	// pipeline go; a page rendered in between shows the button disabled,
	// and clicking it would do nothing (CI once timed out on that).
	waitIdle(t, ctx, base+"/")

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-pipeline="ehr"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	if err != nil {
		t.Fatalf("press run now: %v", err)
	}
	if flash := text(t, ctx, `p.flash`); flash != "Run started." {
		t.Errorf("flash after run now: %q", flash)
	}
	waitRuns(t, e.DB, 2)

	// The page (refreshed) shows the finished run.
	var runsText, pipeText string
	var rows, points int
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`table.runs`)))
		if err != nil {
			t.Fatal(err)
		}
		runsText, pipeText = text(t, ctx, `table.runs tbody`), text(t, ctx, `table.pipelines tbody`)
		rows = count(t, ctx, `table.runs tbody tr[data-run]`)
		points = count(t, ctx, `svg.chart circle`)
		if rows == 2 && strings.Count(runsText, "succeeded") == 2 && !strings.Contains(pipeText, "running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard does not show two succeeded runs: %d rows\n%s\n%s", rows, runsText, pipeText)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if points != 2 {
		t.Errorf("the chart has %d points, want 2", points)
	}
	if want := fmtCount(e.Pop.Count()); !strings.Contains(runsText, want) {
		t.Errorf("the runs table lacks the resource count %s:\n%s", want, runsText)
	}
	dir := artifactDir(t)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	// The run page, reached by its link.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`table.runs tbody tr[data-run] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#run-status`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	facts := text(t, ctx, `main`)
	if png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"succeeded", "Resources by type", "Patient", "Observation"} {
		if !strings.Contains(facts, w) {
			t.Errorf("the run page lacks %q", w)
		}
	}
	// The privacy checks: no leak, and a histogram of the class sizes whose
	// bars add up to the run's patients.
	if leaks := text(t, ctx, `#audit-leaks`); leaks != "0" {
		t.Errorf("the run page shows %q leaks", leaks)
	}
	if bars := count(t, ctx, `svg#risk-histogram rect.bar`); bars == 0 {
		t.Error("the run page has no risk histogram")
	}
	patients, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll("svg#risk-histogram rect.bar title")).
		map(t => parseInt(t.textContent.split(": ")[1], 10)).reduce((a, b) => a + b, 0)`))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(e.Pop.Resources["Patient"]); patients != want {
		t.Errorf("the risk histogram's bars hold %d patients, want %d", patients, want)
	}
	// The merged snapshot's patients are analysed too.
	if sr := text(t, ctx, `#snapshot-risk`); !strings.Contains(sr, fmtCount(len(e.Pop.Resources["Patient"]))+" patients") {
		t.Errorf("the snapshot's risk: %q", sr)
	}
	shot = filepath.Join(dir, "run.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
}

// text returns the text of the first element matching the CSS selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return v
}

// count returns the number of elements matching the CSS selector.
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(sel)+`).length`))
	if err != nil {
		t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

// waitIdle loads page until the ehr pipeline's Run now button is enabled.
func waitIdle(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	const enabled = `tr[data-pipeline="ehr"] button:not([disabled])`
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`tr[data-pipeline="ehr"] button`)))
		if err != nil {
			t.Fatalf("load %s: %v", page, err)
		}
		if count(t, ctx, enabled) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the pipeline still shows running 30 s after its run ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRuns waits until n runs have ended.
func waitRuns(t *testing.T, db *state.DB, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		rs, err := db.Runs(context.Background(), "ehr", 0)
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, r := range rs {
			if r.Status.Terminal() {
				done++
			}
		}
		if done >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d runs ended", n)
}

// fmtCount formats n as the dashboard does (narrow no-break space between
// thousands).
func fmtCount(n int) string {
	s := []rune(strconv.Itoa(n))
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune('\u202f')
		}
		b.WriteRune(c)
	}
	return b.String()
}
