// Package names encrypts the names of a coffer volume's directory entries
// and the names and values of user extended attributes.
//
// Every directory has its own random 32-byte name secret, stored wrapped by
// the key ring in a record file (RecordName) inside the directory's backing
// directory; see [Record]. A [Key] derived from the secret encrypts each
// entry name deterministically with AES-256-SIV (RFC 5297), the directory ID
// as associated data, and encodes the result as unpadded base64url. A name
// whose encoding would pass 255 bytes is stored under a hashed backing name
// (LongPrefix) next to a sidecar file holding its full ciphertext.
//
// Backing names that start with a dot are never encrypted names: the
// record, sidecars, long names and temporary names all start with one, and
// base64url never produces it. The layout is specified in docs/format.md.
package names

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/tink-crypto/tink-go/v2/daead/subtle"
)

// Reserved backing names and limits.
const (
	// RecordName is the per-directory record holding the wrapped name key.
	RecordName = ".coffer.dir"
	// LongPrefix starts the backing name of an entry whose encrypted name
	// is too long; base64url of the SHA-256 of the ciphertext follows.
	LongPrefix = ".coffer.long."
	// SidecarSuffix follows a long backing name to name its sidecar, which
	// holds the entry's full encrypted name.
	SidecarSuffix = ".name"
	// TmpPrefix starts temporary backing names (directories being made).
	TmpPrefix = ".coffer.tmp."
	// ReencryptPrefix starts the temporary files of coffer rotate
	// --reencrypt: a file's re-encrypted copy before it is renamed over
	// the original.
	ReencryptPrefix = ".coffer.reenc."
	// MaxName is the longest plaintext name, in bytes.
	MaxName = 255
	// MaxShort is the longest plaintext name stored as a plain encoded
	// name; longer ones use a long name and a sidecar.
	MaxShort = 175
	// SecretSize is the size of a directory's name secret.
	SecretSize = 32

	maxBacking = 255
	sivInfo    = "coffer names siv v1"
)

var enc = base64.RawURLEncoding

// ErrName reports a backing name, sidecar or attribute that does not
// decrypt to a valid plaintext: tampered, moved from another directory or
// not written by coffer.
var ErrName = errors.New("invalid encrypted name")

// DirID identifies a directory; it is bound into every name encrypted in it.
type DirID [16]byte

// Key encrypts and decrypts the entry names of one directory.
type Key struct {
	id  DirID
	siv *subtle.AESSIV
}

// NewKey returns the name key of directory id for its name secret.
func NewKey(secret []byte, id DirID) (*Key, error) {
	if len(secret) != SecretSize {
		return nil, fmt.Errorf("failed to create name key: secret is %d bytes, want %d",
			len(secret), SecretSize)
	}
	k, err := hkdf.Key(sha256.New, secret, nil, sivInfo, subtle.AESSIVKeySize)
	if err != nil {
		return nil, fmt.Errorf("failed to derive name key: %w", err)
	}
	defer clear(k)
	siv, err := subtle.NewAESSIV(k)
	if err != nil {
		return nil, fmt.Errorf("failed to create name key: %w", err)
	}
	return &Key{id: id, siv: siv}, nil
}

// ID returns the key's directory ID.
func (k *Key) ID() DirID {
	return k.id
}

// Name is the backing form of a plaintext name.
type Name struct {
	// Backing is the entry's name in the backing directory.
	Backing string
	// Sidecar is the content of the entry's sidecar file for a long name
	// (the raw ciphertext), nil for a short one.
	Sidecar []byte
}

// Long reports whether the name is stored as a long name with a sidecar.
func (n Name) Long() bool {
	return n.Sidecar != nil
}

// Encrypt returns the backing form of the plaintext name. It fails for a
// name that Linux does not allow (empty, ".", "..", with '/' or NUL, or
// longer than MaxName).
func (k *Key) Encrypt(name string) (Name, error) {
	if err := Valid(name); err != nil {
		return Name{}, err
	}
	ct, err := k.siv.EncryptDeterministically([]byte(name), k.id[:])
	if err != nil {
		return Name{}, fmt.Errorf("failed to encrypt name: %w", err)
	}
	if s := enc.EncodeToString(ct); len(s) <= maxBacking {
		return Name{Backing: s}, nil
	}
	return Name{Backing: LongName(ct), Sidecar: ct}, nil
}

// Decrypt returns the plaintext of a short backing name.
func (k *Key) Decrypt(backing string) (string, error) {
	ct, err := enc.DecodeString(backing)
	if err != nil || enc.EncodeToString(ct) != backing || len(backing) > maxBacking {
		return "", fmt.Errorf("not base64url: %w", ErrName)
	}
	return k.open(ct)
}

// DecryptLong returns the plaintext of a long backing name from the content
// of its sidecar, which must hash to the backing name.
func (k *Key) DecryptLong(backing string, sidecar []byte) (string, error) {
	if LongName(sidecar) != backing {
		return "", fmt.Errorf("sidecar does not match its name: %w", ErrName)
	}
	if len(enc.EncodeToString(sidecar)) <= maxBacking {
		return "", fmt.Errorf("short name stored as a long one: %w", ErrName)
	}
	return k.open(sidecar)
}

func (k *Key) open(ct []byte) (string, error) {
	pt, err := k.siv.DecryptDeterministically(ct, k.id[:])
	if err != nil {
		return "", fmt.Errorf("failed to authenticate: %w", ErrName)
	}
	if err := Valid(string(pt)); err != nil {
		return "", fmt.Errorf("decrypts to a name Linux forbids: %w", ErrName)
	}
	return string(pt), nil
}

// Valid reports whether name is a name Linux allows in a directory.
func Valid(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid name %q", name)
	case len(name) > MaxName:
		return fmt.Errorf("name of %d bytes is longer than %d", len(name), MaxName)
	case strings.ContainsAny(name, "/\x00"):
		return errors.New("name contains '/' or NUL")
	}
	return nil
}

// LongName returns the backing name of a long name with ciphertext ct.
func LongName(ct []byte) string {
	sum := sha256.Sum256(ct)
	return LongPrefix + enc.EncodeToString(sum[:])
}

// IsLong reports whether backing is a long name (not its sidecar).
func IsLong(backing string) bool {
	rest, ok := strings.CutPrefix(backing, LongPrefix)
	return ok && len(rest) == enc.EncodedLen(sha256.Size) && !strings.Contains(rest, ".")
}

// Sidecar returns the name of the sidecar of the long backing name.
func Sidecar(backing string) string {
	return backing + SidecarSuffix
}

// Hidden reports whether a backing name is never an entry of its own in the
// plaintext view: the record, sidecars and temporary names. Long names are
// entries, found through their sidecar.
func Hidden(backing string) bool {
	return strings.HasPrefix(backing, ".") && !IsLong(backing)
}

// SameSidecar reports whether b is the sidecar content for ct.
func SameSidecar(b, ct []byte) bool {
	return bytes.Equal(b, ct)
}
