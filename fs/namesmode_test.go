//go:build linux

package fs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/names"
)

// TestPlaintextMountOfEncryptedNamesRefused checks the defence against a
// volume.json edited from encrypted to plaintext names: a plaintext-names
// file system over a backing root that has a directory record (which only
// encrypted names write) refuses to start, for mounts and path resolvers,
// and writes nothing.
func TestPlaintextMountOfEncryptedNamesRefused(t *testing.T) {
	v := newTestVolume(t)
	v.opts.EncryptNames = true
	requireFUSE(t)
	mnt := t.TempDir()
	srv, err := Mount(v.backing, mnt, v.opts)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "SECRET"), []byte("x"), 0o600))
	unmount(t, srv)
	_, err = os.Lstat(filepath.Join(v.backing, names.RecordName))
	require.NoError(t, err, "an encrypted-names root has a record")

	before := treeOf(t, v.backing)
	opts := v.opts
	opts.EncryptNames = false
	_, err = Mount(v.backing, t.TempDir(), opts)
	require.ErrorIs(t, err, ErrNamesMode)
	_, err = NewResolver(v.backing, opts)
	require.ErrorIs(t, err, ErrNamesMode)
	assert.Equal(t, before, treeOf(t, v.backing))
}

// TestPlaintextRootRecordNameReserved checks that a plaintext-names mount
// does not let users create an entry under the root record's name, which
// would make the volume look altered on the next mount.
func TestPlaintextRootRecordNameReserved(t *testing.T) {
	v := newTestVolume(t)
	mnt := v.mount(t)
	err := os.WriteFile(filepath.Join(mnt, names.RecordName), []byte("x"), 0o600)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EPERM)
	require.NoError(t, os.Mkdir(filepath.Join(mnt, "sub"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "sub", names.RecordName), nil, 0o600),
		"only the root's record name is reserved")
}

// treeOf lists the names under dir.
func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		out = append(out, p)
		return err
	}))
	return out
}
