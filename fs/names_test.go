//go:build linux

package fs

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/names"
)

// mountEncrypted creates a volume with encrypted names and mounts it.
func mountEncrypted(t *testing.T) (*testVolume, string) {
	t.Helper()
	v := newTestVolume(t)
	v.opts.EncryptNames = true
	return v, v.mount(t)
}

// treeSnapshot describes the tree below dir, symlinks not followed: one line per
// entry with its type, size, content hash or link target.
func treeSnapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(p, &st))
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			out = append(out, fmt.Sprintf("%q dir type %v", rel, d.Type()))
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			out = append(out, fmt.Sprintf("%q link %d %q type %v", rel, st.Size, target, d.Type()))
		default:
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			out = append(out, fmt.Sprintf("%q file %d %x nlink %d type %v", rel, st.Size,
				sha256.Sum256(b), st.Nlink, d.Type()))
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// allowedName returns a name of n bytes cycling through every byte value
// Linux allows in a name (all but NUL and '/'), starting at start.
func allowedName(n, start int) string {
	var b []byte
	for v := start; len(b) < n; v++ {
		if c := byte(v%255 + 1); c != '/' {
			b = append(b, c)
		}
	}
	if s := string(b); s == "." || s == ".." {
		return "x" + s[1:]
	}
	return string(b)
}

// backingNames returns every entry name in the backing tree.
func backingNames(t *testing.T, backing string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(backing, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		out = append(out, d.Name())
		return nil
	}))
	return out
}

// requireNoPlaintext fails if any backing entry name or sidecar holds one
// of the plaintext names.
func requireNoPlaintext(t *testing.T, backing string, plain []string) {
	t.Helper()
	all := backingNames(t, backing)
	for _, p := range plain {
		for _, b := range all {
			require.NotContains(t, b, p, "plaintext name in backing name")
		}
	}
}

func TestNamesRoundTripEveryByte(t *testing.T) {
	v, mnt := mountEncrypted(t)
	ref := t.TempDir()

	var made []string
	for n := 1; n <= 255; n++ {
		name := allowedName(n, n*7)
		made = append(made, name)
		for _, dir := range []string{ref, mnt} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644), "length %d", n)
		}
	}
	for _, name := range []string{"Ünïcödé ✓ 日本語", "emoji 🔐🗝", "README", "readme", "ReadMe",
		strings.Repeat("é", 127), ".hidden", "..x", "-dash", " space "} {
		made = append(made, name)
		for _, dir := range []string{ref, mnt} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644))
		}
	}

	assert.Equal(t, treeSnapshot(t, ref), treeSnapshot(t, mnt))
	for _, name := range made {
		b, err := os.ReadFile(filepath.Join(mnt, name))
		require.NoError(t, err)
		require.Equal(t, name, string(b))
	}
	var distinctive []string
	for _, name := range made {
		if len(name) >= 6 {
			distinctive = append(distinctive, name)
		}
	}
	requireNoPlaintext(t, v.backing, distinctive)

	// Names up to 255 bytes work; 256 do not.
	_, err := os.Create(filepath.Join(mnt, strings.Repeat("n", 256)))
	assert.ErrorIs(t, err, syscall.ENAMETOOLONG)

	var s unix.Statfs_t
	require.NoError(t, unix.Statfs(mnt, &s))
	assert.EqualValues(t, 255, s.Namelen)
}

// randomOps applies the same random sequence of namespace operations to a
// plain directory and to the mount and compares results and trees.
func TestNamesRandomOperationsMatchPlainDirectory(t *testing.T) {
	v, mnt := mountEncrypted(t)
	ref := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 10))

	pool := []string{"a", "B", "b", "config.json", "Config.JSON", "ü", strings.Repeat("l", 180),
		strings.Repeat("m", 255), allowedName(200, 3), "d1", "d2"}
	dirs := []string{".", "d1", "d2", "d1/" + strings.Repeat("s", 190)}
	pick := func() string {
		return filepath.Join(dirs[rng.IntN(len(dirs))], pool[rng.IntN(len(pool))])
	}
	type op struct {
		name string
		run  func(root string, a, b string) error
	}
	ops := []op{
		{"create", func(r, a, _ string) error { return os.WriteFile(filepath.Join(r, a), []byte(a), 0o644) }},
		{"mkdir", func(r, a, _ string) error { return unix.Mkdir(filepath.Join(r, a), 0o755) }},
		{"rmdir", func(r, a, _ string) error { return unix.Rmdir(filepath.Join(r, a)) }},
		{"unlink", func(r, a, _ string) error { return unix.Unlink(filepath.Join(r, a)) }},
		{"rename", func(r, a, b string) error { return unix.Rename(filepath.Join(r, a), filepath.Join(r, b)) }},
		{"rename noreplace", func(r, a, b string) error {
			return unix.Renameat2(unix.AT_FDCWD, filepath.Join(r, a), unix.AT_FDCWD, filepath.Join(r, b),
				unix.RENAME_NOREPLACE)
		}},
		{"rename exchange", func(r, a, b string) error {
			return unix.Renameat2(unix.AT_FDCWD, filepath.Join(r, a), unix.AT_FDCWD, filepath.Join(r, b),
				unix.RENAME_EXCHANGE)
		}},
		{"link", func(r, a, b string) error { return unix.Link(filepath.Join(r, a), filepath.Join(r, b)) }},
		{"symlink", func(r, a, b string) error { return unix.Symlink(a, filepath.Join(r, b)) }},
	}
	for _, d := range dirs[1:] {
		require.NoError(t, unix.Mkdir(filepath.Join(ref, d), 0o755))
		require.NoError(t, unix.Mkdir(filepath.Join(mnt, d), 0o755))
	}

	for i := range 1500 {
		o := ops[rng.IntN(len(ops))]
		a, b := pick(), pick()
		e1 := o.run(ref, a, b)
		e2 := o.run(mnt, a, b)
		require.Equal(t, errStr(e1), errStr(e2), "step %d: %s %q %q", i, o.name, a, b)
		if i%100 == 0 {
			require.Equal(t, treeSnapshot(t, ref), treeSnapshot(t, mnt), "step %d", i)
		}
	}
	require.Equal(t, treeSnapshot(t, ref), treeSnapshot(t, mnt))
	requireNoPlaintext(t, v.backing, []string{"config", "Config", "llllllll", "mmmmmmmm", "ssssssss"})
	requireSidecarsConsistent(t, v.backing)
}

// requireSidecarsConsistent checks that every long name has its sidecar
// and every sidecar its entry.
func requireSidecarsConsistent(t *testing.T, backing string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(backing, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		name, dir := d.Name(), filepath.Dir(p)
		switch {
		case names.IsLong(name):
			_, err := os.Stat(filepath.Join(dir, names.Sidecar(name)))
			assert.NoError(t, err, "long name without sidecar")
		case strings.HasPrefix(name, names.LongPrefix):
			_, err := os.Lstat(filepath.Join(dir, strings.TrimSuffix(name, names.SidecarSuffix)))
			assert.NoError(t, err, "sidecar without entry")
		case strings.HasPrefix(name, names.TmpPrefix):
			t.Errorf("temporary name left behind: %s", p)
		}
		return nil
	}))
}

func TestNamesLongNamesThroughRenameAndUnlink(t *testing.T) {
	v, mnt := mountEncrypted(t)
	long1, long2 := strings.Repeat("a", 176), strings.Repeat("b", 255)
	require.NoError(t, os.Mkdir(filepath.Join(mnt, "d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, long1), []byte("one"), 0o644))
	countSidecars := func() int {
		n := 0
		for _, b := range backingNames(t, v.backing) {
			if strings.HasSuffix(b, names.SidecarSuffix) {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 1, countSidecars())

	require.NoError(t, os.Rename(filepath.Join(mnt, long1), filepath.Join(mnt, "d", long2)))
	assert.Equal(t, 1, countSidecars())
	require.NoError(t, os.Link(filepath.Join(mnt, "d", long2), filepath.Join(mnt, long1)))
	assert.Equal(t, 2, countSidecars())
	require.NoError(t, os.Rename(filepath.Join(mnt, long1), filepath.Join(mnt, long1)))
	assert.Equal(t, 2, countSidecars())
	b, err := os.ReadFile(filepath.Join(mnt, long1))
	require.NoError(t, err)
	assert.Equal(t, "one", string(b))
	require.NoError(t, os.Remove(filepath.Join(mnt, long1)))
	require.NoError(t, os.Remove(filepath.Join(mnt, "d", long2)))
	assert.Equal(t, 0, countSidecars())
	requireSidecarsConsistent(t, v.backing)

	ents, err := os.ReadDir(filepath.Join(mnt, "d"))
	require.NoError(t, err)
	assert.Empty(t, ents)
	require.NoError(t, os.Remove(filepath.Join(mnt, "d")))
}

func TestNamesSymlinkTargets(t *testing.T) {
	v, mnt := mountEncrypted(t)
	for _, n := range []int{1, 2, 100, 1000, 3000, 4094, 4095} {
		target := allowedName(n, n)
		target = strings.ReplaceAll(target, "\x00", "x")
		link := filepath.Join(mnt, fmt.Sprintf("link%d", n))
		require.NoError(t, os.Symlink(target, link), "length %d", n)
		got, err := os.Readlink(link)
		require.NoError(t, err)
		require.Equal(t, target, got, "length %d", n)
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(link, &st))
		assert.EqualValues(t, unix.S_IFLNK, st.Mode&unix.S_IFMT)
		assert.EqualValues(t, n, st.Size)
	}
	assert.Error(t, os.Symlink(strings.Repeat("x", 4096), filepath.Join(mnt, "toolong")))

	// The target is followed, and readdir types the link as a link.
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "file"), []byte("content"), 0o644))
	require.NoError(t, os.Symlink("file", filepath.Join(mnt, "rel")))
	b, err := os.ReadFile(filepath.Join(mnt, "rel"))
	require.NoError(t, err)
	assert.Equal(t, "content", string(b))
	ents, err := os.ReadDir(mnt)
	require.NoError(t, err)
	for _, e := range ents {
		want := fs.ModeSymlink
		if e.Name() == "file" {
			want = 0
		}
		assert.Equal(t, want, e.Type(), e.Name())
	}

	// No target appears in the backing directory.
	require.NoError(t, filepath.WalkDir(v.backing, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.False(t, bytes.Contains(b, []byte("content")), p)
		}
		assert.NotEqual(t, fs.ModeSymlink, d.Type(), "backing symlink %s", p)
		return nil
	}))

	// Regular files never get the sticky bit that marks links.
	require.NoError(t, os.Chmod(filepath.Join(mnt, "file"), 0o1644))
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(mnt, "file"), &st))
	assert.EqualValues(t, unix.S_IFREG|0o644, st.Mode)
}

func TestNamesXattrs(t *testing.T) {
	v, mnt := mountEncrypted(t)
	p := filepath.Join(mnt, "f")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	values := map[string][]byte{
		"user.secret-label": []byte("prod-db-password"),
		"user.empty":        {},
		"user.binary":       {0, 1, 2, 255},
		"user.big":          bytes.Repeat([]byte("v"), 3000),
	}
	for k, val := range values {
		require.NoError(t, unix.Setxattr(p, k, val, 0))
	}
	for k, val := range values {
		sz, err := unix.Getxattr(p, k, nil)
		require.NoError(t, err)
		require.Equal(t, len(val), sz)
		buf := make([]byte, sz)
		_, err = unix.Getxattr(p, k, buf)
		require.NoError(t, err)
		assert.Equal(t, val, buf, k)
	}
	_, err := unix.Getxattr(p, "user.absent", nil)
	assert.ErrorIs(t, err, unix.ENODATA)
	assert.ErrorIs(t, unix.Setxattr(p, "user.empty", []byte("x"), unix.XATTR_CREATE), unix.EEXIST)

	buf := make([]byte, 4096)
	n, err := unix.Listxattr(p, buf)
	require.NoError(t, err)
	got := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(got)
	assert.Equal(t, []string{"user.big", "user.binary", "user.empty", "user.secret-label"}, got)
	require.NoError(t, unix.Removexattr(p, "user.big"))
	_, err = unix.Getxattr(p, "user.big", nil)
	assert.ErrorIs(t, err, unix.ENODATA)

	// The backing file holds neither names nor values.
	bp := onlyBackingFile(t, v.backing)
	n, err = unix.Llistxattr(bp, buf)
	require.NoError(t, err)
	assert.NotContains(t, string(buf[:n]), "secret")
	for name := range strings.SplitSeq(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		val := make([]byte, 4096)
		m, err := unix.Lgetxattr(bp, name, val)
		require.NoError(t, err)
		assert.NotContains(t, string(val[:m]), "prod-db")
	}
}

// onlyBackingFile returns the one regular, non-hidden file in the backing
// root.
func onlyBackingFile(t *testing.T, backing string) string {
	t.Helper()
	ents, err := os.ReadDir(backing)
	require.NoError(t, err)
	var found []string
	for _, e := range ents {
		if !names.Hidden(e.Name()) && e.Type().IsRegular() {
			found = append(found, filepath.Join(backing, e.Name()))
		}
	}
	require.Len(t, found, 1)
	return found[0]
}

func TestNamesTamperedNameIsSkipped(t *testing.T) {
	v, mnt := mountEncrypted(t)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "victim"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "other"), []byte("y"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(mnt, "sub"), 0o755))

	// Flip one ciphertext bit of victim's backing name.
	bp := onlyBackingFileNamed(t, v, "victim")
	raw, err := base64.RawURLEncoding.DecodeString(filepath.Base(bp))
	require.NoError(t, err)
	raw[0] ^= 0x10
	tampered := filepath.Join(v.backing, base64.RawURLEncoding.EncodeToString(raw))
	require.NoError(t, os.Rename(bp, tampered))

	// Move other's backing entry into sub: a name of another directory.
	op := onlyBackingFileNamed(t, v, "other")
	subBacking := onlyBackingFileNamed(t, v, "sub")
	moved := filepath.Join(subBacking, filepath.Base(op))
	require.NoError(t, os.Rename(op, moved))

	ents, err := os.ReadDir(mnt)
	require.NoError(t, err)
	require.Len(t, ents, 1)
	assert.Equal(t, "sub", ents[0].Name())
	ents, err = os.ReadDir(filepath.Join(mnt, "sub"))
	require.NoError(t, err)
	assert.Empty(t, ents)

	warned := map[string]bool{}
	for _, e := range v.logs.entries(t) {
		if e["level"] == "warn" && strings.Contains(e["message"].(string), "does not decrypt") {
			warned[e["backing"].(string)] = true
		}
	}
	assert.True(t, warned[tampered], "warning names %s: %s", tampered, v.logs)
	assert.True(t, warned[moved], "warning names %s: %s", moved, v.logs)
}

// onlyBackingFileNamed finds the backing path of a root entry by its
// plaintext name, through the encryption of the root's key.
func onlyBackingFileNamed(t *testing.T, v *testVolume, name string) string {
	t.Helper()
	f := newFilesystem(v.backing, v.opts)
	k, secret, err := f.loadDirKey(v.backing)
	require.NoError(t, err)
	clear(secret)
	nm, err := k.Encrypt(name)
	require.NoError(t, err)
	return filepath.Join(v.backing, nm.Backing)
}

func TestNamesDamagedDirectoryRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, rec string)
	}{
		{"missing", func(t *testing.T, rec string) { require.NoError(t, os.Remove(rec)) }},
		{"flipped bit", func(t *testing.T, rec string) {
			b, err := os.ReadFile(rec)
			require.NoError(t, err)
			b[24+14+20] ^= 1
			require.NoError(t, os.WriteFile(rec, b, 0o600))
		}},
		{"truncated", func(t *testing.T, rec string) { require.NoError(t, os.Truncate(rec, 100)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, mnt := mountEncrypted(t)
			require.NoError(t, os.MkdirAll(filepath.Join(mnt, "bad", "inner"), 0o755))
			require.NoError(t, os.Mkdir(filepath.Join(mnt, "good"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(mnt, "good", "f"), []byte("ok"), 0o644))
			bad := onlyBackingFileNamed(t, v, "bad")
			tc.damage(t, filepath.Join(bad, names.RecordName))

			// A fresh mount has no cached key.
			mnt2 := v.mount(t)
			_, err := os.ReadDir(filepath.Join(mnt2, "bad"))
			assert.ErrorIs(t, err, syscall.EIO)
			_, err = os.Stat(filepath.Join(mnt2, "bad", "inner"))
			assert.ErrorIs(t, err, syscall.EIO)
			err = os.WriteFile(filepath.Join(mnt2, "bad", "new"), nil, 0o644)
			assert.ErrorIs(t, err, syscall.EIO)

			b, err := os.ReadFile(filepath.Join(mnt2, "good", "f"))
			require.NoError(t, err)
			assert.Equal(t, "ok", string(b))
			st, err := os.Stat(filepath.Join(mnt2, "bad"))
			require.NoError(t, err)
			assert.True(t, st.IsDir())

			found := false
			for _, e := range v.logs.entries(t) {
				if e["level"] == "warn" && e["backing"] == bad &&
					strings.Contains(e["message"].(string), "directory record") {
					found = true
				}
			}
			assert.True(t, found, "log: %s", v.logs)
		})
	}
}

func TestNamesRmdirRemovesRecord(t *testing.T) {
	v, mnt := mountEncrypted(t)
	d := filepath.Join(mnt, "d")
	require.NoError(t, os.Mkdir(d, 0o500))
	st, err := os.Stat(d)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o500)|os.ModeDir, st.Mode())
	require.NoError(t, os.WriteFile(filepath.Join(d, "..x"), nil, 0o644))
	assert.ErrorIs(t, unix.Rmdir(d), unix.ENOTEMPTY)
	require.NoError(t, os.Remove(filepath.Join(d, "..x")))
	require.NoError(t, unix.Rmdir(d))
	records := slices.DeleteFunc(backingNames(t, v.backing), func(s string) bool { return s != names.RecordName })
	assert.Len(t, records, 1, "only the root's record remains")
}

func TestNamesReservedFolderStillHidden(t *testing.T) {
	_, mnt := mountEncrypted(t)
	_, err := os.Stat(filepath.Join(mnt, ReservedName))
	assert.ErrorIs(t, err, syscall.ENOENT)
	assert.ErrorIs(t, unix.Mkdir(filepath.Join(mnt, ReservedName), 0o755), unix.EPERM)
	ents, err := os.ReadDir(mnt)
	require.NoError(t, err)
	assert.Empty(t, ents)
	// The record's name is an ordinary plaintext name through the mount.
	require.NoError(t, os.WriteFile(filepath.Join(mnt, names.RecordName), []byte("x"), 0o644))
	ents, err = os.ReadDir(mnt)
	require.NoError(t, err)
	require.Len(t, ents, 1)
	assert.Equal(t, names.RecordName, ents[0].Name())
}

// TestNamesListingAnswersLookups lists directories of a fresh mount, whose
// READDIRPLUS replies carry each entry's attributes (answered by the
// directory handle from the entry it just listed), and checks every entry's
// type, size, link count and content against what was written, including
// a symbolic link, a long name, a hard link and an entry renamed after the
// listing.
func TestNamesListingAnswersLookups(t *testing.T) {
	v, mnt := mountEncrypted(t)
	long := strings.Repeat("l", 200)
	require.NoError(t, os.Mkdir(filepath.Join(mnt, "d"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "d", "f"), pattern(1, 5000), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "d", long), pattern(2, 3), 0o600))
	require.NoError(t, os.Symlink("f", filepath.Join(mnt, "d", "ln")))
	require.NoError(t, os.Link(filepath.Join(mnt, "d", "f"), filepath.Join(mnt, "d", "hard")))
	require.NoError(t, os.Mkdir(filepath.Join(mnt, "d", "sub"), 0o700))

	type entry struct {
		mode  os.FileMode
		size  int64
		nlink uint64
	}
	want := map[string]entry{
		"f":    {0o640, 5000, 2},
		"hard": {0o640, 5000, 2},
		long:   {0o600, 3, 1},
		"ln":   {os.ModeSymlink | 0o777, 1, 1},
	}
	fresh := v.mount(t)
	dir := filepath.Join(fresh, "d")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		assert.Equal(t, fi.Mode().Type(), e.Type(), "%s: listed type", e.Name())
		if e.Name() == "sub" {
			assert.Equal(t, os.ModeDir|0o700, fi.Mode())
			continue
		}
		w := want[e.Name()]
		assert.Equal(t, w.mode, fi.Mode(), "%s: mode", e.Name())
		assert.Equal(t, w.size, fi.Size(), "%s: size", e.Name())
		assert.Equal(t, w.nlink, fi.Sys().(*syscall.Stat_t).Nlink, "%s: links", e.Name())
	}
	assert.ElementsMatch(t, []string{"f", "hard", long, "ln", "sub"}, got)

	b, err := os.ReadFile(filepath.Join(dir, "hard"))
	require.NoError(t, err)
	assert.Equal(t, pattern(1, 5000), b)
	target, err := os.Readlink(filepath.Join(dir, "ln"))
	require.NoError(t, err)
	assert.Equal(t, "f", target)
	require.NoError(t, os.Rename(filepath.Join(dir, long), filepath.Join(dir, "sub", "moved")))
	b, err = os.ReadFile(filepath.Join(dir, "sub", "moved"))
	require.NoError(t, err)
	assert.Equal(t, pattern(2, 3), b)
}

// TestNamesSetattrKeepsLinkMarker changes owner, mode and times of a
// symbolic link, a regular file and a directory of a mount with encrypted
// names: the link stays a link with its target (its backing file keeps the
// sticky bit that marks it), a regular file never gets the sticky bit, a
// directory keeps it.
func TestNamesSetattrKeepsLinkMarker(t *testing.T) {
	_, mnt := mountEncrypted(t)
	f, ln, d := filepath.Join(mnt, "f"), filepath.Join(mnt, "ln"), filepath.Join(mnt, "d")
	require.NoError(t, os.WriteFile(f, []byte("data"), 0o644))
	require.NoError(t, os.Symlink("f", ln))
	require.NoError(t, os.Mkdir(d, 0o755))

	uid, gid := os.Getuid(), os.Getgid()
	require.NoError(t, os.Lchown(ln, uid, gid))
	ts := []unix.Timespec{unix.NsecToTimespec(1e18), unix.NsecToTimespec(1e18)}
	require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, ln, ts, unix.AT_SYMLINK_NOFOLLOW))
	require.NoError(t, os.Chmod(f, 0o1750))
	require.NoError(t, os.Chown(f, uid, gid))
	require.NoError(t, os.Chmod(d, 0o1777|os.ModeSticky))

	fi, err := os.Lstat(ln)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSymlink|0o777, fi.Mode())
	target, err := os.Readlink(ln)
	require.NoError(t, err)
	assert.Equal(t, "f", target)
	fi, err = os.Lstat(f)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o750), fi.Mode())
	b, err := os.ReadFile(f)
	require.NoError(t, err)
	assert.Equal(t, "data", string(b))
	fi, err = os.Lstat(d)
	require.NoError(t, err)
	assert.Equal(t, os.ModeDir|os.ModeSticky|0o777, fi.Mode())
}
