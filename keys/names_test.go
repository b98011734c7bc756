package keys

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func plainOpen(MasterEntry) (Master, error) { return plainMaster{}, nil }

// sealedNames returns the names member of master id's sealed payload.
func sealedNames(t *testing.T, cfg *Config, id string) (string, bool) {
	t.Helper()
	payload, err := plainMaster{}.Unseal(context.Background(), cfg.Ring.Sealed[id],
		RingAD(cfg.VolumeID, id))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(payload, &m))
	v, ok := m["names"].(string)
	return v, ok
}

// TestNamesBoundToRing checks that the names mode is sealed with the ring
// and that a config whose mode was edited does not unlock: volume.json is
// not authenticated, and turning "encrypted" into "plaintext" (or deleting
// the field) would otherwise store new names in the clear.
func TestNamesBoundToRing(t *testing.T) {
	tests := []struct {
		name   string
		sealed string
		edited string // the config's names after the edit
		ok     bool
	}{
		{"encrypted kept", NamesEncrypted, NamesEncrypted, true},
		{"plaintext kept", NamesPlaintext, NamesPlaintext, true},
		{"encrypted edited to plaintext", NamesEncrypted, NamesPlaintext, false},
		{"encrypted field deleted", NamesEncrypted, "", false},
		{"plaintext edited to encrypted", NamesPlaintext, NamesEncrypted, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := newVolume(context.Background(), []Enrollment{plainEnrollment()},
				tt.sealed)
			require.NoError(t, err)
			got, ok := sealedNames(t, cfg, cfg.Masters[0].ID)
			require.True(t, ok, "payload has no names member")
			assert.Equal(t, tt.sealed, got)

			cfg.Names = tt.edited
			ring, _, err := Unlock(context.Background(), cfg, plainOpen, UnlockOptions{})
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, tt.sealed, ring.Names())
				return
			}
			require.ErrorIs(t, err, ErrConfigAltered)
			assert.NotErrorIs(t, err, ErrWrongKey)
			assert.Contains(t, err.Error(), "sealed ring says "+tt.sealed)
		})
	}
}

// TestNamesLegacyPayload checks a ring sealed before the names mode was in
// the payload: it unlocks with the config's mode, and the next sealing
// (here, adding a master key) writes that mode into the payload.
func TestNamesLegacyPayload(t *testing.T) {
	backing := t.TempDir()
	cfg, _, err := newVolume(context.Background(), []Enrollment{plainEnrollment()}, "")
	require.NoError(t, err)
	_, ok := sealedNames(t, cfg, cfg.Masters[0].ID)
	require.False(t, ok, "a legacy payload has no names member")
	cfg.Names = NamesEncrypted
	require.NoError(t, createVolume(backing, cfg))

	ring, _, err := Unlock(context.Background(), cfg, plainOpen, UnlockOptions{})
	require.NoError(t, err)
	assert.Equal(t, NamesEncrypted, ring.Names())

	e := plainEnrollment()
	e.URI = "test:second"
	added, err := AddMaster(context.Background(), backing, ring, e, AddOptions{})
	require.NoError(t, err)
	cfg, err = ReadConfig(backing)
	require.NoError(t, err)
	got, ok := sealedNames(t, cfg, added.ID)
	require.True(t, ok)
	assert.Equal(t, NamesEncrypted, got)

	cfg.Names = NamesPlaintext
	_, _, err = Unlock(context.Background(), cfg, plainOpen, UnlockOptions{Only: added.ID})
	require.ErrorIs(t, err, ErrConfigAltered)
}
