package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"fhirdeid/bulk"
)

// KeyVaultScheme starts a secret reference to Azure Key Vault:
// azurekeyvault://VAULT/NAME[/VERSION], VAULT a vault name (the vault is
// then https://VAULT.vault.azure.net) or a vault host such as
// myvault.vault.azure.cn.
const KeyVaultScheme = "azurekeyvault://"

// SecretRef is a parsed Key Vault secret reference.
type SecretRef struct {
	// Vault is the vault as written; URL its https URL with a trailing slash.
	Vault, URL string
	// Name and Version select the secret ("" Version: the current one).
	Name, Version string
}

// String returns the reference as written in the configuration (it holds no
// secret).
func (r SecretRef) String() string {
	s := KeyVaultScheme + r.Vault + "/" + r.Name
	if r.Version != "" {
		s += "/" + r.Version
	}
	return s
}

// IsSecretRef reports whether s is written as a Key Vault reference.
func IsSecretRef(s string) bool {
	return len(s) >= len(KeyVaultScheme) && strings.EqualFold(s[:len(KeyVaultScheme)], KeyVaultScheme)
}

var (
	vaultName   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$`)
	vaultHost   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$`)
	secretName  = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	secretVerRe = regexp.MustCompile(`^[0-9A-Fa-f]{32}$`)
)

// ParseSecretRef parses azurekeyvault://VAULT/NAME[/VERSION]. Its errors say
// what is wrong with the form, without repeating the reference.
func ParseSecretRef(s string) (SecretRef, error) {
	if !IsSecretRef(s) {
		return SecretRef{}, errors.New("not a Key Vault reference (azurekeyvault://VAULT/NAME)")
	}
	parts := strings.Split(s[len(KeyVaultScheme):], "/")
	if len(parts) < 2 || len(parts) > 3 {
		return SecretRef{}, errors.New("a Key Vault reference is azurekeyvault://VAULT/NAME or azurekeyvault://VAULT/NAME/VERSION")
	}
	r := SecretRef{Vault: parts[0], Name: parts[1]}
	if len(parts) == 3 {
		r.Version = parts[2]
		if !secretVerRe.MatchString(r.Version) {
			return SecretRef{}, errors.New("a Key Vault secret version is 32 hexadecimal digits")
		}
	}
	switch {
	case strings.ContainsAny(r.Vault, ".:"):
		if !vaultHost.MatchString(r.Vault) {
			return SecretRef{}, errors.New("the vault is neither a vault name nor a host name")
		}
		r.URL = "https://" + strings.ToLower(r.Vault) + "/"
	case vaultName.MatchString(r.Vault):
		r.URL = "https://" + strings.ToLower(r.Vault) + ".vault.azure.net/"
	default:
		return SecretRef{}, errors.New("a vault name has 3 to 24 letters, digits and hyphens, starting with a letter")
	}
	if !secretName.MatchString(r.Name) {
		return SecretRef{}, errors.New("a Key Vault secret name has 1 to 127 letters, digits and hyphens")
	}
	return r, nil
}

// SecretResolver reads the secret a reference names.
type SecretResolver interface {
	ResolveSecret(ctx context.Context, ref SecretRef) (bulk.Secret, error)
}

// KeyVault resolves references with the Azure SDK's azsecrets client,
// authenticated by Credential, caching each value for the life of the
// process. Values are never logged.
type KeyVault struct {
	// Credential authenticates to the vaults (nil: AzureCredential("")).
	Credential azcore.TokenCredential
	// HTTP sends the requests (nil: the Azure SDK's default transport).
	HTTP *http.Client
	// DisableChallengeResourceVerification accepts a vault whose
	// authentication challenge names a resource outside the vault's domain;
	// for test servers only.
	DisableChallengeResourceVerification bool

	mu      sync.Mutex
	clients map[string]*azsecrets.Client
	cache   map[string]bulk.Secret
}

// ResolveSecret returns the secret's value. Errors name the reference and
// the cause (not found, access denied, unreachable), never a value.
func (k *KeyVault) ResolveSecret(ctx context.Context, ref SecretRef) (bulk.Secret, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := ref.URL + ref.Name + "/" + ref.Version
	if v, ok := k.cache[key]; ok {
		return v, nil
	}
	c, err := k.client(ref.URL)
	if err != nil {
		return bulk.Secret{}, fmt.Errorf("secret reference %s: %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := c.GetSecret(ctx, ref.Name, ref.Version, nil)
	if err != nil {
		return bulk.Secret{}, fmt.Errorf("secret reference %s: %s", ref, vaultError(ref, err))
	}
	if resp.Value == nil || *resp.Value == "" {
		return bulk.Secret{}, fmt.Errorf("secret reference %s: the secret is empty", ref)
	}
	if k.cache == nil {
		k.cache = map[string]bulk.Secret{}
	}
	v := bulk.NewSecret(*resp.Value)
	k.cache[key] = v
	return v, nil
}

func (k *KeyVault) client(vaultURL string) (*azsecrets.Client, error) {
	if c, ok := k.clients[vaultURL]; ok {
		return c, nil
	}
	cred := k.Credential
	if cred == nil {
		cred = AzureCredential("")
	}
	opts := &azsecrets.ClientOptions{DisableChallengeResourceVerification: k.DisableChallengeResourceVerification}
	opts.Retry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 500 * time.Millisecond, MaxRetryDelay: 4 * time.Second,
		TryTimeout: 30 * time.Second}
	if k.HTTP != nil {
		opts.Transport = k.HTTP
	}
	c, err := azsecrets.NewClient(vaultURL, cred, opts)
	if err != nil {
		return nil, errors.New("cannot create the Key Vault client")
	}
	if k.clients == nil {
		k.clients = map[string]*azsecrets.Client{}
	}
	k.clients[vaultURL] = c
	return c, nil
}

// vaultError says why a secret could not be read, in one line without the
// response body.
func vaultError(ref SecretRef, err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusNotFound:
			return "no such secret in the vault (HTTP 404)"
		case http.StatusForbidden:
			return "access denied (HTTP 403): the identity needs the Key Vault Secrets User role on the vault"
		case http.StatusUnauthorized:
			return "the vault refused the token (HTTP 401)"
		}
		return fmt.Sprintf("the vault answered HTTP %d", re.StatusCode)
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) || strings.Contains(err.Error(), "Credential") {
		return bulk.AzureCredentialError("the vault", err).Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "the vault did not answer in time"
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) {
		return "the vault " + strings.TrimSuffix(ref.URL[len("https://"):], "/") + " is unreachable"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return "cannot read the secret: " + s
}

// Shared Azure credentials, one per client id, built on first use: the
// azure-identity authenticators, storage authentication and Key Vault
// references of a process share them (and their token caches).
var (
	credMu sync.Mutex
	creds  = map[string]*sharedCredential{}
)

// AzureCredential returns the process's credential for clientID (""
// selects the default credential chain, which honours AZURE_CLIENT_ID).
func AzureCredential(clientID string) azcore.TokenCredential {
	credMu.Lock()
	defer credMu.Unlock()
	c, ok := creds[clientID]
	if !ok {
		c = &sharedCredential{clientID: clientID}
		creds[clientID] = c
	}
	return c
}

type sharedCredential struct {
	clientID string
	once     sync.Once
	cred     azcore.TokenCredential
	err      error
}

func (s *sharedCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	s.once.Do(func() { s.cred, s.err = bulk.NewAzureCredential(s.clientID, nil) })
	if s.err != nil {
		return azcore.AccessToken{}, s.err
	}
	return s.cred.GetToken(ctx, opts)
}
