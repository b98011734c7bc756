//go:build linux

package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestEncryptedNamesTree copies a tree of awkward names (every length up to
// 255 bytes, Unicode, names differing only in case, long symbolic link
// targets, hard links, user xattrs) into a mount with tar, compares it with
// the source with diff -r, before and after a remount, and checks that the
// backing directory holds none of the names, targets or xattrs.
func TestEncryptedNamesTree(t *testing.T) {
	requireTools(t, "tar", "diff")
	src := filepath.Join(t.TempDir(), "src")
	markers := buildNameTree(t, src)
	v := newVolume(t)

	archive := filepath.Join(t.TempDir(), "tree.tar")
	run(t, "", "tar", "--xattrs", "--xattrs-include=user.*", "-C", src, "-cf", archive, ".")
	run(t, "", "tar", "--xattrs", "--xattrs-include=user.*", "-C", v.mnt, "-xf", archive)

	check := func(t *testing.T) {
		run(t, "", "diff", "-r", "--no-dereference", src, v.mnt)
		assert.Equal(t, "secret-xattr-value", string(getxattr(t, v.path("xattr-file"), "user.classification")))
		var st unix.Stat_t
		require.NoError(t, unix.Stat(v.path("hard-b"), &st))
		assert.EqualValues(t, 2, st.Nlink, "hard link kept")
		target, err := os.Readlink(v.path("long-target-link"))
		require.NoError(t, err)
		assert.Len(t, target, 4000)
	}
	t.Run("diff", check)

	t.Run("at rest", func(t *testing.T) {
		v.unmount(t)
		defer v.mount(t)
		require.NoError(t, filepath.WalkDir(v.backing, func(p string, d fs.DirEntry, err error) error {
			require.NoError(t, err)
			for _, m := range markers {
				require.NotContains(t, d.Name(), m, "plaintext name in the backing directory")
			}
			return nil
		}))
		assertNoPlaintext(t, v.backing, "target-marker-", "secret-xattr-value", "classification")
		attrs := 0
		require.NoError(t, filepath.WalkDir(v.backing, func(p string, d fs.DirEntry, err error) error {
			require.NoError(t, err)
			buf := make([]byte, 65536)
			n, err := unix.Llistxattr(p, buf)
			require.NoError(t, err)
			for name := range strings.SplitSeq(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
				if !strings.HasPrefix(name, "user.") {
					continue
				}
				attrs++
				assert.NotContains(t, name, "classification")
				m, err := unix.Lgetxattr(p, name, buf)
				require.NoError(t, err)
				assert.NotContains(t, string(buf[:m]), "secret-xattr-value")
			}
			return nil
		}))
		assert.Equal(t, 1, attrs, "the one user xattr is in the backing directory, encrypted")
	})

	t.Run("after remount", check)
}

// buildNameTree creates the source tree and returns distinctive plaintext
// names (at least 6 bytes long) that must not appear in the backing tree.
func buildNameTree(t *testing.T, root string) []string {
	t.Helper()
	require.NoError(t, os.MkdirAll(root, 0o755))
	var markers []string
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}

	for n := 1; n <= 255; n += 2 {
		var b []byte
		for c := n; len(b) < n; c++ {
			if ch := byte(c%254 + 1); ch != '/' {
				b = append(b, ch)
			}
		}
		name := string(b)
		if name == "." || name == ".." {
			continue
		}
		write(filepath.Join("lengths", name), name)
	}
	long := strings.Repeat("long-directory-", 16) // 240 bytes
	for _, name := range []string{"prod-db-password.conf", "Prod-DB-Password.conf", "PROD-DB-PASSWORD.CONF",
		"Ünïcödé-名前-🔐", "appsettings.Production.json", long + "/nested-secret.txt",
		"config/" + strings.Repeat("z", 255)} {
		write(name, "content of "+name)
		markers = append(markers, filepath.Base(name), filepath.Dir(name))
	}
	markers = slicesClean(markers)

	require.NoError(t, os.Symlink("prod-db-password.conf", filepath.Join(root, "relative-link")))
	require.NoError(t, os.Symlink(strings.Repeat("target-marker-", 286)[:4000], filepath.Join(root, "long-target-link")))
	write("hard-a", "hard")
	require.NoError(t, os.Link(filepath.Join(root, "hard-a"), filepath.Join(root, "hard-b")))
	write("xattr-file", "x")
	require.NoError(t, unix.Setxattr(filepath.Join(root, "xattr-file"), "user.classification",
		[]byte("secret-xattr-value"), 0))
	require.NoError(t, os.Mkdir(filepath.Join(root, "empty-directory"), 0o700))
	return append(markers, "relative-link", "long-target-link", "xattr-file", "empty-directory")
}

// slicesClean drops short and "." entries from names.
func slicesClean(names []string) []string {
	var out []string
	for _, n := range names {
		if len(n) >= 6 {
			out = append(out, n)
		}
	}
	return out
}

func getxattr(t *testing.T, path, name string) []byte {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(path, name, buf)
	require.NoError(t, err)
	return buf[:n]
}
