//go:build linux

package stress

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tampering is one way to alter a backing file: it returns the altered
// bytes of b; donor is the backing file of another file of the volume.
type tampering struct {
	name  string
	alter func(r *rand.Rand, b, donor []byte) []byte
}

// blocksOf returns the number of blocks in a backing file of n bytes.
func blocksOf(n int) int {
	return (n - headerSize + cipherBlockSize - 1) / cipherBlockSize
}

// pick returns a random block of a backing file of n bytes and its range.
func pick(r *rand.Rand, n int) (lo, hi int) {
	b := r.IntN(blocksOf(n))
	lo = int(blockOffset(int64(b)))
	return lo, min(lo+cipherBlockSize, n)
}

var tamperings = []tampering{
	{"bit flip anywhere", func(r *rand.Rand, b, _ []byte) []byte {
		b[r.IntN(len(b))] ^= 1 << r.IntN(8)
		return b
	}},
	{"bit flip in a block", func(r *rand.Rand, b, _ []byte) []byte {
		b[headerSize+r.IntN(len(b)-headerSize)] ^= 1 << r.IntN(8)
		return b
	}},
	{"random bytes over a range", func(r *rand.Rand, b, _ []byte) []byte {
		at := r.IntN(len(b))
		n := min(len(b)-at, 1+r.IntN(64))
		for i := range n {
			b[at+i] = byte(r.Uint32())
		}
		return b
	}},
	{"zeroed block", func(r *rand.Rand, b, _ []byte) []byte {
		lo, hi := pick(r, len(b))
		clear(b[lo:hi])
		return b
	}},
	{"block from another file, same place", func(r *rand.Rand, b, donor []byte) []byte {
		lo, hi := pick(r, min(len(b), len(donor)))
		copy(b[lo:hi], donor[lo:hi])
		return b
	}},
	{"block from another file, other place", func(r *rand.Rand, b, donor []byte) []byte {
		lo, hi := pick(r, len(b))
		src, _ := pick(r, len(donor))
		copy(b[lo:hi], donor[src:min(len(donor), src+hi-lo)])
		return b
	}},
	{"block copied over another of the same file", func(r *rand.Rand, b, _ []byte) []byte {
		lo, hi := pick(r, len(b))
		src, _ := pick(r, len(b))
		if src != lo {
			copy(b[lo:hi], slices.Clone(b[src:min(len(b), src+hi-lo)]))
		}
		return b
	}},
	{"two blocks swapped", func(r *rand.Rand, b, _ []byte) []byte {
		x, _ := pick(r, len(b))
		y, _ := pick(r, len(b))
		n := min(cipherBlockSize, len(b)-max(x, y))
		tmp := slices.Clone(b[x : x+n])
		copy(b[x:], b[y:y+n])
		copy(b[y:], tmp)
		return b
	}},
	{"truncated anywhere", func(r *rand.Rand, b, _ []byte) []byte {
		return b[:r.IntN(len(b))]
	}},
	{"truncated at a block boundary", func(r *rand.Rand, b, _ []byte) []byte {
		return b[:blockOffset(int64(r.IntN(blocksOf(len(b)))))]
	}},
	{"garbage appended", func(r *rand.Rand, b, _ []byte) []byte {
		extra := make([]byte, 1+r.IntN(3*cipherBlockSize))
		for i := range extra {
			extra[i] = byte(r.Uint32())
		}
		return append(b, extra...)
	}},
	{"another file's blocks appended", func(r *rand.Rand, b, donor []byte) []byte {
		lo, _ := pick(r, len(donor))
		return append(b, donor[lo:]...)
	}},
	{"header from another file", func(_ *rand.Rand, b, donor []byte) []byte {
		copy(b, donor[:headerSize])
		return b
	}},
	{"bytes inserted", func(r *rand.Rand, b, _ []byte) []byte {
		at := r.IntN(len(b))
		return slices.Insert(b, at, make([]byte, 1+r.IntN(100))...)
	}},
	{"bytes deleted", func(r *rand.Rand, b, _ []byte) []byte {
		at := r.IntN(len(b))
		return slices.Delete(b, at, min(len(b), at+1+r.IntN(100)))
	}},
}

// tamperCase is one file, its original plaintext and backing bytes, and
// the altered backing bytes.
type tamperCase struct {
	name     string
	how      string
	plain    []byte
	original []byte
	altered  []byte
}

// cipherLen returns the length of block b in a backing file of n bytes as
// the format computes it, 0 if it has none.
func cipherLen(n int, b int) int {
	start := int(blockOffset(int64(b)))
	if n <= start {
		return 0
	}
	return min(cipherBlockSize, n-start)
}

// intact reports whether block b of the altered file is the original
// ciphertext, at the same place and with the same length.
func (c *tamperCase) intact(b int) bool {
	n := cipherLen(len(c.original), b)
	if n == 0 || cipherLen(len(c.altered), b) != n {
		return false
	}
	lo := int(blockOffset(int64(b)))
	return bytes.Equal(c.original[lo:lo+n], c.altered[lo:lo+n])
}

// check reads every block of the file through fd. A read returns the
// original plaintext at its offset, nothing (past the end), or EIO; never
// other bytes. A block whose ciphertext changed must not read; a block that
// did not change, under an unchanged header, must.
func (c *tamperCase) check(t *testing.T, fd int) (eio bool) {
	t.Helper()
	header := bytes.Equal(c.original[:headerSize], c.altered[:min(len(c.altered), headerSize)])
	blocks := max(blocksOf(len(c.original)), blocksOf(len(c.altered))) + 1
	for b := range blocks {
		r := preadAll(fd, BlockSize, int64(b*BlockSize))
		at := fmt.Sprintf("%s (%s): block %d", c.name, c.how, b)
		switch {
		case r.err == syscall.EIO:
			eio = true
			assert.False(t, header && c.intact(b), "%s: intact, but the read failed", at)
		case r.err != 0:
			t.Errorf("%s: %v, want the plaintext or EIO", at, r.err)
		case len(r.data) == 0:
			assert.False(t, header && c.intact(b), "%s: intact, but reads as past the end", at)
		case !matches(c.plain, r.data, int64(b*BlockSize)):
			t.Errorf("%s: WRONG PLAINTEXT: %d bytes that are not the original (%s)", at, len(r.data),
				describe(r.data))
		default:
			assert.True(t, c.intact(b), "%s: the ciphertext changed, but the block reads", at)
		}
	}
	return eio
}

// TestTamperRandom alters backing files in random ways (bit flips, random
// bytes, zeroed, swapped, duplicated and transplanted blocks, truncation
// anywhere, appended garbage or foreign blocks, another file's header,
// inserted and deleted bytes), both while the volume is unmounted and while
// it is mounted with the file open, and checks every block of every file:
// never a byte that is not the original, EIO for every changed block, the
// original for every unchanged one. (Mounted, a file cut short reads zeros
// where EIO belongs: TestTamperShrinkWhileMounted shows it alone.)
func TestTamperRandom(t *testing.T) {
	n := scale(len(tamperings)*10, len(tamperings)*300)
	for _, mounted := range []bool{false, true} {
		name := map[bool]string{false: "unmounted", true: "mounted with the file open"}[mounted]
		t.Run(name, func(t *testing.T) {
			m := newInproc(t)
			cases := make([]*tamperCase, n)
			for i := range cases {
				cases[i] = writeTamperCase(t, m, i)
			}
			if !mounted {
				m.unmount(t)
			}

			eio := 0
			for i, c := range cases {
				r := rand.New(rand.NewPCG(uint64(i), 0x7a3))
				tp := tamperings[i%len(tamperings)]
				c.how = tp.name
				donor := cases[(i+1)%len(cases)].original
				c.altered = tp.alter(r, slices.Clone(c.original), donor)
				if !mounted {
					require.NoError(t, os.WriteFile(m.backingPath(c.name), c.altered, 0o600))
					continue
				}
				if tamperMounted(t, m, c) {
					eio++
				}
			}
			if !mounted {
				m.mount(t)
				for _, c := range cases {
					fd, err := unix.Open(m.path(c.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
					require.NoError(t, err)
					if c.check(t, fd) {
						eio++
						assert.True(t, m.warned(c.name), "%s: EIO without a warning in the log", c.name)
					}
					unix.Close(fd)
				}
			}
			t.Logf("%d files altered, %d of them with EIO reads", n, eio)
		})
	}
}

// writeTamperCase writes file i through the mount: 1 byte to 6 blocks,
// sometimes whole blocks.
func writeTamperCase(t *testing.T, m *inproc, i int) *tamperCase {
	r := rand.New(rand.NewPCG(uint64(i), 0x5e))
	size := 1 + r.IntN(6*BlockSize)
	if r.IntN(4) == 0 {
		size = (1 + r.IntN(6)) * BlockSize
	}
	c := &tamperCase{name: fmt.Sprintf("t%04d", i), plain: pattern(uint64(i), size)}
	require.NoError(t, os.WriteFile(m.path(c.name), c.plain, 0o644))
	c.original = readFile(t, m.backingPath(c.name))
	return c
}

// tamperMounted alters the backing file while the file is open in the
// mount with its pages cached, reads it through the open descriptor (the
// cached original is fine; anything else must obey check), then through a
// new one.
func tamperMounted(t *testing.T, m *inproc, c *tamperCase) bool {
	fd, err := unix.Open(m.path(c.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	r := preadAll(fd, int64(len(c.plain)), 0)
	require.Zero(t, r.err)

	writeBackingInPlace(t, m.backingPath(c.name), c.altered)
	for b := 0; b*BlockSize < len(c.plain); b++ {
		r := preadAll(fd, BlockSize, int64(b*BlockSize))
		if r.err == 0 && !matches(c.plain, r.data, int64(b*BlockSize)) {
			t.Errorf("%s (%s): block %d: WRONG PLAINTEXT through the descriptor open across the change",
				c.name, c.how, b)
		}
	}

	fresh, err := unix.Open(m.path(c.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fresh)
	return c.check(t, fresh)
}

// writeBackingInPlace overwrites a backing file without replacing its
// inode, as an attacker with write access to it would.
func writeBackingInPlace(t *testing.T, path string, b []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, 0)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(int64(len(b))))
	require.NoError(t, f.Close())
}

// describe summarises bytes that should not have been read.
func describe(b []byte) string {
	if zeros := bytes.Count(b, []byte{0}); zeros > 0 {
		return fmt.Sprintf("%d zero bytes, the first %d at the start", zeros, len(b)-len(bytes.TrimLeft(b, "\x00")))
	}
	return "no zero bytes"
}

// TestTamperShrinkWhileMounted cuts a backing file short while the file is
// mounted and its size is in the kernel's attribute cache, then reads it
// through a new descriptor. The cut blocks must fail with EIO or read as
// past the end. Today the kernel asks coffer for a block past the new end,
// coffer answers with a short read (end of file), and the kernel, whose
// cached size is still the old one, hands the reader a block of zeros: a
// read of tampered ciphertext that returns bytes that were never written.
func TestTamperShrinkWhileMounted(t *testing.T) {
	m := newInproc(t)
	plain := pattern(3, 5*BlockSize)
	require.NoError(t, os.WriteFile(m.path("f"), plain, 0o644))
	got, err := os.ReadFile(m.path("f"))
	require.NoError(t, err)
	require.Equal(t, plain, got)

	// Cut the backing file inside block 0, behind the mount's back.
	require.NoError(t, os.Truncate(m.backingPath("f"), blockOffset(0)+1000))
	fd, err := unix.Open(m.path("f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	for b := range 5 {
		r := preadAll(fd, BlockSize, int64(b*BlockSize))
		if r.err == syscall.EIO || len(r.data) == 0 {
			continue
		}
		assert.True(t, matches(plain, r.data, int64(b*BlockSize)),
			"block %d of a file cut inside block 0 reads %d bytes that are not the original (%s)",
			b, len(r.data), describe(r.data))
	}
}

// TestTamperThenWrite damages a block while the file is mounted and open,
// then writes through the mount. A write that needs the damaged block's
// old contents (a partial overwrite, an append to a damaged last block, a
// truncation inside it) must fail with EIO and leave the damage detectable;
// a write that replaces the whole block, or a truncation below it, repairs
// the file; the other blocks stay intact throughout.
func TestTamperThenWrite(t *testing.T) {
	const size = 4*BlockSize + 1000 // blocks 0..4, the last partial
	tests := []struct {
		name   string
		block  int64
		op     func(fd int) error
		fails  bool
		repair func(plain []byte) []byte // the plaintext after a successful op
	}{
		{"partial overwrite of the damaged block", 2, func(fd int) error {
			return errOf(pwriteAll(fd, []byte("x"), 2*BlockSize+100))
		}, true, nil},
		{"write across the damaged block's start", 2, func(fd int) error {
			return errOf(pwriteAll(fd, make([]byte, 200), 2*BlockSize-100))
		}, true, nil},
		{"append to a damaged last block", 4, func(fd int) error {
			return errOf(pwriteAll(fd, []byte("appended"), size))
		}, true, nil},
		{"truncation inside the damaged block", 2, func(fd int) error {
			return unix.Ftruncate(fd, 2*BlockSize+10)
		}, true, nil},
		{"whole-block overwrite repairs it", 2, func(fd int) error {
			return errOf(pwriteAll(fd, pattern(9, BlockSize), 2*BlockSize))
		}, false, func(p []byte) []byte {
			copy(p[2*BlockSize:], pattern(9, BlockSize))
			return p
		}},
		{"truncation at the damaged block's start repairs it", 2, func(fd int) error {
			return unix.Ftruncate(fd, 2*BlockSize)
		}, false, func(p []byte) []byte { return p[:2*BlockSize] }},
	}
	m := newInproc(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("w%d", i)
			plain := pattern(uint64(20+i), size)
			require.NoError(t, os.WriteFile(m.path(name), plain, 0o644))
			fd := openRW(t, m.path(name))
			defer unix.Close(fd)
			require.Zero(t, preadAll(fd, size, 0).err)

			flipAt(t, m.backingPath(name), blockOffset(tc.block)+100)
			err := tc.op(fd)
			if tc.fails {
				assert.ErrorIs(t, err, syscall.EIO)
				for b := int64(0); b*BlockSize < size; b++ {
					r := preadAll(openFresh(t, m.path(name)), BlockSize, b*BlockSize)
					if b == tc.block {
						assert.Equal(t, syscall.EIO, r.err, "the damaged block %d after the refused op", b)
					} else {
						assert.Zero(t, r.err, "block %d", b)
						assert.True(t, matches(plain, r.data, b*BlockSize), "block %d", b)
					}
				}
				return
			}
			require.NoError(t, err)
			assertPath(t, m.path(name), tc.repair(plain))
		})
	}
}

// openFresh opens path read-only for the rest of the test.
func openFresh(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// flipAt flips a bit of the byte at off in a file outside the mount.
func flipAt(t testing.TB, path string, off int64) {
	t.Helper()
	b := readFile(t, path)
	b[off] ^= 0x10
	writeAtPath(t, path, b[off:off+1], off)
}

// TestHeaderRollback replaces a file's header with an older copy of
// itself. A header holds only the wrapped data key, in two slots: a ring
// rotation re-wraps the same key into the older slot with a higher
// generation, and the blocks never change. So an older header can at most
// name an older ring key for the same data key: it must never bring back
// older contents, and once that key is purged from the ring it must fail
// with EIO. A header from before the file was truncated to zero and
// rewritten (new file ID, new data key) must fail with EIO too.
//
// Not detected, as documented (fs package, threat model): the whole file
// rolled back to an older version, header and blocks; and, following from
// the same design (blocks are bound to the file ID and block number only),
// one block rolled back to an older version of itself.
func TestHeaderRollback(t *testing.T) {
	m := newInproc(t)
	v1 := pattern(31, 3*BlockSize+500)
	v2 := pattern(32, 3*BlockSize+500)
	keyA := m.keys.Primary().ID

	require.NoError(t, os.WriteFile(m.path("f"), v1, 0o644))
	header1 := readFile(t, m.backingPath("f"))[:headerSize] // slot 0: gen 1, key A
	backing1 := readFile(t, m.backingPath("f"))
	require.NoError(t, writeFile(m.path("f"), v2, 0)) // rewritten in place: same file ID and data key
	backing2 := readFile(t, m.backingPath("f"))

	// A rotation re-wraps directory records (names are encrypted) along
	// with file headers.
	keyB := m.keys.rotate(t)
	header2 := m.rewrap(t, "f") // slot 1: gen 2, key B
	m.rewrapRecord(t, m.backing)
	keyC := m.keys.rotate(t)
	header3 := m.rewrap(t, "f") // slot 0: gen 3, key C
	m.rewrapRecord(t, m.backing)
	require.NotEqual(t, header1, header2)

	// Every read goes through a new mount: the kernel releases a closed
	// file asynchronously, and until it has, the next open shares the
	// unwrapped key cached by the last one and never reads the header.
	read := func(t *testing.T) ([]byte, error) {
		m.unmount(t)
		m.mount(t)
		return os.ReadFile(m.path("f"))
	}
	restore := func(t *testing.T, hdr []byte) { writeAtPath(t, m.backingPath("f"), hdr, 0) }
	t.Run("current header reads the current contents", func(t *testing.T) {
		got, err := read(t)
		require.NoError(t, err)
		assert.Equal(t, v2, got)
	})
	for _, tc := range []struct {
		name   string
		header []byte
	}{{"header before both re-wraps", header1}, {"header before the second re-wrap", header2}} {
		t.Run(tc.name+", every key in the ring: current contents", func(t *testing.T) {
			restore(t, tc.header)
			got, err := read(t)
			require.NoError(t, err)
			assert.Equal(t, v2, got, "an older header must not bring back older contents")
		})
	}

	m.keys.purge(keyA)
	t.Run("header before both re-wraps, its key purged: EIO", func(t *testing.T) {
		restore(t, header1)
		_, err := read(t)
		assert.ErrorIs(t, err, syscall.EIO)
		assert.True(t, m.warned("f"))
	})
	t.Run("header before the second re-wrap, first key purged: the other slot", func(t *testing.T) {
		restore(t, header2) // slot 0 (gen 1, key A) fails; slot 1 (gen 2, key B) unwraps
		got, err := read(t)
		require.NoError(t, err)
		assert.Equal(t, v2, got)
	})
	m.keys.purge(keyB)
	t.Run("header before the second re-wrap, both its keys purged: EIO", func(t *testing.T) {
		restore(t, header2)
		_, err := read(t)
		assert.ErrorIs(t, err, syscall.EIO)
	})
	t.Run("current header, only its current key left", func(t *testing.T) {
		restore(t, header3)
		got, err := read(t)
		require.NoError(t, err)
		assert.Equal(t, v2, got, "key %d", keyC)
	})

	t.Run("header from before the file was rewritten from scratch: EIO", func(t *testing.T) {
		require.NoError(t, os.WriteFile(m.path("g"), v1, 0o644))
		oldHeader := readFile(t, m.backingPath("g"))[:headerSize]
		require.NoError(t, os.WriteFile(m.path("g"), v2, 0o644)) // O_TRUNC: new file ID and key
		writeAtPath(t, m.backingPath("g"), oldHeader, 0)
		m.unmount(t)
		m.mount(t)
		_, err := os.ReadFile(m.path("g"))
		assert.ErrorIs(t, err, syscall.EIO)
	})
	t.Run("documented: whole file rolled back reads the older version", func(t *testing.T) {
		m.keys.unpurgeAll()
		require.NoError(t, os.WriteFile(m.backingPath("f"), backing1, 0o600))
		got, err := read(t)
		require.NoError(t, err)
		assert.Equal(t, v1, got)
	})
	t.Run("documented: one block rolled back reads its older version", func(t *testing.T) {
		require.NoError(t, os.WriteFile(m.backingPath("f"), backing2, 0o600))
		lo, hi := blockOffset(1), blockOffset(2)
		writeAtPath(t, m.backingPath("f"), backing1[lo:hi], lo)
		got, err := read(t)
		require.NoError(t, err)
		want := append(append(append([]byte(nil), v2[:BlockSize]...), v1[BlockSize:2*BlockSize]...),
			v2[2*BlockSize:]...)
		assert.Equal(t, want, got, "block 1 is v1's, the others v2's: not detected")
	})
	t.Run("documented: trailing whole blocks removed read as a shorter file", func(t *testing.T) {
		require.NoError(t, os.WriteFile(m.backingPath("f"), backing2[:blockOffset(2)], 0o600))
		got, err := read(t)
		require.NoError(t, err)
		assert.Equal(t, v2[:2*BlockSize], got)
	})
}
