package azurekv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
)

// TestKnownAnswer opens a sealed copy made by an earlier coffer
// (testdata/sealed-v1.txt says how), given what Key Vault's unwrapKey
// returned for it (KEK || SHA-256(ring AD)): first by hand after
// docs/format.md, then with this package's parser and envelope.Open. A
// change of the layout or of the box's associated data fails it.
func TestKnownAnswer(t *testing.T) {
	k := envelopetest.Load(t, "testdata/sealed-v1.txt")
	ad := k.RingAD()
	require.Equal(t, keys.RingAD(keys.VolumeID(k.Volume), k.Master), ad)
	digest := sha256.Sum256(ad)
	require.Len(t, k.KEK, 64)
	require.Equal(t, digest[:], k.KEK[32:])
	kek := k.KEK[:32]

	require.Equal(t, byte(1), k.Sealed[0])
	v := int(k.Sealed[1])
	n := int(binary.BigEndian.Uint16(k.Sealed[2+v:]))
	assert.Equal(t, k.Plaintext, envelopetest.OpenBox(t, kek, k.Sealed, 4+v+n, ad))

	version, wrapped, boxed, err := parseSealed(k.Sealed)
	require.NoError(t, err)
	assert.Equal(t, string(k.Sealed[2:2+v]), version)
	assert.Equal(t, k.Sealed[4+v:4+v+n], wrapped)
	got, err := envelope.Open(context.Background(),
		keys.SecretFromBytes(bytes.Clone(kek)), k.Sealed, boxed, ad)
	require.NoError(t, err)
	assert.Equal(t, k.Plaintext, got)
}
