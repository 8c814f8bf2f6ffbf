package bulk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Sink stores the files of an export under slash-separated relative names
// such as "Patient.000.ndjson.gz" or "deleted/Bundle.000.ndjson.gz".
type Sink interface {
	// Create starts a file. Nothing is visible under name until Commit;
	// an earlier committed file of that name stays until then.
	Create(name string) (SinkFile, error)
	// Remove deletes a committed file; a missing file is not an error.
	Remove(name string) error
}

// SinkFile is a file being written to a Sink.
type SinkFile interface {
	io.Writer
	// Commit makes the file durable and visible under its name.
	Commit() error
	// Abort discards the file. It is a no-op after Commit.
	Abort() error
}

// DirSink writes files into a directory: each to a temporary name, synced
// and renamed when complete.
type DirSink struct {
	// Dir is the destination directory.
	Dir string
	// NoSync skips the fsync calls: faster, but a crash may lose files
	// that the checkpoint already counts as stored. For tests and scratch
	// output only.
	NoSync bool
}

func (s DirSink) path(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || !fs.ValidPath(name) {
		return "", fmt.Errorf("sink: invalid file name %q", name)
	}
	return filepath.Join(s.Dir, filepath.FromSlash(name)), nil
}

// Create starts a file in the directory.
func (s DirSink) Create(name string) (SinkFile, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("sink: create directory for %s: %w", name, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".partial-*")
	if err != nil {
		return nil, fmt.Errorf("sink: create %s: %w", name, err)
	}
	return &dirFile{f: f, final: p, name: name, noSync: s.NoSync}, nil
}

// Remove deletes a file.
func (s DirSink) Remove(name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sink: remove %s: %w", name, err)
	}
	return nil
}

type dirFile struct {
	f      *os.File
	final  string
	name   string
	done   bool
	noSync bool
}

func (d *dirFile) Write(p []byte) (int, error) {
	n, err := d.f.Write(p)
	if err != nil {
		return n, &sinkError{fmt.Errorf("sink: write %s: %w", d.name, err)}
	}
	return n, nil
}

func (d *dirFile) Commit() error {
	if d.done {
		return errors.New("sink: file committed or aborted twice")
	}
	d.done = true
	var err error
	if !d.noSync {
		err = d.f.Sync()
	}
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(d.f.Name(), d.final)
	}
	if err == nil && !d.noSync {
		err = syncDir(filepath.Dir(d.final))
	}
	if err != nil {
		_ = os.Remove(d.f.Name())
		return fmt.Errorf("sink: commit %s: %w", d.name, err)
	}
	return nil
}

func (d *dirFile) Abort() error {
	if d.done {
		return nil
	}
	d.done = true
	_ = d.f.Close()
	return os.Remove(d.f.Name())
}

// sinkError marks a write failure of the destination: it is not a network
// error and is never retried as one.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// CleanPartials removes the temporary files that an interrupted run left
// in the directory (names starting with "." and containing ".partial-").
func (s DirSink) CleanPartials() error {
	return filepath.WalkDir(s.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), ".partial-") {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("sink: remove stale %s: %w", d.Name(), err)
			}
		}
		return nil
	})
}
