package keys_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// plant appends entry e with sealed copy sealed to the config of backing,
// as anyone who can write the backing directory can.
func plant(t *testing.T, backing string, e keys.MasterEntry, sealed []byte) {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	cfg.Masters = append(cfg.Masters, e)
	cfg.Ring.Sealed[e.ID] = sealed
	require.NoError(t, keys.WriteConfig(backing, cfg))
}

// TestTagUnderOlderKeyRefused is breaker4 F1b: the holder of a revoked
// master key knows the old ring (an old copy of volume.json), and while its
// key is still in the ring (retired, not purged) tags a recovery entry of
// their own under it. The next rotation must not seal to it.
func TestTagUnderOlderKeyRefused(t *testing.T) {
	v := newVolume(t)
	old := v.ring // what the revoked key's holder unsealed
	v.rotate(t, nil)

	attacker := newVolume(t)
	e, _ := attacker.addRecovery(t)
	e.ID = "0badc0de"
	tag, err := old.TagEntry(v.cfg.VolumeID, e)
	require.NoError(t, err)
	e.Tag = tag
	plant(t, v.backing, e, []byte("junk"))

	err = v.rotateSealOnly(t)
	require.ErrorIs(t, err, keys.ErrUntrustedMaster)
	assert.ErrorContains(t, err, "not the primary key")
}

// TestRolledForwardEntryNeedsTag is breaker4 F2: the holder of a revoked
// master key seals the old ring they unsealed to a key file of their own
// and enrols it. Opening it rolls forward to the current ring through the
// carried copies (the old key is still in the ring), which proves nothing:
// rotation must refuse it, and accept a skipped master's entry, which each
// commit tagged again.
func TestRolledForwardEntryNeedsTag(t *testing.T) {
	ctx := context.Background()
	v := newVolume(t)
	skipped := v.add(t, newKeyFile(t))
	old := v.ring
	v.rotate(t, map[string]bool{skipped.ID: true})

	// The skipped master key rolls forward and is accepted.
	require.NoError(t, v.rotateSealOnly(t))

	uri := newKeyFile(t)
	en := enroll(t, uri, masterkey.Options{})
	sealed, err := keys.SealRing(ctx, old, v.cfg.VolumeID, "0badf00d", en.Master)
	require.NoError(t, err)
	plant(t, v.backing, keys.MasterEntry{ID: "0badf00d", Kind: en.Kind, URI: en.URI,
		Params: en.Params}, sealed)

	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		nil, sealOnly)
	require.NoError(t, err, "the planted copy opens and rolls forward")
	defer keys.WipeMasters(opened)
	var rolled []string
	for _, o := range opened {
		if o.RolledForward {
			rolled = append(rolled, o.Entry.ID)
		}
	}
	assert.Equal(t, []string{"0badf00d"}, rolled)
	assert.ErrorIs(t, keys.VerifySealOnly(cfg.VolumeID, ring, opened), keys.ErrUntrustedMaster)

	// CommitRing refuses it too, and writes nothing.
	before := configBytes(t, v.backing)
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	assert.ErrorIs(t, err, keys.ErrUntrustedMaster)
	assert.Equal(t, before, configBytes(t, v.backing))
}

// TestRotatingIsSealed checks that the rotation target recorded in the ring
// travels in the sealed payload, must be the primary key, and ends when
// another key becomes primary.
func TestRotatingIsSealed(t *testing.T) {
	ctx := context.Background()
	v := newVolume(t)
	assert.Zero(t, v.ring.Rotating(), "a new ring records no rotation")

	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		nil, nil)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.Error(t, ring.SetRotating(k.ID), "not the primary yet")
	require.NoError(t, ring.SetPrimary(k.ID))
	require.NoError(t, ring.SetRotating(k.ID))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	require.NoError(t, err)

	got, err := v.unlockWith(t, v.cfg.Masters[0].ID)
	require.NoError(t, err)
	assert.Equal(t, k.ID, got.Rotating(), "read back from the sealed copy")

	next, err := got.AddKey()
	require.NoError(t, err)
	require.NoError(t, got.SetPrimary(next.ID))
	assert.Zero(t, got.Rotating(), "a new primary ends the record")
}
