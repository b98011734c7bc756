package keys

import (
	"crypto/sha256"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	xhkdf "golang.org/x/crypto/hkdf"
)

// rawRingKey returns the AES key bytes of ring key id, read from the keyset.
func rawRingKey(t *testing.T, r *Ring, id uint32) []byte {
	t.Helper()
	h := r.state.Load().handle
	for i := range h.Len() {
		e, err := h.Entry(i)
		require.NoError(t, err)
		if e.KeyID() == id {
			return e.Key().(*aesgcm.Key).KeyBytes().Data(insecuresecretdataaccess.Token{})
		}
	}
	t.Fatalf("ring has no key %d", id)
	return nil
}

func TestRingDeriveKey(t *testing.T) {
	r := newTestRing(t)
	first := r.Primary().ID

	got, err := r.DeriveKey(first, "audit-mac-v1")
	require.NoError(t, err)
	require.Len(t, got, DerivedKeySize)

	// The same derivation by an independent HKDF implementation.
	want := make([]byte, DerivedKeySize)
	kdf := xhkdf.New(sha256.New, rawRingKey(t, r, first), []byte("coffer-ring-derive-v1"),
		[]byte("audit-mac-v1"))
	_, err = io.ReadFull(kdf, want)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	other, err := r.DeriveKey(first, "another-purpose")
	require.NoError(t, err)
	assert.NotEqual(t, got, other, "purposes must give distinct keys")

	// A rotation leaves the old key's derivation unchanged and gives the
	// new primary its own.
	added, err := r.AddKey()
	require.NoError(t, err)
	require.NoError(t, r.SetPrimary(added.ID))
	again, err := r.DeriveKey(first, "audit-mac-v1")
	require.NoError(t, err)
	assert.Equal(t, got, again)
	fresh, err := r.DeriveKey(added.ID, "audit-mac-v1")
	require.NoError(t, err)
	assert.NotEqual(t, got, fresh)

	// The derivation survives sealing: a ring read back derives the same.
	vol := VolumeID{1}
	payload, err := r.marshalPayload(vol)
	require.NoError(t, err)
	_, back, err := unmarshalPayload(payload)
	require.NoError(t, err)
	fromBack, err := back.DeriveKey(first, "audit-mac-v1")
	require.NoError(t, err)
	assert.Equal(t, got, fromBack)

	_, err = r.DeriveKey(first+added.ID+1, "audit-mac-v1")
	assert.ErrorIs(t, err, ErrUnknownKey)
}
