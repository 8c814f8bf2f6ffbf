package durable

import (
	"strings"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistory replays the history of a run recorded from a
// Temporal dev server (testdata/history.json: "fhirdeid run" of a small
// synthetic export with one worker, exported with `temporal workflow show
// -o json`). A change to Workflow that would not replay — a new activity,
// a reordered timer — fails here: such a change must be versioned
// (workflow.GetVersion) so that runs in flight finish on the new workers.
func TestReplayRecordedHistory(t *testing.T) {
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: DataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: WorkflowName})
	// history.json was recorded before the privacy checks (version
	// "assure" 1), history-assure.json with them (an Assure activity
	// before Finish): both replay.
	for _, h := range []string{"testdata/history.json", "testdata/history-assure.json"} {
		if err := r.ReplayWorkflowHistoryFromJSONFile(nil, h); err != nil {
			t.Fatalf("%s: %v", h, err)
		}
	}
}

// TestReplayDetectsChange: the replay test would catch a workflow that
// schedules its steps differently.
func TestReplayDetectsChange(t *testing.T) {
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: DataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	changed := func(ctx workflow.Context, in Input) (string, error) {
		var a *Activities
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 1})
		// Kick-off first, without Start.
		var u string
		err := workflow.ExecuteActivity(ctx, a.KickOff, RunInput{Pipeline: in.Pipeline}).Get(ctx, &u)
		return u, err
	}
	r.RegisterWorkflowWithOptions(changed, workflow.RegisterOptions{Name: WorkflowName})
	err = r.ReplayWorkflowHistoryFromJSONFile(nil, "testdata/history.json")
	// TMPRL1100 is the SDK's code of non-determinism errors.
	if err == nil || !strings.Contains(err.Error(), "TMPRL1100") {
		t.Fatalf("replay of a changed workflow: %v, want a non-determinism error", err)
	}
}
