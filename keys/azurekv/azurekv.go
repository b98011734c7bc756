// Package azurekv implements the Azure Key Vault master key,
// azure-kv://VAULT.vault.azure.net/keys/NAME[/VERSION]. The ring never
// leaves the machine: each seal draws a fresh 32-byte key-encryption key
// (KEK), has Key Vault wrap KEK || SHA-256(ring AD) with the wrapKey
// operation and RSA-OAEP-256, and seals the ring locally with the KEK under
// the ring AD. RSA-OAEP takes no associated data, so the volume and master
// ID are bound twice: by the digest inside the wrapped plaintext, checked
// after unwrapKey, and by the local box's associated data.
//
// The key must be an RSA key (RSA or RSA-HSM) that allows the wrapKey and
// unwrapKey operations. Without a VERSION in the URI each seal uses the
// key's current version and records it, so that unsealing asks for the
// version that wrapped the KEK even after the key was rotated.
//
// Credentials come from azidentity's DefaultAzureCredential: the
// AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or
// AZURE_CLIENT_CERTIFICATE_PATH) environment variables, workload identity,
// managed identity, then the Azure CLI and Developer CLI logins. The vault
// URL comes from the URI; masterkey.Options.KMSEndpoint (--kms-endpoint)
// overrides it with an https URL, for a private endpoint or a test server.
// Every call is bounded by a timeout and at most three attempts.
//
// Importing the package registers the kind with package masterkey.
package azurekv

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme of Azure Key Vault master keys; it is also the
// kind recorded in the config.
const Scheme = "azure-kv"

// Form is the URI form shown in help and error messages.
const Form = "azure-kv://VAULT.vault.azure.net/keys/NAME[/VERSION]"

func init() { masterkey.Register(envelope.Kind(Scheme, Form, Canonical, New)) }

// vaultSuffixes are the DNS suffixes of Key Vault and Managed HSM in the
// public and sovereign clouds.
var vaultSuffixes = []string{
	".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net",
	".managedhsm.azure.net", ".managedhsm.azure.cn", ".managedhsm.usgovcloudapi.net",
}

// Key is a parsed azure-kv URI.
type Key struct {
	// Host is the vault's DNS name in lower case, VAULT.vault.azure.net.
	Host string
	// Name is the key's name in the vault.
	Name string
	// Version is the key version, or "" for the current one.
	Version string
}

// URI returns the canonical azure-kv URI of k.
func (k Key) URI() string {
	u := Scheme + "://" + k.Host + "/keys/" + k.Name
	if k.Version != "" {
		u += "/" + k.Version
	}
	return u
}

// VaultURL returns the vault's URL, https://HOST.
func (k Key) VaultURL() string { return "https://" + k.Host }

// String names the key in messages: the vault host, the name and, when
// pinned, the version.
func (k Key) String() string { return strings.TrimPrefix(k.URI(), Scheme+"://") }

// ParseURI parses azure-kv://VAULT.vault.azure.net/keys/NAME[/VERSION].
func ParseURI(uri string) (Key, error) {
	scheme, rest, _ := strings.Cut(uri, ":")
	if !strings.EqualFold(scheme, Scheme) || !strings.HasPrefix(rest, "//") {
		return Key{}, malformed(uri, "want "+Form)
	}
	s := strings.TrimPrefix(rest, "//")
	if strings.ContainsAny(s, "?#@%") {
		return Key{}, malformed(uri, "an azure-kv URI takes no query, fragment, user or escapes")
	}
	host, path, _ := strings.Cut(s, "/")
	host = strings.ToLower(host)
	if !isVaultHost(host) {
		return Key{}, malformed(uri, "the host must be a vault's DNS name such as "+
			"myvault.vault.azure.net")
	}
	parts := strings.Split(path, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "keys" {
		return Key{}, malformed(uri, "the path must be /keys/NAME or /keys/NAME/VERSION")
	}
	k := Key{Host: host, Name: parts[1]}
	if !isName(k.Name) {
		return Key{}, malformed(uri, "a key name is 1 to 127 letters, digits and dashes")
	}
	if len(parts) == 3 {
		k.Version = parts[2]
		if !isVersion(k.Version) {
			return Key{}, malformed(uri, "a key version is 32 hexadecimal digits")
		}
	}
	return k, nil
}

// Canonical checks an azure-kv URI and returns its canonical form, for the
// masterkey registry.
func Canonical(uri string) (string, error) { return envelope.Canonical(ParseURI, uri) }

func malformed(uri, why string) error {
	return fmt.Errorf("%w %q: %s", masterkey.ErrMalformed, keys.RedactURI(uri), why)
}

func isVaultHost(h string) bool {
	for _, s := range vaultSuffixes {
		if vault, ok := strings.CutSuffix(h, s); ok {
			return isName(vault) && len(vault) >= 3 && len(vault) <= 24
		}
	}
	return false
}

// isName reports whether s is a Key Vault object name: letters, digits and
// dashes, up to 127 characters.
func isName(s string) bool {
	if s == "" || len(s) > 127 {
		return false
	}
	for _, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && c != '-' {
			return false
		}
	}
	return true
}

// isVersion reports whether s looks like a key version: 32 hex digits.
func isVersion(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// checkEndpoint checks an endpoint override: an https URL with a host and
// nothing else. Key Vault's client sends bearer tokens over https only.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return fmt.Errorf("%w: Key Vault endpoint %q must be an https:// URL such as "+
			"https://myvault.vault.azure.net", masterkey.ErrMalformed, keys.RedactURI(ep))
	}
	return nil
}
