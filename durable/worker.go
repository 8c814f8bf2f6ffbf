package durable

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"fhirdeid/pipeline"
)

// ConnectOptions say how to reach the Temporal service.
type ConnectOptions struct {
	// HostPort is the frontend's address ("127.0.0.1:7233").
	HostPort string
	// Namespace is the Temporal namespace ("default").
	Namespace string
	// TLS, if set, secures the connection (mTLS with its certificates).
	TLS *tls.Config
	// APIKey, if set, authenticates to the service (Temporal Cloud).
	APIKey string
	// Logger receives the SDK's log; nil discards it.
	Logger *slog.Logger
	// Identity names this process in the workflow histories.
	Identity string
	// Field names the configuration's settings in errors ("temporal").
	Field string
	// Timeout bounds the connection and the namespace check (default 15 s).
	Timeout time.Duration
}

// DataConverter is the data converter of fhirdeid's workflows: JSON,
// compressed with zlib, so that the file lists and results of large
// manifests stay far below Temporal's payload limits. Every client and
// worker of one deployment must use it.
func DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(),
		converter.NewZlibCodec(converter.ZlibCodecOptions{AlwaysEncode: true}))
}

// Dial connects to the Temporal service and checks that the namespace
// exists. Errors name the setting at fault.
func Dial(ctx context.Context, o ConnectOptions) (client.Client, error) {
	field := o.Field
	if field == "" {
		field = "temporal"
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := client.Options{HostPort: o.HostPort, Namespace: o.Namespace, Identity: o.Identity,
		Logger: tlog.NewStructuredLogger(logger), DataConverter: DataConverter(),
		ConnectionOptions: client.ConnectionOptions{TLS: o.TLS}}
	if o.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(o.APIKey)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		return nil, dialError(field, o, err)
	}
	_, err = c.WorkflowService().DescribeNamespace(dctx, &workflowservice.DescribeNamespaceRequest{Namespace: o.Namespace})
	if err != nil {
		c.Close()
		return nil, dialError(field, o, err)
	}
	return c, nil
}

// dialError names the setting that a connection error points at.
func dialError(field string, o ConnectOptions, err error) error {
	var (
		nf *serviceerror.NamespaceNotFound
		pd *serviceerror.PermissionDenied
	)
	msg := err.Error()
	switch {
	case errors.As(err, &nf):
		return fmt.Errorf("%s.namespace: the Temporal service at %s has no namespace %q", field, o.HostPort, o.Namespace)
	case errors.As(err, &pd), status.Code(err) == codes.Unauthenticated:
		setting := field + ".apiKey"
		if o.APIKey == "" {
			setting = field + ".tls"
		}
		return fmt.Errorf("%s: the Temporal service at %s refused the credentials: %w", setting, o.HostPort, err)
	case o.TLS != nil && (strings.Contains(msg, "handshake") || strings.Contains(msg, "tls:") || strings.Contains(msg, "x509")):
		return fmt.Errorf("%s.tls: the TLS connection to %s failed (does the service use TLS, with these certificates?): %w", field, o.HostPort, err)
	case o.TLS == nil && (strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF")):
		return fmt.Errorf("%s.hostPort: %s closed the connection (does it require TLS? set %s.tls): %w", field, o.HostPort, field, err)
	}
	return fmt.Errorf("%s.hostPort: cannot reach the Temporal service at %s: %w", field, o.HostPort, err)
}

// DefaultWorkerFiles is the number of files a worker processes at once
// unless told otherwise: each file is de-identified on all the worker's
// cores, and the others keep them busy while one waits between activities
// (its next task, its download).
const DefaultWorkerFiles = 4

// WorkerOptions tune a worker.
type WorkerOptions struct {
	// MaxFiles is the number of files this worker processes at once
	// (default DefaultWorkerFiles).
	MaxFiles int
}

// NewWorker returns a worker of the task queue with the workflow and the
// activities registered; the caller runs it (worker.Run or Start/Stop).
func NewWorker(c client.Client, taskQueue string, acts *Activities, o WorkerOptions) worker.Worker {
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultWorkerFiles
	}
	w := worker.New(c, taskQueue, worker.Options{MaxConcurrentActivityExecutionSize: o.MaxFiles})
	Register(w, acts)
	return w
}

// Register registers the workflow and the activities with r.
func Register(r worker.Registry, acts *Activities) {
	r.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: WorkflowName})
	r.RegisterActivity(acts)
}

// WorkflowID is the id of a pipeline's workflow: one run of a pipeline at
// a time.
func WorkflowID(pipelineName string) string { return "fhirdeid-" + pipelineName }

// Start starts a run of in.Pipeline, or attaches to the run in progress
// (which then continues; "run" again after an interruption follows it).
func Start(ctx context.Context, c client.Client, taskQueue string, in Input) (client.WorkflowRun, error) {
	return c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       WorkflowID(in.Pipeline),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		Memo:                     memo(in.Pipeline),
	}, WorkflowName, in)
}

// Follow waits for run to end, calling progress (if set) about every
// period with the run's progress, and returns its report.
func Follow(ctx context.Context, c client.Client, run client.WorkflowRun, period time.Duration, progress func(Progress)) (*pipeline.Report, error) {
	// The progress goroutine has ended when Follow returns, so that the
	// caller may read what progress wrote without synchronising.
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	if progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(period)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case <-t.C:
				}
				v, err := c.QueryWorkflow(ctx, run.GetID(), "", QueryProgress)
				var pr Progress
				if err == nil && v.Get(&pr) == nil {
					progress(pr)
				}
			}
		}()
	}
	var rep *pipeline.Report
	if err := run.Get(ctx, &rep); err != nil {
		return nil, err
	}
	return rep, nil
}
