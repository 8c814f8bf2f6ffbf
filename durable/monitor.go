package durable

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/state"
)

// memoPipeline is the memo key that names a workflow's pipeline.
const memoPipeline = "pipeline"

// Monitor shows the pipelines' runs on Temporal to fhirdeid serve: it
// implements server.Remote over the visibility API (workflows of
// WorkflowName on the task queue), the progress query and the Schedules.
type Monitor struct {
	Client    client.Client
	Namespace string
	TaskQueue string
	// UI is the base URL of the Temporal web UI ("http://127.0.0.1:8233"),
	// "" for no links.
	UI string
	// Options returns the options of the runs of a pipeline that Start
	// starts (nil: the defaults).
	Options func(pipeline string) Options
	// QueryTimeout bounds the progress query of a running workflow
	// (default 3 s: a workflow whose workers are all down does not answer).
	QueryTimeout time.Duration

	mu     sync.Mutex
	closed map[string]*server.RemoteRun // closed executions by run id
}

var _ server.Remote = (*Monitor)(nil)

// query is the visibility query of the monitored workflows, with extra
// conditions.
func (m *Monitor) query(extra string) string {
	q := fmt.Sprintf("WorkflowType = '%s'", WorkflowName)
	if m.TaskQueue != "" && !strings.ContainsAny(m.TaskQueue, `'"\`) {
		q += fmt.Sprintf(" AND TaskQueue = '%s'", m.TaskQueue)
	}
	if extra != "" {
		q += " AND " + extra
	}
	return q
}

// list returns the runs that query finds, of pipelineName ("" for any),
// newest first, at most limit; executions that continued as new are left
// out (their last execution stands for the run).
func (m *Monitor) list(ctx context.Context, query, pipelineName string, limit int) ([]server.RemoteRun, error) {
	var out []server.RemoteRun
	var token []byte
	for page := 0; page < 20 && len(out) < limit; page++ {
		resp, err := m.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: m.Namespace,
			PageSize: 100, Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list the workflows of namespace %s: %w", m.Namespace, err)
		}
		for _, ex := range resp.Executions {
			if ex.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
				continue
			}
			name := pipelineOf(ex)
			if pipelineName != "" && name != pipelineName {
				continue
			}
			out = append(out, *m.remoteRun(ctx, ex, name))
			if len(out) == limit {
				break
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].StartedAt.After(out[b].StartedAt) })
	return out, nil
}

// scheduledSuffix is what a Schedule appends to its action's workflow id.
var scheduledSuffix = regexp.MustCompile(`-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

// pipelineOf names the pipeline of a workflow: its memo, else its id.
func pipelineOf(ex *workflowpb.WorkflowExecutionInfo) string {
	if p := ex.GetMemo().GetFields()[memoPipeline]; p != nil {
		var name string
		if DataConverter().FromPayload(p, &name) == nil && name != "" {
			return name
		}
	}
	id := strings.TrimPrefix(ex.GetExecution().GetWorkflowId(), "fhirdeid-")
	return scheduledSuffix.ReplaceAllString(id, "")
}

// remoteRun describes one execution; a closed one is read once.
func (m *Monitor) remoteRun(ctx context.Context, ex *workflowpb.WorkflowExecutionInfo, name string) *server.RemoteRun {
	wid, rid := ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId()
	m.mu.Lock()
	if r := m.closed[rid]; r != nil {
		m.mu.Unlock()
		return r
	}
	m.mu.Unlock()
	st := ex.GetStatus()
	r := &server.RemoteRun{ID: rid, Pipeline: name, StartedAt: ex.GetStartTime().AsTime(),
		Workflow: &server.WorkflowRef{ID: wid, RunID: rid, Status: statusName(st), URL: m.link(wid, rid)}}
	if st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		r.Running, r.Status = true, string(state.RunExporting)
		timeout := m.QueryTimeout
		if timeout <= 0 {
			timeout = 3 * time.Second
		}
		qctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		v, err := m.Client.QueryWorkflow(qctx, wid, rid, QueryProgress)
		var pr Progress
		if err == nil && v.Get(&pr) == nil {
			r.Folder = pr.Run
			r.Progress = pipeline.Progress{Run: pr.Run, FilesDone: pr.FilesDone, FilesTotal: pr.FilesTotal,
				Resources: pr.Resources, BytesIn: pr.BytesIn, BytesOut: pr.BytesOut}
			switch pr.Phase {
			case "processing":
				r.Status = string(state.RunProcessing)
			case "committing":
				r.Status = string(state.RunCommitting)
			}
		}
		return r
	}
	r.FinishedAt = ex.GetCloseTime().AsTime()
	var rep *pipeline.Report
	err := m.Client.GetWorkflow(ctx, wid, rid).Get(ctx, &rep)
	switch {
	case err == nil && rep != nil:
		r.Report, r.Folder, r.Status = rep, rep.Run, rep.Status
		if !rep.StartedAt.IsZero() {
			r.StartedAt = rep.StartedAt // the run's, not its last execution's
		}
	case st == enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED || st == enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED || isOverlap(err):
		r.Status = string(state.RunCancelled)
	default:
		r.Status = string(state.RunFailed)
		if rep := ChecksReport(err); rep != nil {
			// Kept unpublished by its checks: the report says why.
			r.Report, r.Folder = rep, rep.Run
		}
	}
	if err != nil {
		r.Error = failureText(err)
	}
	if ctx.Err() == nil {
		m.mu.Lock()
		if m.closed == nil {
			m.closed = map[string]*server.RemoteRun{}
		}
		m.closed[rid] = r
		m.mu.Unlock()
	}
	return r
}

// isOverlap reports whether err is the failure of a run skipped because
// another was in progress.
func isOverlap(err error) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == ErrTypeOverlap
}

// failureText is the innermost message of a workflow's failure: the
// activity's own, which the pipeline writes without resource values.
func failureText(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// statusName is Temporal's name of an execution status ("Running").
func statusName(st enumspb.WorkflowExecutionStatus) string { return st.String() }

// link is the execution's page in the Temporal UI, "" without a UI.
func (m *Monitor) link(wid, rid string) string {
	if m.UI == "" {
		return ""
	}
	return strings.TrimSuffix(m.UI, "/") + "/namespaces/" + url.PathEscape(m.Namespace) + "/workflows/" +
		url.PathEscape(wid) + "/" + url.PathEscape(rid) + "/history"
}

// Runs implements server.Remote.
func (m *Monitor) Runs(ctx context.Context, pipelineName string, limit int) ([]server.RemoteRun, error) {
	return m.list(ctx, m.query(""), pipelineName, limit)
}

// runIDPattern is what a Temporal run id looks like (a UUID); anything
// else is not looked up, so that no id reaches a query unchecked.
var runIDPattern = regexp.MustCompile(`^[0-9a-fA-F-]{8,64}$`)

// Run implements server.Remote: id is the execution's run id.
func (m *Monitor) Run(ctx context.Context, id string) (*server.RemoteRun, error) {
	if !runIDPattern.MatchString(id) {
		return nil, state.ErrNotFound
	}
	m.mu.Lock()
	r := m.closed[id]
	m.mu.Unlock()
	if r != nil {
		return r, nil
	}
	runs, err := m.list(ctx, m.query(fmt.Sprintf("RunId = '%s'", id)), "", 1)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		return nil, state.ErrNotFound
	}
	return &runs[0], nil
}

// running lists the runs of a pipeline in progress.
func (m *Monitor) running(ctx context.Context, name string) ([]server.RemoteRun, error) {
	return m.list(ctx, m.query("ExecutionStatus = 'Running'"), name, 10)
}

// InProgress returns the workflow id of a run of the pipeline in progress
// (the oldest when several are), "" when there is none.
func (m *Monitor) InProgress(ctx context.Context, name string) (string, error) {
	runs, err := m.running(ctx, name)
	if err != nil || len(runs) == 0 {
		return "", err
	}
	return runs[len(runs)-1].Workflow.ID, nil
}

// Earlier returns the workflow id of a run of the pipeline in progress
// that started before the execution (wid, rid) — or at the same time with
// a smaller workflow id —, "" when there is none. It is Activities.Earlier.
func (m *Monitor) Earlier(ctx context.Context, name, wid, rid string) (string, error) {
	d, err := m.Client.DescribeWorkflow(ctx, wid, rid)
	if err != nil {
		return "", fmt.Errorf("describe workflow %s: %w", wid, err)
	}
	own := d.WorkflowStartTime
	runs, err := m.running(ctx, name)
	if err != nil {
		return "", err
	}
	for _, r := range runs {
		w := r.Workflow
		if w.ID == wid {
			continue
		}
		if t := r.StartedAt; t.Before(own) || (t.Equal(own) && w.ID < wid) {
			return w.ID, nil
		}
	}
	return "", nil
}

// Start implements server.Remote: it starts a run unless one of the
// pipeline is in progress, scheduled or not (server.ErrRunning).
func (m *Monitor) Start(ctx context.Context, name string) error {
	cur, err := m.running(ctx, name)
	if err != nil {
		return err
	}
	if len(cur) > 0 {
		return server.ErrRunning
	}
	var o Options
	if m.Options != nil {
		o = m.Options(name)
	}
	_, err = Start(ctx, m.Client, m.TaskQueue, Input{Pipeline: name, Options: o})
	return err
}

// Cancel implements server.Remote.
func (m *Monitor) Cancel(ctx context.Context, id string) error {
	r, err := m.Run(ctx, id)
	if err != nil {
		return err
	}
	if !r.Running {
		return server.ErrRunOver
	}
	err = m.Client.CancelWorkflow(ctx, r.Workflow.ID, r.Workflow.RunID)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return server.ErrRunOver
	}
	return err
}

// NextRun implements server.Remote: the next action time of the
// pipeline's Schedule.
func (m *Monitor) NextRun(ctx context.Context, name string) (time.Time, error) {
	d, err := m.Client.ScheduleClient().GetHandle(ctx, ScheduleID(name)).Describe(ctx)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	if d.Schedule.State != nil && d.Schedule.State.Paused {
		return time.Time{}, nil
	}
	if len(d.Info.NextActionTimes) == 0 {
		return time.Time{}, nil
	}
	return d.Info.NextActionTimes[0], nil
}

// memo is the memo of a pipeline's workflows.
func memo(name string) map[string]any { return map[string]any{memoPipeline: name} }
