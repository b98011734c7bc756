package keys_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

// recoveryParams returns the params of a fresh recovery key, one the
// holder of a removed master key made for themselves.
func recoveryParams(t *testing.T) json.RawMessage {
	t.Helper()
	priv, err := recovery.Generate()
	require.NoError(t, err)
	t.Cleanup(priv.Wipe)
	e, err := priv.Enrollment()
	require.NoError(t, err)
	return e.Params
}

// forge rewrites the entry id of the config of backing with change and tags
// it under ring's primary key, as the holder of a removed master key can
// until the revocation rotation's first commit.
func forge(t *testing.T, backing string, ring *keys.Ring, id string,
	change func(*keys.MasterEntry)) {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	for i := range cfg.Masters {
		if cfg.Masters[i].ID != id {
			continue
		}
		change(&cfg.Masters[i])
		tag, err := ring.TagEntry(cfg.VolumeID, cfg.Masters[i])
		require.NoError(t, err)
		cfg.Masters[i].Tag = tag
		require.NoError(t, ring.VerifyEntry(cfg.VolumeID, cfg.Masters[i]),
			"the forged tag verifies: a tag alone cannot refuse it")
	}
	require.NoError(t, keys.WriteConfig(backing, cfg))
}

// requireChanged checks that err is the refusal of entry id as changed.
func requireChanged(t *testing.T, err error, id string) {
	t.Helper()
	require.ErrorIs(t, err, keys.ErrUntrustedMaster)
	var ee *keys.EntryError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, id, ee.Master.ID)
	assert.True(t, ee.Changed, "refused as changed since the last rotation: %v", err)
}

// TestSwappedRecoveryKeyRefused is breaker5 F1: the holder of a removed
// master key still holds the current ring, replaces the public key of the
// admin's recovery entry (same ID, kind and URI) with their own and tags it
// under the current primary key. The rotation that should shut them out
// must refuse it, before sealing and again in CommitRing, writing nothing.
func TestSwappedRecoveryKeyRefused(t *testing.T) {
	ctx := context.Background()
	v := newVolume(t)
	att := v.add(t, newKeyFile(t))
	rec, priv := v.addRecovery(t)
	require.NoError(t, v.rotateSealOnly(t), "the rotation lists the recovery entry")

	held, err := v.unlockWith(t, att.ID)
	require.NoError(t, err)
	assert.True(t, held.Listed(rec.ID))
	_, err = keys.RemoveMaster(v.backing, att.ID, keys.RemoveOptions{})
	require.NoError(t, err)
	forge(t, v.backing, held, rec.ID, func(m *keys.MasterEntry) {
		m.Params = recoveryParams(t)
	})

	before := configBytes(t, v.backing)
	requireChanged(t, v.rotateSealOnly(t), rec.ID)
	assert.Equal(t, before, configBytes(t, v.backing), "nothing written")

	// CommitRing checks it itself, for a caller that skips VerifySealOnly.
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		nil, sealOnly)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	requireChanged(t, err, rec.ID)
	assert.Equal(t, before, configBytes(t, v.backing), "nothing written")

	// Put back as it was, the entry is accepted, and the paper key works.
	forge(t, v.backing, held, rec.ID, func(m *keys.MasterEntry) { m.Params = rec.Params })
	require.NoError(t, v.rotateSealOnly(t))
	_, err = unlockRecovery(t, v.backing, priv)
	require.NoError(t, err)
}

// TestSkippedEntryTurnedRecoveryRefused is breaker5 F3: the holder of a
// removed master key turns a file master entry the admin then skips into a
// recovery entry of their own, tagged under the current primary key. The
// skipping rotation must not tag it again under its new key, and the next
// rotation that reaches it must refuse it.
func TestSkippedEntryTurnedRecoveryRefused(t *testing.T) {
	v := newVolume(t)
	att := v.add(t, newKeyFile(t))
	x := v.add(t, newKeyFile(t))
	y := v.add(t, newKeyFile(t))
	v.rotate(t, nil)

	held, err := v.unlockWith(t, att.ID)
	require.NoError(t, err)
	_, err = keys.RemoveMaster(v.backing, att.ID, keys.RemoveOptions{})
	require.NoError(t, err)
	forge(t, v.backing, held, x.ID, func(m *keys.MasterEntry) {
		m.Kind, m.URI, m.Params = recovery.Kind, recovery.URI, recoveryParams(t)
	})

	v.rotate(t, map[string]bool{x.ID: true, y.ID: true})
	ring, err := v.unlockWith(t, v.cfg.Masters[0].ID)
	require.NoError(t, err)
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	forged, _ := cfg.Master(x.ID)
	assert.ErrorIs(t, ring.VerifyEntry(cfg.VolumeID, forged), keys.ErrUntrustedMaster,
		"the changed skipped entry was not tagged under the new primary key")
	kept, _ := cfg.Master(y.ID)
	assert.NoError(t, ring.VerifyEntry(cfg.VolumeID, kept),
		"the unchanged skipped entry was")
	assert.True(t, ring.Listed(x.ID), "the listing carries the skipped entry's digest")

	before := configBytes(t, v.backing)
	requireChanged(t, v.rotateSealOnly(t), x.ID)
	assert.Equal(t, before, configBytes(t, v.backing), "nothing written")

	// Without the changed entry, the unchanged skipped one rolls forward,
	// is listed, and is accepted.
	_, err = keys.RemoveMaster(v.backing, x.ID, keys.RemoveOptions{})
	require.NoError(t, err)
	require.NoError(t, v.rotateSealOnly(t))
	_, err = v.unlockWith(t, y.ID)
	require.NoError(t, err)
}

// TestEntryListing checks what the sealed payload lists: nothing after
// init (entries are then checked by their tags, as before the listing),
// every entry of the config after a rotation commit, a recovery key added
// since only once the next rotation commits.
func TestEntryListing(t *testing.T) {
	v := newVolume(t)
	first := v.cfg.Masters[0].ID
	ring, err := v.unlockWith(t, first)
	require.NoError(t, err)
	assert.False(t, ring.Listed(first), "init lists nothing")

	other := v.add(t, newKeyFile(t))
	v.rotate(t, nil)
	v.ring, err = v.unlockWith(t, first)
	require.NoError(t, err)
	rec, priv := v.addRecovery(t)
	ring, err = v.unlockWith(t, first)
	require.NoError(t, err)
	assert.True(t, ring.Listed(first))
	assert.True(t, ring.Listed(other.ID))
	assert.False(t, ring.Listed(rec.ID), "added after the rotation")

	// Not listed, the recovery entry is accepted by its tag, then listed.
	require.NoError(t, v.rotateSealOnly(t))
	ring, err = unlockRecovery(t, v.backing, priv)
	require.NoError(t, err)
	assert.True(t, ring.Listed(rec.ID))
	require.NoError(t, v.rotateSealOnly(t))
}
