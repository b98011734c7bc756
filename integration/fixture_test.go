//go:build linux

package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fixtureMarker returns a distinctive string that must never appear in the
// backing directory in clear.
func fixtureMarker(t testing.TB, what string) string {
	t.Helper()
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return fmt.Sprintf("COFFER-PLAINTEXT-%s-%s", what, hex.EncodeToString(b[:]))
}

// pseudoRandom returns n deterministic pseudo-random bytes for seed.
func pseudoRandom(seed uint64, n int) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	r := mrand.NewChaCha8(key)
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

// makeFixture builds in dir (which must not exist) a tree with everything
// cp -a and rsync -a preserve: file sizes around block boundaries, modes
// with special bits, owners, symlinks (relative, absolute, dangling, to a
// directory), hard links, an xattr, an empty directory, and mtimes with
// nanoseconds set on every entry. marker is embedded in several files.
func makeFixture(t testing.TB, dir, marker string) {
	t.Helper()
	for _, d := range []string{"", "a", "a/b", "a/b/c", "empty", "private", "sticky"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}

	files := []struct {
		name string
		size int
		mode os.FileMode
	}{
		{"zero", 0, 0o644},
		{"one", 1, 0o600},
		{"a/block-1", 4095, 0o640},
		{"a/block", 4096, 0o644},
		{"a/block+1", 4097, 0o755},
		{"a/b/two-blocks", 8192, 0o400},
		{"a/b/c/odd", 65537, 0o644},
		{"a/b/c/big", 300000, 0o644},
		{"private/secret.key", 1679, 0o600},
		{"setuid", 100, 0o755 | os.ModeSetuid},
		{"sticky/shared", 10, 0o666},
	}
	for i, f := range files {
		p := filepath.Join(dir, f.name)
		data := pseudoRandom(uint64(i), f.size)
		if f.size > len(marker)+20 {
			copy(data[10:], marker)
			copy(data[len(data)-len(marker)-3:], marker)
		}
		require.NoError(t, os.WriteFile(p, data, 0o600))
		require.NoError(t, os.Chmod(p, f.mode))
	}
	config := "[db]\nconnection = Server=db;Password=" + marker + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a/app.ini"), []byte(config), 0o640))

	for _, l := range [][2]string{
		{"a/b/two-blocks", "hard-1"},
		{"a/b/two-blocks", "a/hard-2"},
		{"a/app.ini", "private/app.ini"},
	} {
		require.NoError(t, os.Link(filepath.Join(dir, l[0]), filepath.Join(dir, l[1])))
	}
	for _, l := range [][2]string{
		{"a/b/c/odd", "rel-link"},
		{"/etc/hostname", "abs-link"},
		{"does/not/exist", "a/dangling"},
		{"a/b", "dir-link"},
		{"../block", "a/b/up-link"},
	} {
		require.NoError(t, os.Symlink(l[0], filepath.Join(dir, l[1])))
	}

	require.NoError(t, os.Lchown(filepath.Join(dir, "private/secret.key"), 1234, 5678))
	require.NoError(t, os.Lchown(filepath.Join(dir, "rel-link"), 4321, 8765))
	require.NoError(t, unix.Setxattr(filepath.Join(dir, "a/app.ini"), "user.comment",
		[]byte("reviewed"), 0))

	require.NoError(t, os.Chmod(filepath.Join(dir, "private"), 0o700))
	require.NoError(t, os.Chmod(filepath.Join(dir, "sticky"), 0o777|os.ModeSticky))
	setFixtureTimes(t, dir, 0)
}

// setFixtureTimes gives every entry a distinct mtime with nanoseconds,
// deepest entries first so directory times are not changed afterwards.
// Each pass gives other times.
func setFixtureTimes(t testing.TB, dir string, pass int) {
	t.Helper()
	var paths []string
	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	base := time.Date(2001+pass, 2, 3, 4, 5, 6, 123456789, time.UTC)
	for i := len(paths) - 1; i >= 0; i-- {
		ts := unix.NsecToTimespec(base.Add(time.Duration(i) * 97 * time.Hour).UnixNano())
		err := unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], []unix.Timespec{ts, ts},
			unix.AT_SYMLINK_NOFOLLOW)
		require.NoError(t, err, "failed to set times of %s", paths[i])
	}
}
