//go:build linux

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Format 1 sizes (docs/format.md), restated here so that the test checks
// the on-disk size independently of fs/content.
const (
	headerSize      = 280
	blockSize       = 4096
	cipherBlockSize = blockSize + 24 + 16
)

// cipherSize is the backing file size of a plaintext of n bytes.
func cipherSize(n int64) int64 {
	if n == 0 {
		return headerSize
	}
	full, rem := n/blockSize, n%blockSize
	size := headerSize + full*cipherBlockSize
	if rem > 0 {
		size += rem + cipherBlockSize - blockSize
	}
	return size
}

// TestLargeFile writes a few hundred MiB of pseudo-random data through the
// mount, with dd and with unaligned writes from Go, copies one inside the
// mount with cp, and compares SHA-256 sums with the source before and after
// a remount. It also checks the plaintext size in stat and the backing size.
func TestLargeFile(t *testing.T) {
	requireTools(t, "dd", "cp")
	const size = 256 << 20
	work := t.TempDir()
	src := filepath.Join(work, "source.bin")
	want := writeRandomFile(t, src, size)
	v := newVolume(t)

	tests := []struct {
		name  string
		file  string
		size  int64
		write func(t *testing.T, dst string)
	}{
		{"dd bs=1M conv=fsync", "dd.bin", size, func(t *testing.T, dst string) {
			run(t, "", "dd", "if="+src, "of="+dst, "bs=1M", "conv=fsync", "status=none")
		}},
		{"go, unaligned writes", "go.bin", size, func(t *testing.T, dst string) {
			copyUnaligned(t, src, dst)
		}},
		{"cp inside the mount", "cp.bin", size, func(t *testing.T, dst string) {
			run(t, "", "cp", v.path("dd.bin"), dst)
		}},
		{"dd, odd tail", "tail.bin", size - 12345, func(t *testing.T, dst string) {
			run(t, "", "dd", "if="+src, "of="+dst, "bs=64K", "count="+strconv.Itoa(size-12345),
				"iflag=count_bytes", "status=none")
		}},
	}
	sums := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := v.path(tc.file)
			tc.write(t, dst)
			sums[tc.file] = want
			if tc.size != size {
				sums[tc.file] = prefixSHA256(t, src, tc.size)
			}
			fi, err := os.Stat(dst)
			require.NoError(t, err)
			assert.Equal(t, tc.size, fi.Size(), "plaintext size in stat")
			assert.Equal(t, sums[tc.file], mustSHA256(t, dst), "contents through the mount")
		})
	}

	t.Run("after remount", func(t *testing.T) {
		v.remount(t)
		for _, tc := range tests {
			assert.Equal(t, sums[tc.file], mustSHA256(t, v.path(tc.file)), tc.file)
			fi, err := os.Stat(v.backingPath(t, tc.file))
			require.NoError(t, err)
			assert.Equal(t, cipherSize(tc.size), fi.Size(), "backing size of %s", tc.file)
		}
	})
}

// writeRandomFile writes size pseudo-random bytes to path and returns their
// hex SHA-256.
func writeRandomFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	r := mrand.NewChaCha8([32]byte{1, 2, 3})
	_, err = io.CopyN(io.MultiWriter(f, h), r, size)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return hex.EncodeToString(h.Sum(nil))
}

// prefixSHA256 returns the hex SHA-256 of the first n bytes of path.
func prefixSHA256(t testing.TB, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.CopyN(h, f, n)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// copyUnaligned copies src to dst with writes of varying sizes that never
// line up with blocks, then fsyncs.
func copyUnaligned(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	require.NoError(t, err)
	defer out.Close()

	buf := make([]byte, 1<<20)
	sizes := []int{1000003, 4095, 1, 77777, 4097, 524287}
	for i := 0; ; i++ {
		n, err := io.ReadFull(in, buf[:sizes[i%len(sizes)]])
		if n > 0 {
			_, werr := out.Write(buf[:n])
			require.NoError(t, werr)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, out.Sync())
	require.NoError(t, out.Close())
}
