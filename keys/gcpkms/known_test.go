package gcpkms

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/envelope"
	"github.com/cofferfs/coffer/keys/internal/envelope/envelopetest"
)

// TestKnownAnswer opens a sealed copy made by an earlier coffer
// (testdata/sealed-v1.txt says how), given the KEK that Cloud KMS returned
// for it: first by hand after docs/format.md, then with this package's
// parser and envelope.Open. A change of the layout or of the box's
// associated data fails it.
func TestKnownAnswer(t *testing.T) {
	k := envelopetest.Load(t, "testdata/sealed-v1.txt")
	ad := k.RingAD()
	require.Equal(t, keys.RingAD(keys.VolumeID(k.Volume), k.Master), ad)
	require.Equal(t, byte(1), k.Sealed[0])
	n := int(binary.BigEndian.Uint16(k.Sealed[1:3]))
	assert.Equal(t, k.Plaintext, envelopetest.OpenBox(t, k.KEK, k.Sealed, 3+n, ad))

	blob, boxed, err := parseSealed(k.Sealed)
	require.NoError(t, err)
	assert.Equal(t, k.Sealed[3:3+n], blob)
	got, err := envelope.Open(context.Background(),
		keys.SecretFromBytes(bytes.Clone(k.KEK)), k.Sealed, boxed, ad)
	require.NoError(t, err)
	assert.Equal(t, k.Plaintext, got)
}
