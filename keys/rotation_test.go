package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// rotate adds a primary key to v's ring and commits it with the masters
// opened, except those in skip. It returns the new key's ID.
func (v *volume) rotate(t *testing.T, skip map[string]bool) uint32 {
	t.Helper()
	ctx := context.Background()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}), skip, nil)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	k, err := ring.AddKey()
	require.NoError(t, err)
	require.NoError(t, ring.SetPrimary(k.ID))
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, skip)
	require.NoError(t, err)
	return k.ID
}

// wrapWith wraps a known secret with ring r and returns what Unwrap needs.
func wrapWith(t *testing.T, r interface {
	Wrap([]byte, func(uint32) []byte) (uint32, []byte, error)
}) (uint32, []byte) {
	t.Helper()
	id, w, err := r.Wrap([]byte("0123456789abcdef0123456789abcdef"), func(uint32) []byte {
		return []byte("ad")
	})
	require.NoError(t, err)
	return id, w
}

func TestFollowerRollsForward(t *testing.T) {
	v := newVolume(t)
	f := keys.NewFollower(v.backing, v.ring, zerolog.Nop())
	old := v.ring.Primary().ID
	oldID, oldWrapped := wrapWith(t, f)
	require.Equal(t, old, oldID)

	// Another process rotates: the follower meets a header wrapped by the
	// new key and loads the new ring instead of failing.
	next := v.rotate(t, nil)
	other, err := v.unlockWith(t, v.cfg.Masters[0].ID)
	require.NoError(t, err)
	newID, newWrapped := wrapWith(t, other)
	require.Equal(t, next, newID)
	dek, err := f.Unwrap(newID, newWrapped, []byte("ad"))
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef0123456789abcdef", string(dek))
	assert.Equal(t, next, v.ring.Primary().ID, "the followed ring itself is updated")

	// And wraps with the new primary; the old key still unwraps.
	id, _ := wrapWith(t, f)
	assert.Equal(t, next, id)
	_, err = f.Unwrap(oldID, oldWrapped, []byte("ad"))
	assert.NoError(t, err)
}

func TestFollowerRefusesRetiredPrimary(t *testing.T) {
	v := newVolume(t)
	f := keys.NewFollower(v.backing, v.ring, zerolog.Nop())
	v.rotate(t, nil)

	// The config's carried copies are gone (as if the follower's keys
	// were purged): it cannot roll forward, and must not wrap with its
	// old primary, which the config no longer lists as primary.
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	cfg.Ring.Carry = nil
	require.NoError(t, keys.WriteConfig(v.backing, cfg))
	_, _, err = f.Wrap(make([]byte, 32), func(uint32) []byte { return nil })
	assert.ErrorIs(t, err, keys.ErrStaleRing)
}

func TestSkippedMasterRollsForwardUntilPurge(t *testing.T) {
	v := newVolume(t)
	second := v.add(t, newKeyFile(t))
	old := v.ring.Primary().ID
	next := v.rotate(t, map[string]bool{second.ID: true})

	// The skipped master's copy is of the old generation; it still
	// unlocks, rolled forward to the current ring.
	r, err := v.unlockWith(t, second.ID)
	require.NoError(t, err)
	assert.Equal(t, next, r.Primary().ID)

	// Purge the old key: now it cannot.
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(context.Background(), cfg,
		masterkey.Opener(context.Background(), masterkey.Options{}), map[string]bool{second.ID: true},
		nil)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	require.NoError(t, ring.Retire(old))
	require.NoError(t, ring.Purge(old))
	_, err = keys.CommitRing(context.Background(), v.backing, cfg.Ring.Generation, ring, opened,
		map[string]bool{second.ID: true})
	require.NoError(t, err)
	_, err = v.unlockWith(t, second.ID)
	assert.ErrorIs(t, err, keys.ErrStaleRing)
	_, err = v.unlockWith(t, v.cfg.Masters[0].ID)
	assert.NoError(t, err)
}

func TestPurgeRefusals(t *testing.T) {
	r, err := keys.NewRing()
	require.NoError(t, err)
	first := r.Primary().ID
	assert.Error(t, r.Purge(first), "the primary")
	k, err := r.AddKey()
	require.NoError(t, err)
	assert.Error(t, r.Purge(k.ID), "an active key")
	assert.ErrorIs(t, r.Purge(12345), keys.ErrUnknownKey)
	require.NoError(t, r.SetPrimary(k.ID))
	require.NoError(t, r.Retire(first))
	require.NoError(t, r.Purge(first))
	assert.False(t, r.Has(first))
	assert.Len(t, r.Keys(), 1)
}

func TestCommitRingRefusesChangedConfig(t *testing.T) {
	v := newVolume(t)
	ctx := context.Background()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}), nil,
		nil)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	v.rotate(t, nil) // someone else rotated meanwhile
	before := configBytes(t, v.backing)
	_, err = ring.AddKey()
	require.NoError(t, err)
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	assert.ErrorIs(t, err, keys.ErrConfigChanged)
	assert.Equal(t, before, configBytes(t, v.backing))
}

func TestCarryValidation(t *testing.T) {
	v := newVolume(t)
	v.rotate(t, nil)
	b := configBytes(t, v.backing)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	ring := raw["ring"].(map[string]any)
	carry := ring["carry"].(map[string]any)
	require.Len(t, carry, 2, "one carried copy per ring key")
	carry["77"] = carry[func() string {
		for k := range carry {
			return k
		}
		return ""
	}()]
	out, err := json.Marshal(raw)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keys.ConfigPath(v.backing), out, 0o600))
	_, err = keys.ReadConfig(v.backing)
	assert.ErrorIs(t, err, keys.ErrMalformed)
}

func TestReplaceMaster(t *testing.T) {
	v := newVolume(t)
	oldID := v.cfg.Masters[0].ID
	uri := newKeyFile(t)
	added, err := keys.ReplaceMaster(context.Background(), v.backing, v.ring, oldID,
		enroll(t, uri, masterkey.Options{}), keys.ReplaceOptions{})
	require.NoError(t, err)
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	require.Len(t, cfg.Masters, 1)
	assert.Equal(t, added.ID, cfg.Masters[0].ID)
	assert.Equal(t, uri, cfg.Masters[0].URI)
	r, err := v.unlockWith(t, added.ID)
	require.NoError(t, err)
	assert.Equal(t, v.ring.Primary().ID, r.Primary().ID)

	_, err = keys.ReplaceMaster(context.Background(), v.backing, v.ring, "deadbeef",
		enroll(t, newKeyFile(t), masterkey.Options{}), keys.ReplaceOptions{})
	assert.ErrorIs(t, err, keys.ErrNoMaster)
}

// TestReplaceMasterCheckSeesLockedConfig removes a master key after the
// caller read the config and before it replaces another: the Check of
// ReplaceMaster sees the config as it is under the lock, without the removed
// key, and its refusal leaves the config byte for byte as it was.
func TestReplaceMasterCheckSeesLockedConfig(t *testing.T) {
	v := newVolume(t)
	second := v.add(t, newKeyFile(t))
	stale, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	require.Len(t, stale.Masters, 2)
	_, err = keys.RemoveMaster(v.backing, second.ID, keys.RemoveOptions{})
	require.NoError(t, err)
	before := configBytes(t, v.backing)

	refused := errors.New("refused by the caller's policy")
	var seen []string
	var seenOld keys.MasterEntry
	var seenKind string
	_, err = keys.ReplaceMaster(context.Background(), v.backing, v.ring, v.cfg.Masters[0].ID,
		enroll(t, newKeyFile(t), masterkey.Options{}), keys.ReplaceOptions{
			Check: func(c *keys.Config, old keys.MasterEntry, kind string) error {
				for _, m := range c.Masters {
					seen = append(seen, m.ID)
				}
				seenOld, seenKind = old, kind
				return refused
			}})
	require.ErrorIs(t, err, refused)
	assert.Equal(t, []string{v.cfg.Masters[0].ID}, seen, "the check saw a stale config")
	assert.Equal(t, v.cfg.Masters[0].ID, seenOld.ID)
	assert.Equal(t, "file", seenKind)
	assert.Equal(t, before, configBytes(t, v.backing))
}

// TestCommitRingRefusesMasterAddedMeanwhile adds a master key between
// opening the master keys and committing a new ring (at the same ring
// generation, which the generation check alone lets through): the commit
// refuses, and the added master key still opens the volume.
func TestCommitRingRefusesMasterAddedMeanwhile(t *testing.T) {
	v := newVolume(t)
	ctx := context.Background()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}), nil,
		nil)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	added := v.add(t, newKeyFile(t)) // same generation: the add is let in
	before := configBytes(t, v.backing)
	_, err = ring.AddKey()
	require.NoError(t, err)
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, nil)
	require.ErrorIs(t, err, keys.ErrConfigChanged)
	assert.Contains(t, err.Error(), "master key "+added.ID+" was added")
	assert.Equal(t, before, configBytes(t, v.backing))
	_, err = v.unlockWith(t, added.ID)
	require.NoError(t, err)

	// Skipping it explicitly lets the commit through (its old copy rolls
	// forward), as coffer rotate --skip-master does.
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened,
		map[string]bool{added.ID: true})
	require.NoError(t, err)
	r, err := v.unlockWith(t, added.ID)
	require.NoError(t, err)
	assert.Equal(t, ring.Primary().ID, r.Primary().ID)
}

// TestCommitRingRefusesAllOpenedRemoved removes the only opened master key
// between opening and committing: the commit would leave only a skipped
// master key, and refuses.
func TestCommitRingRefusesAllOpenedRemoved(t *testing.T) {
	v := newVolume(t)
	second := v.add(t, newKeyFile(t))
	ctx := context.Background()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	skip := map[string]bool{second.ID: true}
	ring, opened, err := keys.OpenMasters(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}), skip,
		nil)
	require.NoError(t, err)
	defer keys.WipeMasters(opened)
	_, err = keys.RemoveMaster(v.backing, v.cfg.Masters[0].ID, keys.RemoveOptions{})
	require.NoError(t, err)
	before := configBytes(t, v.backing)
	_, err = ring.AddKey()
	require.NoError(t, err)
	_, err = keys.CommitRing(ctx, v.backing, cfg.Ring.Generation, ring, opened, skip)
	require.ErrorIs(t, err, keys.ErrConfigChanged)
	assert.Equal(t, before, configBytes(t, v.backing))
}

// TestAddMasterRefusedDuringRotation holds the rotation lock, as a running
// rotation does: adding or replacing a master key refuses, writing nothing.
func TestAddMasterRefusedDuringRotation(t *testing.T) {
	v := newVolume(t)
	unlock, err := keys.LockRotation(v.backing)
	require.NoError(t, err)
	before := configBytes(t, v.backing)
	_, err = keys.AddMaster(context.Background(), v.backing, v.ring,
		enroll(t, newKeyFile(t), masterkey.Options{}), keys.AddOptions{})
	assert.ErrorIs(t, err, keys.ErrRotationRunning)
	_, err = keys.ReplaceMaster(context.Background(), v.backing, v.ring, v.cfg.Masters[0].ID,
		enroll(t, newKeyFile(t), masterkey.Options{}), keys.ReplaceOptions{})
	assert.ErrorIs(t, err, keys.ErrRotationRunning)
	assert.Equal(t, before, configBytes(t, v.backing))
	_, err = keys.LockRotation(v.backing)
	assert.ErrorIs(t, err, keys.ErrRotationRunning, "a second holder")

	unlock()
	v.add(t, newKeyFile(t))
}
