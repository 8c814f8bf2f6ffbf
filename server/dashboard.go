package server

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"fhirdeid/pipeline"
	"fhirdeid/state"
)

//go:embed templates/*.html
var templateFS embed.FS

// staticFS holds the static folder, served under /static/.
//
//go:embed static
var staticFS embed.FS

var funcs = template.FuncMap{
	"when":     fmtTime,
	"dur":      fmtDuration,
	"count":    fmtCount,
	"bytes":    fmtBytes,
	"statusOf": statusClass,
	"percent":  percent,
	"pct": func(done, total int) int {
		if total == 0 {
			return 0
		}
		return done * 100 / total
	},
}

// pages are the dashboard's templates, each parsed with the layout.
var pages = func() map[string]*template.Template {
	m := map[string]*template.Template{}
	for _, name := range []string{"index", "run", "login"} {
		m[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/"+name+".html"))
	}
	return m
}()

// render executes a page into a buffer first, so that a template error
// answers 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, page string, data map[string]any) {
	data["Token"] = s.token != ""
	data["CSRF"] = s.derived("csrf")
	var b bytes.Buffer
	if err := pages[page].Execute(&b, data); err != nil {
		s.log.Error("render page", "page", page, "err", err)
		http.Error(w, "internal error (see the server log)", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	b.WriteTo(w)
}

func (s *Server) pageIndex(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	filter := q.Get("pipeline")
	if filter != "" && s.byName[filter] == nil {
		http.Error(w, "unknown pipeline", http.StatusNotFound)
		return
	}
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	pv, err := s.pipelineViews(ctx)
	if err != nil {
		s.internalError(w, r, "list pipelines", err)
		return
	}
	runs, more, err := s.listRuns(ctx, filter, (page-1)*s.pageSize, s.pageSize)
	if err != nil {
		s.internalError(w, r, "list runs", err)
		return
	}
	chartRuns, _, err := s.listRuns(ctx, filter, 0, chartMax)
	if err != nil {
		s.internalError(w, r, "list runs", err)
		return
	}
	running := false
	for _, p := range pv {
		running = running || p.Running
	}
	link := func(p int) string {
		v := url.Values{}
		if filter != "" {
			v.Set("pipeline", filter)
		}
		v.Set("page", strconv.Itoa(p))
		return "/?" + v.Encode()
	}
	data := map[string]any{
		"Title":     "fhirdeid",
		"Pipelines": pv,
		"Runs":      runs,
		"Filter":    filter,
		"Page":      page,
		"Chart":     buildChart(chartRuns),
		"Refresh":   running,
		"Flash":     flashText(q.Get("flash")),
		"Now":       s.clock.Now(),
	}
	if page > 1 {
		data["Prev"] = link(page - 1)
	}
	if more {
		data["Next"] = link(page + 1)
	}
	s.render(w, r, "index", data)
}

// flashText maps a flash code (set by the form handlers' redirects) to its
// message; unknown codes show nothing, so the query cannot inject text.
func flashText(code string) string {
	switch code {
	case "started":
		return "Run started."
	case "running":
		return "A run of this pipeline is already in progress."
	case "cancelling":
		return "Cancelling the run."
	case "over":
		return "The run is already over."
	case "elsewhere":
		return "Another process is running this pipeline."
	}
	return ""
}

// typeRow is one line of a run page's per-type table.
type typeRow struct {
	Type string
	*pipeline.TypeReport
}

func (s *Server) pageRun(w http.ResponseWriter, r *http.Request) {
	d, err := s.runDetail(r.Context(), r.PathValue("id"))
	if errors.Is(err, state.ErrNotFound) {
		http.Error(w, "no such run", http.StatusNotFound)
		return
	}
	if err != nil {
		s.internalError(w, r, "read run", err)
		return
	}
	var types []typeRow
	var warnings []string
	if d.Report != nil {
		for t, tr := range d.Report.Types {
			types = append(types, typeRow{t, tr})
		}
		sort.Slice(types, func(a, b int) bool { return types[a].Type < types[b].Type })
		warnings = d.Report.Warnings
	}
	s.render(w, r, "run", map[string]any{
		"Title":    "run " + d.Run.ID,
		"Run":      d.Run,
		"Report":   d.Report,
		"Types":    types,
		"Files":    d.Files,
		"Warnings": warnings,
		"Risk":     riskOf(d.Report),
		"Snapshot": d.Snapshot,
		"RefPaths": integrityRows(d.Snapshot),
		"Refresh":  d.Run.Running,
		"Over":     state.RunStatus(d.Run.Status).Terminal(),
		"Flash":    flashText(r.URL.Query().Get("flash")),
	})
}

func (s *Server) formTrigger(w http.ResponseWriter, r *http.Request) {
	if !s.checkCSRF(r) {
		http.Error(w, "invalid form token", http.StatusForbidden)
		return
	}
	flash := "started"
	switch err := s.Trigger(r.PathValue("name")); {
	case errors.Is(err, ErrUnknownPipeline):
		http.Error(w, "unknown pipeline", http.StatusNotFound)
		return
	case errors.Is(err, ErrRunning):
		flash = "running"
	case err != nil:
		s.internalError(w, r, "trigger", err)
		return
	}
	http.Redirect(w, r, "/?flash="+flash, http.StatusSeeOther)
}

func (s *Server) formCancel(w http.ResponseWriter, r *http.Request) {
	if !s.checkCSRF(r) {
		http.Error(w, "invalid form token", http.StatusForbidden)
		return
	}
	id := r.PathValue("id")
	flash := "cancelling"
	switch err := s.Cancel(r.Context(), id); {
	case errors.Is(err, state.ErrNotFound):
		http.Error(w, "no such run", http.StatusNotFound)
		return
	case errors.Is(err, ErrRunOver):
		flash = "over"
	case errors.Is(err, ErrRunElsewhere):
		flash = "elsewhere"
	case err != nil:
		s.internalError(w, r, "cancel", err)
		return
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(id)+"?flash="+flash, http.StatusSeeOther)
}

func (s *Server) pageLogin(w http.ResponseWriter, r *http.Request) {
	if s.token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, "login", map[string]any{"Title": "sign in", "Failed": r.URL.Query().Get("failed") != ""})
}

func (s *Server) formLogin(w http.ResponseWriter, r *http.Request) {
	if s.token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Header.Set("Authorization", "Bearer "+r.PostFormValue("token"))
	if !s.authorized(r) {
		http.Redirect(w, r, "/login?failed=1", http.StatusSeeOther)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.derived("session"), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// chartMax is the number of runs the dashboard's chart shows.
const chartMax = 60

// chart is the server-rendered SVG chart of resources per run over time.
type chart struct {
	Width, Height int
	Left, Bottom  int // plot area edges
	Top, Right    int
	Line          string // polyline points
	Points        []chartPoint
	YTicks        []chartTick
	XTicks        []chartTick
}

type chartPoint struct {
	X, Y  float64
	Class string
	Title string
	Href  string
}

type chartTick struct {
	Pos    float64
	Label  string
	Anchor string // SVG text-anchor of an X label
}

// buildChart lays out the finished runs among runs (newest first) as points
// of resources over start time; nil when there are none.
func buildChart(runs []RunView) *chart {
	type pt struct {
		at  time.Time
		n   int64
		id  string
		cls string
	}
	var pts []pt
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		if r.report == nil {
			continue
		}
		pts = append(pts, pt{r.StartedAt, r.report.Resources, r.ID, statusClass(r.Status)})
	}
	if len(pts) == 0 {
		return nil
	}
	c := &chart{Width: 760, Height: 220, Left: 64, Right: 744, Top: 16, Bottom: 186}
	t0, t1 := pts[0].at, pts[len(pts)-1].at
	var maxN int64 = 1
	for _, p := range pts {
		maxN = max(maxN, p.n)
	}
	yMax := niceCeil(float64(maxN))
	span := t1.Sub(t0).Seconds()
	var line strings.Builder
	for i, p := range pts {
		x := float64(c.Left+c.Right) / 2
		if span > 0 {
			x = float64(c.Left) + float64(c.Right-c.Left)*p.at.Sub(t0).Seconds()/span
		}
		y := float64(c.Bottom) - float64(c.Bottom-c.Top)*float64(p.n)/yMax
		if i > 0 {
			line.WriteByte(' ')
		}
		fmt.Fprintf(&line, "%.1f,%.1f", x, y)
		c.Points = append(c.Points, chartPoint{X: x, Y: y, Class: p.cls, Href: "/runs/" + url.PathEscape(p.id),
			Title: fmt.Sprintf("%s: %s resources, %s", fmtTime(p.at), fmtCount(p.n), p.id)})
	}
	c.Line = line.String()
	for i := 0; i <= 4; i++ {
		v := yMax * float64(i) / 4
		c.YTicks = append(c.YTicks, chartTick{Pos: float64(c.Bottom) - float64(c.Bottom-c.Top)*float64(i)/4, Label: fmtCount(int64(v))})
	}
	layout := "2006-01-02 15:04"
	if t1.Sub(t0) < time.Hour && t0.UTC().YearDay() == t1.UTC().YearDay() {
		layout = "2006-01-02 15:04:05"
	}
	c.XTicks = append(c.XTicks, chartTick{Pos: float64(c.Left), Label: t0.UTC().Format(layout), Anchor: "start"})
	if span > 0 {
		c.XTicks = append(c.XTicks, chartTick{Pos: float64(c.Right), Label: t1.UTC().Format(layout), Anchor: "end"})
	}
	return c
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// statusClass maps a run status to its CSS class.
func statusClass(status string) string {
	switch state.RunStatus(status) {
	case state.RunSucceeded:
		return "ok"
	case state.RunPartial:
		return "warn"
	case state.RunFailed:
		return "bad"
	case state.RunCancelled:
		return "muted"
	}
	return "busy"
}

func fmtTime(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return "—"
		}
		t = *x
	default:
		return "—"
	}
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func fmtDuration(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// fmtCount writes n with thin-space thousands separators.
func fmtCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// refRow is one line of a run page's referential-integrity table.
type refRow struct {
	Path string
	*pipeline.PathIntegrity
}

// integrityRows lists the reference paths of a snapshot, those with
// unresolved references first, at most 50.
func integrityRows(rep *pipeline.SnapshotReport) []refRow {
	if rep == nil {
		return nil
	}
	rows := make([]refRow, 0, len(rep.Integrity.Paths))
	for p, c := range rep.Integrity.Paths {
		rows = append(rows, refRow{p, c})
	}
	sort.Slice(rows, func(a, b int) bool {
		if rows[a].Unresolved != rows[b].Unresolved {
			return rows[a].Unresolved > rows[b].Unresolved
		}
		return rows[a].Path < rows[b].Path
	})
	return rows[:min(len(rows), 50)]
}
