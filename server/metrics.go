package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"fhirdeid/state"
)

// metrics are the server's Prometheus metrics, in a registry of their own.
// Labels are pipeline names, outcomes and event names of the bulk client's
// fixed vocabulary: never a run id, a URL or a value.
type metrics struct {
	reg         *prometheus.Registry
	runs        *prometheus.CounterVec
	resources   *prometheus.CounterVec
	bytesIn     *prometheus.CounterVec
	bytesOut    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	exportWait  *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	inProgress  *prometheus.GaugeVec
	nextRun     *prometheus.GaugeVec
	assurance   *assuranceMetrics
}

// retryCauses are the bulk client events counted as retries when they say
// willRetry; anything else is counted as "other".
var retryCauses = map[string]bool{"kickoff": true, "status_error": true, "download_error": true}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirdeid_runs_total",
		Help: "Run attempts that ended, by pipeline and outcome (succeeded, partial, retryable, failed, cancelled)."},
		[]string{"pipeline", "outcome"})
	m.resources = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirdeid_resources_processed_total",
		Help: "Resources de-identified and stored."}, []string{"pipeline"})
	m.bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirdeid_bytes_read_total",
		Help: "Bytes of NDJSON read from the FHIR server (uncompressed)."}, []string{"pipeline"})
	m.bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirdeid_bytes_written_total",
		Help: "Bytes written to the destination (compressed)."}, []string{"pipeline"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fhirdeid_run_duration_seconds",
		Help:    "Duration of run attempts, by pipeline and outcome.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10)}, // 1 s … 3 days
		[]string{"pipeline", "outcome"})
	m.exportWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fhirdeid_export_wait_seconds",
		Help:    "Time from the kick-off (or the first status poll of a resumed run) to the export's completion on the server.",
		Buckets: prometheus.ExponentialBuckets(0.5, 4, 10)}, []string{"pipeline"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirdeid_retries_total",
		Help: "Requests to the FHIR server retried, by cause (kickoff, status_error, download_error)."},
		[]string{"pipeline", "cause"})
	m.lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fhirdeid_last_success_timestamp_seconds",
		Help: "Unix time at which the pipeline's last committed (succeeded or partial) run finished."}, []string{"pipeline"})
	m.inProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fhirdeid_run_in_progress",
		Help: "1 while a run of the pipeline is in progress."}, []string{"pipeline"})
	m.nextRun = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fhirdeid_next_run_timestamp_seconds",
		Help: "Unix time of the pipeline's next scheduled run."}, []string{"pipeline"})
	m.reg.MustRegister(m.runs, m.resources, m.bytesIn, m.bytesOut, m.duration, m.exportWait, m.retries,
		m.lastSuccess, m.inProgress, m.nextRun,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var names []string
	for _, j := range s.jobs {
		names = append(names, j.job.Name)
	}
	m.assurance = newAssuranceMetrics(m.reg, names)
	for _, j := range s.jobs {
		name := j.job.Name
		for _, o := range outcomes {
			m.runs.WithLabelValues(name, o)
		}
		m.resources.WithLabelValues(name)
		m.bytesIn.WithLabelValues(name)
		m.bytesOut.WithLabelValues(name)
		m.inProgress.WithLabelValues(name)
		for c := range retryCauses {
			m.retries.WithLabelValues(name, c)
		}
		// The last success survives restarts through the state database.
		if runs, err := s.db.Runs(context.Background(), name, 50); err == nil {
			for _, r := range runs {
				if r.Status == state.RunSucceeded || r.Status == state.RunPartial {
					m.lastSuccess.WithLabelValues(name).Set(float64(r.FinishedAt.UnixNano()) / 1e9)
					break
				}
			}
		}
	}
	return m
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) running(name string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.inProgress.WithLabelValues(name).Set(v)
}

func (m *metrics) setNext(name string, t time.Time) {
	if t.IsZero() {
		m.nextRun.DeleteLabelValues(name)
		return
	}
	m.nextRun.WithLabelValues(name).Set(float64(t.Unix()))
}

func (m *metrics) finished(name, outcome string, d time.Duration) {
	m.runs.WithLabelValues(name, outcome).Inc()
	m.duration.WithLabelValues(name, outcome).Observe(d.Seconds())
}

func (m *metrics) succeeded(name string, at time.Time) {
	m.lastSuccess.WithLabelValues(name).Set(float64(at.UnixNano()) / 1e9)
}

func (m *metrics) processed(name string, resources, in, out int64) {
	if resources > 0 {
		m.resources.WithLabelValues(name).Add(float64(resources))
	}
	if in > 0 {
		m.bytesIn.WithLabelValues(name).Add(float64(in))
	}
	if out > 0 {
		m.bytesOut.WithLabelValues(name).Add(float64(out))
	}
}

// eventSink returns a bulk.EventSink that counts retries and measures the
// export wait of one run attempt.
func (m *metrics) eventSink(name string, clock Clock) *eventSink {
	return &eventSink{m: m, name: name, clock: clock}
}

// eventSink turns bulk client events into metrics. It reads only the event
// name and the willRetry flag.
type eventSink struct {
	m     *metrics
	name  string
	clock Clock

	mu      sync.Mutex
	waiting time.Time
}

// Event implements bulk.EventSink.
func (e *eventSink) Event(id string, detail map[string]any) {
	if retry, _ := detail["willRetry"].(bool); retry {
		cause := id
		if !retryCauses[cause] {
			cause = "other"
		}
		e.m.retries.WithLabelValues(e.name, cause).Inc()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch id {
	case "kickoff", "status_progress", "status_error":
		if e.waiting.IsZero() {
			e.waiting = e.clock.Now()
		}
	case "status_complete":
		if !e.waiting.IsZero() {
			e.m.exportWait.WithLabelValues(e.name).Observe(e.clock.Now().Sub(e.waiting).Seconds())
			e.waiting = time.Time{}
		}
	}
}

// errNotReady is the readiness failure when the state database does not
// answer.
var errNotReady = errors.New("state database unreachable")
