//go:build linux

package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEtcCopy serves a copy of a real configuration directory, /etc, from
// the mount: every regular file byte-identical (SHA-256), every symlink
// target, mode, owner and mtime the same, before and after a remount.
// /etc is first snapshotted into a plain directory, skipping special files
// and anything unreadable, so that a change to /etc during the test does not
// matter.
func TestEtcCopy(t *testing.T) {
	requireTools(t, "tar", "grep")
	work := t.TempDir()
	list := filepath.Join(work, "list")
	require.NoError(t, os.WriteFile(list, []byte(readableEntries(t, "/etc")), 0o644))
	plain := filepath.Join(work, "plain")
	require.NoError(t, os.Mkdir(plain, 0o755))
	sh(t, "", "tar -C / --no-recursion -T "+list+" -cf - | tar -C "+plain+" -xpf -")
	want := snapshot(t, filepath.Join(plain, "etc"))
	require.Greater(t, len(want), 50, "/etc looks empty")

	v := newVolume(t)
	sh(t, "", "tar -C "+plain+" -cf - etc | tar -C "+v.mnt+" -xpf -")
	compareTrees(t, want, snapshot(t, v.path("etc")), 0)

	v.remount(t)
	compareTrees(t, want, snapshot(t, v.path("etc")), 0)

	v.unmount(t)
	if passwd, err := os.ReadFile(filepath.Join(plain, "etc/passwd")); err == nil {
		first, _, _ := strings.Cut(string(passwd), "\n")
		assertNoPlaintext(t, v.backing, first)
	}
}

// readableEntries lists, relative to /, the directories, symlinks and
// readable regular files under root, one per line.
func readableEntries(t testing.TB, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			f.Close()
		case d.IsDir(), d.Type()&fs.ModeSymlink != 0:
		default:
			return nil
		}
		b.WriteString(strings.TrimPrefix(p, "/") + "\n")
		return nil
	})
	require.NoError(t, err)
	return b.String()
}
