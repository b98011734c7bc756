//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestReadOnlyMount fills a volume, remounts it with -o ro, and checks that
// everything reads back, that every kind of change fails with EROFS, and
// that the backing directory is left as it was: every byte but coffer's
// bookkeeping (withoutBookkeeping).
func TestReadOnlyMount(t *testing.T) {
	v := newVolume(t)
	require.NoError(t, os.WriteFile(v.path("app.conf"), pseudoRandom(1, 10000), 0o640))
	require.NoError(t, os.MkdirAll(v.path("dir/empty"), 0o755))
	require.NoError(t, os.WriteFile(v.path("dir/inner"), []byte("inner\n"), 0o600))
	require.NoError(t, os.Symlink("app.conf", v.path("link")))
	require.NoError(t, unix.Setxattr(v.path("app.conf"), "user.owner", []byte("ops"), 0))
	want := snapshot(t, v.mnt)

	v.unmount(t)
	backing := snapshot(t, v.backing)
	v.mount(t, "ro")

	_, opts, ok := mountEntry(v.mnt)
	require.True(t, ok)
	assert.Contains(t, strings.Split(opts, ","), "ro", "mount options")
	compareTrees(t, want, snapshot(t, v.mnt), 0)

	writes := []struct {
		name string
		op   func(p pathFunc) error
	}{
		{"create", func(p pathFunc) error { return openClose(p("new"), os.O_CREATE|os.O_WRONLY) }},
		{"open O_WRONLY", func(p pathFunc) error { return openClose(p("app.conf"), os.O_WRONLY) }},
		{"open O_RDWR", func(p pathFunc) error { return openClose(p("app.conf"), os.O_RDWR) }},
		{"open O_TRUNC", func(p pathFunc) error {
			return openClose(p("app.conf"), os.O_RDONLY|os.O_TRUNC)
		}},
		{"truncate", func(p pathFunc) error { return os.Truncate(p("app.conf"), 1) }},
		{"mkdir", func(p pathFunc) error { return os.Mkdir(p("newdir"), 0o755) }},
		{"rmdir", func(p pathFunc) error { return unix.Rmdir(p("dir/empty")) }},
		{"unlink", func(p pathFunc) error { return unix.Unlink(p("dir/inner")) }},
		{"rename", func(p pathFunc) error { return os.Rename(p("app.conf"), p("moved")) }},
		{"symlink", func(p pathFunc) error { return os.Symlink("x", p("newlink")) }},
		{"link", func(p pathFunc) error { return os.Link(p("app.conf"), p("hard")) }},
		{"mkfifo", func(p pathFunc) error { return unix.Mkfifo(p("fifo"), 0o644) }},
		{"chmod", func(p pathFunc) error { return os.Chmod(p("app.conf"), 0o600) }},
		{"chown", func(p pathFunc) error { return os.Lchown(p("app.conf"), 1, 1) }},
		{"utimes", func(p pathFunc) error {
			return os.Chtimes(p("app.conf"), time.Unix(1, 0), time.Unix(1, 0))
		}},
		{"setxattr", func(p pathFunc) error {
			return unix.Setxattr(p("app.conf"), "user.new", []byte("x"), 0)
		}},
		{"removexattr", func(p pathFunc) error {
			return unix.Removexattr(p("app.conf"), "user.owner")
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			err := w.op(v.path)
			assert.ErrorIs(t, err, syscall.EROFS)
		})
	}

	compareTrees(t, want, snapshot(t, v.mnt), 0)
	v.unmount(t)
	compareTrees(t, withoutBookkeeping(backing), withoutBookkeeping(snapshot(t, v.backing)), 0)
}

// openClose opens path with flag and closes it again.
func openClose(path string, flag int) error {
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// pathFunc maps a name to its path in the mount.
type pathFunc = func(name ...string) string

// TestReadOnlyBacking mounts a volume whose backing directory is on a
// read-only file system (a read-only bind mount of it), with -o ro: the
// mount works and reads everything back; what it cannot record (the audit
// head anchor, the last use of the master key, its mount record) becomes a
// warning in its log, and the backing directory, bookkeeping included, is
// left exactly as it was.
func TestReadOnlyBacking(t *testing.T) {
	v := newVolume(t)
	require.NoError(t, os.WriteFile(v.path("app.conf"), pseudoRandom(2, 3*blockSize+7), 0o640))
	require.NoError(t, os.MkdirAll(v.path("dir"), 0o755))
	require.NoError(t, os.WriteFile(v.path("dir/inner"), []byte("inner\n"), 0o600))
	want := snapshot(t, v.mnt)
	v.unmount(t)
	backing := snapshot(t, v.backing)

	ro := *v
	ro.backing = filepath.Join(v.dir, "backing-ro")
	roBind(t, v.backing, ro.backing)
	ro.mount(t, "ro")
	compareTrees(t, want, snapshot(t, ro.mnt), 0)
	assert.ErrorIs(t, os.WriteFile(ro.path("new"), nil, 0o600), syscall.EROFS)
	ro.unmount(t)

	compareTrees(t, backing, snapshot(t, v.backing), 0)
	log, err := os.ReadFile(v.log)
	require.NoError(t, err)
	for _, want := range []string{"failed to update audit head anchor",
		"failed to record which master key unlocked the volume",
		"failed to record the ring generation this mount uses"} {
		assert.Contains(t, string(log), want)
	}
}

// roBind makes view a read-only bind mount of dir until the test ends.
func roBind(t *testing.T, dir, view string) {
	t.Helper()
	require.NoError(t, os.Mkdir(view, 0o700))
	require.NoError(t, unix.Mount(dir, view, "", unix.MS_BIND, ""))
	t.Cleanup(func() {
		if err := unix.Unmount(view, unix.MNT_DETACH); err != nil {
			t.Errorf("failed to unmount the bind mount %s: %v", view, err)
		}
	})
	require.NoError(t, unix.Mount("", view, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
	err := os.WriteFile(filepath.Join(view, "probe"), nil, 0o600)
	require.ErrorIs(t, err, syscall.EROFS, "the bind mount is writable")
}
