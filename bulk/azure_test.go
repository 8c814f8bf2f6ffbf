package bulk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSharedKeySignature(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	signer, err := ParseAzureConnectionString(NewSecret("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + key + ";EndpointSuffix=core.windows.net"))
	if err != nil {
		t.Fatal(err)
	}
	sk := signer.(*AzureSharedKey)
	sk.Clock = &fixedClock{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	req, _ := http.NewRequest(http.MethodGet, "https://acct.blob.core.windows.net/container/dir/Patient-1.ndjson?restype=x&comp=metadata", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("X-Ms-Client-Request-Id", "  a   b ")
	if err := sk.Sign(req); err != nil {
		t.Fatal(err)
	}
	want := "GET\n" + strings.Repeat("\n", 11) +
		"x-ms-client-request-id:a b\nx-ms-date:Sat, 28 Nov 2026 12:00:00 GMT\nx-ms-version:2021-08-06\n" +
		"/acct/container/dir/Patient-1.ndjson\ncomp:metadata\nrestype:x"
	if got := sharedKeyStringToSign(req, "acct"); got != want {
		t.Fatalf("string to sign\n got %q\nwant %q", got, want)
	}
	mac := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
	mac.Write([]byte(want))
	if got, w := req.Header.Get("Authorization"), "SharedKey acct:"+base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != w {
		t.Errorf("Authorization %q, want %q", got, w)
	}
	for _, bad := range []string{"AccountName=a", "AccountName=a;AccountKey=!!", ""} {
		if _, err := ParseAzureConnectionString(NewSecret(bad)); err == nil || strings.Contains(err.Error(), "!!") {
			t.Errorf("connection string %q: %v", bad, err)
		}
	}
	if s, err := ParseAzureConnectionString(NewSecret("BlobEndpoint=https://x;SharedAccessSignature=sv=1&sig=abc")); err != nil {
		t.Error(err)
	} else if _, ok := s.(AzureSAS); !ok {
		t.Errorf("SAS connection string gave %T", s)
	}
}

// TestAzureMode serves a manifest with requiresAccessToken false whose
// files live on another host ("blob storage") and checks which credentials
// reach each host.
func TestAzureMode(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("auth=%q ver=%q sig=%q", r.Header.Get("Authorization"), r.Header.Get("x-ms-version"), r.URL.Query().Get("sig")))
		mu.Unlock()
		_, _ = io.WriteString(w, "{\"resourceType\":\"Patient\",\"id\":\"1\"}\n")
	}))
	defer storage.Close()
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"transactionTime":"2026-01-01T00:00:00Z","requiresAccessToken":false,"output":[{"type":"Patient","url":"%s/exports/Patient-1.ndjson"}],"error":[]}`, storage.URL)
	}))
	defer fhir.Close()
	tests := []struct {
		name   string
		auth   Authenticator
		signer RequestSigner
		want   string
	}{
		{"no storage credentials", nil, nil, `auth="" ver="" sig=""`},
		{"Entra storage token", StaticToken{Value: NewSecret("storage-tok")}, nil, `auth="Bearer storage-tok" ver="2021-08-06" sig=""`},
		{"SAS", nil, AzureSAS{Token: NewSecret("?sv=2022&sp=r&sig=SIGVALUE")}, `auth="" ver="2021-08-06" sig="SIGVALUE"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			c, _ := NewClient(fhir.URL+"/fhir", nil)
			c.Clock = &fixedClock{now: time.Now()}
			c.Auth = StaticToken{Value: NewSecret("fhir-tok")}
			c.StorageAuth, c.StorageSigner = tc.auth, tc.signer
			// Storage credentials go only to Azure blob hosts and trusted
			// origins: trust the local stand-in.
			if err := c.TrustHosts(storage.URL); err != nil {
				t.Fatal(err)
			}
			var events strings.Builder
			c.Events = NewNDJSONLog(&events, "x")
			m, err := c.Poll(context.Background(), fhir.URL+"/status", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			rc, err := c.Open(context.Background(), m, m.Output[0])
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, rc)
			_ = rc.Close()
			if len(seen) != 1 || seen[0] != tc.want {
				t.Errorf("storage saw %v, want %s", seen, tc.want)
			}
			if strings.Contains(events.String(), "SIGVALUE") || strings.Contains(events.String(), "tok") {
				t.Error("credentials in the event log")
			}
		})
	}
}
