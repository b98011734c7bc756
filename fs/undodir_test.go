//go:build linux

package fs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
)

// overwriteSetup writes a file of three blocks through a new filesystem of
// v and returns the handle, which has not saved an undo record yet, and
// the record's path.
func overwriteSetup(t *testing.T, v *testVolume, name string) (*filesystem, *handle, string) {
	t.Helper()
	f := newFilesystem(v.backing, v.opts)
	h := openTestHandle(t, f, name)
	_, err := h.writeAt(pattern(1, 3*bs), 0)
	require.NoError(t, err)
	c, err := h.cipher()
	require.NoError(t, err)
	return f, h, filepath.Join(v.backing, ReservedName, content.UndoDir, content.UndoName(c.FileID()))
}

// TestUndoRecordReplacesPlantedEntry is breaker4's F3: an entry planted in
// place of a file's undo record (a hard link to a file elsewhere, which
// openat2 without symlinks does not stop, or a symbolic link) made root
// overwrite the linked file with the record. The entry is now unlinked and a
// record of its own made; the linked file stays as it was.
func TestUndoRecordReplacesPlantedEntry(t *testing.T) {
	tests := []struct {
		name  string
		plant func(victim, record string) error
	}{
		{name: "hard link", plant: os.Link},
		{name: "symbolic link", plant: os.Symlink},
		{name: "record left by a crash", plant: func(_, record string) error {
			return os.WriteFile(record, []byte("an older record"), 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVolume(t)
			f, h, record := overwriteSetup(t, v, "f")
			// t.TempDir is on the backing directory's file system, as a
			// hard link needs.
			victim := filepath.Join(t.TempDir(), "important")
			want := []byte("important data outside the volume\n")
			require.NoError(t, os.WriteFile(victim, want, 0o644))
			require.NoError(t, os.MkdirAll(filepath.Dir(record), 0o700))
			require.NoError(t, tt.plant(victim, record))

			_, err := h.writeAt(pattern(2, 10), bs+5)
			require.NoError(t, err)

			assert.Equal(t, want, readBacking(t, victim), "the linked file was written")
			var st syscall.Stat_t
			require.NoError(t, syscall.Lstat(record, &st))
			assert.Equal(t, uint32(syscall.S_IFREG), st.Mode&syscall.S_IFMT)
			assert.Equal(t, uint64(1), st.Nlink)
			assert.Equal(t, uint32(0o600), st.Mode&0o7777)
			u, err := f.readUndo(filepath.Base(record))
			require.NoError(t, err)
			require.NotNil(t, u)
			assert.Equal(t, uint64(1), u.First, "the record of this overwrite")
		})
	}
}

// TestUndoRecordUnreplaceable checks that an overwrite whose record cannot
// be made, because a folder stands in its place, fails with EIO and a
// warning that names the entry, and writes nothing.
func TestUndoRecordUnreplaceable(t *testing.T) {
	v := newTestVolume(t)
	f, h, record := overwriteSetup(t, v, "f")
	require.NoError(t, os.MkdirAll(filepath.Join(record, "x"), 0o700))
	before := readBacking(t, filepath.Join(v.backing, "f"))

	_, err := h.writeAt(pattern(2, 10), bs+5)
	require.Error(t, err)
	assert.Equal(t, syscall.EIO, f.errno(err))
	assert.Equal(t, before, readBacking(t, filepath.Join(v.backing, "f")))
	assert.Contains(t, v.logs.String(), "cannot replace the entry in the place of an undo record")
	assert.Contains(t, v.logs.String(), filepath.Base(record))
}

// TestUndoFolderSwappedForLink is breaker4's F6: with the undo folder (or
// .coffer) replaced by a symbolic link after the mount opened it, removing
// a record unlinked the file of that name in the link's target. Records are
// now removed and made through the descriptor of the folder the mount
// opened, and a folder opened again is opened without following links.
func TestUndoFolderSwappedForLink(t *testing.T) {
	tests := []struct {
		name    string
		swapped string // the entry replaced by a link, relative to backing
		remove  bool   // the folder is removed, not kept elsewhere
		drop    func(t *testing.T, h *handle)
	}{
		{name: "undo, last close", swapped: undoRel, drop: func(_ *testing.T, h *handle) { h.release() }},
		{name: "undo, truncation", swapped: undoRel, drop: func(t *testing.T, h *handle) {
			require.NoError(t, h.truncate(bs))
		}},
		{name: ".coffer, last close", swapped: ReservedName, drop: func(_ *testing.T, h *handle) { h.release() }},
		{name: "undo removed, new record", swapped: undoRel, remove: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVolume(t)
			f, h, record := overwriteSetup(t, v, "f")
			_, err := h.writeAt(pattern(2, 10), bs+5)
			require.NoError(t, err)
			require.FileExists(t, record)

			// The attacker's folder holds a file of every name the mount
			// may remove or create there.
			outside := t.TempDir()
			victim := filepath.Join(outside, filepath.Base(record))
			require.NoError(t, os.MkdirAll(filepath.Join(outside, content.UndoDir), 0o700))
			victims := []string{victim, filepath.Join(outside, content.UndoDir, filepath.Base(record))}
			for _, p := range victims {
				require.NoError(t, os.WriteFile(p, []byte("victim"), 0o644))
			}
			swapped := filepath.Join(v.backing, tt.swapped)
			if tt.remove {
				require.NoError(t, os.RemoveAll(swapped))
			} else {
				require.NoError(t, os.Rename(swapped, swapped+".real"))
			}
			if tt.swapped == ReservedName {
				victims = victims[1:] // the link's target stands for .coffer
			}
			require.NoError(t, os.Symlink(outside, swapped))

			if tt.drop != nil {
				tt.drop(t, h)
				assert.NoFileExists(t, strings.Replace(record, tt.swapped, tt.swapped+".real", 1),
					"the record in the folder the mount opened is gone")
			} else {
				// A new record: the folder must be opened again, and is
				// a link now.
				h2 := openTestHandle(t, f, "g")
				_, err = h2.writeAt(pattern(1, 2*bs), 0)
				require.NoError(t, err)
				_, err = h2.writeAt(pattern(2, 10), 5)
				require.ErrorIs(t, err, syscall.ELOOP)
			}
			for _, p := range victims {
				assert.Equal(t, []byte("victim"), readBacking(t, p), "%s was changed through the link", p)
			}
			entries, err := os.ReadDir(outside)
			require.NoError(t, err)
			assert.Len(t, entries, 2, "nothing created through the link")
		})
	}
}

// TestUndoFolderRemovedIsMadeAgain checks that a record is made in a new
// undo folder when the one the mount opened was removed.
func TestUndoFolderRemovedIsMadeAgain(t *testing.T) {
	v := newTestVolume(t)
	f, h, record := overwriteSetup(t, v, "f")
	_, err := h.writeAt(pattern(2, 10), bs+5)
	require.NoError(t, err)
	h.release()
	require.NoError(t, os.RemoveAll(filepath.Dir(record)))

	h = openTestHandle(t, f, "f")
	_, err = h.writeAt(pattern(3, 10), bs+5)
	require.NoError(t, err)
	assert.FileExists(t, record)
}

// TestRemoveSharedUndoFollowsNoLink checks that removing a shared mount's
// records after unmount does not follow a link in place of the undo folder.
func TestRemoveSharedUndoFollowsNoLink(t *testing.T) {
	backing, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(backing, ReservedName), 0o700))
	victim := filepath.Join(outside, "0123."+undoTag())
	require.NoError(t, os.WriteFile(victim, []byte("victim"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(backing, undoRel)))

	assert.Error(t, RemoveSharedUndo(backing), "a link in place of the undo folder")
	assert.FileExists(t, victim)

	require.NoError(t, os.Remove(filepath.Join(backing, undoRel)))
	require.NoError(t, os.Mkdir(filepath.Join(backing, undoRel), 0o700))
	mine := filepath.Join(backing, undoRel, "0123."+undoTag())
	other := filepath.Join(backing, undoRel, "0123.otherhost-1")
	require.NoError(t, os.WriteFile(mine, nil, 0o600))
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	require.NoError(t, RemoveSharedUndo(backing))
	assert.NoFileExists(t, mine)
	assert.FileExists(t, other)
}
