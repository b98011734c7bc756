//go:build linux

package fs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
)

// fixedPath names a handle in logs without a node tree.
type fixedPath string

func (p fixedPath) backingPath() string { return string(p) }

func (p fixedPath) mountPath() string { return "" }

// openTestHandle opens a backing file directly, without FUSE.
func openTestHandle(t *testing.T, f *filesystem, name string) *handle {
	t.Helper()
	fd, writable, err := f.openBacking(name, syscall.O_RDWR, syscall.O_CREAT, 0o600)
	require.NoError(t, err)
	h, err := f.newHandle(fixedPath(filepath.Join(f.backing, name)), fd, writable)
	require.NoError(t, err)
	t.Cleanup(h.release)
	return h
}

func newTestFilesystem(t *testing.T) *filesystem {
	t.Helper()
	v := newTestVolume(t)
	return newFilesystem(v.backing, v.opts)
}

// checkModel asserts that the handle reads back exactly the model.
func checkModel(t *testing.T, h *handle, model []byte) {
	t.Helper()
	sz, err := h.stat()
	require.NoError(t, err)
	require.Equal(t, int64(len(model)), sz.plain, "plaintext size")
	require.False(t, sz.torn)
	if len(model) > 0 {
		require.Equal(t, content.CipherSize(int64(len(model))), sz.cipher, "backing size")
	}

	got := make([]byte, len(model)+100)
	n, err := h.readAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, len(model), n)
	require.True(t, bytes.Equal(model, got[:n]), "contents differ")
}

func TestEngineAgainstModel(t *testing.T) {
	tests := []struct {
		name   string
		seed   uint64
		maxOff int
		maxLen int
	}{
		{name: "small offsets", seed: 1, maxOff: 3 * bs, maxLen: 300},
		{name: "block sized", seed: 2, maxOff: 10 * bs, maxLen: 3 * bs},
		{name: "large", seed: 3, maxOff: 64 * bs, maxLen: 40 * bs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFilesystem(t)
			h := openTestHandle(t, f, "model")
			rng := rand.New(rand.NewPCG(tt.seed, 0))
			var model []byte

			for step := range 400 {
				off := rng.IntN(tt.maxOff + 1)
				n := rng.IntN(tt.maxLen) + 1
				switch op := rng.IntN(10); {
				case op < 6:
					data := make([]byte, n)
					for i := range data {
						data[i] = byte(rng.UintN(255) + 1)
					}
					w, err := h.writeAt(data, int64(off))
					require.NoError(t, err, "step %d", step)
					require.Equal(t, n, w)
					if off+n > len(model) {
						model = append(model, make([]byte, off+n-len(model))...)
					}
					copy(model[off:], data)
				case op < 8:
					require.NoError(t, h.truncate(int64(off)), "step %d", step)
					if off > len(model) {
						model = append(model, make([]byte, off-len(model))...)
					}
					model = model[:off]
				case op < 9:
					require.NoError(t, h.allocate(int64(off), int64(n)), "step %d", step)
					if off+n > len(model) {
						model = append(model, make([]byte, off+n-len(model))...)
					}
				default:
					buf := make([]byte, n)
					got, err := h.readAt(buf, int64(off))
					require.NoError(t, err, "step %d", step)
					want := max(0, min(n, len(model)-off))
					require.Equal(t, want, got, "step %d: read length", step)
					require.True(t, bytes.Equal(model[min(off, len(model)):][:want], buf[:got]),
						"step %d: read at %d+%d", step, off, n)
				}
				if step%50 == 0 {
					checkModel(t, h, model)
				}
			}
			checkModel(t, h, model)
		})
	}
}

func TestEngineReadsAtEveryOffset(t *testing.T) {
	f := newTestFilesystem(t)
	h := openTestHandle(t, f, "offsets")
	model := make([]byte, 3*bs+17)
	for i := range model {
		model[i] = byte(i * 7)
	}
	_, err := h.writeAt(model, 0)
	require.NoError(t, err)

	for _, off := range []int{0, 1, bs - 1, bs, bs + 1, 2*bs - 1, 3 * bs, 3*bs + 16, 3*bs + 17, 4 * bs} {
		for _, n := range []int{1, 17, bs - 1, bs, bs + 1, 2 * bs, 5 * bs} {
			t.Run(fmt.Sprintf("%d+%d", off, n), func(t *testing.T) {
				buf := make([]byte, n)
				got, err := h.readAt(buf, int64(off))
				require.NoError(t, err)
				want := max(0, min(n, len(model)-off))
				assert.Equal(t, want, got)
				assert.Equal(t, model[min(off, len(model)):][:want], buf[:got])
			})
		}
	}
}

func TestEngineNewFileHeader(t *testing.T) {
	f := newTestFilesystem(t)
	h := openTestHandle(t, f, "hdr")

	_, err := h.writeAt([]byte("x"), 0)
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(f.backing, "hdr"))
	require.NoError(t, err)
	require.Len(t, raw, content.HeaderSize+1+content.Overhead)

	hdr, err := content.ParseHeader(raw[:content.HeaderSize])
	require.NoError(t, err)
	assert.Equal(t, f.opts.Keys.(ringShim).Primary().ID, hdr.Slots[0].KeyID)
	assert.Equal(t, uint64(1), hdr.Slots[0].Generation)
	assert.True(t, hdr.Slots[1].Empty())

	// Truncating to zero drops the header; the next write draws a new key.
	require.NoError(t, h.truncate(0))
	st, err := os.Stat(filepath.Join(f.backing, "hdr"))
	require.NoError(t, err)
	assert.Zero(t, st.Size())
	_, err = h.writeAt([]byte("y"), 0)
	require.NoError(t, err)
	raw2, err := os.ReadFile(filepath.Join(f.backing, "hdr"))
	require.NoError(t, err)
	hdr2, err := content.ParseHeader(raw2[:content.HeaderSize])
	require.NoError(t, err)
	assert.NotEqual(t, hdr.FileID, hdr2.FileID)
}

func TestEngineSharedInodeAcrossHandles(t *testing.T) {
	f := newTestFilesystem(t)
	h1 := openTestHandle(t, f, "shared")
	h2 := openTestHandle(t, f, "shared")
	assert.Same(t, h1.ino, h2.ino)
	assert.Equal(t, 1, f.inodes.len())

	_, err := h1.writeAt([]byte("hello"), 0)
	require.NoError(t, err)
	buf := make([]byte, 10)
	n, err := h2.readAt(buf, 0)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
}

func TestEngineReadOnlyHandle(t *testing.T) {
	f := newTestFilesystem(t)
	h := openTestHandle(t, f, "ro")
	h.writable = false
	_, err := h.writeAt([]byte("x"), 0)
	assert.ErrorIs(t, err, syscall.EBADF)
	assert.ErrorIs(t, h.truncate(3), syscall.EBADF)

	f.opts.ReadOnly = true
	_, err = h.writeAt([]byte("x"), 0)
	assert.ErrorIs(t, err, syscall.EROFS)
}

func TestBufPool(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		class int
	}{
		{name: "tiny", n: 1, class: 0},
		{name: "one block", n: 4096, class: 0},
		{name: "just above", n: 4097, class: 1},
		{name: "one MiB request", n: 1<<20 + 257*40, class: 9},
		{name: "too large", n: 5 << 20, class: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.class, bufClass(tt.n))
			b := getBuf(tt.n)
			assert.Len(t, *b, tt.n)
			putBuf(b)
		})
	}
}

func benchHandle(b *testing.B, size int) *handle {
	b.Helper()
	v := newTestVolume(b)
	f := newFilesystem(v.backing, v.opts)
	fd, writable, err := f.openBacking("bench", syscall.O_RDWR, syscall.O_CREAT, 0o600)
	require.NoError(b, err)
	h, err := f.newHandle(fixedPath("bench"), fd, writable)
	require.NoError(b, err)
	b.Cleanup(h.release)
	_, err = h.writeAt(make([]byte, size), 0)
	require.NoError(b, err)
	return h
}

func BenchmarkReadAt(b *testing.B) {
	for _, n := range []int{bs, 128 << 10, 1 << 20} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := benchHandle(b, 16<<20)
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			var off int64
			for b.Loop() {
				if _, err := h.readAt(buf, off); err != nil {
					b.Fatal(err)
				}
				off = (off + int64(n)) % (16 << 20)
			}
		})
	}
}

func BenchmarkWriteAt(b *testing.B) {
	for _, n := range []int{100, bs, 128 << 10, 1 << 20} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := benchHandle(b, 16<<20)
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			var off int64
			for b.Loop() {
				if _, err := h.writeAt(buf, off); err != nil {
					b.Fatal(err)
				}
				off = (off + int64(n)) % (16 << 20)
			}
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{100, 128 << 10} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := benchHandle(b, 0)
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			var off int64
			for b.Loop() {
				if off+int64(n) > 64<<20 {
					require.NoError(b, h.truncate(0))
					off = 0
				}
				if _, err := h.writeAt(buf, off); err != nil {
					b.Fatal(err)
				}
				off += int64(n)
			}
		})
	}
}

// TestFlushReportsOnlyAfterChanges checks that Flush closes a duplicate of
// the backing descriptor, which reports the backing file system's write
// errors, once a handle of the inode changed the file, and only then: an
// invalid descriptor shows whether it tried.
func TestFlushReportsOnlyAfterChanges(t *testing.T) {
	f := newTestFilesystem(t)
	h := openTestHandle(t, f, "f")
	other := openTestHandle(t, f, "f")
	require.Same(t, h.ino, other.ino)

	flush := func(h *handle) syscall.Errno {
		fd := h.fd
		h.fd = 1 << 20 // no such descriptor
		defer func() { h.fd = fd }()
		return h.Flush(t.Context())
	}
	assert.Equal(t, syscall.Errno(0), flush(h), "nothing written: nothing to report")
	assert.Equal(t, syscall.Errno(0), flush(other))

	_, err := h.writeAt([]byte("x"), 0)
	require.NoError(t, err)
	assert.Equal(t, syscall.EBADF, flush(h), "written: the descriptor is closed")
	assert.Equal(t, syscall.EBADF, flush(other), "written through another handle of the inode")
	assert.Equal(t, syscall.Errno(0), h.Flush(t.Context()))
}

func TestJoinRel(t *testing.T) {
	tests := []struct {
		name, dir, rel string
	}{
		{name: "root", dir: "/b", rel: ""},
		{name: "one", dir: "/b", rel: "x"},
		{name: "deep", dir: "/b/c", rel: "x/y/z"},
		{name: "slash dir", dir: "/", rel: "x/y"},
		{name: "trailing slash", dir: "/b", rel: "x/"},
		{name: "double slash", dir: "/b", rel: "x//y"},
		{name: "dot", dir: "/b", rel: "./x"},
		{name: "dot dot", dir: "/b", rel: "x/../../y"},
		{name: "dot dot last", dir: "/b", rel: "x/.."},
		{name: "dotted names", dir: "/b", rel: ".x/..y/z."},
		{name: "absolute rel", dir: "/b", rel: "/x"},
		{name: "empty dir", dir: "", rel: "x/y"},
		{name: "relative dir", dir: "b", rel: "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, filepath.Join(tc.dir, tc.rel), joinRel(tc.dir, tc.rel))
		})
	}
}
