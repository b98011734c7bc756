//go:build linux

package integration

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRandomOps applies the same random sequence of writes, appends,
// truncates (up and down, leaving holes), reads, fsyncs and reopens to a file
// in the mount and to a file in a plain directory, fsx-style, and compares
// every read, the sizes, and the whole file at the end and after a remount.
func TestRandomOps(t *testing.T) {
	tests := []struct {
		name    string
		seed    uint64
		ops     int
		maxSize int64
	}{
		{"small file, around block edges", 1, 3000, 5 * blockSize},
		{"large file, far writes", 2, 1500, 4 << 20},
	}
	v := newVolume(t)
	plainDir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("fsx-%d", tc.seed)
			plain, mnt := filepath.Join(plainDir, name), v.path(name)
			f := newFSX(t, plain, mnt, tc.seed, tc.maxSize)
			for i := 0; i < tc.ops && !t.Failed(); i++ {
				f.step(t, i)
			}
			f.close(t)
			f.compareWhole(t, "after the last op")
		})
	}
	v.remount(t)
	for _, tc := range tests {
		name := fmt.Sprintf("fsx-%d", tc.seed)
		want, err := os.ReadFile(filepath.Join(plainDir, name))
		require.NoError(t, err)
		got, err := os.ReadFile(v.path(name))
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "%s differs after remount", name)
	}
}

// fsx drives one plain file and one file in the mount in lockstep; each side
// has a read-write descriptor and an O_APPEND descriptor.
type fsx struct {
	r       *mrand.Rand
	paths   [2]string
	rw, app [2]*os.File
	maxSize int64
	log     []string
}

func newFSX(t *testing.T, plain, mnt string, seed uint64, maxSize int64) *fsx {
	f := &fsx{r: mrand.New(mrand.NewPCG(seed, seed)), paths: [2]string{plain, mnt}, maxSize: maxSize}
	f.open(t)
	return f
}

func (f *fsx) open(t *testing.T) {
	for i, p := range f.paths {
		var err error
		f.rw[i], err = os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		require.NoError(t, err)
		f.app[i], err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
	}
}

func (f *fsx) close(t *testing.T) {
	for i := range f.paths {
		require.NoError(t, f.rw[i].Close())
		require.NoError(t, f.app[i].Close())
	}
}

// offset returns a random offset, often near a block edge.
func (f *fsx) offset() int64 {
	off := f.r.Int64N(f.maxSize)
	if f.r.IntN(2) == 0 {
		off = off/blockSize*blockSize + int64(f.r.IntN(9)) - 4
	}
	return max(off, 0)
}

// length returns a random length: tiny, about a block, or several blocks.
func (f *fsx) length() int {
	switch f.r.IntN(3) {
	case 0:
		return 1 + f.r.IntN(16)
	case 1:
		return blockSize - 8 + f.r.IntN(17)
	}
	return 1 + f.r.IntN(4*blockSize)
}

// step applies one random operation to both files and checks it.
func (f *fsx) step(t *testing.T, i int) {
	var op string
	switch k := f.r.IntN(20); {
	case k < 7:
		off, data := f.offset(), f.data()
		op = fmt.Sprintf("pwrite off=%d len=%d", off, len(data))
		f.both(t, op, func(j int) (int, error) { return f.rw[j].WriteAt(data, off) })
	case k < 9:
		data := f.data()
		op = fmt.Sprintf("append len=%d", len(data))
		f.both(t, op, func(j int) (int, error) { return f.app[j].Write(data) })
	case k < 11:
		size := f.offset()
		op = fmt.Sprintf("truncate %d", size)
		f.both(t, op, func(j int) (int, error) { return 0, f.rw[j].Truncate(size) })
	case k < 18:
		off, n := f.offset(), f.length()
		op = fmt.Sprintf("pread off=%d len=%d", off, n)
		f.read(t, op, off, n)
	case k < 19:
		op = "fsync"
		f.both(t, op, func(j int) (int, error) { return 0, f.rw[j].Sync() })
	default:
		op = "close and reopen"
		f.close(t)
		f.open(t)
	}
	f.log = append(f.log, fmt.Sprintf("%d: %s", i, op))
	f.compareSize(t, op)
}

// data returns random bytes of a random length.
func (f *fsx) data() []byte {
	b := make([]byte, f.length())
	for i := range b {
		b[i] = byte(f.r.Uint32())
	}
	return b
}

// both runs op on the plain file and on the mounted one and compares results.
func (f *fsx) both(t *testing.T, op string, do func(j int) (int, error)) {
	n0, err0 := do(0)
	n1, err1 := do(1)
	require.NoError(t, err0, "plain: %s", op)
	require.NoError(t, err1, "mount: %s\n%s", op, f.history())
	require.Equal(t, n0, n1, "%s\n%s", op, f.history())
}

// read compares a pread of both files.
func (f *fsx) read(t *testing.T, op string, off int64, n int) {
	var got [2][]byte
	for j := range got {
		buf := make([]byte, n)
		m, _ := f.rw[j].ReadAt(buf, off)
		got[j] = buf[:m]
	}
	if !bytes.Equal(got[0], got[1]) {
		require.Failf(t, "read differs", "%s: plain read %d bytes, mount %d, first difference at +%d\n%s",
			op, len(got[0]), len(got[1]), firstDiff(got[0], got[1]), f.history())
	}
}

func (f *fsx) compareSize(t *testing.T, op string) {
	var sizes [2]int64
	for j, p := range f.paths {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		sizes[j] = fi.Size()
	}
	require.Equal(t, sizes[0], sizes[1], "size after %s\n%s", op, f.history())
}

func (f *fsx) compareWhole(t *testing.T, when string) {
	want, err := os.ReadFile(f.paths[0])
	require.NoError(t, err)
	got, err := os.ReadFile(f.paths[1])
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "contents differ %s at offset %d (sizes %d, %d)",
		when, firstDiff(want, got), len(want), len(got))
}

// history returns the last operations, for failure messages.
func (f *fsx) history() string {
	start := max(0, len(f.log)-15)
	return fmt.Sprintf("last ops:\n%s", joinLines(f.log[start:]))
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// firstDiff returns the first index where a and b differ.
func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
