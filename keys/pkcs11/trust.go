//go:build cgo && unix

package pkcs11

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

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
