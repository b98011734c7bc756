//go:build linux

package fs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// tamperSize is the plaintext size of the files the tampering tests damage:
// three full blocks and a partial fourth.
const tamperSize = 3*bs + 500

// writeBacking writes plaintext files into the volume with the engine, as a
// mount would.
func writeBacking(t *testing.T, v *testVolume, files map[string][]byte) {
	t.Helper()
	f := newFilesystem(v.backing, v.opts)
	for name, data := range files {
		h := openTestHandle(t, f, name)
		_, err := h.writeAt(data, 0)
		require.NoError(t, err)
	}
}

// edit changes a backing file in place.
func edit(t *testing.T, path string, change func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, change(b), 0o644))
}

func flip(off int64) func([]byte) []byte {
	return func(b []byte) []byte { b[off] ^= 0x04; return b }
}

func blockAt(i int) int64 { return content.BlockOffset(uint64(i)) }

func TestTamperedFilesFailWithEIO(t *testing.T) {
	const slot0 = 24
	all := []int{0, 1, 2, 3}
	tests := []struct {
		name      string
		tamper    func(t *testing.T, a, b string)
		badBlocks []int // blocks whose reads fail
		logBlock  any   // block named by the first warning: a number or "header"
		size      int64 // size stat reports, 0 for tamperSize
	}{
		{name: "bit flip in wrapped key of slot", badBlocks: all, logBlock: "header",
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(slot0+14+20)) }},
		{name: "bit flip in slot key ID", badBlocks: all, logBlock: "header",
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(slot0+3)) }},
		{name: "bit flip in slot generation", badBlocks: all, logBlock: "header",
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(slot0+11)) }},
		{name: "bit flip in file ID", badBlocks: all, logBlock: "header",
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(10)) }},
		{name: "bit flip in magic", badBlocks: all, logBlock: "header",
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(0)) }},
		{name: "newer format version", badBlocks: all, logBlock: "header",
			tamper: func(t *testing.T, a, _ string) {
				edit(t, a, func(b []byte) []byte { binary.BigEndian.PutUint16(b[6:], 2); return b })
			}},
		{name: "bit flip in block ciphertext", badBlocks: []int{1}, logBlock: 1.0,
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(blockAt(1)+1000)) }},
		{name: "bit flip in block nonce", badBlocks: []int{2}, logBlock: 2.0,
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(blockAt(2)+3)) }},
		{name: "bit flip in tag of last block", badBlocks: []int{3}, logBlock: 3.0,
			tamper: func(t *testing.T, a, _ string) { edit(t, a, flip(blockAt(3)+content.NonceSize+500+5)) }},
		{name: "zeroed block", badBlocks: []int{2}, logBlock: 2.0,
			tamper: func(t *testing.T, a, _ string) {
				edit(t, a, func(b []byte) []byte { clear(b[blockAt(2):blockAt(3)]); return b })
			}},
		{name: "swapped blocks", badBlocks: []int{0, 1}, logBlock: 0.0,
			tamper: func(t *testing.T, a, _ string) {
				edit(t, a, func(b []byte) []byte {
					b0 := slices.Clone(b[blockAt(0):blockAt(1)])
					copy(b[blockAt(0):], b[blockAt(1):blockAt(2)])
					copy(b[blockAt(1):], b0)
					return b
				})
			}},
		{name: "block moved from another file", badBlocks: []int{1}, logBlock: 1.0,
			tamper: func(t *testing.T, a, other string) {
				src, err := os.ReadFile(other)
				require.NoError(t, err)
				edit(t, a, func(b []byte) []byte {
					copy(b[blockAt(1):blockAt(2)], src[blockAt(1):blockAt(2)])
					return b
				})
			}},
		{name: "header copied from another file", badBlocks: all, logBlock: 0.0,
			tamper: func(t *testing.T, a, other string) {
				src, err := os.ReadFile(other)
				require.NoError(t, err)
				edit(t, a, func(b []byte) []byte { copy(b, src[:content.HeaderSize]); return b })
			}},
		{name: "truncated mid-block", badBlocks: []int{3}, logBlock: 3.0, size: 3*bs + 160,
			tamper: func(t *testing.T, a, _ string) { require.NoError(t, os.Truncate(a, blockAt(3)+200)) }},
		{name: "truncated to a torn tail", badBlocks: []int{3}, logBlock: 3.0, size: 3*bs + 1,
			tamper: func(t *testing.T, a, _ string) { require.NoError(t, os.Truncate(a, blockAt(3)+20)) }},
		{name: "truncated inside the header", badBlocks: []int{0}, logBlock: "header", size: 1,
			tamper: func(t *testing.T, a, _ string) { require.NoError(t, os.Truncate(a, 100)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVolume(t)
			want := pattern(1, tamperSize)
			writeBacking(t, v, map[string][]byte{"a": want, "b": pattern(2, tamperSize)})
			a := filepath.Join(v.backing, "a")
			tt.tamper(t, a, filepath.Join(v.backing, "b"))
			before := snapshot(t, v.backing)

			mnt := v.mount(t)
			p := filepath.Join(mnt, "a")
			size := tt.size
			if size == 0 {
				size = tamperSize
			}
			st, err := os.Stat(p)
			require.NoError(t, err)
			assert.Equal(t, size, st.Size())

			got, err := readAll(p)
			assert.ErrorIs(t, err, syscall.EIO, "reading the whole file")
			assert.True(t, bytes.HasPrefix(want, got), "bytes before the error must be the plaintext")

			checkBlocks(t, p, want, tt.badBlocks, size)
			assertWarned(t, v, a, tt.logBlock)
			assert.Equal(t, before, snapshot(t, v.backing), "reads must not change the backing directory")

			other, err := os.ReadFile(filepath.Join(mnt, "b"))
			require.NoError(t, err, "the other file is intact")
			assert.Equal(t, pattern(2, tamperSize), other)
		})
	}
}

// checkBlocks reads each block on its own: bad ones fail with EIO, the
// others return the plaintext.
func checkBlocks(t *testing.T, path string, want []byte, bad []int, size int64) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)

	for i := range 4 {
		if int64(i*bs) >= size {
			break
		}
		buf := make([]byte, bs)
		n, err := unix.Pread(fd, buf, int64(i*bs))
		if slices.Contains(bad, i) {
			assert.ErrorIs(t, err, syscall.EIO, "block %d", i)
			continue
		}
		require.NoError(t, err, "block %d", i)
		assert.Equal(t, want[i*bs:min(len(want), (i+1)*bs)], buf[:n], "block %d", i)
	}
}

// assertWarned checks that a warning names the backing file and the block.
func assertWarned(t *testing.T, v *testVolume, backing string, block any) {
	t.Helper()
	for _, e := range v.logs.entries(t) {
		if e["level"] == "warn" && e["backing"] == backing {
			assert.Equal(t, block, e["block"], "block in %v", e)
			assert.NotEmpty(t, e["reason"])
			return
		}
	}
	t.Errorf("no warning names %s; log:\n%s", backing, v.logs.String())
}

// TestShrinkBehindTheMount cuts backing files while their old size is in
// the kernel's attribute cache. The kernel then asks for blocks past the new
// end; a short answer would make it hand the reader zeros as data.
func TestShrinkBehindTheMount(t *testing.T) {
	tests := []struct {
		name string
		cut  int64 // new backing size
	}{
		{name: "whole trailing blocks removed", cut: blockAt(2)},
		{name: "cut inside the first block", cut: blockAt(0) + 1000},
		{name: "cut to the header", cut: content.HeaderSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, mnt := mountNew(t)
			p := filepath.Join(mnt, "f")
			want := pattern(4, 5*bs)
			require.NoError(t, os.WriteFile(p, want, 0o644))
			st, err := os.Stat(p) // the kernel caches the size
			require.NoError(t, err)
			require.Equal(t, int64(5*bs), st.Size())

			require.NoError(t, os.Truncate(filepath.Join(v.backing, "f"), tt.cut))
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			require.NoError(t, err)
			defer unix.Close(fd)
			for b := range 5 {
				buf := make([]byte, bs)
				n, err := unix.Pread(fd, buf, int64(b*bs))
				if err != nil {
					assert.ErrorIs(t, err, syscall.EIO, "block %d", b)
					continue
				}
				assert.Equal(t, want[b*bs:b*bs+n], buf[:n], "block %d must be the plaintext", b)
			}
		})
	}
}

func TestEngineReadPastEnd(t *testing.T) {
	f := newTestFilesystem(t)
	h := openTestHandle(t, f, "f")
	_, err := h.writeAt(pattern(1, 3*bs), 0)
	require.NoError(t, err)

	// After a truncation through the mount, a read the kernel sent with
	// the old size is the end of the file.
	require.NoError(t, h.truncate(bs+10))
	n, err := h.readAt(make([]byte, bs), 2*bs)
	require.NoError(t, err)
	assert.Zero(t, n)

	// A handle of a new inode state, after the file shrank behind the
	// mount, reports the read as an integrity error.
	h.release()
	h2 := openTestHandle(t, f, "f")
	require.NoError(t, os.Truncate(filepath.Join(f.backing, "f"), blockAt(1)))
	_, err = h2.readAt(make([]byte, bs), bs)
	var ie *integrityError
	require.ErrorAs(t, err, &ie)
	assert.ErrorIs(t, err, errShrunk)
	n, err = h2.readAt(make([]byte, bs), 0)
	require.NoError(t, err, "the remaining block reads")
	assert.Equal(t, bs, n)

	// With O_DIRECT, requests may reach past the end; only those that
	// start past it are suspicious.
	h2.direct = true
	n, err = h2.readAt(make([]byte, 3*bs), 0)
	require.NoError(t, err)
	assert.Equal(t, bs, n)
	_, err = h2.readAt(make([]byte, bs), bs)
	assert.ErrorIs(t, err, errShrunk)
}

// integrityCall is one call of Options.Integrity.
type integrityCall struct {
	path  string
	block int64
	err   error
}

// TestIntegrityHook checks that every request failing an integrity check
// calls Options.Integrity with the file's path under the mount, the block
// and the cause.
func TestIntegrityHook(t *testing.T) {
	v := newTestVolume(t)
	require.NoError(t, os.Mkdir(filepath.Join(v.backing, "dir"), 0o755))
	writeBacking(t, v, map[string][]byte{"dir/a": pattern(1, tamperSize),
		"b": pattern(2, tamperSize)})
	edit(t, filepath.Join(v.backing, "dir", "a"), flip(blockAt(1)+1000))
	edit(t, filepath.Join(v.backing, "b"), flip(24+14+20)) // b's wrapped key

	var mu sync.Mutex
	var calls []integrityCall
	mnt := v.mountWith(t, func(o *Options) {
		o.Integrity = func(path string, block int64, err error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, integrityCall{path, block, err})
		}
	})

	fd, err := unix.Open(filepath.Join(mnt, "dir", "a"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	_, err = unix.Pread(fd, make([]byte, bs), bs)
	require.ErrorIs(t, err, syscall.EIO)
	require.NoError(t, unix.Close(fd))
	_, err = os.ReadFile(filepath.Join(mnt, "b"))
	require.ErrorIs(t, err, syscall.EIO)

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, calls)
	assert.Equal(t, "/dir/a", calls[0].path)
	assert.Equal(t, int64(1), calls[0].block)
	assert.ErrorIs(t, calls[0].err, content.ErrAuth)
	last := calls[len(calls)-1]
	assert.Equal(t, "/b", last.path)
	assert.Equal(t, int64(headerBlock), last.block)
	for _, c := range calls {
		assert.Contains(t, []string{"/dir/a", "/b"}, c.path, "only damaged files are reported")
	}
}

// TestWarmReadsStillCheck reads whole blocks through a handle whose key is
// loaded (the reads that skip the size check), after tampering with a
// block and after cutting the backing file behind the handle: the
// tampered block and the missing ones fail with EIO, the others read.
func TestWarmReadsStillCheck(t *testing.T) {
	v := newTestVolume(t)
	f := newFilesystem(v.backing, v.opts)
	path := filepath.Join(v.backing, "f")
	h := openTestHandle(t, f, "f")
	defer h.release()
	want := pattern(5, 4*bs)
	_, err := h.writeAt(want, 0)
	require.NoError(t, err)
	got := make([]byte, 4*bs)
	n, err := h.readAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, want, got[:n])

	b := readBacking(t, path)
	b[blockAt(2)+100] ^= 1
	require.NoError(t, os.WriteFile(path, b, 0o600))
	_, err = h.readAt(got, 0)
	assert.ErrorIs(t, err, content.ErrAuth, "whole file")
	assert.Equal(t, syscall.EIO, f.errno(err))
	_, err = h.readAt(got[:bs], 2*bs)
	assert.ErrorIs(t, err, content.ErrAuth, "the tampered block")
	n, err = h.readAt(got[:2*bs], 0)
	require.NoError(t, err)
	assert.Equal(t, want[:2*bs], got[:n], "the blocks before it")

	for _, cut := range []int64{blockAt(1) + 100, blockAt(1) + 10, blockAt(1)} {
		require.NoError(t, os.Truncate(path, cut))
		_, err = h.readAt(got[:2*bs], 0)
		assert.Equal(t, syscall.EIO, f.errno(err), "cut to %d: a block cut behind the handle", cut)
		n, err = h.readAt(got[:bs], 0)
		require.NoError(t, err)
		assert.Equal(t, want[:bs], got[:n])
	}

	// A file that ends inside the range reads to its end.
	_, err = h.writeAt(want[bs:bs+1000], bs)
	require.NoError(t, err)
	n, err = h.readAt(got[:2*bs], 0)
	require.NoError(t, err)
	assert.Equal(t, want[:bs+1000], got[:n])
}

// TestColdReadsStillCheck makes the first read of files through a handle
// whose key is not loaded yet, the read that takes the header and the
// blocks with one pread: it is served that way, reads what was written
// whatever the file's size against the range, and a damaged header or
// block, or a cut file, still fails with EIO.
func TestColdReadsStillCheck(t *testing.T) {
	v := newTestVolume(t)
	writer := newFilesystem(v.backing, v.opts)
	tests := []struct {
		name   string
		size   int
		reqLen int
		damage func(b []byte) []byte
	}{
		{name: "one block", size: bs, reqLen: bs},
		{name: "ends inside the range", size: bs + 1000, reqLen: 2 * bs},
		{name: "one byte in the last block", size: 3*bs + 1, reqLen: 4 * bs},
		{name: "range inside the file", size: 5 * bs, reqLen: 2 * bs},
		{name: "parallel blocks", size: 40 * bs, reqLen: 32 * bs},
		{name: "tampered header", size: bs + 10, reqLen: 2 * bs,
			damage: func(b []byte) []byte { b[100] ^= 1; return b }},
		{name: "tampered block", size: 3 * bs, reqLen: 4 * bs,
			damage: func(b []byte) []byte { b[blockAt(1)+7] ^= 1; return b }},
		{name: "cut inside a block", size: 3 * bs, reqLen: 4 * bs,
			damage: func(b []byte) []byte { return b[:blockAt(2)+50] }},
		{name: "header only", size: bs, reqLen: bs,
			damage: func(b []byte) []byte { return b[:content.HeaderSize] }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("f%d", i)
			want := pattern(i, tc.size)
			w := openTestHandle(t, writer, name)
			_, err := w.writeAt(want, 0)
			require.NoError(t, err)
			w.release()
			if tc.damage != nil {
				path := filepath.Join(v.backing, name)
				require.NoError(t, os.WriteFile(path, tc.damage(readBacking(t, path)), 0o600))
			}

			// A filesystem of its own: no key loaded, no size known.
			f := newFilesystem(v.backing, v.opts)
			h := openTestHandle(t, f, name)
			got := make([]byte, tc.reqLen)
			n, err := h.readAt(got, 0)
			if tc.damage != nil {
				assert.Equal(t, syscall.EIO, f.errno(err), "damaged file")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, want[:min(tc.size, tc.reqLen)], got[:n])

			cold := openTestHandle(t, newFilesystem(v.backing, v.opts), name)
			buf, _, _, _ := cold.readAhead(got, 0)
			require.NotNil(t, buf, "a cold whole-block read at 0 takes the one pread")
			putBuf(buf)
			assert.NotNil(t, cold.ino.cipher.Load(), "key loaded from the header read")
		})
	}
}
