package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/klauspost/compress/gzip"
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/s3blob"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/internal/synth"
	"fhirdeid/pipeline"
	"fhirdeid/state"
	"fhirdeid/storage"
)

// safeHarbor returns a de-identifier running the built-in configuration.
func safeHarbor(t *testing.T) *pipeline.EngineDeidentifier {
	t.Helper()
	cfg, err := anonymize.ParseConfig(defaultconfig.SafeHarbor(), anonymize.Options{FHIRVersion: "R4", Compiler: anonymize.FHIRPathCompiler()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := anonymize.NewEngine(cfg, anonymize.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.NewEngineDeidentifier(eng)
}

// checkStore reads a committed run back through the store: every data file
// decompresses, the resources add up, and no planted identifier is there.
func checkStore(t *testing.T, store *storage.Store, rep *pipeline.Report, pop *synth.Population) {
	t.Helper()
	ctx := context.Background()
	if ok, err := store.Committed(ctx, rep.Run); err != nil || !ok {
		t.Fatalf("run %s not committed: %v", rep.Run, err)
	}
	if latest, err := store.Latest(ctx); err != nil || latest != rep.Run {
		t.Fatalf("latest = %q, %v", latest, err)
	}
	keys, err := store.List(ctx, rep.Run+"/")
	if err != nil {
		t.Fatal(err)
	}
	lc := synth.NewLeakChecker(pop.Identifiers)
	n := 0
	for _, k := range keys {
		if !strings.HasSuffix(k, ".ndjson.gz") {
			continue
		}
		r, err := store.Open(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		data, err := io.ReadAll(zr)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			if len(line) > 0 {
				n++
				lc.CheckLine(line)
			}
		}
	}
	if n != pop.Count() {
		t.Errorf("%d resources stored, want %d", n, pop.Count())
	}
	if lc.Found() != 0 {
		t.Errorf("%d planted identifiers reached the destination", lc.Found())
	}
	for _, name := range []string{"manifest.json", "report.json", "log.ndjson"} {
		if ok, _ := store.Exists(ctx, storage.RunKey(rep.Run, name)); !ok {
			t.Errorf("missing %s", name)
		}
	}
	checkSnapshot(t, store, rep, n)
}

// runTo runs the pipeline over a fresh synthetic population into the
// destination URL.
func runTo(t *testing.T, dest string) (*storage.Store, *pipeline.Report, *synth.Population, error) {
	t.Helper()
	e := newEnv(t, bulktest.Options{})
	store, err := storage.Open(context.Background(), dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p := e.pipeline(t, safeHarbor(t))
	p.Store = store
	rep, err := pipeline.Run(context.Background(), p)
	return store, rep, e.pop, err
}

func TestEndToEndFile(t *testing.T) {
	store, rep, pop, err := runTo(t, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, store, rep, pop)
}

// fakeS3 starts an in-process S3 server with a bucket; fail, if set, can
// refuse requests.
func fakeS3(t *testing.T, bucket string, fail func(*http.Request) bool) string {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	s3 := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail != nil && fail(r) {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		s3.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "fhirdeid-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fhirdeid-test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	u := url.Values{"endpoint": {srv.URL}, "region": {"us-east-1"}, "use_path_style": {"true"}, "disable_https": {"true"}}
	return "s3://" + bucket + "?" + u.Encode()
}

func TestEndToEndS3(t *testing.T) {
	dest := fakeS3(t, "lake", nil)
	store, rep, pop, err := runTo(t, dest+"&prefix=research/")
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, store, rep, pop)
}

// TestDestinationFailsMidUpload makes the destination fail in the middle of
// a run: the run must not be visible, and the next run resumes and commits.
func TestDestinationFailsMidUpload(t *testing.T) {
	var puts atomic.Int64
	var broken atomic.Bool
	broken.Store(true)
	dest := fakeS3(t, "lake", func(r *http.Request) bool {
		if r.Method != http.MethodPut || !broken.Load() {
			return false
		}
		// Let a few files through, then fail every upload.
		return puts.Add(1) > 3
	})
	e := newEnv(t, bulktest.Options{})
	store, err := storage.Open(context.Background(), dest)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p := e.pipeline(t, safeHarbor(t))
	p.Store = store
	_, err = pipeline.Run(context.Background(), p)
	var pe *pipeline.Error
	if !errors.As(err, &pe) {
		t.Fatalf("run with a failing destination: %v", err)
	}
	ctx := context.Background()
	if ok, _ := store.Committed(ctx, pe.Run); ok {
		t.Fatal("a run whose uploads failed is marked complete")
	}
	if _, err := store.Latest(ctx); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("latest moved: %v", err)
	}
	r, _ := e.db.Run(ctx, pe.Run)
	if r.Status == state.RunSucceeded {
		t.Fatal("state says the failed run succeeded")
	}
	// The destination recovers. A run that failed for good (fatal) is
	// started anew; one that may be retried resumes. Either way the next
	// run commits everything.
	broken.Store(false)
	p2 := e.pipeline(t, safeHarbor(t))
	p2.Store = store
	p2.Now = func() time.Time { return time.Now().Add(2 * time.Second) }
	rep, err := pipeline.Run(ctx, p2)
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, store, rep, e.pop)
}

// azurite returns the destination URL of a container in a local Azurite
// emulator, creating it, or skips when none runs. CI starts Azurite and sets
// FHIRDEID_AZURITE=1, so there a missing emulator fails the test.
func azurite(t *testing.T, container string) string {
	t.Helper()
	const (
		account = "devstoreaccount1"
		key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
		addr    = "127.0.0.1:10000"
	)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		if os.Getenv("FHIRDEID_AZURITE") != "" {
			t.Fatalf("Azurite is not listening on %s: %v", addr, err)
		}
		t.Skipf("Azurite is not running on %s (npm install azurite; npx azurite-blob --blobHost 127.0.0.1): skipping the azblob test", addr)
	}
	c.Close()
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		t.Fatal(err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(fmt.Sprintf("http://%s/%s", addr, account), cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateContainer(context.Background(), container, nil); err != nil && !strings.Contains(err.Error(), "ContainerAlreadyExists") {
		t.Fatalf("create container: %v", err)
	}
	t.Setenv("AZURE_STORAGE_ACCOUNT", account)
	t.Setenv("AZURE_STORAGE_KEY", key)
	return "azblob://" + container + "?protocol=http&domain=" + addr + "&localemu=true"
}

func TestEndToEndAzureBlob(t *testing.T) {
	dest := azurite(t, fmt.Sprintf("lake%d", time.Now().UnixNano()))
	store, rep, pop, err := runTo(t, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, store, rep, pop)
}

// checkManifestURLs reads every URL of the run's manifest.json back from
// the bucket root (the destination without its prefix): each must name an
// existing object under the prefix.
func checkManifestURLs(t *testing.T, dest string, store *storage.Store, rep *pipeline.Report, prefix string) {
	t.Helper()
	ctx := context.Background()
	mj, err := store.ReadAll(ctx, storage.RunKey(rep.Run, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Output, Deleted []struct{ URL string }
	}
	if err := json.Unmarshal(mj, &m); err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(dest)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Del("prefix")
	pu.RawQuery = q.Encode()
	root, err := storage.Open(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	base := strings.TrimSuffix(root.String(), "/") + "/"
	n := 0
	for _, f := range append(m.Output, m.Deleted...) {
		key, ok := strings.CutPrefix(f.URL, base+prefix+rep.Run+"/")
		if !ok {
			t.Errorf("manifest URL %s is not under %s%s%s/", f.URL, base, prefix, rep.Run)
			continue
		}
		if ok, err := root.Exists(ctx, prefix+rep.Run+"/"+key); err != nil || !ok {
			t.Errorf("manifest URL %s does not name an object (%v)", f.URL, err)
		}
		n++
	}
	if n == 0 {
		t.Error("the manifest lists no files")
	}
}

func TestManifestURLsWithPrefix(t *testing.T) {
	for _, tc := range []struct {
		name string
		dest func(t *testing.T) string
	}{
		{"file", func(t *testing.T) string { return "file://" + t.TempDir() }},
		{"s3", func(t *testing.T) string { return fakeS3(t, "lake", nil) }},
		{"azblob", func(t *testing.T) string { return azurite(t, fmt.Sprintf("pfx%d", time.Now().UnixNano())) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := tc.dest(t)
			sep := "?"
			if strings.Contains(dest, "?") {
				sep = "&"
			}
			store, rep, _, err := runTo(t, dest+sep+"prefix=nightly/")
			if err != nil {
				t.Fatal(err)
			}
			checkManifestURLs(t, dest, store, rep, "nightly/")
		})
	}
}
