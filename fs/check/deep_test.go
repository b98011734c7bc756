//go:build linux

package check

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// TestDeepTree checks and repairs files at the bottom of a plaintext-names
// tree whose backing paths are longer than PATH_MAX (80 levels of 60-byte
// names), which path-based calls cannot reach.
func TestDeepTree(t *testing.T) {
	v := newVolume(t)
	fd, err := unix.Open(v.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	var rel []string
	for range 80 {
		name := strings.Repeat("d", 60)
		require.NoError(t, unix.Mkdirat(fd, name, 0o700))
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		require.NoError(t, err)
		require.NoError(t, unix.Close(fd))
		fd, rel = next, append(rel, name)
	}
	defer unix.Close(fd)
	dir := filepath.Join(rel...)
	require.Greater(t, len(filepath.Join(v.dir, dir)), unix.PathMax)

	good := v.newFile(t, plain(1, 2*bs))
	torn := v.newFile(t, plain(2, 3*bs))
	writeAt(t, fd, "good", good.data)
	writeAt(t, fd, "torn", torn.data[:content.BlockOffset(2)+20])

	r := v.run(t, true)
	assert.Equal(t, 2, r.Files)
	require.Len(t, r.Problems, 1)
	p := r.Problems[0]
	assert.Equal(t, filepath.Join(dir, "torn"), p.Backing)
	assert.Equal(t, KindTornTail, p.Kind)
	assert.True(t, p.Repaired)
	var st unix.Stat_t
	require.NoError(t, unix.Fstatat(fd, "torn", &st, unix.AT_SYMLINK_NOFOLLOW))
	assert.Equal(t, content.BlockOffset(2), st.Size, "the torn block is cut off")

	r = v.run(t, false)
	assert.Empty(t, r.Problems, "nothing left after the repair")
	assert.Equal(t, 2, r.Files)
}

// writeAt writes data to a new file name in directory dirfd.
func writeAt(t *testing.T, dirfd int, name string, data []byte) {
	t.Helper()
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	require.NoError(t, err)
	defer unix.Close(fd)
	_, err = unix.Write(fd, data)
	require.NoError(t, err)
}
