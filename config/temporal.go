package config

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Temporal is the "temporal:" section: the Temporal service that runs the
// pipelines as durable workflows ("fhirdeid worker", and "fhirdeid run"
// starting a workflow instead of running in process).
type Temporal struct {
	// HostPort is the frontend's address, host:port.
	HostPort string `yaml:"hostPort"`
	// Namespace is the Temporal namespace (default "default").
	Namespace string `yaml:"namespace"`
	// TaskQueue is the task queue of fhirdeid's workers (default
	// "fhirdeid").
	TaskQueue string `yaml:"taskQueue"`
	// APIKey authenticates to the service (Temporal Cloud); write it as
	// ${VARIABLE}, or use APIKeyFile.
	APIKey     string `yaml:"apiKey"`
	APIKeyFile string `yaml:"apiKeyFile"`
	// TLS secures the connection; it is on when any of its keys is set
	// (and always with an API key).
	TLS TemporalTLS `yaml:"tls"`
	// Concurrency is the number of files of one run handed to the workers
	// at once, across all of them: each is processed, or waits in the task
	// queue for a worker's free slot (workerFiles), so that a worker finds
	// its next file the moment one ends (default: the pipeline's
	// concurrency when it sets one, else 2 × workerFiles, two workers'
	// files). It bounds the run's downloads at once.
	Concurrency int `yaml:"concurrency"`
	// WorkerFiles is the number of files one worker process handles at
	// once (default 4: each on all its cores; the others fill the gaps
	// while one waits between activities).
	WorkerFiles int `yaml:"workerFiles"`
	// HostFiles is the number of files one worker process downloads at
	// once from one host, across all its pipelines (default: no cap but
	// workerFiles).
	HostFiles int `yaml:"hostFiles"`
	// HeartbeatTimeout is how long a file may go without a heartbeat before
	// another worker takes it over (default "1m").
	HeartbeatTimeout string `yaml:"heartbeatTimeout"`
	// UI is the base URL of the Temporal web UI, to which fhirdeid serve's
	// dashboard links each run (default: for a loopback hostPort, the dev
	// server's UI at the port 1000 above it; otherwise no links).
	UI string `yaml:"ui"`
}

// TemporalTLS are the TLS settings of the connection to Temporal.
type TemporalTLS struct {
	// Enabled turns TLS on with the system's roots.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the roots that sign the server's
	// certificate (default: the system's).
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are the client certificate and key (mTLS).
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"serverName"`
}

// Default Temporal settings.
const (
	DefaultNamespace = "default"
	DefaultTaskQueue = "fhirdeid"
)

// check validates the section without reading files or contacting the
// service, fills in defaults and makes paths absolute against dir.
func (t *Temporal) check(field, dir string) *Error {
	if t.HostPort == "" {
		return &Error{Field: field + ".hostPort", Msg: "missing (host:port of the Temporal frontend, 127.0.0.1:7233 for a local dev server)"}
	}
	host, port, err := net.SplitHostPort(t.HostPort)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
		return &Error{Field: field + ".hostPort", Msg: "must be host:port"}
	}
	if t.Namespace == "" {
		t.Namespace = DefaultNamespace
	}
	if t.TaskQueue == "" {
		t.TaskQueue = DefaultTaskQueue
	}
	if !validName.MatchString(t.Namespace) {
		return &Error{Field: field + ".namespace", Msg: "a namespace has letters, digits, '.', '_' and '-' only"}
	}
	if !validName.MatchString(t.TaskQueue) {
		return &Error{Field: field + ".taskQueue", Msg: "a task queue has letters, digits, '.', '_' and '-' only"}
	}
	if t.APIKey != "" && t.APIKeyFile != "" {
		return &Error{Field: field, Msg: "apiKey and apiKeyFile exclude each other"}
	}
	if (t.TLS.CertFile == "") != (t.TLS.KeyFile == "") {
		return &Error{Field: field + ".tls", Msg: "certFile and keyFile go together"}
	}
	for _, p := range []*string{&t.APIKeyFile, &t.TLS.CAFile, &t.TLS.CertFile, &t.TLS.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if t.Concurrency < 0 {
		return &Error{Field: field + ".concurrency", Msg: "must not be negative"}
	}
	if t.WorkerFiles < 0 {
		return &Error{Field: field + ".workerFiles", Msg: "must not be negative"}
	}
	if t.HostFiles < 0 {
		return &Error{Field: field + ".hostFiles", Msg: "must not be negative"}
	}
	if t.UI != "" {
		if u, err := url.Parse(t.UI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &Error{Field: field + ".ui", Msg: "must be an http(s) URL such as https://temporal.example.org"}
		}
	}
	if t.HeartbeatTimeout != "" {
		if d, err := ParseDuration(t.HeartbeatTimeout); err != nil || d < 0 {
			return &Error{Field: field + ".heartbeatTimeout", Msg: "must be a duration such as 1m"}
		}
	}
	return nil
}

// UsesTLS reports whether the connection uses TLS.
func (t *Temporal) UsesTLS() bool {
	s := t.TLS
	return s.Enabled || s.CAFile != "" || s.CertFile != "" || s.ServerName != "" || t.APIKey != "" || t.APIKeyFile != ""
}

// TLSConfig builds the TLS configuration of a checked section, reading its
// files; nil when TLS is off. Errors name the setting, never a file's
// content.
func (t *Temporal) TLSConfig(field string) (*tls.Config, error) {
	if !t.UsesTLS() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.TLS.ServerName}
	if t.TLS.CAFile != "" {
		pem, err := os.ReadFile(t.TLS.CAFile)
		if err != nil {
			return nil, &Error{Field: field + ".tls.caFile", Msg: "cannot read the file"}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &Error{Field: field + ".tls.caFile", Msg: "holds no PEM certificate"}
		}
		c.RootCAs = pool
	}
	if t.TLS.CertFile != "" {
		if _, err := os.Stat(t.TLS.CertFile); err != nil {
			return nil, &Error{Field: field + ".tls.certFile", Msg: "cannot read the file"}
		}
		if _, err := os.Stat(t.TLS.KeyFile); err != nil {
			return nil, &Error{Field: field + ".tls.keyFile", Msg: "cannot read the file"}
		}
		cert, err := tls.LoadX509KeyPair(t.TLS.CertFile, t.TLS.KeyFile)
		if err != nil {
			return nil, &Error{Field: field + ".tls", Msg: "certFile and keyFile are not a matching PEM certificate and key"}
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Key returns the API key of a checked section ("" for none), reading
// apiKeyFile.
func (t *Temporal) Key(field string) (string, error) {
	if t.APIKeyFile != "" {
		return ReadSecretFile(field+".apiKeyFile", t.APIKeyFile)
	}
	return t.APIKey, nil
}

// UIURL is the base URL of the Temporal web UI: UI, or for a loopback
// hostPort the development server's (port + 1000, as "temporal server
// start-dev" serves it), else "".
func (t *Temporal) UIURL() string {
	if t.UI != "" {
		return t.UI
	}
	host, port, err := net.SplitHostPort(t.HostPort)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n+1000 > 65535 {
		return ""
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return ""
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(n+1000))
}

// HeartbeatTimeoutDuration is the checked heartbeatTimeout (0: default).
func (t *Temporal) HeartbeatTimeoutDuration() time.Duration {
	d, _ := ParseDuration(t.HeartbeatTimeout)
	return d
}
