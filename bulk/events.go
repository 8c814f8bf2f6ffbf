package bulk

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// EventSink receives the events of an export, in the log.ndjson vocabulary
// of the SMART bulk-data-client: kickoff, status_progress, status_error,
// status_page_complete, status_complete, manifest_complete,
// download_request, download_complete, download_error, export_complete.
// Details never hold secrets or resource content; URLs have no query.
type EventSink interface {
	Event(eventID string, detail map[string]any)
}

// NDJSONLog writes events as log.ndjson lines:
// {"exportId","timestamp","eventId","eventDetail"}.
type NDJSONLog struct {
	// ExportID names the export on every line.
	ExportID string
	// Clock stamps the lines (nil: system clock).
	Clock Clock

	mu  sync.Mutex
	w   io.Writer
	err error
}

// NewNDJSONLog returns a log writing to w.
func NewNDJSONLog(w io.Writer, exportID string) *NDJSONLog {
	return &NDJSONLog{w: w, ExportID: exportID}
}

// Event writes one line. Write errors are kept for Err.
func (l *NDJSONLog) Event(eventID string, detail map[string]any) {
	clk := l.Clock
	if clk == nil {
		clk = SystemClock{}
	}
	if detail == nil {
		detail = map[string]any{}
	}
	b, err := json.Marshal(struct {
		ExportID    string         `json:"exportId"`
		Timestamp   string         `json:"timestamp"`
		EventID     string         `json:"eventId"`
		EventDetail map[string]any `json:"eventDetail"`
	}{l.ExportID, clk.Now().UTC().Format(time.RFC3339Nano), eventID, detail})
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.err = err
		return
	}
	if _, err := l.w.Write(append(b, '\n')); err != nil && l.err == nil {
		l.err = err
	}
}

// Err returns the first write error.
func (l *NDJSONLog) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// SetExportID changes the export id of the following lines.
func (l *NDJSONLog) SetExportID(id string) {
	l.mu.Lock()
	l.ExportID = id
	l.mu.Unlock()
}

// MultiSink sends each event to every sink.
type MultiSink []EventSink

// Event forwards the event.
func (m MultiSink) Event(id string, detail map[string]any) {
	for _, s := range m {
		if s != nil {
			s.Event(id, detail)
		}
	}
}
