// Package masterkey names master keys by URI and opens or enrolls the right
// kind. Two kinds are built in:
//
//	file:///ABSOLUTE/PATH  a key file of 32 random bytes (package keyfile)
//	passphrase:            a passphrase through Argon2id (package passphrase)
//
// Other kinds live in their own packages and add themselves with Register;
// a program offers the kinds it imports. URIs of known kinds that this
// build does not offer (pkcs11:, tpm2:, systemd-creds:, aws-kms://,
// hcvault://, gcp-kms://, azure-kv://, recovery:, dpapi:) are refused with
// ErrNotSupported, distinct from an unknown scheme (ErrUnknownScheme) or a
// malformed URI (ErrMalformed).
package masterkey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/passphrase"
)

// Errors from Parse, Enroll and Open.
var (
	// ErrMalformed reports a URI that does not parse or breaks its kind's rules.
	ErrMalformed = errors.New("malformed master key URI")
	// ErrUnknownScheme reports a URI scheme coffer does not know.
	ErrUnknownScheme = errors.New("unknown master key scheme")
	// ErrNotSupported reports a master key kind planned but not supported in
	// this version.
	ErrNotSupported = errors.New("master key kind not supported in this version")
	// ErrNoPassphrase reports a passphrase master opened without a
	// passphrase source.
	ErrNoPassphrase = errors.New("no passphrase source")
	// ErrKeyInBacking reports a key file inside the backing directory.
	ErrKeyInBacking = errors.New("key file is inside the backing directory")
	// ErrNoCreate reports "keys create" for a kind without a creation step.
	ErrNoCreate = errors.New("master key kind has no creation step")
)

// planned are schemes of master-key kinds that this build may not offer.
var planned = map[string]bool{
	"pkcs11": true, "tpm2": true, "systemd-creds": true, "aws-kms": true,
	"hcvault": true, "gcp-kms": true, "azure-kv": true, "recovery": true,
	"dpapi": true,
}

// Ref is a parsed master-key URI.
type Ref struct {
	Kind string // keyfile.Kind, passphrase.Kind or a registered Kind.Name
	URI  string // canonical form, as recorded in the config
	Path string // the key file, for keyfile.Kind
}

// scheme returns the lower-case scheme of the canonical URI.
func (r Ref) scheme() string {
	s, _, _ := strings.Cut(r.URI, ":")
	return strings.ToLower(s)
}

// builtin reports whether scheme is a kind this package implements itself.
func builtin(scheme string) bool {
	return scheme == keyfile.Scheme || scheme == passphrase.Kind
}

// Parse parses a master-key URI.
func Parse(uri string) (Ref, error) {
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || !isScheme(scheme) {
		return Ref{}, fmt.Errorf("%w %q: want a URI such as %s", ErrMalformed,
			keys.RedactURI(uri), Supported())
	}

	scheme = strings.ToLower(scheme)
	if k, ok := lookup(scheme); ok {
		canon, err := k.Canonical(scheme + ":" + rest)
		if err != nil {
			return Ref{}, err
		}
		return Ref{Kind: k.Name, URI: canon}, nil
	}
	switch {
	case scheme == keyfile.Scheme:
		path, err := keyfile.ParseURI(scheme + ":" + rest)
		if err != nil {
			return Ref{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return Ref{Kind: keyfile.Kind, URI: keyfile.URI(path), Path: path}, nil
	case scheme == passphrase.Kind:
		if rest != "" {
			return Ref{}, fmt.Errorf("%w: passphrase: takes nothing after the colon; the "+
				"passphrase is prompted for or read from a file", ErrMalformed)
		}
		return Ref{Kind: passphrase.Kind, URI: passphrase.Kind + ":"}, nil
	case planned[scheme]:
		return Ref{}, fmt.Errorf("%w: %s: master keys are not supported yet (supported: %s)",
			ErrNotSupported, scheme, Supported())
	default:
		return Ref{}, fmt.Errorf("%w %q (supported: %s)", ErrUnknownScheme, scheme, Supported())
	}
}

// isScheme reports whether s is an RFC 3986 scheme.
func isScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlpha(c) && (c < '0' || c > '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// Redacted returns the URI with any secret it carries replaced, fit for
// logs and error messages.
func (r Ref) Redacted() string { return keys.RedactURI(r.URI) }

// String returns Redacted, so that printing a Ref never shows a secret.
func (r Ref) String() string { return r.Redacted() }

// PassphraseRequest tells a PassphraseFunc what the passphrase is for.
type PassphraseRequest struct {
	// MasterID is the master entry being opened; empty at enrollment.
	MasterID string
	// Enroll is true for a new passphrase, which a prompt should ask twice.
	Enroll bool
}

// PassphraseFunc supplies a passphrase. Enroll and Open wipe the returned
// Secret when they are done with it.
type PassphraseFunc func(ctx context.Context, req PassphraseRequest) (*keys.Secret, error)

// PINRequest tells a PINFunc which token the PIN is for.
type PINRequest struct {
	// Token is the label of the token.
	Token string
	// URI is the master key's URI, without secrets.
	URI string
}

// PINFunc supplies the PIN of a token. The caller wipes the returned Secret
// once it has logged in.
type PINFunc func(ctx context.Context, req PINRequest) (*keys.Secret, error)

// Options carries what opening or enrolling a master key may need.
type Options struct {
	// Passphrase supplies passphrases; nil makes passphrase masters fail
	// with ErrNoPassphrase.
	Passphrase PassphraseFunc
	// PassphraseCost overrides the Argon2id cost of a new passphrase master;
	// nil means passphrase.DefaultCost().
	PassphraseCost *passphrase.Cost
	// Backing, when set, is the volume's backing directory: a key file
	// inside it is refused with ErrKeyInBacking. A key stored next to its
	// ciphertext protects nothing, and a config rewritten by someone who
	// can write the backing directory could point at a key file they put
	// there.
	Backing string

	// NamedURI is the master key URI the user named on the command line or
	// in fstab (--master URI, master=URI), or "". Kinds that send secrets
	// to a server their URI names (hcvault) contact the server of a config
	// entry only when something outside the backing directory confirms
	// it, and an entry with this URI is confirmed.
	NamedURI string

	// PINFile is a file holding the PIN of a PKCS#11 token (--pin-file).
	// A pin-source attribute in the URI takes precedence.
	PINFile string
	// PIN asks for the PIN of a token when neither the URI nor PINFile
	// names a PIN file, typically on a terminal; nil makes such a token
	// fail with an error that names --pin-file.
	PIN PINFunc
	// TPMDevice is the TPM to use (--tpm-device): a character device such
	// as /dev/tpmrm0 or the Unix socket of a simulator. Empty means the
	// kind's default.
	TPMDevice string
	// KMSEndpoint overrides the KMS service endpoint (--kms-endpoint), for
	// testing against a local KMS. Empty means the kind's default (and the
	// standard environment variables).
	KMSEndpoint string
	// RecoveryKey is a file holding a private recovery key
	// (--recovery-key), or "-" for RecoveryKeyText.
	RecoveryKey string
	// RecoveryKeyText supplies the text of the private recovery key when
	// RecoveryKey is "-": typed at a prompt or read from standard input.
	RecoveryKeyText func(ctx context.Context) (*keys.Secret, error)
}

// Enroll prepares the master key named by uri for keys.Init: for a key
// file it loads the existing file (create one with keyfile.Create), for a
// passphrase it asks for one and draws a fresh salt.
func Enroll(ctx context.Context, uri string, opts Options) (keys.Enrollment, error) {
	ref, err := Parse(uri)
	if err != nil {
		return keys.Enrollment{}, err
	}
	switch ref.Kind {
	case keyfile.Kind:
		m, err := openKeyFile(ref.Path, opts)
		if err != nil {
			return keys.Enrollment{}, err
		}
		return keys.Enrollment{Kind: ref.Kind, URI: ref.URI, Master: m}, nil
	case passphrase.Kind:
		return enrollPassphrase(ctx, ref, opts)
	}
	k, _ := lookup(ref.scheme())
	return k.Enroll(ctx, ref, opts)
}

func enrollPassphrase(ctx context.Context, ref Ref, opts Options) (keys.Enrollment, error) {
	cost := passphrase.DefaultCost()
	if opts.PassphraseCost != nil {
		cost = *opts.PassphraseCost
	}
	if err := cost.Validate(); err != nil {
		return keys.Enrollment{}, fmt.Errorf("invalid passphrase cost: %w", err)
	}
	pass, err := getPassphrase(ctx, opts, PassphraseRequest{Enroll: true})
	if err != nil {
		return keys.Enrollment{}, err
	}
	defer pass.Wipe()

	m, params, err := passphrase.Enroll(pass, cost)
	if err != nil {
		return keys.Enrollment{}, err
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return keys.Enrollment{}, fmt.Errorf("failed to encode passphrase params: %w", err)
	}
	return keys.Enrollment{Kind: ref.Kind, URI: ref.URI, Params: raw, Master: m}, nil
}

func getPassphrase(ctx context.Context, opts Options, req PassphraseRequest) (*keys.Secret,
	error) {
	if opts.Passphrase == nil {
		return nil, fmt.Errorf("%w: a passphrase master key needs a terminal or a "+
			"passphrase file", ErrNoPassphrase)
	}
	pass, err := opts.Passphrase(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("failed to read passphrase: %w", err)
	}
	return pass, nil
}

// Open opens the master key recorded in entry. Failures to reach the key
// (a missing key file, no passphrase source) are reported here; a wrong key
// shows as keys.ErrWrongKey when the master unseals.
func Open(ctx context.Context, entry keys.MasterEntry, opts Options) (keys.Master, error) {
	ref, err := Parse(entry.URI)
	if err != nil {
		return nil, err
	}
	if ref.Kind != entry.Kind {
		return nil, fmt.Errorf("%w: master key %s has kind %q but URI of kind %q",
			ErrMalformed, entry.ID, entry.Kind, ref.Kind)
	}
	switch ref.Kind {
	case keyfile.Kind:
		return openKeyFile(ref.Path, opts)
	case passphrase.Kind:
		return openPassphrase(ctx, entry, opts)
	}
	k, _ := lookup(ref.scheme())
	return k.Open(ctx, entry, opts)
}

// openKeyFile opens a key file after checking that it is outside
// opts.Backing.
func openKeyFile(path string, opts Options) (keys.Master, error) {
	if opts.Backing != "" {
		inside, err := within(opts.Backing, path)
		if err != nil {
			return nil, err
		}
		if inside {
			return nil, fmt.Errorf("%w: %s is inside %s; keep master keys away from the "+
				"ciphertext", ErrKeyInBacking, path, opts.Backing)
		}
	}
	return keyfile.Open(path)
}

// within reports whether path, after resolving symbolic links, lies inside
// dir. A path that does not exist is left to the open that follows.
func within(dir, path string) (bool, error) {
	// Both made absolute: a relative backing directory (master add b
	// file:///abs/b/k) against an absolute key path would not compare.
	d, err := filepath.EvalSymlinks(dir)
	if err == nil {
		d, err = filepath.Abs(d)
	}
	if err != nil {
		return false, fmt.Errorf("failed to resolve backing directory: %w", err)
	}
	p, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err == nil {
		p, err = filepath.Abs(p)
	}
	if err != nil {
		return false, fmt.Errorf("failed to resolve key file path: %w", err)
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, fmt.Errorf("failed to compare %s with %s: %w", p, d, err)
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")), nil
}

func openPassphrase(ctx context.Context, entry keys.MasterEntry, opts Options) (keys.Master,
	error) {
	params, err := passphrase.ParseParams(entry.Params)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", entry.ID, err)
	}
	pass, err := getPassphrase(ctx, opts, PassphraseRequest{MasterID: entry.ID})
	if err != nil {
		return nil, err
	}
	defer pass.Wipe()
	return passphrase.Open(pass, params)
}

// Opener returns a keys.OpenFunc that opens entries with Open, for
// keys.Unlock.
func Opener(ctx context.Context, opts Options) keys.OpenFunc {
	return func(e keys.MasterEntry) (keys.Master, error) { return Open(ctx, e, opts) }
}
