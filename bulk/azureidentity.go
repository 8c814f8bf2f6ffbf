package bulk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// AzureIdentity authorises requests with a Microsoft Entra ID token from the
// Azure SDK's credential chain, without a secret in the configuration:
// environment service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID and a
// secret or certificate), workload identity (AZURE_FEDERATED_TOKEN_FILE,
// set by the AKS webhook), managed identity (App Service and Container Apps
// through IDENTITY_ENDPOINT/IDENTITY_HEADER, IMDS on VMs, Azure Arc), then
// the Azure CLI's login. The token is for Scope, by default the origin of the
// FHIR server followed by "/.default" (AzureScopeFor), the audience of Azure
// API for FHIR and Azure Health Data Services.
type AzureIdentity struct {
	// Scope is the requested scope, e.g. "https://ws-fhir.fhir.azurehealthcareapis.com/.default".
	Scope string
	// Credential issues the tokens; nil builds one with NewAzureCredential
	// (ClientID, HTTP) on first use.
	Credential azcore.TokenCredential
	// ClientID selects a user-assigned managed identity (or the workload
	// identity's application) when Credential is nil.
	ClientID string
	// HTTP sends the identity requests when Credential is nil (nil: the
	// Azure SDK's default transport).
	HTTP *http.Client
	// Clock is the time source of the token cache (nil: system clock).
	Clock Clock

	once    sync.Once
	cache   *tokenCache
	credErr error
}

// Token returns a cached or fresh access token.
func (a *AzureIdentity) Token(ctx context.Context) (Secret, error) {
	a.init()
	if a.credErr != nil {
		return Secret{}, a.credErr
	}
	return a.cache.get(ctx)
}

// Invalidate drops tok from this authenticator's cache. The credential keeps
// its own cache until shortly before the token expires, so a refused token
// may come back once; the second refusal then fails the request.
func (a *AzureIdentity) Invalidate(tok Secret) {
	a.init()
	if a.cache != nil {
		a.cache.invalidate(tok)
	}
}

// Format prints the configuration (it holds no secret).
func (a *AzureIdentity) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "bulk.AzureIdentity{Scope:%s ClientID:%s}", a.Scope, a.ClientID)
}

func (a *AzureIdentity) init() {
	a.once.Do(func() {
		if a.Credential == nil {
			a.Credential, a.credErr = NewAzureCredential(a.ClientID, a.HTTP)
			if a.credErr != nil {
				return
			}
		}
		a.cache = &tokenCache{fetch: a.fetch, clock: a.Clock}
	})
}

func (a *AzureIdentity) fetch(ctx context.Context) (Secret, time.Duration, error) {
	if a.Scope == "" {
		return Secret{}, 0, errors.New("azure-identity: no scope")
	}
	tok, err := a.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{a.Scope}})
	if err != nil {
		return Secret{}, 0, AzureCredentialError(a.Scope, err)
	}
	if tok.Token == "" {
		return Secret{}, 0, errors.New("azure-identity: the credential returned an empty token for " + a.Scope)
	}
	life := time.Until(tok.ExpiresOn)
	if !tok.RefreshOn.IsZero() && tok.RefreshOn.After(time.Now()) {
		// The credential's own advice on when to refresh, as the lifetime
		// whose last fifth tokenCache keeps as margin.
		life = time.Until(tok.RefreshOn) * 5 / 4
	}
	return NewSecret(tok.Token), life, nil
}

// AzureScopeFor returns the Entra ID scope whose audience is the origin of
// rawURL: "https://host[:port]/.default".
func AzureScopeFor(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New("azure-identity: the URL is not an absolute http(s) URL")
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + "/.default", nil
}

// Public cloud authority hosts: any other AZURE_AUTHORITY_HOST (a private
// or disconnected cloud) is used without the instance discovery request to
// login.microsoft.com.
var knownAuthorities = map[string]bool{
	"login.microsoftonline.com": true, "login.chinacloudapi.cn": true, "login.microsoftonline.us": true,
}

// NewAzureCredential returns the credential chain of AzureIdentity. With an
// empty clientID it is the Azure SDK's DefaultAzureCredential; with one, it
// is workload identity (when AZURE_FEDERATED_TOKEN_FILE is set) then the
// user-assigned managed identity of that client id. hc, if not nil, sends
// the identity requests.
func NewAzureCredential(clientID string, hc *http.Client) (azcore.TokenCredential, error) {
	var co azcore.ClientOptions
	if hc != nil {
		co.Transport = hc
	}
	noDiscovery := false
	if h := os.Getenv("AZURE_AUTHORITY_HOST"); h != "" {
		if u, err := url.Parse(h); err == nil && !knownAuthorities[strings.ToLower(u.Hostname())] {
			noDiscovery = true
		}
	}
	if clientID == "" {
		cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: co,
			DisableInstanceDiscovery: noDiscovery})
		if err != nil {
			return nil, fmt.Errorf("azure-identity: %w", firstLine(err))
		}
		return cred, nil
	}
	var creds []azcore.TokenCredential
	if os.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
		wi, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: co,
			ClientID: clientID, DisableInstanceDiscovery: noDiscovery})
		if err != nil {
			return nil, fmt.Errorf("azure-identity: WorkloadIdentityCredential: %w", firstLine(err))
		}
		creds = append(creds, wi)
	}
	mi, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: co,
		ID: azidentity.ClientID(clientID)})
	if err != nil {
		return nil, fmt.Errorf("azure-identity: ManagedIdentityCredential: %w", firstLine(err))
	}
	creds = append(creds, mi)
	chain, err := azidentity.NewChainedTokenCredential(creds, nil)
	if err != nil {
		return nil, fmt.Errorf("azure-identity: %w", firstLine(err))
	}
	return chain, nil
}

var credLine = regexp.MustCompile(`(?m)^\s*(\w+Credential)(?:: | authentication failed)`)

// AzureCredentialError turns an Azure SDK credential error (several lines,
// with the identity endpoint's whole response) into one line naming the
// credential that failed, the scope and the HTTP status: it never contains
// a token or a response body.
func AzureCredentialError(scope string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("azure-identity: token for %s: %w", scope, err)
	}
	msg := err.Error()
	var names []string
	for _, m := range credLine.FindAllStringSubmatch(msg, -1) {
		names = append(names, m[1])
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		name := "the Azure credential"
		if len(names) > 0 {
			name = names[len(names)-1]
		} else if n, _, ok := strings.Cut(msg, " "); ok && strings.HasSuffix(n, "Credential") {
			name = n
		}
		if af.RawResponse != nil {
			where := ""
			if af.RawResponse.Request != nil && af.RawResponse.Request.URL != nil {
				where = " from " + af.RawResponse.Request.URL.Host
			}
			return &AzureAuthError{Credential: name, Scope: scope, Msg: fmt.Sprintf("HTTP %d%s", af.RawResponse.StatusCode, where),
				StatusCode: af.RawResponse.StatusCode}
		}
		return &AzureAuthError{Credential: name, Scope: scope, Msg: "authentication failed"}
	}
	if len(names) > 0 {
		return &AzureAuthError{Credential: "DefaultAzureCredential", Scope: scope,
			Msg: "no credential is available (tried " + strings.Join(names, ", ") + "): run in Azure with a managed or workload identity, set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or log in with az login"}
	}
	return &AzureAuthError{Credential: "the Azure credential", Scope: scope, Msg: firstLine(err).Error()}
}

// AzureAuthError is a failure to get a token from an Azure credential.
type AzureAuthError struct {
	// Credential names the credential that failed (ManagedIdentityCredential…).
	Credential string
	Scope      string
	// StatusCode is the identity endpoint's HTTP status, 0 when there was none.
	StatusCode int
	Msg        string
}

func (e *AzureAuthError) Error() string {
	return "azure-identity: " + e.Credential + " could not get a token for " + e.Scope + ": " + e.Msg
}

// firstLine keeps the first line of an SDK error, without its
// troubleshooting link.
func firstLine(err error) error {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if i := strings.Index(s, " To troubleshoot"); i > 0 {
		s = s[:i]
	}
	return errors.New(strings.TrimSpace(s))
}
