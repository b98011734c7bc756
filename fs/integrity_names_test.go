//go:build linux

package fs

import (
	iofs "io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
)

// TestIntegrityHookNamesPlaintext checks that with encrypted names the
// integrity hook still names the file by its path under the mount.
func TestIntegrityHookNamesPlaintext(t *testing.T) {
	v := newTestVolume(t)
	v.opts.EncryptNames = true
	requireFUSE(t)
	mnt := t.TempDir()
	srv, err := Mount(v.backing, mnt, v.opts)
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(filepath.Join(mnt, "reports"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "reports", "q3.txt"),
		pattern(1, tamperSize), 0o600))
	unmount(t, srv)

	// The one content file of that size is q3.txt under its encrypted name.
	var found []string
	require.NoError(t, filepath.WalkDir(v.backing, func(p string, d iofs.DirEntry, err error) error {
		require.NoError(t, err)
		fi, err := d.Info()
		require.NoError(t, err)
		if fi.Mode().IsRegular() && fi.Size() == content.CipherSize(tamperSize) {
			found = append(found, p)
		}
		return nil
	}))
	require.Len(t, found, 1)
	assert.NotContains(t, found[0], "q3.txt")
	edit(t, found[0], flip(blockAt(0)+100))

	var mu sync.Mutex
	var paths []string
	mnt = v.mountWith(t, func(o *Options) {
		o.Integrity = func(path string, _ int64, _ error) {
			mu.Lock()
			defer mu.Unlock()
			paths = append(paths, path)
		}
	})
	_, err = os.ReadFile(filepath.Join(mnt, "reports", "q3.txt"))
	require.ErrorIs(t, err, syscall.EIO)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, paths)
	assert.Equal(t, "/reports/q3.txt", paths[0])
}
