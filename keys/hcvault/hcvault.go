// Package hcvault implements the HashiCorp Vault transit master key,
// hcvault://HOST[:PORT]/MOUNT/keys/NAME. The ring never leaves the machine:
// each seal draws a fresh 32-byte key-encryption key (KEK), has the transit
// engine encrypt it with the named key, and seals the ring locally with the
// KEK. The transit call binds the volume ID and master ID twice: as
// associated_data, which AEAD key types (aes256-gcm96, the default, and
// aes128-gcm96, chacha20-poly1305) authenticate, and as context, which
// derived keys (derived=true) use to derive the key. Unsealing asks transit
// to decrypt the KEK with the same binding, so a sealed copy moved to
// another volume or master-key slot fails in Vault itself.
//
// The client is Vault's official Go client (github.com/hashicorp/vault/api)
// and reads the standard environment as the vault CLI does: VAULT_TOKEN
// (else the token file ~/.vault-token), VAULT_NAMESPACE, VAULT_CACERT,
// VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME
// and VAULT_SKIP_VERIFY. The server address is https://HOST[:PORT] from the
// URI; masterkey.Options.KMSEndpoint (the --kms-endpoint flag) overrides it
// with an http:// or https:// URL, for a dev server or a Vault Agent.
// VAULT_ADDR never chooses the address. Every call is bounded by a timeout
// and at most three attempts.
//
// The server receives the token, so opening a master key recorded in a
// volume config (Open, as keys.Unlock does) contacts the server its URI
// names only when something outside the backing directory confirms it:
// the config is not authenticated, and whoever can write the backing
// directory could name their own server. Confirmed means KMSEndpoint is
// set (the calls go there), or the URI is masterkey.Options.NamedURI (the
// user named the key on the command line or in fstab), or VAULT_ADDR names
// the same server: scheme https, host and port. Otherwise Open fails with
// an UnconfirmedError and makes no call. Enrolling takes the URI from the
// user and needs no confirmation.
//
// Importing the package registers the kind with package masterkey.
package hcvault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme of Vault transit master keys; it is also the
// kind recorded in the config.
const Scheme = "hcvault"

// Form is the URI form shown in help and error messages.
const Form = "hcvault://HOST[:PORT]/MOUNT/keys/NAME"

func init() {
	k := envelope.Kind(Scheme, Form, Canonical, New)
	open := k.Open
	k.Open = func(ctx context.Context, e keys.MasterEntry, opts masterkey.Options) (
		keys.Master, error) {
		if err := Confirm(e.URI, opts); err != nil {
			return nil, err // keys.Unlock names the master entry
		}
		return open(ctx, e, opts)
	}
	masterkey.Register(k)
}

// ErrUnconfirmed reports a Vault server that only the volume config names;
// UnconfirmedError carries the details.
var ErrUnconfirmed = errors.New("Vault server not confirmed")

// UnconfirmedError is a master key whose Vault server only the volume
// config names: coffer does not send it the token.
type UnconfirmedError struct {
	Key Key
}

// Error returns one line naming the server and why it is not contacted.
func (e *UnconfirmedError) Error() string {
	return fmt.Sprintf("%v: %s is named only by the volume config, which whoever can "+
		"write the backing directory can change; nothing was sent to it", ErrUnconfirmed,
		e.Key.Address())
}

// Unwrap returns ErrUnconfirmed.
func (e *UnconfirmedError) Unwrap() error { return ErrUnconfirmed }

// Hint tells the user the ways to confirm the server, for a CLI "hint:"
// line.
func (e *UnconfirmedError) Hint() string {
	return "confirm the server outside the backing directory: set VAULT_ADDR=" +
		e.Key.Address() + " (Environment=VAULT_ADDR=" + e.Key.Address() + " in a systemd " +
		"unit), or name the key: --master " + e.Key.URI() + " (master= in fstab), or pass " +
		"--kms-endpoint URL"
}

// Confirm checks that something outside the backing directory confirms the
// Vault server of uri, a master key URI read from a volume config: see the
// package documentation. It returns an UnconfirmedError if nothing does.
func Confirm(uri string, opts masterkey.Options) error {
	k, err := ParseURI(uri)
	if err != nil {
		return err
	}
	if opts.KMSEndpoint != "" {
		return nil
	}
	if named, err := ParseURI(opts.NamedURI); err == nil && named == k {
		return nil
	}
	if sameServer(os.Getenv("VAULT_ADDR"), k.Address()) {
		return nil
	}
	return &UnconfirmedError{Key: k}
}

// sameServer reports whether the URLs a and b have the same scheme, host
// and port, with the scheme's default port filled in.
func sameServer(a, b string) bool {
	ua, err := url.Parse(a)
	if err != nil || ua.Host == "" {
		return false
	}
	ub, err := url.Parse(b)
	if err != nil || ub.Host == "" {
		return false
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		return map[string]string{"https": "443", "http": "80"}[strings.ToLower(u.Scheme)]
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) &&
		strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub)
}

// Key is a parsed hcvault URI.
type Key struct {
	// Host is the server's host, with the port when the URI gives one.
	Host string
	// Mount is the path where the transit engine is mounted, without
	// slashes at either end, for example "transit" or "team/transit".
	Mount string
	// Name is the transit key's name.
	Name string
}

// URI returns the canonical hcvault URI of k.
func (k Key) URI() string { return Scheme + "://" + k.Host + "/" + k.Mount + "/keys/" + k.Name }

// Address returns the server address the URI names, https://HOST[:PORT].
func (k Key) Address() string { return "https://" + k.Host }

// ParseURI parses hcvault://HOST[:PORT]/MOUNT/keys/NAME. MOUNT may have
// several segments; the last "/keys/" separates it from NAME.
func ParseURI(uri string) (Key, error) {
	scheme, rest, _ := strings.Cut(uri, ":")
	if !strings.EqualFold(scheme, Scheme) || !strings.HasPrefix(rest, "//") {
		return Key{}, malformed(uri, "want "+Form)
	}
	if strings.ContainsAny(rest, "?#") {
		return Key{}, malformed(uri, "an hcvault URI takes no query or fragment")
	}
	u, err := url.Parse(Scheme + ":" + rest)
	if err != nil || u.Opaque != "" {
		return Key{}, malformed(uri, "want "+Form)
	}
	if u.User != nil {
		return Key{}, malformed(uri, "an hcvault URI takes no user or password: "+
			"the token comes from VAULT_TOKEN or ~/.vault-token")
	}
	host := strings.ToLower(u.Host)
	if err := checkHost(host); err != nil {
		return Key{}, malformed(uri, err.Error())
	}
	path := u.Path
	if u.RawPath != "" {
		return Key{}, malformed(uri, "the path must not hold escaped characters")
	}
	i := strings.LastIndex(path, "/keys/")
	if i < 0 {
		return Key{}, malformed(uri, "the path must be /MOUNT/keys/NAME, for example "+
			"/transit/keys/coffer")
	}
	mount, name := strings.Trim(path[:i], "/"), path[i+len("/keys/"):]
	if mount == "" || path[0] != '/' || strings.Contains(path[1:i], "//") {
		return Key{}, malformed(uri, "the path must start with the transit mount, for "+
			"example /transit/keys/NAME")
	}
	for _, seg := range strings.Split(mount, "/") {
		if !isSegment(seg) {
			return Key{}, malformed(uri, "mount path segment "+fmt.Sprintf("%q", seg)+
				" may hold only letters, digits, '-', '_' and '.'")
		}
	}
	if !isSegment(name) {
		return Key{}, malformed(uri, "the key name may hold only letters, digits, '-', "+
			"'_' and '.'")
	}
	return Key{Host: host, Mount: mount, Name: name}, nil
}

// Canonical checks an hcvault URI and returns its canonical form, for the
// masterkey registry.
func Canonical(uri string) (string, error) { return envelope.Canonical(ParseURI, uri) }

func malformed(uri, why string) error {
	return fmt.Errorf("%w %q: %s", masterkey.ErrMalformed, keys.RedactURI(uri), why)
}

// checkHost checks HOST[:PORT]: a DNS name or IP address and, when given, a
// port from 1 to 65535.
func checkHost(h string) error {
	if h == "" {
		return fmt.Errorf("the URI names no Vault server")
	}
	host, port := h, ""
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			if !strings.HasPrefix(h, "[") || !strings.HasSuffix(h, "]") {
				return fmt.Errorf("bad server %q: %v", h, err)
			}
			host = strings.Trim(h, "[]")
		}
	}
	if port != "" {
		n := 0
		for _, c := range []byte(port) {
			if c < '0' || c > '9' || n > 65535 {
				return fmt.Errorf("bad port %q", port)
			}
			n = n*10 + int(c-'0')
		}
		if n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad server name %q", host)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("bad server name %q", host)
			}
		}
	}
	return nil
}

// isSegment reports whether s is a plausible mount path segment or key
// name.
func isSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// checkEndpoint checks an address override: an http or https URL with a
// host and nothing else.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return fmt.Errorf("%w: Vault address %q must be an http:// or https:// URL such as "+
			"https://vault.example.com:8200", masterkey.ErrMalformed, keys.RedactURI(ep))
	}
	return nil
}
