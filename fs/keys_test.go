//go:build linux

package fs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
)

// rotate adds a ring key and makes it the primary.
func rotate(t *testing.T, r ringShim) uint32 {
	t.Helper()
	k, err := r.AddKey()
	require.NoError(t, err)
	require.NoError(t, r.SetPrimary(k.ID))
	return k.ID
}

// rewrap re-wraps the DEK of a backing file with the ring's primary into the
// next slot, as a ring rotation does.
func rewrap(t *testing.T, v *testVolume, path string) {
	t.Helper()
	r := v.opts.Keys.(ringShim)
	edit(t, path, func(b []byte) []byte {
		h, err := content.ParseHeader(b[:content.HeaderSize])
		require.NoError(t, err)
		cur := h.Slots[h.Order()[0]]
		dek, err := r.Unwrap(cur.KeyID, cur.Wrapped,
			content.SlotAD(v.opts.VolumeID, h.FileID, cur.KeyID, cur.Generation))
		require.NoError(t, err)

		idx, gen := h.NextSlot()
		id, wrapped, err := r.Wrap(dek, func(id uint32) []byte {
			return content.SlotAD(v.opts.VolumeID, h.FileID, id, gen)
		})
		require.NoError(t, err)
		h.Slots[idx] = content.Slot{KeyID: id, Generation: gen, Wrapped: wrapped}
		hdr, err := h.MarshalBinary()
		require.NoError(t, err)
		copy(b, hdr)
		return b
	})
}

func TestRingRotation(t *testing.T) {
	v, mnt := mountNew(t)
	r := v.opts.Keys.(ringShim)
	oldKey := r.Primary().ID
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "old"), []byte("written under the old key"), 0o644))

	newKey := rotate(t, r)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("written under the new key"), 0o644))

	keyOf := func(name string) uint32 {
		b, err := os.ReadFile(filepath.Join(v.backing, name))
		require.NoError(t, err)
		h, err := content.ParseHeader(b[:content.HeaderSize])
		require.NoError(t, err)
		return h.Slots[h.Order()[0]].KeyID
	}
	assert.Equal(t, oldKey, keyOf("old"))
	assert.Equal(t, newKey, keyOf("new"))

	// A re-wrap fills slot 1 with a higher generation; the file stays
	// readable, through a fresh mount that must unwrap again.
	rewrap(t, v, filepath.Join(v.backing, "old"))
	assert.Equal(t, newKey, keyOf("old"))
	fresh := v.mount(t)
	for name, want := range map[string]string{
		"old": "written under the old key",
		"new": "written under the new key",
	} {
		got, err := os.ReadFile(filepath.Join(fresh, name))
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}
}

func TestKeySlotFallback(t *testing.T) {
	v := newTestVolume(t)
	want := pattern(3, 5000)
	writeBacking(t, v, map[string][]byte{"a": want})
	a := filepath.Join(v.backing, "a")
	rotate(t, v.opts.Keys.(ringShim))
	rewrap(t, v, a)

	// A torn or damaged current slot (slot 1) falls back to slot 0.
	edit(t, a, flip(24+128+14+10))
	mnt := v.mount(t)
	got, err := os.ReadFile(filepath.Join(mnt, "a"))
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assertWarned(t, v, a, "header")

	// With both slots damaged nothing unwraps.
	edit(t, a, flip(24+14+10))
	again := v.mount(t)
	_, err = readAll(filepath.Join(again, "a"))
	assert.ErrorIs(t, err, syscall.EIO)
}

func TestForeignRingCannotRead(t *testing.T) {
	v := newTestVolume(t)
	writeBacking(t, v, map[string][]byte{"a": []byte("secret")})
	before := snapshot(t, v.backing)

	mnt := v.mountWith(t, func(o *Options) { o.Keys = newRing(t) })
	_, err := readAll(filepath.Join(mnt, "a"))
	assert.ErrorIs(t, err, syscall.EIO)
	assertWarned(t, v, filepath.Join(v.backing, "a"), "header")
	assert.Equal(t, before, snapshot(t, v.backing))

	// Another volume ID with the right ring fails too: the slot is bound
	// to the volume.
	other := v.mountWith(t, func(o *Options) { o.VolumeID[0] ^= 1 })
	_, err = readAll(filepath.Join(other, "a"))
	assert.ErrorIs(t, err, syscall.EIO)
}
