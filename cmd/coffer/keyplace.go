package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/cofferfs/coffer/keys/keyfile"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/pkcs11"
)

// errKeyInVolume reports a key, PIN or passphrase file that lives inside a
// mount of the volume it unlocks: the next mount (at boot, say) cannot
// read it, since it only appears once the volume is mounted.
var errKeyInVolume = errors.New("is inside a mount of the volume it unlocks")

// errSecretInBacking reports a PIN, passphrase or recovery key file inside
// the backing directory: next to the ciphertext it protects nothing, and
// whoever can write the backing directory can replace it.
var errSecretInBacking = errors.New("is inside the backing directory")

// keyPlace is a file that holds a key or a secret the volume is unlocked
// with.
type keyPlace struct {
	what string // "--pin-file", "key file of file:///k", ...
	path string
	// boot is true for files that every later mount reads too (a key
	// file, a PIN file, the passphrase file of a mount); false for files a
	// person uses once (a recovery key, the passphrase that unlocks an
	// admin command).
	boot bool
	// keyFile marks the key file of a file: URI, which masterkey refuses
	// inside the backing directory itself (ErrKeyInBacking).
	keyFile bool
}

// flagPlaces returns the files named by the master-key flags and a
// passphrase file. bootPass says whether passFile is read by every mount
// (mount --passphrase-file) or only by this command.
func flagPlaces(m masterFlags, passFlag, passFile string, bootPass bool) []keyPlace {
	var out []keyPlace
	if m.pinFile != "" {
		out = append(out, keyPlace{what: "the PIN file (--pin-file)", path: m.pinFile, boot: true})
	}
	if m.recoveryKey != "" && m.recoveryKey != "-" {
		out = append(out, keyPlace{what: "the recovery key file (--recovery-key)",
			path: m.recoveryKey})
	}
	if passFile != "" {
		out = append(out, keyPlace{what: "the passphrase file (" + passFlag + ")", path: passFile,
			boot: bootPass})
	}
	return out
}

// uriPlaces returns the files a master-key URI reads at every unlock: the
// key file of a file: URI, the pin-source of a pkcs11: URI.
func uriPlaces(uri string) []keyPlace {
	ref, err := masterkey.Parse(uri)
	if err != nil {
		return nil // reported by whoever uses the URI
	}
	switch ref.Kind {
	case keyfile.Kind:
		return []keyPlace{{what: "the key file", path: ref.Path, boot: true,
			keyFile: true}}
	case pkcs11.Kind:
		u, err := pkcs11.ParseURI(ref.URI)
		if err == nil && u.PINSource != "" {
			return []keyPlace{{what: "the pin-source of the pkcs11: URI", path: u.PINSource,
				boot: true}}
		}
	}
	return nil
}

// checkKeyPlaces refuses a key place inside backing (only the key file of
// a file: URI is left to masterkey, which refuses it with ErrKeyInBacking),
// and one inside any of mounts, the mount points of this volume, that a
// later mount needs. A file a person uses once inside a mount is returned
// as a warning: the command works, but the file cannot help when the volume
// does not mount.
func checkKeyPlaces(backing string, mounts []string, places []keyPlace) ([]string, error) {
	var warnings []string
	for _, p := range places {
		inside, err := pathWithin(backing, p.path)
		if err != nil {
			return nil, err
		}
		if inside && !p.keyFile {
			return nil, withHints(fmt.Errorf("%s %s %w %s", p.what, p.path, errSecretInBacking,
				backing), "keep it away from the ciphertext, such as in /etc/coffer "+
				"(mode 0600)")
		}
		for _, mp := range mounts {
			inside, err := pathWithin(mp, p.path)
			if err != nil {
				return nil, err
			}
			if !inside {
				continue
			}
			if !p.boot {
				warnings = append(warnings, fmt.Sprintf("%s %s is inside %s, a mount of this "+
					"volume: keep a copy outside it, or it cannot help when the volume does "+
					"not mount", p.what, p.path, mp))
				continue
			}
			return nil, withHints(fmt.Errorf("%s %s %w (%s): the next mount could not read "+
				"it", p.what, p.path, errKeyInVolume, mp),
				"keep it outside the volume, such as in /etc/coffer (mode 0600)")
		}
	}
	return warnings, nil
}

// pathWithin reports whether path lies inside dir (or is dir). Both are
// made absolute and have their symbolic links resolved as far as they
// exist: a PIN file that does not exist yet under a mount point is inside
// it all the same.
func pathWithin(dir, path string) (bool, error) {
	d, err := resolvePath(dir)
	if err != nil {
		return false, err
	}
	p, err := resolvePath(path)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, nil // one relative, one absolute: cannot happen after Abs
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")), nil
}

// resolvePath makes path absolute and resolves the symbolic links of its
// longest existing prefix.
func resolvePath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("failed to resolve %s: %w", path, err)
	}
	var rest []string
	for cur := abs; ; {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur || !errors.Is(err, fs.ErrNotExist) {
			return abs, nil // unreadable or a dead mount: compare as written
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// volumeMounts lists the mount points of backing, and extra ones (the mount
// point a mount is about to use). A mount table that cannot be read leaves
// only the extra ones: the check is advice on top of the unlock.
func volumeMounts(backing string, extra ...string) []string {
	mounts, _ := mountsOf(backing)
	return append(mounts, extra...)
}
