// Command histgaps reads a workflow history (temporal workflow show -o json)
// of a fhirdeid run and reports where the time between its ProcessFile
// activities goes: how long each waited from being scheduled to being
// started by a worker (dispatch), how long the workflow took to schedule
// the next file after one completed (workflow task turnaround), and the
// share of the processing phase during which the files' slots were busy.
//
// The workflow's concurrency is read from the history: the most files
// scheduled and not yet completed at once.
//
// Usage: go run ./bench/histgaps HISTORY.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

type event struct {
	EventID   string    `json:"eventId"`
	EventTime time.Time `json:"eventTime"`
	EventType string    `json:"eventType"`
	Scheduled *struct {
		ActivityType struct{ Name string } `json:"activityType"`
	} `json:"activityTaskScheduledEventAttributes"`
	Started *struct {
		ScheduledEventID string `json:"scheduledEventId"`
	} `json:"activityTaskStartedEventAttributes"`
	Completed *struct {
		ScheduledEventID string `json:"scheduledEventId"`
	} `json:"activityTaskCompletedEventAttributes"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: histgaps HISTORY.json")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "histgaps:", err)
		os.Exit(1)
	}
	var h struct{ Events []event }
	if err := json.Unmarshal(b, &h); err != nil {
		fmt.Fprintln(os.Stderr, "histgaps:", err)
		os.Exit(1)
	}
	type act struct{ scheduled, started, completed time.Time }
	if len(h.Events) == 0 {
		fmt.Fprintln(os.Stderr, "histgaps: an empty history")
		os.Exit(1)
	}
	begin, end := h.Events[0].EventTime, h.Events[len(h.Events)-1].EventTime
	files := map[string]*act{}
	others := map[string]string{}
	var timeline []string
	var order []*act
	inflight, concurrency := 0, 0
	// The workflow task that follows each completed file: from the
	// completion to the task's scheduling, its start on a worker, its end.
	var toWFScheduled, toWFStarted, wfRun []time.Duration
	var pendingDone, wfScheduled, wfStarted time.Time
	for _, e := range h.Events {
		switch strings.TrimPrefix(e.EventType, "EVENT_TYPE_") {
		case "WORKFLOW_TASK_SCHEDULED":
			if !pendingDone.IsZero() {
				wfScheduled = e.EventTime
				toWFScheduled = append(toWFScheduled, e.EventTime.Sub(pendingDone))
			}
		case "WORKFLOW_TASK_STARTED":
			if !wfScheduled.IsZero() {
				wfStarted = e.EventTime
				toWFStarted = append(toWFStarted, e.EventTime.Sub(wfScheduled))
			}
		case "WORKFLOW_TASK_COMPLETED":
			if !wfStarted.IsZero() {
				wfRun = append(wfRun, e.EventTime.Sub(wfStarted))
			}
			pendingDone, wfScheduled, wfStarted = time.Time{}, time.Time{}, time.Time{}
		}
		switch {
		case e.Scheduled != nil && e.Scheduled.ActivityType.Name != "ProcessFile":
			others[e.EventID] = e.Scheduled.ActivityType.Name
			timeline = append(timeline, fmt.Sprintf("%7.3f s %s scheduled", e.EventTime.Sub(begin).Seconds(), e.Scheduled.ActivityType.Name))
		case e.Started != nil && others[e.Started.ScheduledEventID] != "":
			timeline = append(timeline, fmt.Sprintf("%7.3f s %s started", e.EventTime.Sub(begin).Seconds(), others[e.Started.ScheduledEventID]))
		case e.Completed != nil && others[e.Completed.ScheduledEventID] != "":
			timeline = append(timeline, fmt.Sprintf("%7.3f s %s completed", e.EventTime.Sub(begin).Seconds(), others[e.Completed.ScheduledEventID]))
		case strings.HasPrefix(e.EventType, "EVENT_TYPE_TIMER_"):
			timeline = append(timeline, fmt.Sprintf("%7.3f s %s", e.EventTime.Sub(begin).Seconds(), strings.ToLower(strings.TrimPrefix(e.EventType, "EVENT_TYPE_"))))
		case e.Scheduled != nil && e.Scheduled.ActivityType.Name == "ProcessFile":
			a := &act{scheduled: e.EventTime}
			files[e.EventID] = a
			order = append(order, a)
			inflight++
			concurrency = max(concurrency, inflight)
		case e.Started != nil && files[e.Started.ScheduledEventID] != nil:
			files[e.Started.ScheduledEventID].started = e.EventTime
		case e.Completed != nil && files[e.Completed.ScheduledEventID] != nil:
			files[e.Completed.ScheduledEventID].completed = e.EventTime
			inflight--
			if pendingDone.IsZero() {
				pendingDone = e.EventTime
			}
		}
	}
	if len(order) == 0 {
		fmt.Fprintln(os.Stderr, "histgaps: no ProcessFile activity in the history")
		os.Exit(1)
	}
	var dispatch, turnaround []time.Duration
	var completions []time.Time
	first, last := order[0].scheduled, order[0].completed
	var busy time.Duration
	for _, a := range order {
		if a.started.IsZero() || a.completed.IsZero() {
			continue
		}
		dispatch = append(dispatch, a.started.Sub(a.scheduled))
		completions = append(completions, a.completed)
		busy += a.completed.Sub(a.started)
		if a.completed.After(last) {
			last = a.completed
		}
	}
	slices.SortFunc(completions, func(x, y time.Time) int { return x.Compare(y) })
	// Each file scheduled after the first batch follows a completion: the
	// latest completion at or before its scheduling.
	for _, a := range order[min(concurrency, len(order)):] {
		i, _ := slices.BinarySearchFunc(completions, a.scheduled, func(x, t time.Time) int {
			if x.After(t) {
				return 1
			}
			return -1
		})
		if i > 0 {
			turnaround = append(turnaround, a.scheduled.Sub(completions[i-1]))
		}
	}
	span := last.Sub(first)
	fmt.Printf("workflow %.2f s: %.2f s before the first file (start, kick-off, polls), files %.2f s, %.2f s after the last (checks, commit)\n",
		end.Sub(begin).Seconds(), first.Sub(begin).Seconds(), span.Seconds(), end.Sub(last).Seconds())
	fmt.Printf("other activities and timers:\n  %s\n", strings.Join(timeline, "\n  "))
	fmt.Printf("ProcessFile activities: %d, slots busy %.1f %% of the files' phase (%d at once)\n",
		len(dispatch), 100*busy.Seconds()/(span.Seconds()*float64(concurrency)), concurrency)
	fmt.Printf("dispatch (scheduled to started): %s\n", stats(dispatch))
	fmt.Printf("workflow turnaround (a file completed to the next scheduled): %s\n", stats(turnaround))
	fmt.Printf("  completed to workflow task scheduled: %s\n", stats(toWFScheduled))
	fmt.Printf("  workflow task scheduled to started on a worker: %s\n", stats(toWFStarted))
	fmt.Printf("  workflow task started to completed: %s\n", stats(wfRun))
}

func stats(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	return fmt.Sprintf("median %.1f ms, p90 %.1f ms, max %.1f ms, total %.2f s over %d",
		ms(d[len(d)/2]), ms(d[len(d)*9/10]), ms(d[len(d)-1]), sum.Seconds(), len(d))
}
