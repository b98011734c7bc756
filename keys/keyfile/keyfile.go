// Package keyfile implements the key-file master key, file:///ABSOLUTE/PATH:
// a file of exactly 32 random bytes, readable by its owner only, kept off
// the backing directory's disk (a USB stick, a secrets mount, a path that
// configuration management fills at boot).
//
// The ring is sealed with XChaCha20-Poly1305 under
// HKDF-SHA256(ikm = the 32 bytes, salt = none, info = "coffer keyfile v1").
package keyfile

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
)

// Kind is the master-key kind recorded in the config.
const Kind = "file"

// Scheme is the URI scheme of key files.
const Scheme = "file"

// Size is the length of a key file in bytes.
const Size = 32

const hkdfInfo = "coffer keyfile v1"

// ParseURI returns the absolute, clean path named by a file:///PATH URI. It
// refuses a host part, a relative or unclean path, a query and a fragment.
func ParseURI(uri string) (string, error) {
	if !strings.HasPrefix(uri, Scheme+"://") {
		return "", fmt.Errorf("key file URI %q must start with file://", uri)
	}
	u, err := url.Parse(uri)
	switch {
	case err != nil:
		return "", fmt.Errorf("malformed key file URI %q: %w", uri, err)
	case u.Host != "" || u.User != nil:
		return "", fmt.Errorf("key file URI %q names a host; use file:///ABSOLUTE/PATH", uri)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(uri, "#"):
		return "", fmt.Errorf("key file URI %q must not have a query or fragment", uri)
	case !filepath.IsAbs(u.Path):
		return "", fmt.Errorf("key file URI %q must name an absolute path", uri)
	case filepath.Clean(u.Path) != u.Path || u.Path == "/":
		return "", fmt.Errorf("key file URI %q must name a clean file path (no //, . or ..)", uri)
	case strings.ContainsRune(u.Path, 0):
		return "", fmt.Errorf("key file URI %q holds a NUL byte", uri)
	}
	return u.Path, nil
}

// URI returns the file:// URI of an absolute path.
func URI(path string) string {
	return (&url.URL{Scheme: Scheme, Path: path}).String()
}

// Create writes a new key file of Size random bytes at path with mode 0600.
// It refuses to overwrite an existing file; on failure no file remains.
func Create(path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("failed to create key file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(path)
		}
	}()

	key, err := keys.RandomSecret(Size)
	if err != nil {
		return err
	}
	defer key.Wipe()
	if err := f.Chmod(0o600); err != nil { // the umask may have cleared bits we need
		return fmt.Errorf("failed to set key file mode: %w", err)
	}
	if _, err := f.Write(key.InsecureBytes()); err != nil {
		return fmt.Errorf("failed to write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to sync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync %s: %w", dir, err)
	}
	return nil
}

// Load reads the key in path. It refuses a file that is not a regular file,
// that has any permission bit for group or others, or that is not exactly
// Size bytes. The checks run on the opened file, so a swap between check and
// read is not possible.
func Load(path string) (*keys.Secret, error) {
	f, _, err := keys.OpenSecretFile(path, "key file")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkFile(f); err != nil {
		return nil, err
	}

	key := keys.NewSecret(Size)
	if _, err := io.ReadFull(f, key.InsecureBytes()); err != nil {
		key.Wipe()
		return nil, fmt.Errorf("failed to read key file %s: %w", path, err)
	}
	var extra [1]byte
	if n, _ := f.Read(extra[:]); n != 0 {
		key.Wipe()
		return nil, fmt.Errorf("key file %s grew while being read", path)
	}
	return key, nil
}

// checkFile checks the type, mode and size of an open key file.
func checkFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("failed to stat key file: %w", err)
	}
	switch {
	case fi.IsDir():
		return fmt.Errorf("key file %s is a directory", f.Name())
	case !fi.Mode().IsRegular():
		return fmt.Errorf("key file %s is not a regular file", f.Name())
	case fi.Mode().Perm()&0o077 != 0:
		return &PermissionError{Path: f.Name(), Mode: fi.Mode().Perm()}
	case fi.Size() != Size:
		return fmt.Errorf("key file %s is %d bytes, want exactly %d", f.Name(), fi.Size(), Size)
	}
	return nil
}

// PermissionError reports a key file that group or others may access.
type PermissionError struct {
	Path string
	Mode os.FileMode
}

// Error names the file, its mode and the fix.
func (e *PermissionError) Error() string {
	return fmt.Sprintf("key file %s has mode %04o: group or others can access it; "+
		"run chmod 600 %s", e.Path, uint32(e.Mode), e.Path)
}

// Hint returns the command that fixes the permissions, for a CLI "hint:"
// line.
func (e *PermissionError) Hint() string { return "chmod 600 " + e.Path }

// New returns a Master for the key-file bytes key, which must be Size bytes.
// key is only read; the caller still owns and wipes it.
func New(key *keys.Secret) (keys.Master, error) {
	derived, err := deriveKey(key)
	if err != nil {
		return nil, err
	}
	return box.New(derived)
}

// deriveKey returns HKDF-SHA256(key, no salt, "coffer keyfile v1"), the key
// that seals the ring.
func deriveKey(key *keys.Secret) (*keys.Secret, error) {
	if key.Len() != Size {
		return nil, fmt.Errorf("key file key must be %d bytes, got %d", Size, key.Len())
	}
	derived, err := hkdf.Key(sha256.New, key.InsecureBytes(), nil, hkdfInfo, box.KeySize)
	if err != nil {
		return nil, fmt.Errorf("failed to derive key: %w", err)
	}
	return keys.SecretFromBytes(derived), nil
}

// Open loads the key file at path and returns its Master.
func Open(path string) (keys.Master, error) {
	key, err := Load(path)
	if err != nil {
		return nil, err
	}
	defer key.Wipe()
	return New(key)
}
