//go:build linux

package stress

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestFullDisk puts the backing directory on an 8 MiB tmpfs and fills it
// through the mount. Every failing write, truncation or fallocate must fail
// with ENOSPC (not EIO, not a crash) and leave its file as it was before
// the call, plus what write(2) acknowledged with a short count before the
// error; the mount must stay up with all earlier data intact; and once
// space is freed, writing works again, on the same files too.
func TestFullDisk(t *testing.T) {
	v := newVolume(t, mountTmpfs(t, 8<<20))
	before := map[string][]byte{}
	for i, size := range []int{1, 4095, 4096, 100_000, 300_001} {
		name := fmt.Sprintf("before-%d", i)
		before[name] = pattern(uint64(10+i), size)
		writeSync(t, v.path(name), before[name], 0)
	}

	// Fill the disk with writes of an odd size, so that the last one ends
	// anywhere in a block.
	fill := openRW(t, v.path("fill"))
	var filled []byte
	var err error
	for chunk := 0; err == nil; chunk++ {
		data := pattern(uint64(100+chunk), 100_003)
		r := pwriteAll(fill, data, int64(len(filled)))
		filled = append(filled, data[:r.n]...)
		if r.err != 0 {
			err = r.err
		}
	}
	assert.ErrorIs(t, err, syscall.ENOSPC, "the write that filled the disk")
	t.Logf("the disk filled after %d bytes", len(filled))

	t.Run("the file that filled the disk is as acknowledged", func(t *testing.T) {
		assertFile(t, fill, filled)
	})
	// Each op returns what the file must hold afterwards: its old contents
	// if it failed, plus what a write acknowledged before failing (write(2)
	// may return a short count, and the next call the error).
	failing := []struct {
		name string
		op   func(fd int, old []byte) ([]byte, error)
	}{
		{"write past the end", func(fd int, old []byte) ([]byte, error) {
			return writeModel(fd, old, pattern(7, 50_000), 400_000)
		}},
		{"append", func(fd int, old []byte) ([]byte, error) {
			return writeModel(fd, old, pattern(8, 200_000), int64(len(old)))
		}},
		{"truncate up", func(fd int, old []byte) ([]byte, error) { return old, unix.Ftruncate(fd, 2<<20) }},
		{"fallocate", func(fd int, old []byte) ([]byte, error) { return old, unix.Fallocate(fd, 0, 0, 2<<20) }},
	}
	for i, tc := range failing {
		t.Run(tc.name+" fails with ENOSPC and changes nothing", func(t *testing.T) {
			name := fmt.Sprintf("before-%d", i)
			fd := openRW(t, v.path(name))
			defer unix.Close(fd)
			want, err := tc.op(fd, before[name])
			if err == nil {
				t.Logf("%s succeeded on a full disk", tc.name)
				before[name] = nil // unknown now; not checked below
				return
			}
			assert.ErrorIs(t, err, syscall.ENOSPC)
			if len(want) != len(before[name]) {
				t.Logf("%s: %d bytes acknowledged before ENOSPC", tc.name, len(want)-len(before[name]))
			}
			before[name] = want
			assertFile(t, fd, want)
		})
	}
	t.Run("a new file on a full disk", func(t *testing.T) {
		fd, err := unix.Open(v.path("new"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		require.NoError(t, err, "creating an empty file needs no data blocks")
		defer unix.Close(fd)
		r := pwriteAll(fd, pattern(9, 10_000), 0)
		if r.err != 0 {
			assert.Equal(t, syscall.ENOSPC, r.err)
			assertFile(t, fd, nil)
		}
	})
	t.Run("the mount stays up", func(t *testing.T) {
		assert.True(t, v.alive(), "the mount process died")
		assert.True(t, isFUSEMounted(v.mnt))
		_, err := os.Stat(v.mnt)
		assert.NoError(t, err)
	})
	t.Run("earlier files are intact", func(t *testing.T) {
		for name, want := range before {
			if want != nil {
				assertPath(t, v.path(name), want)
			}
		}
	})

	// Free the space: writing works again, on new files and on the files
	// that got ENOSPC.
	require.NoError(t, unix.Close(fill))
	require.NoError(t, os.Remove(v.path("fill")))
	t.Run("after freeing space", func(t *testing.T) {
		before["new"] = pattern(12, 1<<20)
		assert.NoError(t, writeFile(v.path("new"), before["new"], 0), "a new file")
		for name, want := range before {
			if want == nil || name == "new" {
				continue
			}
			more := pattern(11, 70_000)
			if assert.NoError(t, writeFile(v.path(name), more, int64(len(want))), "appending to %s", name) {
				before[name] = append(want, more...)
			}
		}
		v.unmount(t)
		v.mount(t)
		for name, want := range before {
			if want != nil {
				assertPath(t, v.path(name), want)
			}
		}
	})
	assert.Empty(t, v.warnings("integrity"), "no file failed an integrity check")
}

// assertPath checks the contents of a file.
func assertPath(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if assert.NoError(t, err, path) {
		assert.True(t, bytes.Equal(want, got), "%s: %s", path, diff(want, got, 0))
	}
}

// writeFile writes data at off into path, creating it, and fsyncs it.
func writeFile(path string, data []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func openRW(t testing.TB, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	require.NoError(t, err)
	return fd
}

// assertFile checks the size and contents of an open file.
func assertFile(t *testing.T, fd int, want []byte) {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))
	assert.Equal(t, int64(len(want)), st.Size, "size")
	r := preadAll(fd, int64(len(want))+BlockSize, 0)
	assert.Zero(t, r.err, "reading the file back")
	assert.True(t, bytes.Equal(want, r.data), "contents: %s", diff(want, r.data, 0))
}

// writeModel writes data at off and returns the file's expected contents:
// old with the acknowledged part of data written at off.
func writeModel(fd int, old, data []byte, off int64) ([]byte, error) {
	r := pwriteAll(fd, data, off)
	if r.n == 0 {
		return old, errOf(r)
	}
	var m model = append([]byte(nil), old...)
	m.writeAt(data[:r.n], off)
	return m, errOf(r)
}

func errOf(r result) error {
	if r.err == 0 {
		return nil
	}
	return r.err
}
