//go:build linux

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// entry is what a test compares about one file: everything an application
// can observe through stat, readlink, read and listxattr.
type entry struct {
	Type   string
	Mode   fs.FileMode
	Size   int64
	Mtime  int64 // nanoseconds since the epoch
	Nlink  uint64
	UID    uint32
	GID    uint32
	Target string
	SHA256 string
	Xattrs map[string]string
	// Links is the sorted list of paths in the tree sharing this inode; it
	// shows that hard links survived.
	Links string
}

// tree maps slash-separated paths relative to the root ("." for the root)
// to entries.
type tree map[string]entry

// ignore selects fields that compareTrees leaves out.
type ignore uint

const (
	ignoreMtime    ignore = 1 << iota // mtimes of every entry
	ignoreDirMtime                    // mtimes of directories only
	ignoreOwner                       // uid and gid
	ignoreNlink                       // link counts and link groups
	ignoreXattrs                      // extended attributes
	ignoreRoot                        // the attributes of "." itself
)

// snapshot walks root without following symlinks and records every entry.
func snapshot(t testing.TB, root string) tree {
	t.Helper()
	tr := tree{}
	inodes := map[[2]uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e, ino, err := statEntry(p)
		if err != nil {
			return err
		}
		tr[filepath.ToSlash(rel)] = e
		if e.Type != "dir" {
			inodes[ino] = append(inodes[ino], filepath.ToSlash(rel))
		}
		return nil
	})
	require.NoError(t, err, "failed to walk %s", root)

	for _, paths := range inodes {
		sort.Strings(paths)
		for _, p := range paths {
			e := tr[p]
			e.Links = strings.Join(paths, ",")
			tr[p] = e
		}
	}
	return tr
}

// statEntry records one path; ino is (device, inode).
func statEntry(p string) (entry, [2]uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return entry{}, [2]uint64{}, fmt.Errorf("failed to stat %s: %w", p, err)
	}
	e := entry{
		Mode:  fileMode(st.Mode),
		Size:  st.Size,
		Mtime: st.Mtim.Nano(),
		Nlink: st.Nlink,
		UID:   st.Uid,
		GID:   st.Gid,
	}
	ino := [2]uint64{st.Dev, st.Ino}

	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type = "file"
		e.SHA256, err = fileSHA256(p)
	case unix.S_IFDIR:
		e.Type, e.Size = "dir", 0 // directory sizes differ between file systems
	case unix.S_IFLNK:
		e.Type = "symlink"
		e.Target, err = os.Readlink(p)
	default:
		e.Type = "other"
	}
	if err != nil {
		return entry{}, ino, err
	}
	e.Xattrs, err = xattrs(p)
	return e, ino, err
}

// fileMode converts a raw st_mode into permission and special bits.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// xattrs lists the extended attributes of p (not following symlinks),
// leaving out system.* (ACLs, which depend on the file system).
func xattrs(p string) (map[string]string, error) {
	buf := make([]byte, 64*1024)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ENOTSUP {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list xattrs of %s: %w", p, err)
	}
	var out map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "system.") {
			continue
		}
		val := make([]byte, 64*1024)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, fmt.Errorf("failed to get xattr %s of %s: %w", name, p, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(val[:m])
	}
	return out, nil
}

// fileSHA256 returns the hex SHA-256 of the contents of p.
func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("failed to read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mustSHA256 is fileSHA256 that fails the test on error.
func mustSHA256(t testing.TB, p string) string {
	t.Helper()
	sum, err := fileSHA256(p)
	require.NoError(t, err)
	return sum
}

// mask clears the ignored fields of e.
func (e entry) mask(path string, ign ignore) entry {
	if ign&ignoreMtime != 0 || (ign&ignoreDirMtime != 0 && e.Type == "dir") {
		e.Mtime = 0
	}
	if ign&ignoreOwner != 0 {
		e.UID, e.GID = 0, 0
	}
	if ign&ignoreNlink != 0 {
		e.Nlink, e.Links = 0, ""
	}
	if ign&ignoreXattrs != 0 {
		e.Xattrs = nil
	}
	if ign&ignoreRoot != 0 && path == "." {
		e = entry{Type: e.Type}
	}
	return e
}

// compareTrees asserts that got has the same paths as want and that every
// entry matches, except the ignored fields. It reports at most 25 mismatches.
func compareTrees(t testing.TB, want, got tree, ign ignore) {
	t.Helper()
	const maxReports = 25
	var bad int
	report := func(format string, args ...any) {
		bad++
		if bad <= maxReports {
			t.Errorf(format, args...)
		}
	}

	for _, p := range sortedKeys(want) {
		g, ok := got[p]
		if !ok {
			report("missing from the copy: %s", p)
			continue
		}
		w := want[p].mask(p, ign)
		if g = g.mask(p, ign); !assert.ObjectsAreEqual(w, g) {
			report("%s differs:\nwant %+v\ngot  %+v", p, w, g)
		}
	}
	for _, p := range sortedKeys(got) {
		if _, ok := want[p]; !ok {
			report("unexpected in the copy: %s", p)
		}
	}
	if bad > maxReports {
		t.Errorf("... and %d more differences", bad-maxReports)
	}
}

// bookkeeping lists coffer's own records in a backing directory's .coffer
// folder: the audit head anchor, the last use of each master key, the config
// lock file. They are not file data, and every mount updates them, -o ro
// included (where the backing directory allows it).
var bookkeeping = []string{".coffer/audit-head.json", ".coffer/usage.json", ".coffer/lock"}

// withoutBookkeeping returns a copy of a backing directory's snapshot
// without the bookkeeping files and without the mtimes of the folders they
// live in (.coffer, and .coffer/mounts, where each running mount keeps a
// record that it removes when it ends). Everything else stays, so a
// comparison still sees every other byte, and a mount record left behind.
func withoutBookkeeping(tr tree) tree {
	out := make(tree, len(tr))
	for p, e := range tr {
		if p == ".coffer" || p == ".coffer/mounts" {
			e.Mtime = 0
		}
		out[p] = e
	}
	for _, p := range bookkeeping {
		delete(out, p)
	}
	return out
}
