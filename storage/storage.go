// Package storage is where fhirdeid lands de-identified runs: a bucket opened
// from one URL through gocloud.dev/blob (file://, s3://, azblob://, gs://,
// mem://), with the run layout and the commit protocol that keep a partial run
// invisible.
//
// # Layout
//
// Under the bucket (and its optional ?prefix=), each run has a folder:
//
//	<run>/Patient.000.ndjson.gz       de-identified resources
//	<run>/deleted/Patient.000.ndjson.gz tombstones of deleted resources
//	<run>/manifest.json                a Bulk Data manifest of the run
//	<run>/report.json                  counts, errors, durations
//	<run>/log.ndjson                   the export log
//	<run>/_SUCCESS                     written last: the run is complete
//	latest                             the id of the newest complete run
//	snapshots/<id>/...                 merged snapshots (see PublishSnapshot)
//	current                            the id of the newest complete snapshot
//
// # Commit protocol
//
// Every object is written through a Writer and becomes visible only when the
// Writer is closed successfully; an aborted or failed Writer leaves the
// previous object (or none). A run is complete only when its _SUCCESS object
// exists, and "latest" moves only after that. Readers must ignore run folders
// without _SUCCESS.
//
// This package does not import any driver: the command blank-imports the
// drivers it supports, tests import fileblob and memblob.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// SuccessMarker is the object written last into a complete run.
const SuccessMarker = "_SUCCESS"

// LatestKey is the object holding the id of the newest complete run.
const LatestKey = "latest"

// ErrNotFound is returned for a missing object.
var ErrNotFound = errors.New("storage: not found")

// Store is an open destination.
type Store struct {
	bucket *blob.Bucket
	// display is the URL without its query, safe to print.
	display string
	// prefix is the URL's ?prefix=, which the bucket prepends to every key.
	prefix string
}

// Open opens the destination at rawURL. A URL without a scheme is a local
// directory. For file:// URLs the directory is created when missing, files
// are written next to their final name and renamed into place, and no
// ".attrs" side files are written, unless the URL says otherwise.
//
// Errors quote the URL without its query string, which may carry credentials
// (an Azure SAS token, for instance).
func Open(ctx context.Context, rawURL string) (*Store, error) {
	u, display, err := normalize(rawURL)
	if err != nil {
		return nil, err
	}
	b, err := blob.OpenBucket(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", display, scrub(err, rawURL))
	}
	return &Store{bucket: b, display: display, prefix: urlPrefix(u)}, nil
}

// urlPrefix returns the ?prefix= of a destination URL.
func urlPrefix(raw string) string {
	if pu, err := url.Parse(raw); err == nil {
		return pu.Query().Get("prefix")
	}
	return ""
}

// NewStore wraps an already open bucket; the Store takes ownership of it.
func NewStore(b *blob.Bucket, display string) *Store {
	return &Store{bucket: b, display: display}
}

// normalize turns a path into a file URL, adds the file defaults, and
// returns the URL to open and a printable form without the query.
func normalize(raw string) (u, display string, err error) {
	if raw == "" {
		return "", "", errors.New("storage: empty destination URL")
	}
	if !strings.Contains(raw, "://") {
		abs, err := filepath.Abs(raw)
		if err != nil {
			return "", "", fmt.Errorf("storage: destination %s: %w", raw, err)
		}
		raw = "file://" + filepath.ToSlash(abs)
	}
	pu, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("storage: invalid destination URL (%s)", redactURL(raw))
	}
	display = redactURL(raw)
	if pu.Scheme == "file" {
		q := pu.Query()
		for k, v := range map[string]string{"create_dir": "true", "no_tmp_dir": "true", "metadata": "skip"} {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		pu.RawQuery = q.Encode()
		raw = pu.String()
	}
	return raw, display, nil
}

// Redact returns a destination URL without its query and user info, for
// printing.
func Redact(rawURL string) string { return redactURL(rawURL) }

// redactURL drops the query and any user info of a URL for printing.
func redactURL(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if pu, err := url.Parse(raw); err == nil && pu.User != nil {
		pu.User = nil
		return pu.String()
	}
	return raw
}

// scrub removes the raw URL's query from an error message coming from a
// driver, which may quote it.
func scrub(err error, raw string) error {
	i := strings.IndexByte(raw, '?')
	if i < 0 || !strings.Contains(err.Error(), raw[i+1:]) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), raw[i+1:], "[redacted]"))
}

// CheckURL reports whether rawURL names a destination that Open can open:
// its syntax and a registered scheme. It contacts no server and creates
// nothing.
func CheckURL(rawURL string) error {
	u, display, err := normalize(rawURL)
	if err != nil {
		return err
	}
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("storage: invalid destination URL (%s)", display)
	}
	if !blob.DefaultURLMux().ValidBucketScheme(pu.Scheme) {
		return fmt.Errorf("storage: unsupported destination scheme %q in %s (supported: %s)", pu.Scheme, display,
			strings.Join(Schemes(), ", "))
	}
	return nil
}

// Schemes returns the URL schemes of the registered drivers.
func Schemes() []string {
	var out []string
	for _, s := range []string{"file", "mem", "s3", "azblob", "gs"} {
		if blob.DefaultURLMux().ValidBucketScheme(s) {
			out = append(out, s)
		}
	}
	return out
}

// String returns the destination's URL without its query.
func (s *Store) String() string { return s.display }

// URL returns the printable URL of the object key: the destination's URL
// without its query, followed by the ?prefix= (if any) and the key, as in
// "s3://bucket/nightly/20260101T000000Z/Patient.000.ndjson.gz".
func (s *Store) URL(key string) string {
	return strings.TrimSuffix(s.display, "/") + "/" + s.prefix + key
}

// Bucket returns the underlying bucket.
func (s *Store) Bucket() *blob.Bucket { return s.bucket }

// Close closes the store.
func (s *Store) Close() error { return s.bucket.Close() }

// Writer writes one object. Close commits it; Abort discards it.
type Writer struct {
	w      *blob.Writer
	cancel context.CancelFunc
	key    string
	n      int64
	done   bool
}

// Create starts writing the object key. Nothing is visible at key until Close
// returns nil.
func (s *Store) Create(ctx context.Context, key, contentType string) (*Writer, error) {
	wctx, cancel := context.WithCancel(ctx)
	w, err := s.bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: contentType, DisableContentTypeDetection: true})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("storage: create %s: %w", key, err)
	}
	return &Writer{w: w, cancel: cancel, key: key}, nil
}

// Write writes p to the object.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("storage: write %s: %w", w.key, err)
	}
	return n, nil
}

// Written returns the number of bytes written so far.
func (w *Writer) Written() int64 { return w.n }

// Close commits the object. After a failed Close the object is not (or no
// longer) written; the caller may retry with a new Writer.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	err := w.w.Close()
	w.cancel()
	if err != nil {
		return fmt.Errorf("storage: commit %s: %w", w.key, err)
	}
	return nil
}

// Abort discards what was written; the previous object at the key, if any,
// stays.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.cancel()
	_ = w.w.Close() // returns the cancellation; nothing was committed
}

// WriteAll writes data as the object key in one go.
func (s *Store) WriteAll(ctx context.Context, key, contentType string, data []byte) error {
	w, err := s.Create(ctx, key, contentType)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

// ReadAll reads the object key.
func (s *Store) ReadAll(ctx context.Context, key string) ([]byte, error) {
	data, err := s.bucket.ReadAll(ctx, key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, fmt.Errorf("storage: read %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read %s: %w", key, err)
	}
	return data, nil
}

// Open opens the object key for reading.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := s.bucket.NewReader(ctx, key, nil)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, fmt.Errorf("storage: open %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", key, err)
	}
	return r, nil
}

// Exists reports whether the object key exists.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	ok, err := s.bucket.Exists(ctx, key)
	if err != nil {
		return false, fmt.Errorf("storage: stat %s: %w", key, err)
	}
	return ok, nil
}

// Size returns the size of the object key.
func (s *Store) Size(ctx context.Context, key string) (int64, error) {
	a, err := s.bucket.Attributes(ctx, key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return 0, fmt.Errorf("storage: stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: stat %s: %w", key, err)
	}
	return a.Size, nil
}

// Delete deletes the object key; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	err := s.bucket.Delete(ctx, key)
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("storage: delete %s: %w", key, err)
	}
	return nil
}
