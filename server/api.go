package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// RunView is a run as the API lists it: status, counts and duration.
type RunView struct {
	ID              string     `json:"id"`
	Pipeline        string     `json:"pipeline"`
	Status          string     `json:"status"`
	Running         bool       `json:"running"`
	StartedAt       time.Time  `json:"startedAt"`
	FinishedAt      *time.Time `json:"finishedAt,omitempty"`
	DurationSeconds float64    `json:"durationSeconds"`
	Resources       int64      `json:"resources"`
	Deleted         int64      `json:"deletedBundles"`
	BytesIn         int64      `json:"bytesIn"`
	BytesOut        int64      `json:"bytesOut"`
	FilesDone       int        `json:"filesDone,omitempty"`
	FilesTotal      int        `json:"filesTotal,omitempty"`
	Since           string     `json:"since,omitempty"`
	TransactionTime string     `json:"transactionTime,omitempty"`
	Warnings        int        `json:"warnings"`
	Error           string     `json:"error,omitempty"`
	// Folder is the run's folder in the destination, for a run on a
	// workflow engine (whose ID is the engine's).
	Folder string `json:"folder,omitempty"`
	// Workflow identifies a run on a workflow engine (Temporal): workflow
	// id, run id, status and a link to the engine's UI.
	Workflow *WorkflowRef `json:"workflow,omitempty"`

	report *pipeline.Report
}

// PipelineView is a pipeline as the API lists it.
type PipelineView struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"`
	// Timezone is the time zone of a cron schedule.
	Timezone string     `json:"timezone,omitempty"`
	NextRun  *time.Time `json:"nextRun,omitempty"`
	Running  bool       `json:"running"`
	// CurrentRun is the id of the run in progress, once known.
	CurrentRun string   `json:"currentRun,omitempty"`
	LastRun    *RunView `json:"lastRun,omitempty"`
}

// FileView is one file of a run's manifest, without its URL (download URLs
// may be signed).
type FileView struct {
	Kind      string `json:"kind"`
	Type      string `json:"type"`
	Seq       int    `json:"seq"`
	Status    string `json:"status"`
	Resources int64  `json:"resources"`
	BytesIn   int64  `json:"bytesIn"`
	BytesOut  int64  `json:"bytesOut"`
	Attempts  int    `json:"attempts"`
	Error     string `json:"error,omitempty"`
}

// RunDetail is one run with its report and files.
type RunDetail struct {
	Run    RunView          `json:"run"`
	Report *pipeline.Report `json:"report,omitempty"`
	Files  []FileView       `json:"files"`
	// Snapshot is the merged snapshot published after the run, with its
	// referential-integrity counts.
	Snapshot *pipeline.SnapshotReport `json:"snapshot,omitempty"`
}

// runView builds the view of r, with live progress if it is running here.
func (s *Server) runView(r *state.Run) RunView {
	v := RunView{ID: r.ID, Pipeline: r.Source, Status: string(r.Status), StartedAt: r.StartedAt,
		Since: r.Since, TransactionTime: r.TransactionTime, Error: r.Error}
	if !r.FinishedAt.IsZero() {
		f := r.FinishedAt
		v.FinishedAt = &f
		v.DurationSeconds = f.Sub(r.StartedAt).Seconds()
	} else {
		v.DurationSeconds = s.clock.Now().Sub(r.StartedAt).Seconds()
	}
	if len(r.Report) > 0 {
		var rep pipeline.Report
		if err := json.Unmarshal(r.Report, &rep); err == nil {
			v.report = &rep
			v.Resources, v.Deleted, v.BytesIn, v.BytesOut = rep.Resources, rep.Deleted, rep.BytesIn, rep.BytesOut
			v.Warnings = len(rep.Warnings)
			if rep.DurationSeconds > 0 {
				v.DurationSeconds = rep.DurationSeconds
			}
		}
	}
	if !r.Status.Terminal() {
		if j := s.byName[r.Source]; j != nil {
			sn := j.snapshot()
			if sn.Running && (sn.RunID == "" || sn.RunID == r.ID) {
				v.Running = true
				v.Resources, v.BytesIn, v.BytesOut = sn.Progress.Resources, sn.Progress.BytesIn, sn.Progress.BytesOut
				v.FilesDone, v.FilesTotal = sn.Progress.FilesDone, sn.Progress.FilesTotal
			}
		}
	}
	return v
}

// pipelineViews lists the pipelines with their last run.
func (s *Server) pipelineViews(ctx context.Context) ([]PipelineView, error) {
	out := make([]PipelineView, 0, len(s.jobs))
	for _, j := range s.jobs {
		sn := j.snapshot()
		pv := PipelineView{Name: sn.Name, Schedule: sn.Schedule, Timezone: sn.Timezone, Running: sn.Running || sn.Pending, CurrentRun: sn.RunID}
		if !sn.Next.IsZero() {
			n := sn.Next
			pv.NextRun = &n
		}
		if j.job.Remote != nil {
			rr, err := s.remoteRuns(ctx, sn.Name, 1)
			if err != nil {
				return nil, err
			}
			if len(rr) > 0 {
				pv.LastRun = &rr[0]
				if rr[0].Running {
					pv.Running, pv.CurrentRun = true, rr[0].ID
				}
				out = append(out, pv)
				continue
			}
		}
		runs, err := s.db.Runs(ctx, sn.Name, 1)
		if err != nil {
			return nil, err
		}
		if len(runs) > 0 {
			rv := s.runView(runs[0])
			pv.LastRun = &rv
			if sn.Running && pv.CurrentRun == "" && !runs[0].Status.Terminal() {
				pv.CurrentRun = runs[0].ID
			}
		}
		out = append(out, pv)
	}
	return out, nil
}

// listRuns returns the runs of pipeline ("" for all), newest first, skipping
// offset, at most limit, and whether there are more.
func (s *Server) listRuns(ctx context.Context, pipelineName string, offset, limit int) ([]RunView, bool, error) {
	runs, err := s.db.Runs(ctx, pipelineName, offset+limit+1)
	if err != nil {
		return nil, false, err
	}
	out := make([]RunView, len(runs), len(runs)+offset+limit+1)
	for i, r := range runs {
		out[i] = s.runView(r)
	}
	// The runs of a workflow engine are merged in by start time.
	remote, err := s.remoteRuns(ctx, pipelineName, offset+limit+1)
	if err != nil {
		return nil, false, err
	}
	if len(remote) > 0 {
		out = append(out, remote...)
		sortRuns(out)
	}
	more := len(out) > offset+limit
	offset = min(offset, len(out))
	return out[offset:min(len(out), offset+limit)], more, nil
}

// runDetail returns a run with its report and files.
func (s *Server) runDetail(ctx context.Context, id string) (*RunDetail, error) {
	r, err := s.db.Run(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		rr, _, rerr := s.remoteRun(ctx, id)
		if rerr != nil {
			return nil, rerr
		}
		// The files of a durable run are in the engine's history, not
		// listed here; its snapshot is the destination's.
		d := &RunDetail{Run: s.remoteView(rr), Files: []FileView{}}
		d.Report = d.Run.report
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	files, err := s.db.Files(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &RunDetail{Run: s.runView(r), Files: make([]FileView, len(files))}
	d.Report = d.Run.report
	if sn, err := s.db.SnapshotOfRun(ctx, r.Source, r.ID); err == nil && len(sn.Report) > 0 {
		var rep pipeline.SnapshotReport
		if json.Unmarshal(sn.Report, &rep) == nil {
			d.Snapshot = &rep
		}
	}
	for i, f := range files {
		d.Files[i] = FileView{Kind: f.Kind, Type: f.Type, Seq: f.Seq, Status: string(f.Status), Resources: f.Resources,
			BytesIn: f.BytesIn, BytesOut: f.BytesOut, Attempts: f.Attempts, Error: f.Error}
	}
	return d, nil
}

func (s *Server) apiPipelines(w http.ResponseWriter, r *http.Request) {
	pv, err := s.pipelineViews(r.Context())
	if err != nil {
		s.internalError(w, r, "list pipelines", err)
		return
	}
	writeJSON(w, http.StatusOK, pv)
}

// intParam reads a non-negative integer query parameter.
func intParam(r *http.Request, name string, def, max int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return min(n, max), true
}

func (s *Server) apiRuns(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("pipeline")
	if name != "" && s.byName[name] == nil {
		httpError(w, r, http.StatusNotFound, "unknown pipeline")
		return
	}
	limit, ok1 := intParam(r, "limit", 50, 1000)
	offset, ok2 := intParam(r, "offset", 0, 1<<20)
	if !ok1 || !ok2 {
		httpError(w, r, http.StatusBadRequest, "limit and offset must be non-negative integers")
		return
	}
	if limit == 0 {
		limit = 50
	}
	runs, more, err := s.listRuns(r.Context(), name, offset, limit)
	if err != nil {
		s.internalError(w, r, "list runs", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Runs []RunView `json:"runs"`
		More bool      `json:"more"`
	}{runs, more})
}

func (s *Server) apiRun(w http.ResponseWriter, r *http.Request) {
	d, err := s.runDetail(r.Context(), r.PathValue("id"))
	if errors.Is(err, state.ErrNotFound) {
		httpError(w, r, http.StatusNotFound, "no such run")
		return
	}
	if err != nil {
		s.internalError(w, r, "read run", err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// apiRunLog serves the run's log.ndjson: from the destination once the run
// is committed, else the local file the pipeline appends to.
func (s *Server) apiRunLog(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	run, err := s.db.Run(ctx, r.PathValue("id"))
	if errors.Is(err, state.ErrNotFound) {
		// A run of a workflow engine: its log, if its commit wrote one.
		rr, j, rerr := s.remoteRun(ctx, r.PathValue("id"))
		if errors.Is(rerr, state.ErrNotFound) {
			httpError(w, r, http.StatusNotFound, "no such run")
			return
		}
		if rerr != nil {
			s.internalError(w, r, "read run", rerr)
			return
		}
		run = &state.Run{ID: rr.Folder, Source: rr.Pipeline}
		if rr.Folder == "" || j.job.Store == nil {
			httpError(w, r, http.StatusNotFound, "the run has no log")
			return
		}
		err = nil
	}
	if err != nil {
		s.internalError(w, r, "read run", err)
		return
	}
	j := s.byName[run.Source]
	if j == nil {
		httpError(w, r, http.StatusNotFound, "the run's pipeline is not configured")
		return
	}
	var body io.ReadCloser
	if j.job.Store != nil {
		if ok, err := j.job.Store.Committed(ctx, run.ID); err == nil && ok {
			body, err = j.job.Store.Open(ctx, storage.RunKey(run.ID, "log.ndjson"))
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.internalError(w, r, "open the run's log in the destination", err)
				return
			}
		}
	}
	if body == nil && j.job.LogDir != "" {
		f, err := os.Open(pipeline.LogPath(j.job.LogDir, run.Source, run.ID))
		if err == nil {
			body = f
		}
	}
	if body == nil {
		httpError(w, r, http.StatusNotFound, "the run has no log")
		return
	}
	defer body.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	io.Copy(w, body)
}

func (s *Server) apiTrigger(w http.ResponseWriter, r *http.Request) {
	switch err := s.Trigger(r.PathValue("name")); {
	case errors.Is(err, ErrUnknownPipeline):
		httpError(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrRunning):
		httpError(w, r, http.StatusConflict, err.Error())
	case err != nil:
		s.internalError(w, r, "trigger", err)
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"pipeline": r.PathValue("name"), "status": "starting"})
	}
}

func (s *Server) apiCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	switch err := s.Cancel(r.Context(), id); {
	case errors.Is(err, state.ErrNotFound):
		httpError(w, r, http.StatusNotFound, "no such run")
	case errors.Is(err, ErrRunOver), errors.Is(err, ErrRunElsewhere):
		httpError(w, r, http.StatusConflict, err.Error())
	case err != nil:
		s.internalError(w, r, "cancel", err)
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"run": id, "status": "cancelling"})
	}
}

// internalError logs err and answers 500 without its text.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error(what, "path", r.URL.Path, "err", err)
	httpError(w, r, http.StatusInternalServerError, what+": internal error (see the server log)")
}
