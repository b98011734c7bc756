//go:build linux

package fs

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

func TestReservedFolderIsInvisibleAndUncreatable(t *testing.T) {
	v, mnt := mountNew(t)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "file"), []byte("x"), 0o644))
	res := filepath.Join(mnt, ReservedName)

	tests := []struct {
		name string
		op   func() error
		want syscall.Errno
	}{
		{name: "stat", op: func() error { _, err := os.Lstat(res); return err }, want: syscall.ENOENT},
		{name: "open", want: syscall.ENOENT, op: func() error {
			_, err := unix.Open(res+"/volume.json", unix.O_RDONLY, 0)
			return err
		}},
		{name: "create", want: syscall.EPERM, op: func() error {
			_, err := unix.Open(res, unix.O_CREAT|unix.O_WRONLY, 0o644)
			return err
		}},
		{name: "mkdir", op: func() error { return unix.Mkdir(res, 0o755) }, want: syscall.EPERM},
		{name: "mknod", op: func() error { return unix.Mkfifo(res, 0o644) }, want: syscall.EPERM},
		{name: "symlink", op: func() error { return unix.Symlink("file", res) }, want: syscall.EPERM},
		{name: "link", op: func() error { return unix.Link(filepath.Join(mnt, "file"), res) }, want: syscall.EPERM},
		{name: "rename to", op: func() error { return unix.Rename(filepath.Join(mnt, "file"), res) },
			want: syscall.EPERM},
		{name: "rename from", op: func() error { return unix.Rename(res, filepath.Join(mnt, "stolen")) },
			want: syscall.ENOENT},
		{name: "exchange", op: func() error {
			return unix.Renameat2(unix.AT_FDCWD, filepath.Join(mnt, "file"), unix.AT_FDCWD, res,
				unix.RENAME_EXCHANGE)
		}, want: syscall.ENOENT},
		{name: "unlink", op: func() error { return unix.Unlink(res) }, want: syscall.ENOENT},
		{name: "rmdir", op: func() error { return unix.Rmdir(res) }, want: syscall.ENOENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.op(), tt.want)
		})
	}

	ents, err := os.ReadDir(mnt)
	require.NoError(t, err)
	require.Len(t, ents, 1)
	assert.Equal(t, "file", ents[0].Name())

	// Only the root's folder is reserved.
	require.NoError(t, os.MkdirAll(filepath.Join(mnt, "sub", ReservedName), 0o755))
	got, err := os.ReadFile(filepath.Join(v.backing, ReservedName, "volume.json"))
	require.NoError(t, err)
	assert.Equal(t, "{}", string(got), "reserved folder must be untouched")
}

func TestStatfsAndStatx(t *testing.T) {
	v, mnt := mountNew(t)
	var want, got unix.Statfs_t
	require.NoError(t, unix.Statfs(v.backing, &want))
	require.NoError(t, unix.Statfs(mnt, &got))
	assert.Equal(t, want.Blocks, got.Blocks)
	assert.Equal(t, want.Bsize, got.Bsize)

	p := filepath.Join(mnt, "f")
	require.NoError(t, os.WriteFile(p, make([]byte, 5000), 0o644))
	var stx unix.Statx_t
	require.NoError(t, unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &stx))
	assert.Equal(t, uint64(5000), stx.Size)
	assert.Equal(t, uint64(16), stx.Blocks)

	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_ALL, &stx))
	assert.Equal(t, uint64(5000), stx.Size)
}

func TestReadOnlyMount(t *testing.T) {
	v := newTestVolume(t)
	rw := v.mount(t)
	require.NoError(t, os.WriteFile(filepath.Join(rw, "f"), []byte("data"), 0o644))
	before := snapshot(t, v.backing)

	ro := v.mountWith(t, func(o *Options) { o.ReadOnly = true })
	got, err := os.ReadFile(filepath.Join(ro, "f"))
	require.NoError(t, err)
	assert.Equal(t, "data", string(got))

	_, err = unix.Open(filepath.Join(ro, "f"), unix.O_WRONLY, 0)
	assert.ErrorIs(t, err, syscall.EROFS)
	assert.ErrorIs(t, os.WriteFile(filepath.Join(ro, "g"), nil, 0o644), syscall.EROFS)
	assert.ErrorIs(t, os.Truncate(filepath.Join(ro, "f"), 1), syscall.EROFS)
	assert.Equal(t, before, snapshot(t, v.backing))
}

func TestFallocate(t *testing.T) {
	_, mnt := mountNew(t)
	f, err := os.Create(filepath.Join(mnt, "f"))
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write([]byte("abc"))
	require.NoError(t, err)

	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 2, 10000))
	st, err := f.Stat()
	require.NoError(t, err)
	assert.Equal(t, int64(10002), st.Size())
	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 0, 10), "never shrinks")

	assert.ErrorIs(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 20000), syscall.EOPNOTSUPP)
	assert.ErrorIs(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 10),
		syscall.EOPNOTSUPP)

	got, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	assert.Equal(t, append([]byte("abc"), make([]byte, 9999)...), got)
}

func TestLocksBetweenDescriptors(t *testing.T) {
	_, mnt := mountNew(t)
	p := filepath.Join(mnt, "lock")
	require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
	a, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer a.Close()
	b, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer b.Close()

	t.Run("flock", func(t *testing.T) {
		require.NoError(t, unix.Flock(int(a.Fd()), unix.LOCK_EX|unix.LOCK_NB))
		assert.ErrorIs(t, unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB), syscall.EWOULDBLOCK)
		assert.ErrorIs(t, unix.Flock(int(b.Fd()), unix.LOCK_SH|unix.LOCK_NB), syscall.EWOULDBLOCK)
		require.NoError(t, unix.Flock(int(a.Fd()), unix.LOCK_UN))
		require.NoError(t, unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB))
		require.NoError(t, unix.Flock(int(b.Fd()), unix.LOCK_UN))
	})

	t.Run("open file description locks", func(t *testing.T) {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 10}
		require.NoError(t, unix.FcntlFlock(a.Fd(), unix.F_OFD_SETLK, &lk))

		probe := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 5, Len: 1}
		require.NoError(t, unix.FcntlFlock(b.Fd(), unix.F_OFD_GETLK, &probe))
		assert.Equal(t, int16(unix.F_WRLCK), probe.Type, "conflicting lock reported")

		conflict := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: 5, Len: 1}
		assert.ErrorIs(t, unix.FcntlFlock(b.Fd(), unix.F_OFD_SETLK, &conflict), syscall.EAGAIN)
		free := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 10, Len: 5}
		require.NoError(t, unix.FcntlFlock(b.Fd(), unix.F_OFD_SETLK, &free))

		unlock := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: 0, Len: 10}
		require.NoError(t, unix.FcntlFlock(a.Fd(), unix.F_OFD_SETLK, &unlock))
		require.NoError(t, unix.FcntlFlock(b.Fd(), unix.F_OFD_SETLK, &conflict))
		all := unix.Flock_t{Type: unix.F_UNLCK}
		require.NoError(t, unix.FcntlFlock(b.Fd(), unix.F_OFD_SETLK, &all))
	})

	t.Run("blocking lock waits for the holder", func(t *testing.T) {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		require.NoError(t, unix.FcntlFlock(a.Fd(), unix.F_OFD_SETLK, &lk))
		done := make(chan error, 1)
		go func() {
			w := unix.Flock_t{Type: unix.F_WRLCK}
			done <- unix.FcntlFlock(b.Fd(), unix.F_OFD_SETLKW, &w)
		}()
		unlock := unix.Flock_t{Type: unix.F_UNLCK}
		require.NoError(t, unix.FcntlFlock(a.Fd(), unix.F_OFD_SETLK, &unlock))
		require.NoError(t, <-done)
		require.NoError(t, unix.FcntlFlock(b.Fd(), unix.F_OFD_SETLK, &unlock))
	})

	// Classic POSIX locks belong to the process: its descriptors share
	// them, any of them unlocks, and closing any of them releases them.
	// An open file description lock query on a third descriptor plays the
	// other process; it stays open, since closing it would release too.
	c, err := os.Open(p)
	require.NoError(t, err)
	defer c.Close()
	probe := func(t *testing.T) int16 {
		lk := unix.Flock_t{Type: unix.F_RDLCK}
		require.NoError(t, unix.FcntlFlock(c.Fd(), unix.F_OFD_GETLK, &lk))
		return lk.Type
	}
	wrlock := func(f *os.File) error {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		return unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
	}

	t.Run("process locks shared between descriptors", func(t *testing.T) {
		require.NoError(t, wrlock(a))
		require.NoError(t, wrlock(b), "same process, second descriptor")
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		require.NoError(t, unix.FcntlFlock(b.Fd(), unix.F_GETLK, &lk))
		assert.Equal(t, int16(unix.F_UNLCK), lk.Type, "own lock does not conflict")
		assert.Equal(t, int16(unix.F_WRLCK), probe(t))

		unlock := unix.Flock_t{Type: unix.F_UNLCK}
		require.NoError(t, unix.FcntlFlock(b.Fd(), unix.F_SETLK, &unlock))
		assert.Equal(t, int16(unix.F_UNLCK), probe(t), "unlocked through the other descriptor")
	})

	t.Run("closing any descriptor releases process locks", func(t *testing.T) {
		require.NoError(t, wrlock(a))
		assert.Equal(t, int16(unix.F_WRLCK), probe(t))
		other, err := os.Open(p)
		require.NoError(t, err)
		require.NoError(t, other.Close())
		assert.Equal(t, int16(unix.F_UNLCK), probe(t))
	})
}

func TestSetRange(t *testing.T) {
	const eof = 1<<63 - 1
	tests := []struct {
		name string
		have []lockRange
		set  lockRange
		want []lockRange
	}{
		{name: "add", set: lockRange{0, 9, unix.F_WRLCK}, want: []lockRange{{0, 9, unix.F_WRLCK}}},
		{name: "unlock middle splits",
			have: []lockRange{{0, 99, unix.F_RDLCK}},
			set:  lockRange{10, 19, unix.F_UNLCK},
			want: []lockRange{{0, 9, unix.F_RDLCK}, {20, 99, unix.F_RDLCK}}},
		{name: "change type of part",
			have: []lockRange{{0, 99, unix.F_RDLCK}},
			set:  lockRange{50, eof, unix.F_WRLCK},
			want: []lockRange{{0, 49, unix.F_RDLCK}, {50, eof, unix.F_WRLCK}}},
		{name: "unlock all",
			have: []lockRange{{0, 9, unix.F_RDLCK}, {20, eof, unix.F_WRLCK}},
			set:  lockRange{0, eof, unix.F_UNLCK}},
		{name: "disjoint kept",
			have: []lockRange{{0, 9, unix.F_RDLCK}},
			set:  lockRange{10, 19, unix.F_UNLCK},
			want: []lockRange{{0, 9, unix.F_RDLCK}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, setRange(tt.have, tt.set))
		})
	}
}

// TestMmapSharedWrite writes through a shared mapping in a child process:
// a goroutine of this process faulting on a page of its own mount would
// block its thread, and a garbage collection waiting for that thread would
// stop the server that answers the fault.
func TestMmapSharedWrite(t *testing.T) {
	v, mnt := mountNew(t)
	p := filepath.Join(mnt, "mapped")
	orig := pattern(9, 3*bs+500)
	require.NoError(t, os.WriteFile(p, orig, 0o644))

	marker := "MMAP-MARKER-" + hex.EncodeToString(randBytes(8))
	offsets := []int{bs - 5, 3*bs + 100} // across a block boundary; in the partial last block
	want := append([]byte(nil), orig...)
	for _, off := range offsets {
		copy(want[off:], marker)
	}

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), helperEnv+"=mmap", "MMAP_PATH="+p, "MMAP_MARKER="+marker,
		fmt.Sprintf("MMAP_OFFSETS=%d,%d", offsets[0], offsets[1]))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start())
	lines := bufio.NewReader(stdout)
	line, err := lines.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "mapped\n", line)

	// Another descriptor sees the change through the shared page cache
	// before writeback.
	got, err := readAll(p)
	require.NoError(t, err)
	assert.Equal(t, want, got, "before msync")

	_, err = io.WriteString(stdin, "sync\n")
	require.NoError(t, err)
	require.NoError(t, child.Wait())

	// After writeback the data reached the backing file, encrypted.
	assertNoPlaintext(t, v.backing, []byte(marker))
	got, err = readAll(p)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	fresh := v.mount(t)
	got, err = readAll(filepath.Join(fresh, "mapped"))
	require.NoError(t, err)
	assert.Equal(t, want, got, "a second mount decrypts the written-back pages")
}

// TestDirectIO checks O_DIRECT, which sends reads and writes of any size and
// offset straight to the daemon, bypassing the page cache.
func TestDirectIO(t *testing.T) {
	_, mnt := mountNew(t)
	p := filepath.Join(mnt, "d")
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT, 0o644)
	require.NoError(t, err)
	defer unix.Close(fd)
	data := pattern(1, 10000)
	n, err := unix.Pwrite(fd, data, 123)
	require.NoError(t, err)
	assert.Equal(t, 10000, n)
	buf := make([]byte, 5000)
	n, err = unix.Pread(fd, buf, 1000)
	require.NoError(t, err)
	assert.Equal(t, 5000, n)
	assert.Equal(t, data[877:877+5000], buf)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, append(make([]byte, 123), data...), got)
}

func TestLargeFile(t *testing.T) {
	_, mnt := mountNew(t)
	p := filepath.Join(mnt, "large")
	f, err := os.Create(p)
	require.NoError(t, err)

	h := sha256.New()
	src := io.LimitReader(rand.Reader, 48<<20)
	_, err = io.CopyBuffer(io.MultiWriter(f, h), src, make([]byte, 1<<20+123))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	sum := h.Sum(nil)

	r, err := os.Open(p)
	require.NoError(t, err)
	defer r.Close()
	h.Reset()
	_, err = io.Copy(h, r)
	require.NoError(t, err)
	assert.Equal(t, sum, h.Sum(nil))
}

func TestCiphertextAtRest(t *testing.T) {
	v, mnt := mountNew(t)
	marker := []byte("PLAINTEXT-MARKER-" + hex.EncodeToString(randBytes(8)))

	// Small, multi-block, appended, overwritten, truncated and extended
	// files, and one in a subdirectory.
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "small"), marker, 0o644))
	big := bytes.Repeat(append(marker, ' '), 5000)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "big"), big, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(mnt, "d/e"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "d/e/nested"), marker, 0o600))

	f, err := os.OpenFile(filepath.Join(mnt, "appended"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	for range 100 {
		_, err = f.Write(marker)
		require.NoError(t, err)
	}
	require.NoError(t, f.Truncate(4000))
	require.NoError(t, f.Truncate(9000))
	_, err = f.WriteAt(marker, 8000)
	require.Error(t, err, "WriteAt on O_APPEND is refused by os.File")
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())

	g, err := os.OpenFile(filepath.Join(mnt, "big"), os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = g.WriteAt(marker, 4090)
	require.NoError(t, err)
	require.NoError(t, g.Close())

	assertNoPlaintext(t, v.backing, marker)
	assertNoPlaintext(t, v.backing, marker[:16])
}

// assertNoPlaintext fails if needle occurs in any file under dir. The
// mount may still be removing bookkeeping files (undo records are removed
// when the kernel releases a handle, after close has returned): a file that
// is gone by the time it is read is not at rest and is passed over.
func assertNoPlaintext(t *testing.T, dir string, needle []byte) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		files++
		assert.False(t, bytes.Contains(b, needle), "plaintext found in %s", p)
		return nil
	})
	require.NoError(t, err)
	require.Positive(t, files)
}

// snapshot returns every file of dir with its mode and contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		val := info.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			val += " " + hex.EncodeToString(b)
		}
		out[p] = val
		return nil
	})
	require.NoError(t, err)
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// cipherLen is the backing size of a plaintext size, for tests.
func cipherLen(plain int) int64 {
	return content.CipherSize(int64(plain))
}
