//go:build linux

package check

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// TestReservedNamesAgree checks that keys' list of the fixed entries of
// .coffer names those that the fs and audit packages own.
func TestReservedNamesAgree(t *testing.T) {
	t.Parallel()
	names := keys.ReservedNames()
	for _, n := range []string{content.UndoDir, cofferfs.NamespaceLockName, audit.SettingsName,
		audit.AnchorName} {
		assert.Contains(t, names, n)
	}
}

// TestUndoLinkReported is breaker3's F5: a symbolic link planted as the
// undo record of a live file made its overwrites fail with ELOOP while
// fsck said the volume was clean. It is a problem now, and a link in
// place of the undo folder is not followed: --repair removes nothing
// through it.
func TestUndoLinkReported(t *testing.T) {
	t.Parallel()
	v := newVolume(t)
	f := v.newFile(t, plain(1, 2*bs))
	v.write(t, "live", f.data)
	undo := filepath.Join(v.dir, cofferfs.ReservedName, content.UndoDir)
	outside := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(outside, "target"),
		filepath.Join(undo, content.UndoName(f.id))))

	r := v.run(t, false)
	rel := filepath.Join(cofferfs.ReservedName, content.UndoDir, content.UndoName(f.id))
	require.Len(t, r.Problems, 1)
	assert.Equal(t, rel, r.Problems[0].Backing)
	assert.Equal(t, KindReserved, r.Problems[0].Kind)
	assert.Contains(t, r.Problems[0].Detail, "a symbolic link, not a regular file")
	assert.True(t, r.Damaged())
	assert.Empty(t, r.StaleUndo)

	// The undo folder itself a link to a folder of other files.
	require.NoError(t, os.WriteFile(filepath.Join(outside, "precious"), []byte("x"), 0o600))
	require.NoError(t, os.RemoveAll(undo))
	require.NoError(t, os.Symlink(outside, undo))
	r = v.run(t, true)
	assert.FileExists(t, filepath.Join(outside, "precious"), "repair removed a file through the link")
	assert.Empty(t, r.StaleUndo)
	require.Len(t, r.Problems, 1)
	assert.Equal(t, filepath.Join(cofferfs.ReservedName, content.UndoDir), r.Problems[0].Backing)
	assert.Contains(t, r.Problems[0].Detail, "a symbolic link, not a directory")
}

// TestHardLinkReported is breaker4's F3: a hard link to a file elsewhere,
// planted as an undo record, made the mount overwrite that file. fsck
// reports every entry of .coffer with more than one name, and --repair
// does not remove the linked file.
func TestHardLinkReported(t *testing.T) {
	t.Parallel()
	v := newVolume(t)
	f := v.newFile(t, plain(1, 2*bs))
	v.write(t, "live", f.data)
	outside := t.TempDir() // on the backing directory's file system
	victim := filepath.Join(outside, "important")
	require.NoError(t, os.WriteFile(victim, []byte("victim"), 0o644))
	reserved := filepath.Join(v.dir, cofferfs.ReservedName)
	record := filepath.Join(cofferfs.ReservedName, content.UndoDir, content.UndoName(f.id))
	require.NoError(t, os.Link(victim, filepath.Join(v.dir, record)))
	require.NoError(t, os.Link(victim, filepath.Join(reserved, keys.UsageName)))

	r := v.run(t, true)
	var got []string
	for _, p := range r.Problems {
		assert.Equal(t, KindReserved, p.Kind)
		assert.Contains(t, p.Detail, "a file with 3 hard links, not a file with one name")
		got = append(got, p.Backing)
	}
	assert.ElementsMatch(t, []string{record, filepath.Join(cofferfs.ReservedName, keys.UsageName)}, got)
	assert.True(t, r.Damaged())
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "victim", string(b))
}
