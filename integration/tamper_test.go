//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tamperSize is the plaintext size of every tampered file: five full
// blocks and a partial sixth.
const tamperSize = 5*blockSize + 1000

// blockOffset is where block i starts in a backing file (docs/format.md).
func blockOffset(i int) int64 { return headerSize + int64(i)*cipherBlockSize }

// TestTampering alters backing files of an unmounted volume in every way the
// format must detect, mounts it, and checks that reading a damaged block
// fails with EIO (cat says "Input/output error"), that no read ever returns
// anything but the original bytes, that the mount's log has a warning naming
// the file and block, that untouched files read fine, and that the reads
// change nothing in the backing directory but coffer's bookkeeping.
func TestTampering(t *testing.T) {
	requireTools(t, "cat")
	tests := []struct {
		name   string
		tamper func(t *testing.T, path, donor string)
		bad    []int // blocks that must fail; nil: the header is damaged, every read may fail
	}{
		{"bit flip in a block", func(t *testing.T, p, _ string) {
			flipBit(t, p, blockOffset(2)+24+100)
		}, []int{2}},
		{"bit flip in a nonce", func(t *testing.T, p, _ string) {
			flipBit(t, p, blockOffset(1)+3)
		}, []int{1}},
		{"bit flip in the last tag", func(t *testing.T, p, _ string) {
			flipBit(t, p, blockOffset(5)+24+1000+5)
		}, []int{5}},
		{"swapped blocks", func(t *testing.T, p, _ string) {
			b1, b3 := readAt(t, p, blockOffset(1), cipherBlockSize), readAt(t, p, blockOffset(3), cipherBlockSize)
			writeAt(t, p, b3, blockOffset(1))
			writeAt(t, p, b1, blockOffset(3))
		}, []int{1, 3}},
		{"block from another file", func(t *testing.T, p, donor string) {
			writeAt(t, p, readAt(t, donor, blockOffset(2), cipherBlockSize), blockOffset(2))
		}, []int{2}},
		{"zeroed block", func(t *testing.T, p, _ string) {
			writeAt(t, p, make([]byte, cipherBlockSize), blockOffset(4))
		}, []int{4}},
		{"truncated mid-block", func(t *testing.T, p, _ string) {
			require.NoError(t, os.Truncate(p, blockOffset(5)+24+500))
		}, []int{5}},
		{"torn tail, cut inside the nonce", func(t *testing.T, p, _ string) {
			require.NoError(t, os.Truncate(p, blockOffset(5)+20))
		}, []int{5}},
		{"header from another file", func(t *testing.T, p, donor string) {
			writeAt(t, p, readAt(t, donor, 0, headerSize), 0)
		}, nil},
		{"bit flip in the wrapped key", func(t *testing.T, p, _ string) {
			flipBit(t, p, 24+14+5)
		}, nil},
		{"bit flip in the file ID", func(t *testing.T, p, _ string) {
			flipBit(t, p, 8+3)
		}, nil},
	}

	v := newVolume(t)
	files := map[string][]byte{}
	for i, name := range append([]string{"control.txt", "donor.bin"}, caseFiles(len(tests))...) {
		files[name] = pseudoRandom(uint64(1000+i), tamperSize)
		require.NoError(t, os.WriteFile(v.path(name), files[name], 0o644))
	}
	v.unmount(t)
	backingOf := map[string]string{}
	for i, tc := range tests {
		name := caseFiles(len(tests))[i]
		backingOf[name] = v.backingPath(t, name)
		tc.tamper(t, backingOf[name], v.backingPath(t, "donor.bin"))
	}
	before := snapshot(t, v.backing)
	v.mount(t)

	for i, tc := range tests {
		name := caseFiles(len(tests))[i]
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := tryRun("", nil, "cat", v.path(name))
			assert.Error(t, err, "cat of a tampered file succeeded")
			assert.Contains(t, stderr, "Input/output error")

			failed := checkBlocks(t, v.path(name), files[name])
			for _, b := range tc.bad {
				assert.Contains(t, failed, b, "block %d was not refused", b)
			}
			assertWarned(t, v.log, backingOf[name], tc.bad)
		})
	}
	t.Run("untouched files", func(t *testing.T) {
		for _, name := range []string{"control.txt", "donor.bin"} {
			data, err := os.ReadFile(v.path(name))
			require.NoError(t, err, name)
			assert.True(t, bytes.Equal(files[name], data), "%s reads back wrong", name)
		}
	})
	t.Run("backing unchanged", func(t *testing.T) {
		v.unmount(t)
		compareTrees(t, withoutBookkeeping(before), withoutBookkeeping(snapshot(t, v.backing)), 0)
	})
}

// caseFiles names the file of each tampering case.
func caseFiles(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("case-%02d.bin", i)
	}
	return names
}

// checkBlocks reads every block of path on its own. Each read must return
// the original bytes or fail with EIO; it returns the blocks that failed
// (all of them if the file does not open).
func checkBlocks(t *testing.T, path string, want []byte) []int {
	var failed []int
	nblocks := (len(want) + blockSize - 1) / blockSize
	f, err := os.Open(path)
	if err != nil {
		assert.ErrorIs(t, err, syscall.EIO, "open")
		for b := 0; b < nblocks; b++ {
			failed = append(failed, b)
		}
		return failed
	}
	defer f.Close()

	for b := 0; b < nblocks; b++ {
		lo, hi := b*blockSize, min((b+1)*blockSize, len(want))
		buf := make([]byte, hi-lo)
		n, err := f.ReadAt(buf, int64(lo))
		switch {
		case errors.Is(err, syscall.EIO):
			failed = append(failed, b)
		case err != nil && !errors.Is(err, io.EOF):
			t.Errorf("block %d: read failed with %v, want EIO or the original bytes", b, err)
		case !bytes.Equal(buf[:n], want[lo:hi]):
			t.Errorf("block %d: read returned %d bytes that are not the original %d", b, n, hi-lo)
		}
	}
	return failed
}

// assertWarned checks the mount's JSON log for a warning (or error) that
// names the backing file and, when blocks is not empty, one of the blocks.
func assertWarned(t *testing.T, logFile, name string, blocks []int) {
	data, err := os.ReadFile(logFile)
	require.NoError(t, err)
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || !strings.Contains(line, name) {
			continue
		}
		lines = append(lines, line)
		if lvl := rec["level"]; lvl != "warn" && lvl != "error" {
			continue
		}
		if len(blocks) == 0 || slices.Contains(blocks, logBlock(rec)) {
			return
		}
	}
	t.Errorf("no warning naming %s and block %v in %s; lines naming the file:\n%s",
		name, blocks, logFile, strings.Join(lines, "\n"))
}

// logBlock returns the block number of a log record: the first numeric
// field whose name contains "block", or -1.
func logBlock(rec map[string]any) int {
	for k, v := range rec {
		if f, ok := v.(float64); ok && strings.Contains(strings.ToLower(k), "block") {
			return int(f)
		}
	}
	return -1
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, n)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)
	return buf
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// flipBit flips the lowest bit of the byte at off.
func flipBit(t *testing.T, path string, off int64) {
	b := readAt(t, path, off, 1)
	b[0] ^= 1
	writeAt(t, path, b, off)
}
