package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

// sealOnly is how coffer rotate tells a recovery key without its private
// half: its copy is sealed to the public key in the config.
func sealOnly(err error) bool { return errors.Is(err, recovery.ErrNoPrivateKey) }

// addRecovery adds a new recovery key to v and returns its entry and
// private half.
func (v *volume) addRecovery(t *testing.T) (keys.MasterEntry, *recovery.PrivateKey) {
	t.Helper()
	priv, err := recovery.Generate()
	require.NoError(t, err)
	t.Cleanup(priv.Wipe)
	e, err := priv.Enrollment()
	require.NoError(t, err)
	added, err := keys.AddMaster(context.Background(), v.backing, v.ring, e, keys.AddOptions{})
	require.NoError(t, err)
	return added, priv
}

// rotateSealOnly rotates v as coffer rotate does: recovery keys are sealed
// to without their private half, after their tags are checked. It returns
// the first error of OpenMasters, VerifySealOnly or CommitRing.
func (v *volume) rotateSealOnly(t *testing.T) error {
	t.Helper()
	ctx := context.Background()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		nil, sealOnly)
	if err != nil {
		return err
	}
	defer keys.WipeMasters(opened)
	if err := keys.VerifySealOnly(cfg.VolumeID, ring, opened); err != nil {
		return err
	}
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	return err
}

// unlockRecovery unlocks the volume in backing with the recovery key priv
// only.
func unlockRecovery(t *testing.T, backing string, priv *recovery.PrivateKey) (*keys.Ring, error) {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	ctx := context.Background()
	open := masterkey.Opener(ctx, masterkey.Options{RecoveryKey: "-",
		RecoveryKeyText: func(context.Context) (*keys.Secret, error) {
			return keys.SecretFromBytes([]byte(priv.Text())), nil
		}})
	ring, _, err := keys.Unlock(ctx, cfg, open, keys.UnlockOptions{Kind: recovery.Kind})
	return ring, err
}

// requireTagged checks that every master entry of the config of backing
// has a tag that verifies with ring.
func requireTagged(t *testing.T, backing string, ring *keys.Ring) *keys.Config {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	for _, m := range cfg.Masters {
		require.NotNil(t, m.Tag, "master key %s", m.ID)
		assert.Equal(t, ring.Primary().ID, m.Tag.Key, "master key %s", m.ID)
		assert.NoError(t, ring.VerifyEntry(cfg.VolumeID, m), "master key %s", m.ID)
	}
	return cfg
}

func TestEntryTagsWrittenByInitAndAdd(t *testing.T) {
	v := newVolume(t)
	v.add(t, newKeyFile(t))
	v.addRecovery(t)
	cfg := requireTagged(t, v.backing, v.ring)
	assert.Len(t, cfg.Masters, 3)

	// Another ring (another volume's) does not verify them.
	other := newVolume(t)
	for _, m := range cfg.Masters {
		assert.ErrorIs(t, other.ring.VerifyEntry(cfg.VolumeID, m), keys.ErrUntrustedMaster)
	}
}

// TestEntryTagSurvivesReencoding checks that a tag made over params in one
// JSON layout verifies after the config is written (indented, with HTML
// characters escaped) and read back.
func TestEntryTagSurvivesReencoding(t *testing.T) {
	v := newVolume(t)
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	m := &cfg.Masters[0]
	m.Params = json.RawMessage("{ \"note\" :\n\t\"<a & b>\u2028\", \"n\": [1, 2] }")
	m.Tag, err = v.ring.TagEntry(cfg.VolumeID, *m)
	require.NoError(t, err)
	require.NoError(t, keys.WriteConfig(v.backing, cfg))

	got, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	require.NotEqual(t, string(m.Params), string(got.Masters[0].Params), "re-encoded on write")
	assert.NoError(t, v.ring.VerifyEntry(got.VolumeID, got.Masters[0]))
}

// TestPlantedRecoveryEntryRefused is breaker finding F4: a recovery entry
// copied, with its tag and sealed copy, from a volume of the attacker's own
// into the victim's volume.json. Rotation must refuse before writing
// anything, and the attacker's recovery key must open nothing.
func TestPlantedRecoveryEntryRefused(t *testing.T) {
	victim := newVolume(t)
	attacker := newVolume(t)
	planted, priv := attacker.addRecovery(t)
	acfg, err := keys.ReadConfig(attacker.backing)
	require.NoError(t, err)

	cfg, err := keys.ReadConfig(victim.backing)
	require.NoError(t, err)
	cfg.Masters = append(cfg.Masters, planted)
	cfg.Ring.Sealed[planted.ID] = acfg.Ring.Sealed[planted.ID]
	require.NoError(t, keys.WriteConfig(victim.backing, cfg))
	before := treeHash(t, victim.backing)

	err = victim.rotateSealOnly(t)
	var ee *keys.EntryError
	require.ErrorAs(t, err, &ee)
	assert.ErrorIs(t, err, keys.ErrUntrustedMaster)
	assert.Equal(t, planted.ID, ee.Master.ID)
	assert.Equal(t, before, treeHash(t, victim.backing), "nothing written")

	// CommitRing refuses it on its own too, for a caller that skipped
	// VerifySealOnly.
	ctx := context.Background()
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		nil, sealOnly)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	_, err = keys.CommitRing(ctx, victim.backing, cfg.Ring.Generation, ring, opened, nil)
	require.ErrorIs(t, err, keys.ErrUntrustedMaster)
	assert.Equal(t, before, treeHash(t, victim.backing), "nothing written")

	_, err = unlockRecovery(t, victim.backing, priv)
	assert.ErrorIs(t, err, keys.ErrWrongKey, "the planted key opens nothing")
}

func TestTamperedRecoveryEntryRefused(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, c *keys.Config, rec, other int)
	}{
		{"tag removed", func(t *testing.T, c *keys.Config, rec, _ int) {
			c.Masters[rec].Tag = nil
		}},
		{"public key replaced", func(t *testing.T, c *keys.Config, rec, _ int) {
			priv, err := recovery.Generate()
			require.NoError(t, err)
			defer priv.Wipe()
			raw, err := json.Marshal(priv.Params())
			require.NoError(t, err)
			c.Masters[rec].Params = raw
		}},
		{"tag moved from another entry", func(t *testing.T, c *keys.Config, rec, other int) {
			c.Masters[rec].Tag = c.Masters[other].Tag
		}},
		{"tag from another volume", func(t *testing.T, c *keys.Config, rec, _ int) {
			o := newVolume(t)
			e, _ := o.addRecovery(t)
			c.Masters[rec].Tag = e.Tag
		}},
		{"tag of the same entry in another volume", func(t *testing.T, c *keys.Config, rec, _ int) {
			// The attacker's own ring tags a copy of the victim's entry.
			o := newVolume(t)
			tag, err := o.ring.TagEntry(c.VolumeID, c.Masters[rec])
			require.NoError(t, err)
			c.Masters[rec].Tag = tag
		}},
		{"MAC flipped", func(t *testing.T, c *keys.Config, rec, _ int) {
			mac := append([]byte(nil), c.Masters[rec].Tag.MAC...)
			mac[0] ^= 1
			c.Masters[rec].Tag = &keys.EntryTag{Key: c.Masters[rec].Tag.Key, MAC: mac}
		}},
		{"master ID changed", func(t *testing.T, c *keys.Config, rec, _ int) {
			old := c.Masters[rec].ID
			c.Masters[rec].ID = "0badc0de"
			c.Ring.Sealed["0badc0de"] = c.Ring.Sealed[old]
			delete(c.Ring.Sealed, old)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVolume(t)
			v.add(t, newKeyFile(t))
			rec, _ := v.addRecovery(t)
			cfg, err := keys.ReadConfig(v.backing)
			require.NoError(t, err)
			i := len(cfg.Masters) - 1
			require.Equal(t, rec.ID, cfg.Masters[i].ID)
			tt.tamper(t, cfg, i, 1)
			require.NoError(t, keys.WriteConfig(v.backing, cfg))
			before := treeHash(t, v.backing)

			err = v.rotateSealOnly(t)
			require.ErrorIs(t, err, keys.ErrUntrustedMaster)
			assert.Equal(t, before, treeHash(t, v.backing), "nothing written")
		})
	}
}

// TestEntryTagsFollowRotation checks that rotation tags the entries again
// under the new primary key, so that they still verify once the old key is
// purged, and that the recovery key still opens the volume.
func TestEntryTagsFollowRotation(t *testing.T) {
	v := newVolume(t)
	_, priv := v.addRecovery(t)
	old := v.ring.Primary().ID
	for range 2 {
		require.NoError(t, v.rotateSealOnly(t))
	}
	ring, err := unlockRecovery(t, v.backing, priv)
	require.NoError(t, err)
	require.NotEqual(t, old, ring.Primary().ID)

	// Purge every key but the primary, as the end of a rotation does.
	ctx := context.Background()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		nil, sealOnly)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	for _, k := range ring.Keys() {
		if k.State != keys.StatePrimary {
			require.NoError(t, ring.Retire(k.ID))
			require.NoError(t, ring.Purge(k.ID))
		}
	}
	require.False(t, ring.Has(old))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	require.NoError(t, err)
	requireTagged(t, v.backing, ring)
	require.NoError(t, v.rotateSealOnly(t), "the next rotation accepts the tags")
	_, err = unlockRecovery(t, v.backing, priv)
	assert.NoError(t, err)
}

// TestSkippedEntryTagFollowsRotation checks that a skipped master key whose
// tag verifies is tagged again too, so that its tag outlives a purge.
func TestSkippedEntryTagFollowsRotation(t *testing.T) {
	v := newVolume(t)
	rec, _ := v.addRecovery(t)
	next := v.rotate(t, map[string]bool{rec.ID: true})
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	m, ok := cfg.Master(rec.ID)
	require.True(t, ok)
	require.NotNil(t, m.Tag)
	assert.Equal(t, next, m.Tag.Key)
}

func TestEntryTagsSurviveBackupAndRestore(t *testing.T) {
	v := newVolume(t)
	v.addRecovery(t)
	path := filepath.Join(t.TempDir(), "backup.json")
	_, err := keys.WriteBackup(v.backing, path)
	require.NoError(t, err)

	// The config loses its tags; the backup brings them back.
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	for i := range cfg.Masters {
		cfg.Masters[i].Tag = nil
	}
	require.NoError(t, keys.WriteConfig(v.backing, cfg))
	require.ErrorIs(t, v.rotateSealOnly(t), keys.ErrUntrustedMaster)

	backup, _, err := keys.ReadBackup(path)
	require.NoError(t, err)
	_, err = keys.Restore(v.backing, backup, keys.RestoreOptions{Force: true})
	require.NoError(t, err)
	requireTagged(t, v.backing, v.ring)
	assert.NoError(t, v.rotateSealOnly(t))
}

// TestOpenedRecoveryEntryTagged checks that a recovery entry without a tag
// (from an older coffer) that a rotation opens with its private key, which
// authenticates it, gets one.
func TestOpenedRecoveryEntryTagged(t *testing.T) {
	v := newVolume(t)
	rec, priv := v.addRecovery(t)
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	for i := range cfg.Masters {
		cfg.Masters[i].Tag = nil
	}
	require.NoError(t, keys.WriteConfig(v.backing, cfg))

	ctx := context.Background()
	open := masterkey.Opener(ctx, masterkey.Options{RecoveryKey: "-",
		RecoveryKeyText: func(context.Context) (*keys.Secret, error) {
			return keys.SecretFromBytes([]byte(priv.Text())), nil
		}})
	ring, opened, err := keys.OpenMasters(ctx, cfg, open, nil, sealOnly)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	require.NoError(t, keys.VerifySealOnly(cfg.VolumeID, ring, opened))
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	require.NoError(t, err)
	got := requireTagged(t, v.backing, ring)
	_, ok := got.Master(rec.ID)
	assert.True(t, ok)
}

// TestCommitRefusesEntrySwappedAfterOpening checks that an entry changed
// between opening the master keys and the commit is not sealed to.
func TestCommitRefusesEntrySwappedAfterOpening(t *testing.T) {
	v := newVolume(t)
	rec, _ := v.addRecovery(t)
	ctx := context.Background()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		nil, sealOnly)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	require.NoError(t, keys.VerifySealOnly(cfg.VolumeID, ring, opened))

	// Now the public key is swapped (the tag kept).
	priv, err := recovery.Generate()
	require.NoError(t, err)
	defer priv.Wipe()
	raw, err := json.Marshal(priv.Params())
	require.NoError(t, err)
	now, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	for i := range now.Masters {
		if now.Masters[i].ID == rec.ID {
			now.Masters[i].Params = raw
		}
	}
	require.NoError(t, keys.WriteConfig(v.backing, now))
	before := treeHash(t, v.backing)

	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	require.Error(t, err)
	assert.Equal(t, before, treeHash(t, v.backing), "nothing written")
}
