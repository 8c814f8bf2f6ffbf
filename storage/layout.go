package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"gocloud.dev/blob"
)

// RunKey returns the key of name inside the folder of run id.
func RunKey(run, name string) string { return run + "/" + name }

// OutputName is the name of the seq-th file of resource type typ in a run:
// "Patient.000.ndjson.gz".
func OutputName(typ string, seq int) string { return fmt.Sprintf("%s.%03d.ndjson.gz", typ, seq) }

// DeletedName is the name of the seq-th tombstone file of resource type typ:
// "deleted/Patient.000.ndjson.gz".
func DeletedName(typ string, seq int) string { return "deleted/" + OutputName(typ, seq) }

// Commit makes run visible: it writes the run's _SUCCESS marker with body
// (for instance a summary), then points "latest" at the run. Everything else
// of the run must be stored before. Commit is idempotent: committing a run
// again rewrites the marker and the pointer.
func (s *Store) Commit(ctx context.Context, run string, body []byte) error {
	if err := s.WriteAll(ctx, RunKey(run, SuccessMarker), "application/json", body); err != nil {
		return fmt.Errorf("storage: commit run %s: %w", run, err)
	}
	if err := s.WriteAll(ctx, LatestKey, "text/plain", []byte(run+"\n")); err != nil {
		return fmt.Errorf("storage: commit run %s: move latest: %w", run, err)
	}
	return nil
}

// Committed reports whether run has its _SUCCESS marker.
func (s *Store) Committed(ctx context.Context, run string) (bool, error) {
	return s.Exists(ctx, RunKey(run, SuccessMarker))
}

// Latest returns the id of the newest committed run, or ErrNotFound.
func (s *Store) Latest(ctx context.Context) (string, error) {
	data, err := s.ReadAll(ctx, LatestKey)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// Runs lists the run folders of the store with whether each is committed,
// in key order (run ids sort by time).
func (s *Store) Runs(ctx context.Context) ([]RunInfo, error) {
	it := s.bucket.List(&blob.ListOptions{Delimiter: "/"})
	var runs []RunInfo
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("storage: list runs: %w", err)
		}
		if !obj.IsDir {
			continue
		}
		id := strings.TrimSuffix(obj.Key, "/")
		if id == SnapshotsDir {
			continue
		}
		ok, err := s.Committed(ctx, id)
		if err != nil {
			return nil, err
		}
		runs = append(runs, RunInfo{ID: id, Committed: ok})
	}
	return runs, nil
}

// RunInfo describes one run folder.
type RunInfo struct {
	ID        string
	Committed bool
}

// List returns the keys under prefix, in order.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	var keys []string
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("storage: list %s: %w", prefix, err)
		}
		keys = append(keys, obj.Key)
	}
}
