//go:build linux

package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestCiphertextAtRest writes distinctive markers through the mount in every
// way a program can (write, pwrite across a block boundary, O_APPEND, a
// shared writable mmap, a write after truncating up, rename, hard link,
// copy_file_range, sqlite3, sed -i), then checks with grep that none of them
// appears anywhere in the backing directory, while the same grep finds each
// of them through the mount. The master key must not appear either.
func TestCiphertextAtRest(t *testing.T) {
	requireTools(t, "grep", "sed", "sqlite3")
	v := newVolume(t)
	type write struct {
		name string
		file string
		do   func(t *testing.T, path, marker string)
	}
	writes := []write{
		{"write", "plain.txt", func(t *testing.T, p, m string) {
			require.NoError(t, os.WriteFile(p, []byte("secret="+m+"\n"), 0o600))
		}},
		{"pwrite across a block boundary", "pwrite.bin", func(t *testing.T, p, m string) {
			pwrite(t, p, []byte(m), 4096-len(m)/2)
		}},
		{"append", "append.log", func(t *testing.T, p, m string) {
			for i := 0; i < 200; i++ {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
				require.NoError(t, err)
				_, err = f.WriteString("line " + m + "\n")
				require.NoError(t, err)
				require.NoError(t, f.Close())
			}
		}},
		{"mmap", "mmap.bin", mmapWrite},
		{"truncate up, then write at the end", "sparse.bin", func(t *testing.T, p, m string) {
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			require.NoError(t, os.Truncate(p, 1<<20))
			pwrite(t, p, []byte(m), 1<<20)
		}},
		{"rename and link", "linked.txt", func(t *testing.T, p, m string) {
			tmp := p + ".tmp"
			require.NoError(t, os.WriteFile(tmp, []byte(m), 0o600))
			require.NoError(t, os.Rename(tmp, p))
			require.NoError(t, os.Link(p, p+".2"))
		}},
		{"copy_file_range inside the mount", "copied.txt", func(t *testing.T, p, m string) {
			src := p + ".src"
			require.NoError(t, os.WriteFile(src, []byte(strings.Repeat(m+"\n", 300)), 0o600))
			copyFileRange(t, src, p)
		}},
		{"sqlite3", "app.db", func(t *testing.T, p, m string) {
			run(t, "", "sqlite3", p, "PRAGMA journal_mode=WAL; CREATE TABLE s(v TEXT);"+
				" INSERT INTO s VALUES('"+m+"');")
		}},
		{"sed -i", "sed.conf", func(t *testing.T, p, m string) {
			require.NoError(t, os.WriteFile(p, []byte("token = PLACEHOLDER\n"), 0o600))
			run(t, "", "sed", "-i", "s/PLACEHOLDER/"+m+"/", p)
		}},
	}

	markers := make([]string, len(writes))
	for i, w := range writes {
		markers[i] = fixtureMarker(t, strings.ReplaceAll(w.file, ".", "-"))
		t.Run(w.name, func(t *testing.T) { w.do(t, v.path(w.file), markers[i]) })
	}
	v.unmount(t)

	t.Run("backing holds no plaintext", func(t *testing.T) {
		assertNoPlaintext(t, v.backing, markers...)
	})
	t.Run("backing holds no master key", func(t *testing.T) {
		key, err := os.ReadFile(v.key)
		require.NoError(t, err)
		needles := [][]byte{key, []byte(hex.EncodeToString(key)),
			[]byte(base64.StdEncoding.EncodeToString(key))}
		assertNoBytes(t, v.backing, needles...)
	})
	t.Run("the mount shows every marker", func(t *testing.T) {
		v.mount(t)
		for i, w := range writes {
			out, _, err := tryRun("", nil, "grep", "-r", "-l", "-a", "-F", "-e", markers[i], v.mnt)
			require.NoError(t, err, "%s: marker not found through the mount", w.name)
			assert.Contains(t, out, v.path(w.file), w.name)
		}
	})
}

// pwrite writes b at off in an existing or new file.
func pwrite(t *testing.T, path string, b []byte, off int) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	require.NoError(t, err)
	_, err = f.WriteAt(b, int64(off))
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// mmapWrite sizes a file to three blocks, maps it shared and writes the
// marker across the second block boundary, then msyncs.
func mmapWrite(t *testing.T, path, marker string) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(3*4096))
	mem, err := unix.Mmap(int(f.Fd()), 0, 3*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.NoError(t, err)
	copy(mem[2*4096-len(marker)/2:], marker)
	require.NoError(t, unix.Msync(mem, unix.MS_SYNC))
	require.NoError(t, unix.Munmap(mem))
}

// copyFileRange copies src to a new dst with copy_file_range(2), the way cp
// copies within one file system.
func copyFileRange(t *testing.T, src, dst string) {
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	fi, err := in.Stat()
	require.NoError(t, err)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	defer out.Close()
	for left := fi.Size(); left > 0; {
		n, err := unix.CopyFileRange(int(in.Fd()), nil, int(out.Fd()), nil, int(left), 0)
		require.NoError(t, err)
		require.NotZero(t, n, "copy_file_range stopped early")
		left -= int64(n)
	}
}

// assertNoBytes asserts that no file under dir contains any needle. A file
// that is gone by the time it is read (an undo record the mount removes when
// the kernel releases a handle, after close has returned) is passed over.
func assertNoBytes(t *testing.T, dir string, needles ...[]byte) {
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for i, n := range needles {
			assert.False(t, bytes.Contains(data, n), "needle %d found in %s", i, p)
		}
		return nil
	})
	require.NoError(t, err)
}
