package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestRing(t *testing.T) *Ring {
	t.Helper()
	r, err := NewRing()
	require.NoError(t, err)
	return r
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestNewRing(t *testing.T) {
	r := newTestRing(t)

	ks := r.Keys()
	require.Len(t, ks, 1)
	assert.NotZero(t, ks[0].ID)
	assert.Equal(t, StatePrimary, ks[0].State)
	assert.False(t, ks[0].Created.IsZero())
	assert.Equal(t, ks[0], r.Primary())
	assert.Equal(t, uint64(1), r.Generation())
}

func TestRingWrapUnwrap(t *testing.T) {
	r := newTestRing(t)
	dek := randomBytes(t, 32)
	ad := []byte("coffer-dek-v1\x00 some binding")

	id, wrapped, err := r.Wrap(dek, constAD(ad))
	require.NoError(t, err)
	assert.Equal(t, r.Primary().ID, id)
	assert.Len(t, wrapped, 65, "32-byte DEK must wrap to 65 bytes")
	assert.LessOrEqual(t, len(wrapped), 114, "must fit a header slot")
	assert.Equal(t, byte(0x01), wrapped[0], "TINK prefix tag")
	assert.Equal(t, id, binary.BigEndian.Uint32(wrapped[1:5]))

	got, err := r.Unwrap(id, wrapped, ad)
	require.NoError(t, err)
	assert.Equal(t, dek, got)
}

func TestRingUnwrapRejects(t *testing.T) {
	r := newTestRing(t)
	other := newTestRing(t)
	dek := randomBytes(t, 32)
	ad := []byte("ad")
	id, wrapped, err := r.Wrap(dek, constAD(ad))
	require.NoError(t, err)

	flip := func(i int) []byte {
		b := bytes.Clone(wrapped)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name    string
		ring    *Ring
		keyID   uint32
		wrapped []byte
		ad      []byte
		want    error
	}{
		{name: "wrong key ID", ring: r, keyID: id + 1, wrapped: wrapped, ad: ad, want: ErrAuth},
		{name: "key ID 0", ring: r, keyID: 0, wrapped: wrapped, ad: ad, want: ErrAuth},
		{name: "wrong AD", ring: r, keyID: id, wrapped: wrapped, ad: []byte("ae"), want: ErrAuth},
		{name: "nil AD", ring: r, keyID: id, wrapped: wrapped, ad: nil, want: ErrAuth},
		{name: "flipped prefix tag", ring: r, keyID: id, wrapped: flip(0), ad: ad, want: ErrAuth},
		{name: "flipped key ID byte", ring: r, keyID: id, wrapped: flip(4), ad: ad, want: ErrAuth},
		{name: "flipped nonce", ring: r, keyID: id, wrapped: flip(5), ad: ad, want: ErrAuth},
		{name: "flipped ciphertext", ring: r, keyID: id, wrapped: flip(20), ad: ad, want: ErrAuth},
		{name: "flipped tag", ring: r, keyID: id, wrapped: flip(64), ad: ad, want: ErrAuth},
		{name: "truncated", ring: r, keyID: id, wrapped: wrapped[:64], ad: ad, want: ErrAuth},
		{name: "too short", ring: r, keyID: id, wrapped: wrapped[:32], ad: ad, want: ErrAuth},
		{name: "empty", ring: r, keyID: id, wrapped: nil, ad: ad, want: ErrAuth},
		{name: "other ring", ring: other, keyID: id, wrapped: wrapped, ad: ad,
			want: ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.Unwrap(tt.keyID, tt.wrapped, tt.ad)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, got)
		})
	}
}

func TestRingRotation(t *testing.T) {
	r := newTestRing(t)
	first := r.Primary()
	ad := []byte("ad")
	_, oldWrapped, err := r.Wrap([]byte("old dek"), constAD(ad))
	require.NoError(t, err)

	added, err := r.AddKey()
	require.NoError(t, err)
	assert.Equal(t, StateActive, added.State)
	assert.Equal(t, uint64(2), r.Generation())
	id, _, err := r.Wrap([]byte("x"), constAD(ad))
	require.NoError(t, err)
	assert.Equal(t, first.ID, id, "an active key must not wrap")

	require.NoError(t, r.SetPrimary(added.ID))
	assert.Equal(t, added.ID, r.Primary().ID)
	id, _, err = r.Wrap([]byte("x"), constAD(ad))
	require.NoError(t, err)
	assert.Equal(t, added.ID, id)

	require.Error(t, r.Retire(added.ID), "the primary cannot be retired")
	require.NoError(t, r.Retire(first.ID))
	require.Error(t, r.SetPrimary(first.ID), "a retired key cannot become primary")
	require.ErrorIs(t, r.SetPrimary(12345), ErrUnknownKey)
	assert.Equal(t, uint64(4), r.Generation())

	got, err := r.Unwrap(first.ID, oldWrapped, ad)
	require.NoError(t, err, "a retired key still unwraps")
	assert.Equal(t, []byte("old dek"), got)
	states := map[uint32]KeyState{}
	for _, k := range r.Keys() {
		states[k.ID] = k.State
	}
	assert.Equal(t, map[uint32]KeyState{first.ID: StateRetired, added.ID: StatePrimary}, states)
}

// TestRingConcurrent runs wraps, unwraps and rotations at once; run with
// -race.
func TestRingConcurrent(t *testing.T) {
	r := newTestRing(t)
	ad := []byte("ad")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				dek := randomBytes(t, 32)
				id, w, err := r.Wrap(dek, constAD(ad))
				assert.NoError(t, err)
				got, err := r.Unwrap(id, w, ad)
				assert.NoError(t, err)
				assert.Equal(t, dek, got)
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			k, err := r.AddKey()
			assert.NoError(t, err)
			assert.NoError(t, r.SetPrimary(k.ID))
		}
	})
	wg.Wait()
	assert.Len(t, r.Keys(), 6)
}

func TestRingPayloadRoundTrip(t *testing.T) {
	r := newTestRing(t)
	_, err := r.AddKey()
	require.NoError(t, err)
	vol := VolumeID{1, 2, 3}
	ad := []byte("ad")
	id, wrapped, err := r.Wrap([]byte("dek"), constAD(ad))
	require.NoError(t, err)

	b, err := r.marshalPayload(vol)
	require.NoError(t, err)
	gotVol, got, err := unmarshalPayload(b)
	require.NoError(t, err)

	assert.Equal(t, vol, gotVol)
	assert.Equal(t, r.Keys(), got.Keys())
	assert.Equal(t, r.Generation(), got.Generation())
	dek, err := got.Unwrap(id, wrapped, ad)
	require.NoError(t, err)
	assert.Equal(t, []byte("dek"), dek)
}

// constAD returns an associated-data callback that ignores the key ID.
func constAD(ad []byte) func(uint32) []byte {
	return func(uint32) []byte { return ad }
}

func TestRingWrapBindsPrimaryID(t *testing.T) {
	r := newTestRing(t)
	old := r.Primary().ID
	added, err := r.AddKey()
	require.NoError(t, err)
	require.NoError(t, r.SetPrimary(added.ID))

	var asked []uint32
	id, wrapped, err := r.Wrap(randomBytes(t, 32), func(keyID uint32) []byte {
		asked = append(asked, keyID)
		return []byte{byte(keyID)}
	})
	require.NoError(t, err)
	assert.Equal(t, []uint32{added.ID}, asked, "ad must be asked once, for the primary")
	assert.Equal(t, added.ID, id)
	assert.NotEqual(t, old, id)
	_, err = r.Unwrap(id, wrapped, []byte{byte(added.ID)})
	assert.NoError(t, err)
}
