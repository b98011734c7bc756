// Package gcpkms implements the Google Cloud KMS master key,
// gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K (the form Tink
// uses). The ring never leaves the machine: each seal draws a fresh 32-byte
// key-encryption key (KEK), has Cloud KMS encrypt it with the symmetric
// Encrypt method under additional authenticated data (AAD) that names the
// volume and the master key, and seals the ring locally with the KEK.
// Unsealing asks Cloud KMS to decrypt the KEK under the same AAD, so a
// sealed copy moved to another volume or master-key slot fails in KMS
// itself. CRC32C checksums guard both directions of each call, as Google
// recommends.
//
// The client is the official REST client (cloud.google.com/go/kms/apiv1)
// with Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, the
// gcloud application-default file, or the metadata server on Google Cloud.
// masterkey.Options.KMSEndpoint (the --kms-endpoint flag) changes only where
// the calls go; the credentials still come from ADC. Every call is bounded
// by a timeout and at most three attempts.
//
// Importing the package registers the kind with package masterkey.
package gcpkms

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme of Cloud KMS master keys; it is also the kind
// recorded in the config.
const Scheme = "gcp-kms"

// Form is the URI form shown in help and error messages.
const Form = "gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K"

func init() { masterkey.Register(envelope.Kind(Scheme, Form, Canonical, New)) }

// Key is a parsed gcp-kms URI.
type Key struct {
	// Name is the CryptoKey resource name,
	// projects/P/locations/L/keyRings/R/cryptoKeys/K.
	Name string
}

// URI returns the canonical gcp-kms URI of k.
func (k Key) URI() string { return Scheme + "://" + k.Name }

// ParseURI parses gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K.
// A key version (…/cryptoKeyVersions/N) is refused: Encrypt takes the key
// and uses its primary version.
func ParseURI(uri string) (Key, error) {
	scheme, rest, _ := strings.Cut(uri, ":")
	if !strings.EqualFold(scheme, Scheme) || !strings.HasPrefix(rest, "//") {
		return Key{}, malformed(uri, "want "+Form)
	}
	s := strings.TrimPrefix(rest, "//")
	if strings.ContainsAny(s, "?#") {
		return Key{}, malformed(uri, "a gcp-kms URI takes no query or fragment")
	}
	parts := strings.Split(s, "/")
	if len(parts) > 8 && parts[8] == "cryptoKeyVersions" {
		return Key{}, malformed(uri, "name the CryptoKey, not a key version: Cloud KMS "+
			"encrypts with the key's primary version")
	}
	if len(parts) != 8 || parts[0] != "projects" || parts[2] != "locations" ||
		parts[4] != "keyRings" || parts[6] != "cryptoKeys" {
		return Key{}, malformed(uri, "want "+Form)
	}
	for i, what := range map[int]string{1: "project", 3: "location", 5: "key ring",
		7: "crypto key"} {
		if !isID(parts[i], i == 1) {
			return Key{}, malformed(uri, fmt.Sprintf("the %s ID %q is not valid", what, parts[i]))
		}
	}
	return Key{Name: s}, nil
}

// isID reports whether s is a plausible resource ID: 1 to 63 letters,
// digits, '-' and '_' (key rings and keys allow exactly these); project IDs
// may also be domain-scoped (example.com:project).
func isID(s string, project bool) bool {
	if s == "" || len(s) > 63+253 || (!project && len(s) > 63) {
		return false
	}
	for _, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && c != '-' && c != '_' && (!project || (c != '.' && c != ':')) {
			return false
		}
	}
	return true
}

// Canonical checks a gcp-kms URI and returns its canonical form, for the
// masterkey registry.
func Canonical(uri string) (string, error) { return envelope.Canonical(ParseURI, uri) }

func malformed(uri, why string) error {
	return fmt.Errorf("%w %q: %s", masterkey.ErrMalformed, keys.RedactURI(uri), why)
}

// checkEndpoint checks an endpoint override: an https URL with a host and
// nothing else, or an http URL to a loopback address (a local test server),
// since the request carries an OAuth access token.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	bad := err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" ||
		u.Fragment != "" || (u.Path != "" && u.Path != "/")
	if !bad && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%w: KMS endpoint %q: plain http is allowed only to a loopback "+
			"address, since each request carries an access token; use https://",
			masterkey.ErrMalformed, keys.RedactURI(ep))
	}
	if bad || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%w: KMS endpoint %q must be an https:// URL such as "+
			"https://cloudkms.googleapis.com", masterkey.ErrMalformed, keys.RedactURI(ep))
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
