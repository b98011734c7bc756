//go:build unix

package rewrap_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/fs/rewrap"
	"github.com/cofferfs/coffer/keys"
)

var vol = [16]byte{1, 2, 3}

// header returns a file header with dek wrapped by ring in slot 0 and
// the given tail of content bytes after it.
func header(t *testing.T, ring *keys.Ring, id content.FileID, dek []byte) *content.Header {
	t.Helper()
	keyID, wrapped, err := ring.Wrap(dek, func(k uint32) []byte { return content.SlotAD(vol, id, k, 1) })
	require.NoError(t, err)
	h := &content.Header{Version: content.Version, FileID: id}
	h.Slots[0] = content.Slot{KeyID: keyID, Generation: 1, Wrapped: wrapped}
	return h
}

func write(t *testing.T, p string, h *content.Header, tail []byte) []byte {
	t.Helper()
	b, err := h.MarshalBinary()
	require.NoError(t, err)
	b = append(b, tail...)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return b
}

// unwrapCurrent unwraps the current slot of the header in file p.
func unwrapCurrent(t *testing.T, ring *keys.Ring, p string) (uint32, []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	h, err := content.ParseHeader(b[:content.HeaderSize])
	require.NoError(t, err)
	s := h.Slots[h.Order()[0]]
	dek, err := ring.Unwrap(s.KeyID, s.Wrapped, content.SlotAD(vol, h.FileID, s.KeyID, s.Generation))
	require.NoError(t, err)
	return s.KeyID, dek
}

func TestRunRewrapsOnlySlots(t *testing.T) {
	ring, err := keys.NewRing()
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".coffer"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".coffer", "x"), []byte("not scanned"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))

	dek := bytes.Repeat([]byte{7}, 32)
	tail := bytes.Repeat([]byte{0xAB}, 5000) // stands for the blocks
	p := filepath.Join(dir, "file")
	before := write(t, p, header(t, ring, content.FileID{9}, dek), tail)

	// A header whose current slot is torn: garbage under a higher
	// generation; the rotation falls back to slot 0 and repairs it.
	torn := header(t, ring, content.FileID{8}, dek)
	torn.Slots[1] = content.Slot{KeyID: torn.Slots[0].KeyID, Generation: 2,
		Wrapped: bytes.Repeat([]byte{1}, 65)}
	pt := filepath.Join(dir, "torn")
	write(t, pt, torn, nil)

	old := ring.Primary().ID
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	res, err := rewrap.Run(context.Background(), dir, rewrap.Options{VolumeID: vol, Keys: ring,
		Target: k.ID})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Headers)
	assert.Equal(t, 2, res.Rewrapped)
	assert.Equal(t, map[uint32]int{k.ID: 2}, res.ByKey)
	assert.Equal(t, 2, res.Wiped)
	assert.Equal(t, map[uint32]int{k.ID: 2}, res.Slots)
	assert.Empty(t, res.Failed)

	after, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, before[:24], after[:24], "magic and file ID unchanged")
	assert.Equal(t, make([]byte, 128), after[24:24+128], "the old slot is wiped")
	assert.Equal(t, before[content.HeaderSize:], after[content.HeaderSize:], "content unchanged")
	for _, f := range []string{p, pt} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.NotContains(t, slotKeyIDs(b), old, "%s: no slot names the old key", f)
	}
	for _, f := range []string{p, pt} {
		id, got := unwrapCurrent(t, ring, f)
		assert.Equal(t, k.ID, id)
		assert.Equal(t, dek, got)
	}

	// Idempotent: a second run writes nothing; Tally agrees without keys.
	res, err = rewrap.Run(context.Background(), dir, rewrap.Options{VolumeID: vol, Keys: ring,
		Target: k.ID})
	require.NoError(t, err)
	assert.Equal(t, 0, res.Rewrapped)
	assert.Equal(t, 0, res.Wiped)
	tally, err := rewrap.Tally(dir)
	require.NoError(t, err)
	assert.Equal(t, map[uint32]int{k.ID: 2}, tally)
}

// slotKeyIDs returns the key IDs of the non-empty slots of header b, read
// at the offsets of docs/format.md (slot 0 at 24, slot 1 at 152).
func slotKeyIDs(b []byte) []uint32 {
	var out []uint32
	for _, off := range []int{24, 152} {
		if id := binary.BigEndian.Uint32(b[off:]); id != 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestRunWipesStaleSlot: a header whose working slot is already on the
// target key but whose other slot still holds the old key (a run killed
// between the slot write and the wipe) gets the old slot wiped by the next
// run; a second slot on the target key itself is left alone.
func TestRunWipesStaleSlot(t *testing.T) {
	ring, err := keys.NewRing()
	require.NoError(t, err)
	old := ring.Primary().ID
	dek := bytes.Repeat([]byte{5}, 32)
	dir := t.TempDir()
	stale := header(t, ring, content.FileID{1}, dek)
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	keyID, wrapped, err := ring.Wrap(dek, func(id uint32) []byte {
		return content.SlotAD(vol, content.FileID{1}, id, 2)
	})
	require.NoError(t, err)
	stale.Slots[1] = content.Slot{KeyID: keyID, Generation: 2, Wrapped: wrapped}
	ps := filepath.Join(dir, "stale")
	write(t, ps, stale, []byte("blocks"))

	both := header(t, ring, content.FileID{2}, dek) // slot 0 on k now
	keyID, wrapped, err = ring.Wrap(dek, func(id uint32) []byte {
		return content.SlotAD(vol, content.FileID{2}, id, 2)
	})
	require.NoError(t, err)
	both.Slots[1] = content.Slot{KeyID: keyID, Generation: 2, Wrapped: wrapped}
	pb := filepath.Join(dir, "both")
	beforeBoth := write(t, pb, both, nil)

	writes := 0
	res, err := rewrap.Run(context.Background(), dir, rewrap.Options{VolumeID: vol, Keys: ring,
		Target: k.ID, AfterWrite: func() { writes++ }})
	require.NoError(t, err)
	assert.Equal(t, 0, res.Rewrapped)
	assert.Equal(t, 1, res.Wiped)
	assert.Equal(t, 1, writes, "AfterWrite is called for a wipe")
	assert.Equal(t, map[uint32]int{k.ID: 3}, res.Slots)

	b, err := os.ReadFile(ps)
	require.NoError(t, err)
	assert.Equal(t, []uint32{k.ID}, slotKeyIDs(b))
	assert.Equal(t, make([]byte, 128), b[24:24+128])
	assert.Equal(t, "blocks", string(b[content.HeaderSize:]))
	id, got := unwrapCurrent(t, ring, ps)
	assert.Equal(t, k.ID, id)
	assert.Equal(t, dek, got)
	b, err = os.ReadFile(pb)
	require.NoError(t, err)
	assert.Equal(t, beforeBoth, b, "two slots on the target key are left alone")

	// The old key no longer unwraps anything here: a ring holding only it
	// (an old copy of the config) finds no slot to try.
	assert.NotContains(t, slotKeyIDs(b), old)
}

// TestRunKilledBetweenWriteAndWipe: at the moment of the slot write (before
// the wipe), the file's header has both slots and each unwraps; after the
// wipe, only the new one.
func TestRunKilledBetweenWriteAndWipe(t *testing.T) {
	ring, err := keys.NewRing()
	require.NoError(t, err)
	old := ring.Primary().ID
	dek := bytes.Repeat([]byte{3}, 32)
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	write(t, p, header(t, ring, content.FileID{4}, dek), nil)
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))

	var seen [][]uint32
	res, err := rewrap.Run(context.Background(), dir, rewrap.Options{VolumeID: vol, Keys: ring,
		Target: k.ID, AfterWrite: func() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			h, err := content.ParseHeader(b[:content.HeaderSize])
			require.NoError(t, err, "the header parses at every write")
			seen = append(seen, slotKeyIDs(b))
			_, got := unwrapCurrent(t, ring, p)
			assert.Equal(t, dek, got)
			assert.NotEmpty(t, h.Order())
		}})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Rewrapped)
	assert.Equal(t, 1, res.Wiped)
	assert.Equal(t, [][]uint32{{old, k.ID}, {k.ID}}, seen, "new slot first, then the wipe")
}

func TestRunReportsUnreadableHeader(t *testing.T) {
	ring, err := keys.NewRing()
	require.NoError(t, err)
	other, err := keys.NewRing()
	require.NoError(t, err)
	dir := t.TempDir()
	p := filepath.Join(dir, "foreign")
	before := write(t, p, header(t, other, content.FileID{1}, make([]byte, 32)), nil)

	res, err := rewrap.Run(context.Background(), dir, rewrap.Options{VolumeID: vol, Keys: ring,
		Target: ring.Primary().ID})
	require.NoError(t, err)
	require.Len(t, res.Failed, 1)
	assert.Equal(t, p, res.Failed[0].Path)
	after, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, before, after, "a header that does not unwrap is left alone")
}

// BenchmarkRotate10k re-wraps 10 000 small files from one ring key to the
// next, per iteration: the rate of a rotation's first pass.
func BenchmarkRotate10k(b *testing.B) {
	ring, err := keys.NewRing()
	require.NoError(b, err)
	dir := b.TempDir()
	t := &testing.T{}
	for i := range 10000 {
		id := content.FileID{byte(i), byte(i >> 8)}
		write(t, filepath.Join(dir, "f"+string(rune('a'+i%26))+itoa(i)), header(t, ring, id, make([]byte, 32)), make([]byte, 100))
	}
	b.ResetTimer()
	for range b.N {
		k, err := ring.AddKey()
		require.NoError(b, err)
		require.NoError(b, ring.SetPrimary(k.ID))
		res, err := rewrap.Run(context.Background(), dir, rewrap.Options{VolumeID: vol,
			Keys: ring, Target: k.ID})
		require.NoError(b, err)
		require.Equal(b, 10000, res.Rewrapped)
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "files/s")
}

func itoa(i int) string {
	return string([]byte{byte('0' + i/1000%10), byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10), byte('0' + i/10000%10)})
}
