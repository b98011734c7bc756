//go:build linux

package fs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/keys"
)

// TestFailedGrowthChangesNothing makes operations that grow a file fail
// halfway through their backing writes, and checks that the file is left
// exactly as it was. The file size limit (RLIMIT_FSIZE) makes the backing
// writes fail after a part of them reached the file, as a full disk does
// without the space reservation. It runs in a child process, which alone
// gets the limit.
func TestFailedGrowthChangesNothing(t *testing.T) {
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), helperEnv+"=fsize", "FSIZE_DIR="+t.TempDir())
	out, err := child.CombinedOutput()
	require.NoError(t, err, "helper output:\n%s", out)
}

// fsizeHelper runs the cases of TestFailedGrowthChangesNothing.
func fsizeHelper() int {
	signal.Ignore(syscall.SIGXFSZ) // make writes past the limit fail with EFBIG
	ring, err := keys.NewRing()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts := Options{Keys: ringShim{ring}}
	_, _ = rand.Read(opts.VolumeID[:])
	f := newFilesystem(os.Getenv("FSIZE_DIR"), opts)

	ops := []struct {
		name string
		op   func(h *handle, size int64) error
	}{
		{"append", func(h *handle, size int64) error {
			_, err := h.writeAt(pattern(5, 20000), size)
			return err
		}},
		{"write past the end", func(h *handle, size int64) error {
			_, err := h.writeAt(pattern(6, 3000), size+10000)
			return err
		}},
		{"overwrite and grow", func(h *handle, size int64) error {
			_, err := h.writeAt(pattern(7, 20000), size/2)
			return err
		}},
		{"truncate up", func(h *handle, size int64) error { return h.truncate(size + 50000) }},
		{"allocate", func(h *handle, size int64) error { return h.allocate(0, size+50000) }},
	}
	failed := 0
	for _, size := range []int64{0, 100, 4096, 5000, 3*bs + 4000} {
		for _, o := range ops {
			name := fmt.Sprintf("%s from %d bytes", o.name, size)
			if err := failGrowth(f, name, size, o.op); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
				failed++
			}
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// failGrowth writes size bytes to a new file, runs op under a file size
// limit a little above the backing size, and checks that op failed and
// changed nothing.
func failGrowth(f *filesystem, name string, size int64, op func(*handle, int64) error) error {
	fd, writable, err := f.openBacking(name, syscall.O_RDWR, syscall.O_CREAT, 0o600)
	if err != nil {
		return err
	}
	h, err := f.newHandle(fixedPath(filepath.Join(f.backing, name)), fd, writable)
	if err != nil {
		return err
	}
	defer h.release()
	want := pattern(1, int(size))
	if _, err := h.writeAt(want, 0); err != nil {
		return err
	}
	var before unix.Stat_t
	if err := unix.Fstat(fd, &before); err != nil {
		return err
	}

	limit := unix.Rlimit{Cur: uint64(before.Size) + 700, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &limit); err != nil {
		return err
	}
	opErr := op(h, size)
	limit.Cur = unix.RLIM_INFINITY
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &limit); err != nil {
		return err
	}
	if !errors.Is(opErr, syscall.EFBIG) {
		return fmt.Errorf("operation returned %v, want EFBIG", opErr)
	}

	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err != nil {
		return err
	}
	if after.Size != before.Size {
		return fmt.Errorf("backing size %d, was %d", after.Size, before.Size)
	}
	// Read exactly the file, as the kernel does: it never reads an empty
	// file, nor past the page holding the end.
	got := make([]byte, (size+bs-1)/bs*bs)
	n, err := h.readAt(got, 0)
	if err != nil {
		return fmt.Errorf("reading back: %w", err)
	}
	if !bytes.Equal(want, got[:n]) {
		return fmt.Errorf("contents changed: %d bytes read, want %d", n, size)
	}
	if size > 0 && before.Size != content.CipherSize(size) {
		return fmt.Errorf("backing size %d, want %d", before.Size, content.CipherSize(size))
	}
	return nil
}

// TestFailedWriteRestoresLastBlock fails the backing write of a growing last
// block halfway, after the blocks past the old end were written: the old
// block must be restored. (Blocks inside the old file are written last and
// fail only on I/O errors; they are not restored.)
func TestFailedWriteRestoresLastBlock(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		off    int64
		n      int
		failAt int // index of the backing write to fail
	}{
		{name: "grown block", size: 5000, off: 5000, n: 9000, failAt: 1},
		{name: "grown block after blocks past the end", size: 3*bs + 100, off: 10, n: 5 * bs, failAt: 1},
		{name: "grown block within it", size: 100, off: 50, n: 200, failAt: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFilesystem(t)
			h := openTestHandle(t, f, "f")
			want := pattern(1, tt.size)
			_, err := h.writeAt(want, 0)
			require.NoError(t, err)

			calls := 0
			pwriteFault = func(length int) (int, error) {
				defer func() { calls++ }()
				if calls == tt.failAt {
					return length / 2, fmt.Errorf("failed to write backing file: %w", syscall.ENOSPC)
				}
				return 0, nil
			}
			_, err = h.writeAt(pattern(2, tt.n), tt.off)
			pwriteFault = nil
			require.ErrorIs(t, err, syscall.ENOSPC)

			got := make([]byte, tt.size+bs)
			n, err := h.readAt(got, 0)
			require.NoError(t, err)
			require.Equal(t, want, got[:n])
		})
	}
}
