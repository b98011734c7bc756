package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestDeepTreeOffline builds, by renames through a mount (as breaker F4
// did), a tree whose backing paths are longer than PATH_MAX: a directory is
// moved into a new one 200 times, and every encrypted name is some 22 bytes
// for the mount's 1. The offline tools then still reach every file: rotate
// re-wraps the file at the bottom and purges the old ring key, rotate
// --reencrypt rewrites it, status --scan counts it, fsck checks it; and once the tree is moved up, the file reads
// back through the new key.
func TestDeepTreeOffline(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	require.NoError(t, os.Mkdir(filepath.Join(f.mnt, "a"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "a", "file"), []byte("at the bottom"), 0o600))
	const depth = 200
	for range depth {
		b, a := filepath.Join(f.mnt, "b"), filepath.Join(f.mnt, "a")
		require.NoError(t, os.Mkdir(b, 0o700))
		require.NoError(t, os.Rename(a, filepath.Join(b, "a")))
		require.NoError(t, os.Rename(b, a))
	}
	f.unmount(t)
	longest := 0
	require.NoError(t, walkAt(f.backing, "", func(rel string) { longest = max(longest, len(rel)) }))
	require.Greater(t, len(f.backing)+longest, unix.PathMax, "the backing tree is deeper than PATH_MAX")

	r := cliProcess(t, "rotate", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "rotated volume")
	r = cliProcess(t, "rotate", f.backing, "--reencrypt")
	requireOK(t, r)
	r = cliProcess(t, "status", f.backing, "--scan")
	requireOK(t, r)
	r = cliProcess(t, "fsck", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "0 problem(s)")
	assert.NotContains(t, r.stdout, "checked 0 files")

	// Up to 100 levels, the mount reaches the tree; moving the lower half
	// up brings the file within reach again.
	requireOK(t, f.mount(t))
	mid := filepath.Join(f.mnt, strings.Repeat("a/", depth/2)+"a")
	require.NoError(t, os.Rename(mid, filepath.Join(f.mnt, "up")))
	got, err := os.ReadFile(filepath.Join(f.mnt, "up", strings.Repeat("a/", depth/2)+"file"))
	require.NoError(t, err, "the file re-wrapped by the rotation reads")
	assert.Equal(t, "at the bottom", string(got))
	f.unmount(t)
}

// walkAt calls fn with the path of every entry under dir (relative to the
// test's root), going down through descriptors as paths cannot.
func walkAt(dir, rel string, fn func(rel string)) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	return walkFD(fd, rel, fn)
}

func walkFD(fd int, rel string, fn func(rel string)) error {
	f := os.NewFile(uintptr(fd), "dir")
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		sub := rel + "/" + e.Name()
		fn(sub)
		if !e.IsDir() {
			continue
		}
		cfd, err := unix.Openat(fd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		if err := walkFD(cfd, sub, fn); err != nil {
			return err
		}
	}
	return nil
}
