package bulk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// RequestSigner authorises a request by changing it (a signature header, a
// query); it is the per-request counterpart of an Authenticator, used for
// Azure Storage shared keys and SAS tokens.
type RequestSigner interface {
	Sign(req *http.Request) error
}

// AzureSAS appends a shared access signature to blob URLs that have none.
type AzureSAS struct {
	// Token is the SAS query string, with or without the leading "?".
	Token Secret
}

// Sign adds the SAS query parameters unless the URL already has a sig.
func (s AzureSAS) Sign(req *http.Request) error {
	q := req.URL.Query()
	if q.Get("sig") != "" {
		return nil
	}
	sas, err := url.ParseQuery(strings.TrimPrefix(s.Token.Reveal(), "?"))
	if err != nil || sas.Get("sig") == "" {
		return errors.New("azure: the SAS token is not a query string with a sig parameter")
	}
	for k, v := range sas {
		q[k] = v
	}
	req.URL.RawQuery = q.Encode()
	return nil
}

// AzureSharedKey signs Blob service requests with a storage account's
// shared key (the SharedKey scheme of the Azure Storage REST API).
type AzureSharedKey struct {
	// Account is the storage account name.
	Account string
	// Key is the base64 account key.
	Key Secret
	// Clock stamps x-ms-date (nil: system clock).
	Clock Clock
}

// ParseAzureConnectionString reads AccountName and AccountKey (or a
// SharedAccessSignature) from an Azure Storage connection string. Errors
// never quote the string.
func ParseAzureConnectionString(cs Secret) (RequestSigner, error) {
	fields := map[string]string{}
	for _, part := range strings.Split(cs.Reveal(), ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			fields[strings.ToLower(k)] = v
		}
	}
	if sas := fields["sharedaccesssignature"]; sas != "" {
		return AzureSAS{Token: NewSecret(sas)}, nil
	}
	name, key := fields["accountname"], fields["accountkey"]
	if name == "" || key == "" {
		return nil, errors.New("azure: the connection string has neither AccountName and AccountKey nor SharedAccessSignature")
	}
	if _, err := base64.StdEncoding.DecodeString(key); err != nil {
		return nil, errors.New("azure: AccountKey is not base64")
	}
	return &AzureSharedKey{Account: name, Key: NewSecret(key)}, nil
}

// Sign sets x-ms-date and the SharedKey Authorization header.
func (k *AzureSharedKey) Sign(req *http.Request) error {
	key, err := base64.StdEncoding.DecodeString(k.Key.Reveal())
	if err != nil {
		return errors.New("azure: AccountKey is not base64")
	}
	clk := k.Clock
	if clk == nil {
		clk = SystemClock{}
	}
	req.Header.Set("x-ms-date", clk.Now().UTC().Format(http.TimeFormat))
	if req.Header.Get("x-ms-version") == "" {
		req.Header.Set("x-ms-version", azureVersion)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(sharedKeyStringToSign(req, k.Account)))
	req.Header.Set("Authorization", "SharedKey "+k.Account+":"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	return nil
}

// sharedKeyStringToSign builds the string to sign of the Blob service
// SharedKey scheme (version 2015-02-21 and later).
func sharedKeyStringToSign(req *http.Request, account string) string {
	h := req.Header
	length := h.Get("Content-Length")
	if req.ContentLength > 0 {
		length = itoa64(req.ContentLength)
	}
	if length == "0" {
		length = ""
	}
	var b strings.Builder
	for _, v := range []string{req.Method, h.Get("Content-Encoding"), h.Get("Content-Language"), length,
		h.Get("Content-MD5"), h.Get("Content-Type"), h.Get("Date"), h.Get("If-Modified-Since"), h.Get("If-Match"),
		h.Get("If-None-Match"), h.Get("If-Unmodified-Since"), h.Get("Range")} {
		b.WriteString(v)
		b.WriteByte('\n')
	}
	// Canonicalized headers: x-ms-*, lower case, sorted, values trimmed.
	var names []string
	for name := range h {
		if l := strings.ToLower(name); strings.HasPrefix(l, "x-ms-") {
			names = append(names, l)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(':')
		b.WriteString(strings.Join(strings.Fields(strings.Join(h.Values(n), ",")), " "))
		b.WriteByte('\n')
	}
	// Canonicalized resource: /account/path, then the query parameters
	// sorted by lower-case name, values sorted and comma-joined.
	b.WriteString("/" + account + req.URL.EscapedPath())
	q := req.URL.Query()
	keys := make([]string, 0, len(q))
	lower := map[string][]string{}
	for k, v := range q {
		l := strings.ToLower(k)
		if _, ok := lower[l]; !ok {
			keys = append(keys, l)
		}
		lower[l] = append(lower[l], v...)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := lower[k]
		sort.Strings(vals)
		b.WriteString("\n" + k + ":" + strings.Join(vals, ","))
	}
	return b.String()
}

func itoa64(n int64) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

// AzureStorageScope is the Entra ID v2 scope for Azure Storage tokens; the
// v1 resource is AzureStorageResource.
const (
	AzureStorageScope    = "https://storage.azure.com/.default"
	AzureStorageResource = "https://storage.azure.com/"
)
