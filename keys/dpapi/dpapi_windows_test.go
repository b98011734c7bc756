package dpapi

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// These tests need a real Windows: Wine's CryptProtectData is not DPAPI.

func TestRoundTrip(t *testing.T) {
	vol := keys.VolumeID{1, 2, 3}
	payload := bytes.Repeat([]byte("ring payload "), 100)
	for _, s := range []Scope{Machine, User} {
		t.Run(s.String(), func(t *testing.T) {
			m, err := masterkey.Open(context.Background(), keys.MasterEntry{ID: "m1",
				Kind: Scheme, URI: s.URI()}, masterkey.Options{})
			require.NoError(t, err)
			ad := keys.RingAD(vol, "m1")
			sealed, err := m.Seal(context.Background(), payload, ad)
			require.NoError(t, err)
			assert.False(t, bytes.Contains(sealed, payload[:32]))

			got, err := m.Unseal(context.Background(), sealed, ad)
			require.NoError(t, err)
			assert.Equal(t, payload, got)

			for name, bad := range map[string][]byte{
				"other volume":    keys.RingAD(keys.VolumeID{9}, "m1"),
				"other master ID": keys.RingAD(vol, "m2"),
			} {
				_, err := m.Unseal(context.Background(), sealed, bad)
				assert.ErrorIs(t, err, keys.ErrWrongKey, name)
			}
			tampered := bytes.Clone(sealed)
			tampered[len(tampered)-1] ^= 1
			_, err = m.Unseal(context.Background(), tampered, ad)
			assert.ErrorIs(t, err, keys.ErrWrongKey)
		})
	}
}

func TestScopeMismatch(t *testing.T) {
	ad := keys.RingAD(keys.VolumeID{1}, "m1")
	machine, err := New(Machine)
	require.NoError(t, err)
	user, err := New(User)
	require.NoError(t, err)
	sealed, err := machine.Seal(context.Background(), []byte("ring"), ad)
	require.NoError(t, err)
	_, err = user.Unseal(context.Background(), sealed, ad)
	assert.ErrorIs(t, err, keys.ErrWrongKey)
}
