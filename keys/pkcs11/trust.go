//go:build cgo && unix

package pkcs11

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUntrustedModule reports a PKCS#11 module that coffer refuses to load
// because someone other than root or the user running coffer could have
// put it there, or because it lies inside the backing directory. Loading
// a module runs its code in coffer's process, and the module path comes
// from the volume config, which anyone who can write the backing directory
// can edit.
var ErrUntrustedModule = errors.New("refusing to load PKCS#11 module")

// ModuleTrustError is a module refused by checkModule: the path as named,
// and why.
type ModuleTrustError struct {
	Path   string
	Reason string
	// inBacking is set when the module lies inside the backing directory.
	inBacking bool
}

// Error returns one line naming the module and the reason.
func (e *ModuleTrustError) Error() string {
	return fmt.Sprintf("%v %s: %s", ErrUntrustedModule, e.Path, e.Reason)
}

// Unwrap returns ErrUntrustedModule.
func (e *ModuleTrustError) Unwrap() error { return ErrUntrustedModule }

// Hint tells the user how to make the module loadable, for a CLI "hint:"
// line.
func (e *ModuleTrustError) Hint() string {
	if e.inBacking {
		return "a module inside the backing directory is never loaded: install it outside, " +
			"owned by root in a directory only root can write (such as /usr/lib), and check " +
			"that the volume's config names the module you expect (coffer master list)"
	}
	return "install the module owned by root, not writable by group or others, in " +
		"directories only root can write (such as /usr/lib); if you did not put it " +
		"there, check the volume's config (coffer master list)"
}

// checkModule decides whether the module at path may be loaded, in the
// way sshd's StrictModes does: after resolving symbolic links, the file must
// be a regular file, and it and every directory above it must be owned by
// root or by the effective user and not be writable by group or others (a
// directory with the sticky bit, such as /tmp, may be: others cannot rename
// or remove what they do not own there). The module must not lie inside
// backing, when backing is set: whoever can write the backing directory
// could have put it there, even as root on a shared file system. It
// returns the resolved path, which the caller loads, so that a symbolic
// link swapped after the check changes nothing.
func checkModule(path, backing string) (string, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err == nil {
		resolved, err = filepath.Abs(resolved)
	}
	if err != nil {
		return "", fmt.Errorf("%w %s: %w (install it, or set module-path in the URI)",
			ErrModule, path, err)
	}
	untrusted := func(format string, args ...any) error {
		return &ModuleTrustError{Path: path, Reason: fmt.Sprintf(format, args...)}
	}

	if backing != "" {
		inside, b, err := within(backing, resolved)
		if err != nil {
			return "", untrusted("cannot compare it with the backing directory: %v", err)
		}
		if inside {
			e := untrusted("it is inside the backing directory %s", b)
			e.(*ModuleTrustError).inBacking = true
			return "", e
		}
	}

	fi, err := os.Lstat(resolved)
	if err != nil {
		return "", untrusted("%v", err)
	}
	if !fi.Mode().IsRegular() {
		return "", untrusted("%s is not a regular file", resolved)
	}
	if why := ownerProblem(resolved, fi); why != "" {
		return "", untrusted("%s", why)
	}
	for dir := filepath.Dir(resolved); ; dir = filepath.Dir(dir) {
		di, err := os.Lstat(dir)
		if err != nil {
			return "", untrusted("%v", err)
		}
		if why := ownerProblem(dir, di); why != "" {
			return "", untrusted("%s", why)
		}
		if dir == "/" || dir == filepath.Dir(dir) {
			break
		}
	}
	return resolved, nil
}

// ownerProblem says why the file or directory p is not trusted to hold a
// module, or returns "".
func ownerProblem(p string, fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "cannot read the owner of " + p
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("%s is owned by uid %d, not by root or the user running coffer",
			p, st.Uid)
	}
	perm := fi.Mode().Perm()
	if fi.IsDir() && fi.Mode()&fs.ModeSticky != 0 {
		return ""
	}
	if perm&0o022 != 0 {
		return fmt.Sprintf("%s is writable by group or others (mode %04o)", p, perm)
	}
	return ""
}

// within reports whether resolved (an absolute path without symbolic links)
// lies inside dir, after resolving dir's links. It also returns the resolved
// dir, for messages.
func within(dir, resolved string) (bool, string, error) {
	d, err := filepath.EvalSymlinks(dir)
	if err == nil {
		d, err = filepath.Abs(d)
	}
	if err != nil {
		return false, dir, err
	}
	rel, err := filepath.Rel(d, resolved)
	if err != nil {
		return false, d, err
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")), d, nil
}

// ErrPINInBacking reports a URI's pin-source inside the backing directory.
// A PIN kept next to the ciphertext protects nothing, and a PIN file
// planted there by whoever can write the backing directory, named in an
// edited config, would spend the token's PIN retries until it locks.
var ErrPINInBacking = errors.New("PIN file is inside the backing directory")

// checkPINSource refuses a pin-source inside backing. A file that does not
// exist is left to the read that follows.
func checkPINSource(pinSource, backing string) error {
	if pinSource == "" || backing == "" {
		return nil
	}
	resolved, err := filepath.EvalSymlinks(pinSource)
	if err != nil {
		return nil
	}
	inside, b, err := within(backing, resolved)
	if err != nil || inside {
		return fmt.Errorf("%w: %s is inside %s; keep the PIN outside the backing directory "+
			"and check the volume's config (coffer master list)", ErrPINInBacking,
			pinSource, b)
	}
	return nil
}
