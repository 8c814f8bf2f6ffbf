package bulktest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

func newServer(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	u := s.Start()
	t.Cleanup(s.Close)
	return s, u
}

func get(t *testing.T, method, url string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStrictKickoffHeaders(t *testing.T) {
	s, u := newServer(t, Options{Resources: Synthetic(2, 1)})
	tests := []struct {
		hdr  map[string]string
		want int
	}{
		{map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async"}, http.StatusAccepted},
		{map[string]string{"Accept": "application/fhir+json, application/json", "Prefer": "respond-async"}, http.StatusBadRequest},
		{map[string]string{"Accept": "application/fhir+json"}, http.StatusBadRequest},
		{map[string]string{"Prefer": "respond-async"}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		if resp := get(t, http.MethodGet, u+"/$export", tc.hdr); resp.StatusCode != tc.want {
			t.Errorf("headers %v: status %d, want %d", tc.hdr, resp.StatusCode, tc.want)
		}
	}
	if st := s.Stats(); st.Kickoffs != 4 || st.BadHeaders != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestPassthroughServesStoredBytes(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = io.WriteString(zw, "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n")
	_ = zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "Patient.000.ndjson.gz"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Organization.000.ndjson"), []byte("{\"resourceType\":\"Organization\",\"id\":\"o\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, u := newServer(t, Options{Dir: dir, Passthrough: true})
	kick := get(t, http.MethodGet, u+"/$export?_type=Patient", map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async"})
	status := kick.Header.Get("Content-Location")
	var m struct {
		Output []struct {
			Type, URL string
			Count     int
		}
	}
	for i := 0; i < 3 && len(m.Output) == 0; i++ {
		resp := get(t, http.MethodGet, status, nil)
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(m.Output) != 1 || m.Output[0].Type != "Patient" || m.Output[0].Count != 2 {
		t.Fatalf("manifest output %+v", m.Output)
	}
	resp := get(t, http.MethodGet, m.Output[0].URL, map[string]string{"Accept-Encoding": "gzip"})
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body, buf.Bytes()) {
		t.Errorf("gzip passthrough: encoding %q, %d bytes (want the stored %d)", resp.Header.Get("Content-Encoding"), len(body), buf.Len())
	}
	plain := get(t, http.MethodGet, m.Output[0].URL, nil)
	body, _ = io.ReadAll(plain.Body)
	if plain.Header.Get("Content-Encoding") != "" || strings.Count(string(body), "\n") != 2 {
		t.Errorf("identity download: encoding %q body %q", plain.Header.Get("Content-Encoding"), body)
	}
	// DELETE, then the status URL and files answer 404.
	if resp := get(t, http.MethodDelete, status, nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	if resp := get(t, http.MethodGet, status, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("status after DELETE: %d", resp.StatusCode)
	}
	if resp := get(t, http.MethodGet, m.Output[0].URL, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("file after DELETE: %d", resp.StatusCode)
	}
}

func TestSyntheticDeterministic(t *testing.T) {
	a, b := Synthetic(5, 42), Synthetic(5, 42)
	if len(a) != len(b) || len(a) < 5 {
		t.Fatalf("%d vs %d resources", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("resource %d differs between runs", i)
		}
	}
	ids, err := PatientIDs(Options{Resources: a})
	if err != nil || len(ids) != 5 {
		t.Errorf("PatientIDs: %v, %v", ids, err)
	}
}

func TestGroupSearch(t *testing.T) {
	_, u := newServer(t, Options{Resources: Synthetic(3, 1), Groups: map[string][]string{"g2": {"pat00000"}}})
	resp := get(t, http.MethodGet, u+"/Group", nil)
	var b struct {
		Total int
		Entry []struct {
			Resource struct {
				ID       string
				Quantity int
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	if b.Total != 2 || b.Entry[0].Resource.ID != "g2" || b.Entry[1].Resource.ID != "all" || b.Entry[1].Resource.Quantity != 3 {
		t.Errorf("group search: %+v", b)
	}
}

// TestExpiredLinksRefreshed checks the ExpiredDownloads fault: links of the
// first manifest expire (however many downloads are in flight), and the
// links of a manifest fetched again work at once, even while the fault has
// expiries left.
func TestExpiredLinksRefreshed(t *testing.T) {
	_, u := newServer(t, Options{Resources: Synthetic(4, 2), Faults: Faults{ExpiredDownloads: 2}})
	kick := get(t, http.MethodGet, u+"/$export", map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async"})
	status := kick.Header.Get("Content-Location")
	manifest := func() []string {
		t.Helper()
		for i := 0; i < 20; i++ {
			resp := get(t, http.MethodGet, status, nil)
			if resp.StatusCode != http.StatusOK {
				continue
			}
			var m struct{ Output []struct{ URL string } }
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatal(err)
			}
			var urls []string
			for _, o := range m.Output {
				urls = append(urls, o.URL)
			}
			return urls
		}
		t.Fatal("export did not complete")
		return nil
	}
	first := manifest()
	if len(first) < 2 {
		t.Fatalf("%d files, want at least 2", len(first))
	}
	if resp := get(t, http.MethodGet, first[0], nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("first link of the first manifest: %d, want 404", resp.StatusCode)
	}
	second := manifest()
	if second[0] == first[0] {
		t.Fatalf("the refreshed manifest repeats the link %q", first[0])
	}
	// One expiry is left, but the refreshed link works.
	if resp := get(t, http.MethodGet, second[0], nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("refreshed link: %d, want 200", resp.StatusCode)
	}
	if resp := get(t, http.MethodGet, first[1], nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second link of the first manifest: %d, want 404 (the last expiry)", resp.StatusCode)
	}
	if resp := get(t, http.MethodGet, first[1], nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the expiries: %d, want 200", resp.StatusCode)
	}
}
