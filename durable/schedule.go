package durable

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// ScheduleSpec is when a pipeline runs, as a Temporal Schedule.
type ScheduleSpec struct {
	Pipeline string
	// Cron is the pipeline's cron expression (five fields, or Temporal's
	// "@every 3s" form), in TimeZone (IANA name, "" for UTC).
	Cron     string
	TimeZone string
	// CatchupWindow is how late a missed run may still start when the
	// Temporal service was unavailable at its time (minimum 10 s).
	CatchupWindow time.Duration
	// Options tune the runs' workflows.
	Options Options
}

// ScheduleID is the id of a pipeline's Schedule.
func ScheduleID(pipelineName string) string { return "fhirdeid-" + pipelineName }

// EnsureSchedule creates the pipeline's Schedule, or updates it to s when
// it exists (a changed cron takes effect without a restart of the
// workers). Runs never overlap: a run due while the previous one is still
// running is skipped. The scheduled workflows' ids are the pipeline's
// WorkflowID followed by the scheduled time. It reports whether the
// Schedule was created.
func EnsureSchedule(ctx context.Context, c client.Client, taskQueue string, s ScheduleSpec) (created bool, err error) {
	spec := client.ScheduleSpec{CronExpressions: []string{s.Cron}, TimeZoneName: s.TimeZone}
	action := &client.ScheduleWorkflowAction{ID: WorkflowID(s.Pipeline), Workflow: WorkflowName,
		Args: []any{Input{Pipeline: s.Pipeline, Options: s.Options}}, TaskQueue: taskQueue, Memo: memo(s.Pipeline)}
	window := max(s.CatchupWindow, 10*time.Second)
	_, err = c.ScheduleClient().Create(ctx, client.ScheduleOptions{ID: ScheduleID(s.Pipeline), Spec: spec, Action: action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: window})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return false, fmt.Errorf("create the schedule of pipeline %s: %w", s.Pipeline, err)
	}
	h := c.ScheduleClient().GetHandle(ctx, ScheduleID(s.Pipeline))
	err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		sched := in.Description.Schedule
		sched.Spec = &spec
		sched.Action = action
		if sched.Policy == nil {
			sched.Policy = &client.SchedulePolicies{}
		}
		sched.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
		sched.Policy.CatchupWindow = window
		return &client.ScheduleUpdate{Schedule: &sched}, nil
	}})
	if err != nil {
		return false, fmt.Errorf("update the schedule of pipeline %s: %w", s.Pipeline, err)
	}
	return false, nil
}
