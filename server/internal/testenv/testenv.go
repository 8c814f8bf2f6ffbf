// Package testenv wires the pieces that the server's tests run against: an
// in-process Bulk Data server with a synthetic population, a state database,
// a local destination and server.Jobs whose pipelines de-identify with the
// built-in Safe Harbor configuration.
package testenv

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/state"
	"fhirdeid/storage"

	_ "gocloud.dev/blob/fileblob" // file:// destinations
)

// Env is a test environment.
type Env struct {
	// Bulk is the Bulk Data server; tests inject faults with its SetFaults.
	Bulk *bulktest.Server
	// Pop is the synthetic population it serves.
	Pop *synth.Population
	// Dir is the environment's temporary folder.
	Dir string
	// DB is the state database.
	DB *state.DB

	engine *anonymize.Engine
}

// New starts a Bulk Data server with patients synthetic patients and opens a
// state database, all closed when t ends.
func New(t testing.TB, patients int) *Env {
	t.Helper()
	return NewWith(t, patients, nil)
}

// NewWith is New with a function that adjusts the Bulk Data server's
// options (faults, authorisation) before it starts.
func NewWith(t testing.TB, patients int, adjust func(*bulktest.Options)) *Env {
	t.Helper()
	e := &Env{Dir: t.TempDir(), Pop: synth.Generate(synth.Options{Patients: patients})}
	var all [][]byte
	for _, typ := range e.Pop.Types() {
		all = append(all, e.Pop.Resources[typ]...)
	}
	opts := bulktest.Options{Resources: all, PartSize: 100}
	if adjust != nil {
		adjust(&opts)
	}
	srv, err := bulktest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	e.Bulk = srv
	e.DB, err = state.Open(context.Background(), filepath.Join(e.Dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.DB.Close() })
	cfg, err := anonymize.ParseConfig(defaultconfig.SafeHarbor(), anonymize.Options{FHIRVersion: "R4",
		Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	if e.engine, err = anonymize.NewEngine(cfg, anonymize.EngineOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// Dest returns the destination folder of the named pipeline.
func (e *Env) Dest(name string) string { return filepath.Join(e.Dir, "lake-"+name) }

// LogDir returns the local log folder of the pipelines.
func (e *Env) LogDir() string { return filepath.Join(e.Dir, "logs") }

// Job returns a job named name on schedule whose pipeline exports from the
// Bulk Data server with fast polling and retries. configure, if not nil,
// adjusts each pipeline built.
func (e *Env) Job(t testing.TB, name string, sched server.Schedule, configure func(*pipeline.Pipeline)) *server.Job {
	t.Helper()
	store, err := storage.Open(context.Background(), "file://"+filepath.ToSlash(e.Dest(name)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &server.Job{
		Name:     name,
		Schedule: sched,
		Store:    store,
		LogDir:   e.LogDir(),
		Open: func(ctx context.Context) (*pipeline.Pipeline, func() error, error) {
			c, err := bulk.NewClient(e.Bulk.URL(), http.DefaultClient)
			if err != nil {
				return nil, nil, err
			}
			c.Polling.InitialDelay, c.Polling.MinDelay, c.Polling.MaxDelay = 5*time.Millisecond, 5*time.Millisecond, 20*time.Millisecond
			c.Retries.BaseDelay, c.Retries.MaxDelay = 5*time.Millisecond, 20*time.Millisecond
			st, err := storage.Open(ctx, "file://"+filepath.ToSlash(e.Dest(name)))
			if err != nil {
				return nil, nil, err
			}
			d := pipeline.NewEngineDeidentifier(e.engine)
			d.Folder = name
			p := &pipeline.Pipeline{Name: name, Client: c, Deidentifier: d, Store: st, State: e.DB,
				LogDir: e.LogDir(), SinceAuto: false, Workers: 1, Concurrency: 2, LeaseTTL: 5 * time.Second}
			if configure != nil {
				configure(p)
			}
			return p, st.Close, nil
		},
	}
}
