package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"gocloud.dev/blob"
)

// Merged snapshots live beside the runs:
//
//	snapshots/<id>/Patient.000.ndjson.gz  the latest version of every resource
//	snapshots/<id>/manifest.json          a Bulk Data manifest of the snapshot
//	snapshots/<id>/snapshot.json          counts, runs, key fingerprints, integrity
//	current                               the id of the newest complete snapshot
//
// A snapshot folder is immutable once "current" names it; "current" moves
// only after every object of the new snapshot is stored, like "latest".

// SnapshotsDir is the folder holding the merged snapshots.
const SnapshotsDir = "snapshots"

// CurrentKey is the object holding the id of the newest complete snapshot.
const CurrentKey = "current"

// SnapshotKey returns the key of name inside snapshot id's folder.
func SnapshotKey(id, name string) string { return SnapshotsDir + "/" + id + "/" + name }

// PublishSnapshot points "current" at snapshot id. Every object of the
// snapshot must be stored before.
func (s *Store) PublishSnapshot(ctx context.Context, id string) error {
	if err := s.WriteAll(ctx, CurrentKey, "text/plain", []byte(id+"\n")); err != nil {
		return fmt.Errorf("storage: publish snapshot %s: %w", id, err)
	}
	return nil
}

// Current returns the id of the published snapshot, or ErrNotFound.
func (s *Store) Current(ctx context.Context) (string, error) {
	data, err := s.ReadAll(ctx, CurrentKey)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(data))
	if id == "" || strings.ContainsAny(id, "/\\") || strings.Contains(id, "..") || len(id) > 128 {
		return "", fmt.Errorf("storage: %s does not name a snapshot", CurrentKey)
	}
	return id, nil
}

// Snapshots lists the ids of the snapshot folders, in key order.
func (s *Store) Snapshots(ctx context.Context) ([]string, error) {
	return s.dirs(ctx, SnapshotsDir+"/")
}

// DeleteSnapshot deletes every object of snapshot id's folder.
func (s *Store) DeleteSnapshot(ctx context.Context, id string) error {
	keys, err := s.List(ctx, SnapshotsDir+"/"+id+"/")
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// dirs lists the sub-folder names directly under prefix.
func (s *Store) dirs(ctx context.Context, prefix string) ([]string, error) {
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	var out []string
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("storage: list %s: %w", prefix, err)
		}
		if obj.IsDir {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(obj.Key, prefix), "/"))
		}
	}
}
