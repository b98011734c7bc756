//go:build linux

package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
)

// tornState is a backing file cut by a kill in the middle of one backing
// write: the bytes of after up to cut, those of before from there on, and
// the size the file had when the kernel stopped (the old size, or cut if
// the write had extended the file that far).
func tornState(before, after []byte, cut int64) []byte {
	out := append([]byte(nil), after[:cut]...)
	if cut < int64(len(before)) {
		out = append(out, before[cut:]...)
	}
	return out
}

// TestUndoRecoversCutOverwrite overwrites existing blocks, rebuilds the
// backing file as a kill at a page boundary inside the write leaves it,
// and checks that a new handle reads every block as its old or new
// contents, the cut block as its old contents, restored in place, with a
// warning.
func TestUndoRecoversCutOverwrite(t *testing.T) {
	tests := []struct {
		name     string
		size     int   // plaintext size before the overwrite
		off, n   int64 // the overwrite
		cutBlock int64 // the block the kill cuts
		second   bool  // cut at the block's second page boundary, if it has one
	}{
		{name: "whole middle block", size: 3 * bs, off: bs, n: bs, cutBlock: 1},
		{name: "part of a middle block", size: 3 * bs, off: bs + 100, n: 50, cutBlock: 1},
		{name: "many blocks, cut in the third", size: 8 * bs, off: 10, n: 5 * bs, cutBlock: 3},
		{name: "many blocks, second boundary", size: 97 * bs, off: 0, n: 97 * bs, cutBlock: 95, second: true},
		{name: "old last block growing", size: bs + 3900, off: bs + 10, n: 3 * bs, cutBlock: 1},
		{name: "last block rewritten", size: 2 * bs, off: bs + 5, n: 10, cutBlock: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVolume(t)
			f := newFilesystem(v.backing, v.opts)
			path := filepath.Join(v.backing, "f")
			old := pattern(1, tt.size)
			h := openTestHandle(t, f, "f")
			_, err := h.writeAt(old, 0)
			require.NoError(t, err)
			before := readBacking(t, path)

			_, err = h.writeAt(pattern(2, int(tt.n)), tt.off)
			require.NoError(t, err)
			// A kill leaves the handle open: closing it would remove
			// the record, which has then served its purpose.
			defer h.release()
			after := readBacking(t, path)

			start := content.BlockOffset(uint64(tt.cutBlock))
			cut := (start/content.TearUnit + 1) * content.TearUnit
			if tt.second {
				cut += content.TearUnit
				require.Less(t, cut, start+cbs, "block %d holds two page boundaries", tt.cutBlock)
			}
			require.Less(t, cut, int64(len(before)), "the cut must lie inside the old file")
			require.NoError(t, os.WriteFile(path, tornState(before, after, cut), 0o600))

			model := append([]byte(nil), old...)
			f = newFilesystem(v.backing, v.opts)
			h = openTestHandle(t, f, "f")
			got := make([]byte, (tt.size+bs-1)/bs*bs)
			n, err := h.readAt(got, 0)
			require.NoError(t, err)
			require.Equal(t, len(model), n)
			// Blocks before the cut one hold the new data, the cut one and
			// those after it the old.
			newModel := append([]byte(nil), old...)
			newModel = append(newModel, make([]byte, max(0, int(tt.off+tt.n)-len(newModel)))...)
			copy(newModel[tt.off:], pattern(2, int(tt.n)))
			for b := int64(0); b*bs < int64(n); b++ {
				lo, hi := b*bs, min((b+1)*bs, int64(n))
				want := model[lo:hi]
				if b < tt.cutBlock {
					want = newModel[lo:hi]
				}
				assert.Equal(t, want, got[lo:hi], "block %d", b)
			}
			assert.Equal(t, before[start:start+min(cbs, int64(len(before))-start)],
				readBacking(t, path)[start:start+min(cbs, int64(len(before))-start)], "block restored in place")
			assert.True(t, h.ino.changed.Load(), "the restore is a write whose errors a flush reports")
			assertWarned(t, v, path, float64(tt.cutBlock))
		})
	}
}

// TestUndoNeverServesOlderData damages blocks in ways that are not a cut
// overwrite, with an undo record at hand that holds an older version of
// them, and checks that they fail with EIO.
func TestUndoNeverServesOlderData(t *testing.T) {
	tests := []struct {
		name   string
		damage func(before, after []byte) []byte
	}{
		{name: "bit flip in a completed overwrite", damage: func(_, after []byte) []byte {
			b := append([]byte(nil), after...)
			b[content.BlockOffset(1)+100] ^= 1
			return b
		}},
		{name: "new block with the old nonce", damage: func(before, after []byte) []byte {
			b := append([]byte(nil), after...)
			copy(b[content.BlockOffset(1):], before[content.BlockOffset(1):content.BlockOffset(1)+24])
			return b
		}},
		{name: "cut inside the block", damage: func(before, _ []byte) []byte {
			return before[:content.BlockOffset(1)+2000]
		}},
		{name: "zeroed block", damage: func(_, after []byte) []byte {
			b := append([]byte(nil), after...)
			clear(b[content.BlockOffset(1):content.BlockOffset(2)])
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVolume(t)
			f := newFilesystem(v.backing, v.opts)
			path := filepath.Join(v.backing, "f")
			h := openTestHandle(t, f, "f")
			_, err := h.writeAt(pattern(1, 3*bs), 0)
			require.NoError(t, err)
			before := readBacking(t, path)
			_, err = h.writeAt(pattern(2, bs), bs)
			require.NoError(t, err)
			defer h.release() // keeps the record
			require.NoError(t, os.WriteFile(path, tt.damage(before, readBacking(t, path)), 0o600))

			h = openTestHandle(t, newFilesystem(v.backing, v.opts), "f")
			got := make([]byte, bs)
			_, err = h.readAt(got, bs)
			require.ErrorIs(t, err, content.ErrAuth)
			assert.Equal(t, syscall.EIO, f.errno(err))
		})
	}
}

// TestUndoDroppedByTruncation checks that a truncation removes the undo
// record, so that no pre-image survives a change of its block that did not
// replace it, and that appends and new files write none.
func TestUndoDroppedByTruncation(t *testing.T) {
	v := newTestVolume(t)
	f := newFilesystem(v.backing, v.opts)
	h := openTestHandle(t, f, "f")
	_, err := h.writeAt(pattern(1, 3*bs), 0)
	require.NoError(t, err)
	_, err = h.writeAt(pattern(2, bs), 3*bs)
	require.NoError(t, err)
	undoDir := filepath.Join(v.backing, ReservedName, content.UndoDir)
	assert.NoDirExists(t, undoDir, "a new file and an aligned append need no undo record")

	_, err = h.writeAt(pattern(3, 10), bs)
	require.NoError(t, err)
	entries, err := os.ReadDir(undoDir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	c, err := h.cipher()
	require.NoError(t, err)
	assert.Equal(t, content.UndoName(c.FileID()), entries[0].Name())

	require.NoError(t, h.truncate(2*bs+7))
	entries, err = os.ReadDir(undoDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "truncation drops the record")
}

func readBacking(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// TestUndoRemovedWithItsFile checks that unlinking a file, or renaming
// another over it, removes its undo record, and that a file with another
// link keeps it.
func TestUndoRemovedWithItsFile(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted names %v", enc), func(t *testing.T) {
			v := newTestVolume(t)
			v.opts.EncryptNames = enc
			mnt := v.mount(t)
			undoDir := filepath.Join(v.backing, ReservedName, content.UndoDir)
			records := func() int {
				entries, err := os.ReadDir(undoDir)
				require.NoError(t, err)
				return len(entries)
			}
			// overwritten leaves the file open, as a kill of the mount
			// would: closing it removes the record.
			overwritten := func(name string) *os.File {
				p := filepath.Join(mnt, name)
				require.NoError(t, os.WriteFile(p, pattern(1, 3*bs), 0o600))
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				require.NoError(t, err)
				t.Cleanup(func() { _ = f.Close() })
				_, err = f.WriteAt(pattern(2, 10), bs)
				require.NoError(t, err)
				return f
			}

			overwritten("a")
			require.Equal(t, 1, records())
			require.NoError(t, os.Remove(filepath.Join(mnt, "a")))
			assert.Equal(t, 0, records(), "unlink")

			overwritten("b")
			require.NoError(t, os.WriteFile(filepath.Join(mnt, "c"), []byte("new"), 0o600))
			require.NoError(t, os.Rename(filepath.Join(mnt, "c"), filepath.Join(mnt, "b")))
			assert.Equal(t, 0, records(), "rename over it")

			overwritten("d")
			require.NoError(t, os.Link(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")))
			require.NoError(t, os.Remove(filepath.Join(mnt, "d")))
			assert.Equal(t, 1, records(), "the file lives on under another name")

		})
	}
}

// TestUndoRemovedAtLastClose checks that the undo record of a file goes
// when its last handle closes after every write finished, and stays when a
// write failed after saving one, or while another handle is open.
func TestUndoRemovedAtLastClose(t *testing.T) {
	v := newTestVolume(t)
	f := newFilesystem(v.backing, v.opts)
	path := filepath.Join(v.backing, "f")
	undoDir := filepath.Join(v.backing, ReservedName, content.UndoDir)
	records := func() int {
		entries, err := os.ReadDir(undoDir)
		require.NoError(t, err)
		return len(entries)
	}

	h := openTestHandle(t, f, "f")
	_, err := h.writeAt(pattern(1, 3*bs), 0)
	require.NoError(t, err)
	_, err = h.writeAt(pattern(2, 10), bs)
	require.NoError(t, err)
	require.Equal(t, 1, records())
	h2 := openTestHandle(t, f, "f")
	h.release()
	assert.Equal(t, 1, records(), "another handle is open")
	h2.release()
	assert.Equal(t, 0, records(), "last close")
	assert.True(t, f.undo.empty())

	// A write that fails (block 2 no longer authenticates) after the
	// handle saved a record keeps it.
	h = openTestHandle(t, f, "f")
	_, err = h.writeAt(pattern(3, 10), bs)
	require.NoError(t, err)
	b := readBacking(t, path)
	b[content.BlockOffset(2)+50] ^= 1
	require.NoError(t, os.WriteFile(path, b, 0o600))
	_, err = h.writeAt(pattern(4, 10), 2*bs+5)
	require.ErrorIs(t, err, content.ErrAuth)
	h.release()
	assert.Equal(t, 1, records(), "a failed write keeps the record")
}

// TestUndoLoadedAtMount checks that records left by a killed mount are
// known to the next one: unlinking their file removes them.
func TestUndoLoadedAtMount(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted names %v", enc), func(t *testing.T) {
			v := newTestVolume(t)
			v.opts.EncryptNames = enc
			mnt := v.mount(t)
			p := filepath.Join(mnt, "a")
			require.NoError(t, os.WriteFile(p, pattern(1, 3*bs), 0o600))
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			require.NoError(t, err)
			t.Cleanup(func() { _ = f.Close() })
			_, err = f.WriteAt(pattern(2, 10), bs)
			require.NoError(t, err)

			// A second mount of the same backing directory stands in for
			// the next mount after a kill: the record is on disk.
			undoDir := filepath.Join(v.backing, ReservedName, content.UndoDir)
			entries, err := os.ReadDir(undoDir)
			require.NoError(t, err)
			require.Len(t, entries, 1)
			mnt2 := v.mount(t)
			require.NoError(t, os.Remove(filepath.Join(mnt2, "a")))
			entries, err = os.ReadDir(undoDir)
			require.NoError(t, err)
			assert.Empty(t, entries)
		})
	}
}
