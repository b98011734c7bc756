//go:build linux

package fs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cofferfs/coffer/fs/names"
)

// Resolver maps paths inside a volume to paths in its backing directory and
// back without mounting it, for administrators working with backups. With
// plaintext names both directions are the identity.
type Resolver struct {
	f *filesystem
}

// NewResolver returns a resolver for the volume in backing; opts needs the
// volume ID, the key wrapper and EncryptNames.
func NewResolver(backing string, opts Options) (*Resolver, error) {
	if opts.Keys == nil {
		return nil, errors.New("failed to create path resolver: no key wrapper")
	}
	abs, err := filepath.Abs(backing)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to resolve backing directory: %w", err)
	}
	f := newFilesystem(abs, opts)
	if err := f.checkNamesMode(); err != nil {
		return nil, err
	}
	return &Resolver{f: f}, nil
}

// components splits a slash-separated path into its names, refusing "..".
func components(p string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("path %q has a '..' component", p)
		}
		out = append(out, c)
	}
	return out, nil
}

// Encrypt returns the backing path, relative to the backing directory, of
// the path plain inside the volume. Every directory on the way must exist.
func (r *Resolver) Encrypt(plain string) (string, error) {
	parts, err := components(plain)
	if err != nil {
		return "", err
	}
	if !r.f.encrypted() {
		return filepath.Join(parts...), nil
	}
	dir, out := r.f.backing, make([]string, 0, len(parts))
	for _, c := range parts {
		k, secret, err := r.f.loadDirKey(dir)
		if err != nil {
			return "", err
		}
		clear(secret)
		nm, err := k.Encrypt(c)
		if err != nil {
			return "", fmt.Errorf("failed to encrypt %q: %w", c, err)
		}
		out = append(out, nm.Backing)
		dir = filepath.Join(dir, nm.Backing)
	}
	return filepath.Join(out...), nil
}

// Decrypt returns the path inside the volume, slash-separated and without a
// leading slash, of a backing path relative to the backing directory.
func (r *Resolver) Decrypt(backingRel string) (string, error) {
	parts, err := components(backingRel)
	if err != nil {
		return "", err
	}
	if !r.f.encrypted() {
		return strings.Join(parts, "/"), nil
	}
	dir, out := r.f.backing, make([]string, 0, len(parts))
	for _, c := range parts {
		k, secret, err := r.f.loadDirKey(dir)
		if err != nil {
			return "", err
		}
		clear(secret)
		var plain string
		switch {
		case names.IsLong(c):
			var sc []byte
			sc, err = readFile(filepath.Join(dir, names.Sidecar(c)), 4*names.MaxName)
			if err == nil {
				plain, err = k.DecryptLong(c, sc)
			}
		case names.Hidden(c):
			err = errors.New("a reserved name of coffer, not an entry of the volume")
		default:
			plain, err = k.Decrypt(c)
		}
		if err != nil {
			return "", fmt.Errorf("failed to decrypt %s: %w", filepath.Join(dir, c), err)
		}
		out = append(out, plain)
		dir = filepath.Join(dir, c)
	}
	return strings.Join(out, "/"), nil
}

// InitNames gives a new volume with encrypted names the record of its root
// directory. Mount does the same for a volume whose backing directory is
// still empty, so calling it is optional.
func InitNames(backing string, opts Options) error {
	r, err := NewResolver(backing, opts)
	if err != nil {
		return err
	}
	if !r.f.encrypted() {
		return nil
	}
	return r.f.initRootRecord()
}
