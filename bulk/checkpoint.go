package bulk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File kinds of a manifest.
const (
	KindOutput  = "output"
	KindDeleted = "deleted"
	KindError   = "error"
)

// Checkpoint is the durable state of one export, saved the moment each
// thing is known, so that a re-run after a crash continues the same export:
// it polls the known status URL instead of kicking off again, and downloads
// only the files not yet stored. It never holds a secret.
type Checkpoint struct {
	// Version is the checkpoint format version (1).
	Version int `json:"version"`
	// ExportID identifies the export in log.ndjson.
	ExportID string `json:"exportId"`
	// Request is the kick-off request; a re-run with another request does
	// not resume this export.
	Request Request `json:"request"`
	// KickoffURL is the kick-off URL, with its query for a GET.
	KickoffURL string `json:"kickoffUrl,omitempty"`
	// KickoffStarted is set just before the kick-off request is sent; a
	// checkpoint with it but no StatusURL means the kick-off's answer was
	// lost and a new kick-off is needed.
	KickoffStarted time.Time `json:"kickoffStarted,omitzero"`
	// StatusURL is the Content-Location of the accepted kick-off.
	StatusURL string `json:"statusUrl,omitempty"`
	// KickedOffAt is when the kick-off was accepted; the poll deadline
	// counts from it.
	KickedOffAt time.Time `json:"kickedOffAt,omitzero"`
	// TransactionTime is the manifest's transactionTime.
	TransactionTime string `json:"transactionTime,omitempty"`
	// Manifest is the complete manifest, all pages merged.
	Manifest *Manifest `json:"manifest,omitempty"`
	// Files is the per-file state, in manifest order.
	Files []FileState `json:"files,omitempty"`
	// Deleted is true once the DELETE of the status URL was sent.
	Deleted bool `json:"deleted,omitempty"`
	// Complete is true once every file is stored and the export finalised.
	Complete bool `json:"complete,omitempty"`
	// CompletedAt is when the export completed.
	CompletedAt time.Time `json:"completedAt,omitzero"`
	// LastSuccessfulTransactionTime is the transactionTime of the last export
	// that completed fully, carried from run to run: --since auto uses it.
	LastSuccessfulTransactionTime string `json:"lastSuccessfulTransactionTime,omitempty"`
	// PreviousFiles are the local names written by the previous completed
	// export, removed when the next one completes.
	PreviousFiles []string `json:"previousFiles,omitempty"`
}

// FileState is the state of one manifest file.
type FileState struct {
	// Kind is output, deleted or error.
	Kind string `json:"kind"`
	// Type is the manifest type.
	Type string `json:"type,omitempty"`
	// URL is the download URL.
	URL string `json:"url"`
	// Count is the manifest count, if any.
	Count *int64 `json:"count,omitempty"`
	// Name is the local name, such as "Patient.000.ndjson.gz" or
	// "deleted/Bundle.000.ndjson.gz".
	Name string `json:"name"`
	// Done is true once the file is durably stored.
	Done bool `json:"done,omitempty"`
	// Resources is the number of lines stored.
	Resources int64 `json:"resources,omitempty"`
	// Bytes is the size of the decompressed NDJSON.
	Bytes int64 `json:"bytes,omitempty"`
	// Severity counts the issues of an error file by severity.
	Severity map[string]int64 `json:"severity,omitempty"`
	// Error is the last failure, if any (never resource content).
	Error string `json:"error,omitempty"`
}

// CheckpointStore loads and saves the checkpoint of one export destination.
// Save must be atomic: after a crash Load returns either the previous or
// the new checkpoint, whole.
type CheckpointStore interface {
	// Load returns the saved checkpoint, or nil and no error if there is none.
	Load() (*Checkpoint, error)
	// Save stores cp durably.
	Save(cp *Checkpoint) error
}

// FileCheckpointStore keeps the checkpoint in a JSON file, written to a
// temporary file, synced and renamed over the old one.
type FileCheckpointStore struct {
	// Path is the checkpoint file.
	Path string
}

// Load reads the checkpoint file.
func (s FileCheckpointStore) Load() (*Checkpoint, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("load checkpoint %s: not valid JSON: %w", s.Path, err)
	}
	if cp.Version != 1 {
		return nil, fmt.Errorf("load checkpoint %s: unknown version %d", s.Path, cp.Version)
	}
	return &cp, nil
}

// Save writes the checkpoint atomically.
func (s FileCheckpointStore) Save(cp *Checkpoint) error {
	b, err := json.MarshalIndent(cp, "", " ")
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := WriteFileAtomic(s.Path, append(b, '\n')); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it,
// renames it to path and syncs the directory.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
