package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/memblob"

	"fhirdeid/storage"
)

func TestFileStoreCommitProtocol(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "lake") // does not exist yet
	s, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	run := "20261128T010000Z"
	w, err := s.Create(ctx, storage.RunKey(run, storage.OutputName("Patient", 0)), "application/gzip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("part one")); err != nil {
		t.Fatal(err)
	}
	// Not visible before Close.
	final := filepath.Join(dir, run, "Patient.000.ndjson.gz")
	if _, err := os.Stat(final); err == nil {
		t.Fatal("object visible before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(final); err != nil || string(data) != "part one" {
		t.Fatalf("after Close: %q, %v", data, err)
	}

	// An aborted write leaves the previous object untouched.
	w, err = s.Create(ctx, storage.RunKey(run, storage.OutputName("Patient", 0)), "application/gzip")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("half of a replacement"))
	w.Abort()
	if data, _ := os.ReadFile(final); string(data) != "part one" {
		t.Fatalf("aborted write changed the object: %q", data)
	}
	if w.Close() != nil {
		t.Error("Close after Abort should be a no-op")
	}

	// The run is invisible until committed.
	if ok, _ := s.Committed(ctx, run); ok {
		t.Fatal("uncommitted run reported committed")
	}
	if _, err := s.Latest(ctx); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Latest before any commit: %v", err)
	}
	if err := s.Commit(ctx, run, []byte(`{"resources":1}`)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Committed(ctx, run); !ok {
		t.Fatal("committed run not reported committed")
	}
	if got, err := s.Latest(ctx); err != nil || got != run {
		t.Fatalf("Latest = %q, %v", got, err)
	}
	// No side files from the file driver.
	matches, _ := filepath.Glob(filepath.Join(dir, run, "*.attrs"))
	if len(matches) != 0 {
		t.Errorf("attribute side files written: %v", matches)
	}
	if err := s.WriteAll(ctx, storage.RunKey("20261129T010000Z", "manifest.json"), "application/json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	runs, err := s.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || !runs[0].Committed || runs[1].Committed {
		t.Errorf("Runs = %+v", runs)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	_, err := storage.Open(ctx, "nosuch://bucket?sig=SECRETSIG")
	if err == nil {
		t.Fatal("unknown scheme accepted")
	}
	if strings.Contains(err.Error(), "SECRETSIG") {
		t.Errorf("error leaks the URL query: %v", err)
	}
	if !strings.Contains(err.Error(), "nosuch://bucket") {
		t.Errorf("error does not name the destination: %v", err)
	}
	if _, err := storage.Open(ctx, ""); err == nil {
		t.Error("empty URL accepted")
	}
}

func TestMemStore(t *testing.T) {
	ctx := context.Background()
	s, err := storage.Open(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteAll(ctx, "a/b", "text/plain", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size(ctx, "a/b"); err != nil || n != 1 {
		t.Errorf("Size = %d, %v", n, err)
	}
	if _, err := s.ReadAll(ctx, "a/c"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ReadAll of a missing key: %v", err)
	}
	if err := s.Delete(ctx, "a/c"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	keys, err := s.List(ctx, "a/")
	if err != nil || len(keys) != 1 || keys[0] != "a/b" {
		t.Errorf("List = %v, %v", keys, err)
	}
}
