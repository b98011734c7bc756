//go:build linux

package stress

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Concurrency: what may be asserted. POSIX (XSH 2.9.7) makes write(2) and
// read(2) on a regular file atomic with respect to each other. Over FUSE
// without the writeback cache, Linux holds the inode lock across a whole
// buffered write(2), so writes through one mount are serialised whole, and
// coffer serves each request under its per-file lock (reads shared,
// writes exclusive; see the fs package). Buffered reads, however, copy
// from the page cache without the inode lock, so a read racing a write may
// see part of it, as on local file systems; O_DIRECT reads go to coffer
// for every call and see whole writes. The test asserts accordingly:
//
//   - O_DIRECT readers: every block is a version some write(2) wrote, and
//     no two blocks of one read contradict an order of the writes (a write
//     seen in one block and not in another it covered, each the other's
//     successor);
//   - buffered readers: no read ever fails; blocks caught mid-write are
//     counted, not failed;
//   - at the end: the same over the whole file, each block holds the last
//     write of the writer that wrote it last, and every writer of disjoint
//     ranges (sharing blocks with its neighbours) finds all its bytes.

const (
	overlapBlocks = 64 // blocks of the file the overlapping writers share
	maxRun        = 16 // most blocks one write covers
	noWriter      = 255
)

// version identifies what one write(2) put in a block.
type version struct {
	writer, iter uint32
}

// versionBlock returns the contents of block b as version v wrote it: a
// tag, then bytes derived from it, so a reader can check a block alone.
func versionBlock(v version, b int64) []byte {
	buf := make([]byte, BlockSize)
	copy(buf, "cofr")
	binary.BigEndian.PutUint32(buf[4:], v.writer)
	binary.BigEndian.PutUint32(buf[8:], v.iter)
	binary.BigEndian.PutUint64(buf[12:], uint64(b))
	var key [32]byte
	copy(key[:], buf[:20])
	_, _ = rand.NewChaCha8(key).Read(buf[20:])
	return buf
}

// parseBlock returns the version in block b, or false if the block is not
// one a write made whole.
func parseBlock(data []byte, b int64) (version, bool) {
	if len(data) != BlockSize || string(data[:4]) != "cofr" || binary.BigEndian.Uint64(data[12:]) != uint64(b) {
		return version{}, false
	}
	v := version{binary.BigEndian.Uint32(data[4:]), binary.BigEndian.Uint32(data[8:])}
	return v, bytes.Equal(data, versionBlock(v, b))
}

// span of blocks [first, first+n) written by one write(2).
type blockRun struct{ first, n int64 }

func (r blockRun) covers(b int64) bool { return b >= r.first && b < r.first+r.n }

// writeLog records every write of the overlapping writers.
type writeLog struct {
	mu   sync.Mutex
	runs map[version]blockRun
}

func (l *writeLog) add(v version, r blockRun) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[v] = r
}

func (l *writeLog) get(v version) (blockRun, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.runs[v]
	return r, ok
}

// contradiction returns a description of two blocks whose versions cannot
// both be the latest in any order of the writes, or "". Each version is
// the one block first+i showed. A version seen in a read must also have
// been logged, at the latest once its write returned; for reads racing the
// write, the log entry is written before the write starts.
func (l *writeLog) contradiction(first int64, seen []version) string {
	for i, vb := range seen {
		rb, _ := l.get(vb)
		for j, vc := range seen[i+1:] {
			b, c := first+int64(i), first+int64(i+1+j)
			rc, _ := l.get(vc)
			if vb != vc && rb.covers(c) && rc.covers(b) {
				return fmt.Sprintf("block %d shows write %v and block %d write %v; each covers both", b, vb, c, vc)
			}
		}
	}
	return ""
}

func TestConcurrentWriters(t *testing.T) {
	m := newInproc(t)
	shared, disjoint := m.path("overlap"), m.path("disjoint")
	log := &writeLog{runs: map[version]blockRun{}}
	initial := version{writer: noWriter}
	log.add(initial, blockRun{0, overlapBlocks})
	var init []byte
	for b := range int64(overlapBlocks) {
		init = append(init, versionBlock(initial, b)...)
	}
	require.NoError(t, os.WriteFile(shared, init, 0o644))
	require.NoError(t, os.WriteFile(disjoint, nil, 0o644))

	const overlapWriters, disjointWriters = 8, 4
	iters := scale(120, 3000)
	var writers, readers sync.WaitGroup
	var done atomic.Bool
	var midWrite, directReads atomic.Int64
	errs := make(chan error, 16)
	for w := range overlapWriters {
		writers.Go(func() { errs <- overlapWriter(shared, uint32(w), iters, log) })
	}
	models := make([][]byte, disjointWriters)
	for w := range disjointWriters {
		writers.Go(func() {
			model, err := disjointWriter(disjoint, w, iters)
			models[w] = model
			errs <- err
		})
	}
	for r := range 2 {
		readers.Go(func() { errs <- directReader(shared, uint64(r), log, &done, &directReads) })
		readers.Go(func() { errs <- cachedReader(shared, uint64(r), &done, &midWrite) })
	}
	writers.Wait()
	done.Store(true)
	readers.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	t.Logf("%d O_DIRECT reads checked whole; buffered reads that saw a block mid-write: %d",
		directReads.Load(), midWrite.Load())

	t.Run("overlapping writers, final state", func(t *testing.T) {
		data, err := os.ReadFile(shared)
		require.NoError(t, err)
		require.Len(t, data, overlapBlocks*BlockSize)
		seen := make([]version, overlapBlocks)
		for b := range int64(overlapBlocks) {
			v, ok := parseBlock(data[b*BlockSize:(b+1)*BlockSize], b)
			require.True(t, ok, "block %d is no write's version", b)
			seen[b] = v
			if v != initial {
				assert.False(t, laterCovers(log, v, b, uint32(iters)), "block %d shows %v, but %v's writer wrote it later", b, v, v)
			}
		}
		assert.Empty(t, log.contradiction(0, seen))
	})
	t.Run("disjoint writers sharing blocks, final state", func(t *testing.T) {
		data, err := os.ReadFile(disjoint)
		require.NoError(t, err)
		require.Len(t, data, disjointWriters*disjointRange)
		for w, model := range models {
			got := data[w*disjointRange : (w+1)*disjointRange]
			assert.True(t, bytes.Equal(model, got), "writer %d: %s", w, diff(model, got, int64(w*disjointRange)))
		}
	})
}

// laterCovers reports whether v's writer wrote block b again after v.
func laterCovers(l *writeLog, v version, b int64, iters uint32) bool {
	for i := v.iter + 1; i < iters; i++ {
		if r, ok := l.get(version{v.writer, i}); ok && r.covers(b) {
			return true
		}
	}
	return false
}

// overlapWriter writes random runs of whole blocks of the shared file, one
// write(2) each, logging each before it starts.
func overlapWriter(path string, w uint32, iters int, log *writeLog) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	r := rand.New(rand.NewPCG(uint64(w), 0x0f))
	for i := range uint32(iters) {
		n := 1 + r.Int64N(maxRun)
		first := r.Int64N(overlapBlocks - n + 1)
		v := version{w, i}
		log.add(v, blockRun{first, n})
		var buf []byte
		for b := first; b < first+n; b++ {
			buf = append(buf, versionBlock(v, b)...)
		}
		if res := pwriteAll(fd, buf, first*BlockSize); res.err != 0 {
			return fmt.Errorf("writer %d: %w", w, res.err)
		}
	}
	return nil
}

// disjointRange is the range each disjoint writer owns: not a multiple of
// the block size, so neighbours share blocks.
const disjointRange = 3*BlockSize + 1234

// disjointWriter writes random pieces of its own range of the file, from
// the end backwards first so that gaps appear and get filled while the
// neighbours write, and returns what its range must hold.
func disjointWriter(path string, w, iters int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	model := make([]byte, disjointRange)
	base := int64(w * disjointRange)
	r := rand.New(rand.NewPCG(uint64(w), 0xd1))
	for i := range iters {
		n := 1 + r.IntN(2000)
		off := r.IntN(disjointRange - n + 1)
		if i == 0 {
			off, n = disjointRange-100, 100 // the far end first
		}
		data := pattern(uint64(w*1000+i), n)
		if res := pwriteAll(fd, data, base+int64(off)); res.err != 0 {
			return nil, fmt.Errorf("disjoint writer %d: %w", w, res.err)
		}
		copy(model[off:], data)
	}
	return model, nil
}

// directReader reads random runs of the shared file with O_DIRECT until
// done, checking each read as a whole.
func directReader(path string, seed uint64, log *writeLog, done *atomic.Bool, count *atomic.Int64) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := alignedBuffer(maxRun * BlockSize)
	r := rand.New(rand.NewPCG(seed, 0xd0))
	for reads := 0; !done.Load() || reads < 10; reads++ {
		n := 1 + r.Int64N(maxRun)
		first := r.Int64N(overlapBlocks - n + 1)
		got, err := unix.Pread(fd, buf[:n*BlockSize], first*BlockSize)
		if err != nil {
			return fmt.Errorf("O_DIRECT read: %w", err)
		}
		if int64(got) != n*BlockSize {
			return fmt.Errorf("O_DIRECT read of %d blocks returned %d bytes", n, got)
		}
		seen := make([]version, n)
		for i := range n {
			v, ok := parseBlock(buf[i*BlockSize:(i+1)*BlockSize], first+i)
			if !ok {
				return fmt.Errorf("O_DIRECT read: block %d is no write's version", first+i)
			}
			seen[i] = v
		}
		if c := log.contradiction(first, seen); c != "" {
			return fmt.Errorf("O_DIRECT read of blocks %d..%d saw a torn write: %s", first, first+n-1, c)
		}
		count.Add(1)
	}
	return nil
}

// cachedReader reads the shared file through the page cache until done; a
// read must not fail, and blocks caught mid-write are counted.
func cachedReader(path string, seed uint64, done *atomic.Bool, midWrite *atomic.Int64) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	r := rand.New(rand.NewPCG(seed, 0xca))
	for reads := 0; !done.Load() || reads < 10; reads++ {
		n := 1 + r.Int64N(maxRun)
		first := r.Int64N(overlapBlocks - n + 1)
		res := preadAll(fd, n*BlockSize, first*BlockSize)
		if res.err != 0 || res.n != n*BlockSize {
			return fmt.Errorf("buffered read of %d blocks: %d bytes, %v", n, res.n, res.err)
		}
		for i := range n {
			if _, ok := parseBlock(res.data[i*BlockSize:(i+1)*BlockSize], first+i); !ok {
				midWrite.Add(1)
			}
		}
	}
	return nil
}

// alignedBuffer returns n bytes aligned for O_DIRECT.
func alignedBuffer(n int) []byte {
	buf := make([]byte, n+BlockSize)
	off := int(uintptr(unsafe.Pointer(&buf[0])) & (BlockSize - 1))
	if off != 0 {
		off = BlockSize - off
	}
	return buf[off : off+n]
}

func TestWriteLogContradiction(t *testing.T) {
	l := &writeLog{runs: map[version]blockRun{}}
	w1, w2, w3 := version{1, 0}, version{2, 0}, version{3, 0}
	l.add(w1, blockRun{0, 4}) // blocks 0..3
	l.add(w2, blockRun{2, 4}) // blocks 2..5
	l.add(w3, blockRun{3, 1}) // block 3
	tests := []struct {
		name string
		seen []version // blocks 0..
		torn bool
	}{
		{"w1 then w2", []version{w1, w1, w2, w2, w2}, false},
		{"w2 then w1", []version{w1, w1, w1, w1, w2}, false},
		{"w1 then w2 then w3", []version{w1, w1, w2, w3, w2}, false},
		{"w2 torn by w1", []version{w1, w1, w2, w1, w2}, true},
		{"w1 and w2 each over part of the other", []version{w1, w1, w1, w2, w2}, true},
		{"w2, then w1, then w3", []version{w1, w1, w1, w3, w2}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.torn, l.contradiction(0, tc.seen) != "", l.contradiction(0, tc.seen))
		})
	}
}
