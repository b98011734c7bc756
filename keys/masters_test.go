package keys_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

// volume is a backing directory initialised with one key file.
type volume struct {
	backing string
	cfg     *keys.Config
	ring    *keys.Ring
	first   string // URI of the first master
}

func newVolume(t *testing.T) *volume {
	t.Helper()
	v := &volume{backing: t.TempDir(), first: newKeyFile(t)}
	var err error
	v.cfg, v.ring, err = keys.Init(context.Background(), v.backing,
		[]keys.Enrollment{enroll(t, v.first, masterkey.Options{})}, keys.InitOptions{})
	require.NoError(t, err)
	return v
}

func (v *volume) add(t *testing.T, uri string) keys.MasterEntry {
	t.Helper()
	e, err := keys.AddMaster(context.Background(), v.backing, v.ring,
		enroll(t, uri, masterkey.Options{}), keys.AddOptions{})
	require.NoError(t, err)
	return e
}

// unlockWith unlocks the volume with master id only.
func (v *volume) unlockWith(t *testing.T, id string) (*keys.Ring, error) {
	t.Helper()
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	ring, _, err := keys.Unlock(context.Background(), cfg,
		masterkey.Opener(context.Background(), masterkey.Options{}), keys.UnlockOptions{Only: id})
	return ring, err
}

func configBytes(t *testing.T, backing string) []byte {
	t.Helper()
	b, err := os.ReadFile(keys.ConfigPath(backing))
	require.NoError(t, err)
	return b
}

func TestAddMasterUnlocksWithEach(t *testing.T) {
	v := newVolume(t)
	second := newKeyFile(t)
	added := v.add(t, second)
	assert.Equal(t, "file", added.Kind)
	assert.Equal(t, second, added.URI)
	assert.WithinDuration(t, time.Now(), added.Added, time.Minute)

	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	require.Len(t, cfg.Masters, 2)
	assert.Equal(t, v.cfg.Masters[0], cfg.Masters[0])
	assert.Equal(t, added, cfg.Masters[1])
	assert.Equal(t, v.cfg.Ring.Generation, cfg.Ring.Generation)

	for _, id := range []string{cfg.Masters[0].ID, added.ID} {
		ring, err := v.unlockWith(t, id)
		require.NoError(t, err, "master %s", id)
		assert.Equal(t, v.ring.Keys(), ring.Keys())
	}

	// Losing the first key file leaves the second.
	path, _ := filepath.Abs(v.first[len("file://"):])
	require.NoError(t, os.Remove(path))
	_, err = v.unlockWith(t, cfg.Masters[0].ID)
	require.Error(t, err)
	ring, entry, err := keys.Unlock(context.Background(), cfg,
		masterkey.Opener(context.Background(), masterkey.Options{}), keys.UnlockOptions{})
	require.NoError(t, err)
	assert.Equal(t, added.ID, entry.ID)
	assert.Equal(t, v.ring.Keys(), ring.Keys())
}

func TestAddMasterRefusals(t *testing.T) {
	v := newVolume(t)
	rotated := newVolume(t) // a ring whose generation moved on
	_, err := rotated.ring.AddKey()
	require.NoError(t, err)

	tests := []struct {
		name string
		ring *keys.Ring
		m    keys.Enrollment
		want error
	}{
		{"cannot seal", v.ring, keys.Enrollment{Kind: "test", URI: "test:x",
			Master: failingMaster{}}, nil},
		{"sealed copy does not open", v.ring, keys.Enrollment{Kind: "test", URI: "test:x",
			Master: forgetfulMaster{}}, nil},
		{"already enrolled", v.ring, enroll(t, v.first, masterkey.Options{}), keys.ErrDuplicateMaster},
		{"ring of another generation", rotated.ring, enroll(t, newKeyFile(t), masterkey.Options{}),
			keys.ErrConfigChanged},
		{"ring of another volume", newVolume(t).ring, enroll(t, newKeyFile(t), masterkey.Options{}),
			keys.ErrConfigChanged},
		{"nil master", v.ring, keys.Enrollment{Kind: "test", URI: "test:x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := treeHash(t, v.backing)
			_, err := keys.AddMaster(context.Background(), v.backing, tt.ring, tt.m, keys.AddOptions{})
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			assert.Equal(t, before, treeHash(t, v.backing), "a failed add changed the volume")
		})
	}
}

func TestAddMasterLimit(t *testing.T) {
	v := newVolume(t)
	for range keys.MaxMasters - 1 {
		v.add(t, newKeyFile(t))
	}
	before := configBytes(t, v.backing)
	_, err := keys.AddMaster(context.Background(), v.backing, v.ring,
		enroll(t, newKeyFile(t), masterkey.Options{}), keys.AddOptions{})
	require.ErrorIs(t, err, keys.ErrTooManyMasters)
	assert.Contains(t, err.Error(), "it has 32, the limit")
	assert.Equal(t, before, configBytes(t, v.backing))
}

func TestConcurrentAddsLoseNothing(t *testing.T) {
	v := newVolume(t)
	const n = 8
	uris := make([]string, n)
	for i := range uris {
		uris[i] = newKeyFile(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = keys.AddMaster(context.Background(), v.backing, v.ring,
				enroll(t, uris[i], masterkey.Options{}), keys.AddOptions{})
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}

	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	require.Len(t, cfg.Masters, n+1)
	got := map[string]bool{}
	for _, m := range cfg.Masters {
		got[m.URI] = true
	}
	for _, u := range append(uris, v.first) {
		assert.True(t, got[u], "master %s was lost", u)
	}
	for _, m := range cfg.Masters {
		_, err := v.unlockWith(t, m.ID)
		assert.NoError(t, err, "master %s", m.ID)
	}
}

func TestRemoveMaster(t *testing.T) {
	v := newVolume(t)
	second := v.add(t, newKeyFile(t))
	firstID := v.cfg.Masters[0].ID

	before := configBytes(t, v.backing)
	_, err := keys.RemoveMaster(v.backing, "0badc0de", keys.RemoveOptions{})
	require.ErrorIs(t, err, keys.ErrNoMaster)
	assert.Contains(t, err.Error(), firstID)
	assert.Equal(t, before, configBytes(t, v.backing))

	removed, err := keys.RemoveMaster(v.backing, firstID, keys.RemoveOptions{})
	require.NoError(t, err)
	assert.Equal(t, firstID, removed.ID)
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	require.Len(t, cfg.Masters, 1)
	assert.Equal(t, second.ID, cfg.Masters[0].ID)
	assert.NotContains(t, cfg.Ring.Sealed, firstID)
	_, err = v.unlockWith(t, second.ID)
	require.NoError(t, err)

	before = configBytes(t, v.backing)
	_, err = keys.RemoveMaster(v.backing, second.ID, keys.RemoveOptions{})
	require.ErrorIs(t, err, keys.ErrLastMaster)
	assert.Equal(t, before, configBytes(t, v.backing))
}

func TestRemoveMasterCheck(t *testing.T) {
	v := newVolume(t)
	second := v.add(t, newKeyFile(t))
	firstID := v.cfg.Masters[0].ID
	refuse := errors.New("policy refuses")
	var seen []string
	check := func(c *keys.Config, m keys.MasterEntry) error {
		seen = append(seen, fmt.Sprintf("%d:%s", len(c.Masters), m.ID))
		return refuse
	}

	before := configBytes(t, v.backing)
	_, err := keys.RemoveMaster(v.backing, firstID, keys.RemoveOptions{Check: check})
	require.ErrorIs(t, err, refuse)
	assert.Equal(t, before, configBytes(t, v.backing))
	assert.Equal(t, []string{"2:" + firstID}, seen, "refused before the lock is taken")

	seen = nil
	removed, err := keys.RemoveMaster(v.backing, second.ID, keys.RemoveOptions{
		Check: func(c *keys.Config, m keys.MasterEntry) error {
			seen = append(seen, fmt.Sprintf("%d:%s", len(c.Masters), m.ID))
			return nil
		}})
	require.NoError(t, err)
	assert.Equal(t, second.ID, removed.ID)
	assert.Equal(t, []string{"2:" + second.ID, "2:" + second.ID}, seen,
		"checked before and under the lock")
}

func TestRecordUse(t *testing.T) {
	v := newVolume(t)
	second := v.add(t, newKeyFile(t))
	used, err := keys.LastUsed(v.backing)
	require.NoError(t, err)
	assert.Empty(t, used)

	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, keys.RecordUse(v.backing, second.ID, at))
	require.NoError(t, keys.RecordUse(v.backing, v.cfg.Masters[0].ID, at.Add(time.Hour)))
	used, err = keys.LastUsed(v.backing)
	require.NoError(t, err)
	assert.Equal(t, map[string]time.Time{second.ID: at, v.cfg.Masters[0].ID: at.Add(time.Hour)}, used)

	cfgBefore := configBytes(t, v.backing)
	_, err = keys.RemoveMaster(v.backing, second.ID, keys.RemoveOptions{})
	require.NoError(t, err)
	require.NotEqual(t, cfgBefore, configBytes(t, v.backing))
	require.NoError(t, keys.RecordUse(v.backing, v.cfg.Masters[0].ID, at))
	used, err = keys.LastUsed(v.backing)
	require.NoError(t, err)
	assert.Equal(t, map[string]time.Time{v.cfg.Masters[0].ID: at}, used, "removed master kept")
}

func TestBackupRestore(t *testing.T) {
	v := newVolume(t)
	backup := filepath.Join(t.TempDir(), "vol.backup")
	_, err := keys.WriteBackup(v.backing, backup)
	require.NoError(t, err)
	fi, err := os.Stat(backup)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = keys.WriteBackup(v.backing, backup)
	require.ErrorIs(t, err, os.ErrExist, "an existing backup was overwritten")

	original := configBytes(t, v.backing)
	cfg, _, err := keys.ReadBackup(backup)
	require.NoError(t, err)

	// Lost .coffer: restore recreates it and the volume unlocks.
	require.NoError(t, os.RemoveAll(filepath.Join(v.backing, keys.DirName)))
	res, err := keys.Restore(v.backing, cfg, keys.RestoreOptions{})
	require.NoError(t, err)
	assert.Nil(t, res.Previous)
	_, err = v.unlockWith(t, v.cfg.Masters[0].ID)
	require.NoError(t, err)
	assert.JSONEq(t, string(original), string(configBytes(t, v.backing)))

	// Same again: nothing to do.
	res, err = keys.Restore(v.backing, cfg, keys.RestoreOptions{})
	require.NoError(t, err)
	assert.True(t, res.Unchanged)

	// The volume moves on: the backup is now a rollback.
	v.add(t, newKeyFile(t))
	newer := configBytes(t, v.backing)
	_, err = keys.Restore(v.backing, cfg, keys.RestoreOptions{})
	require.ErrorIs(t, err, keys.ErrRollback)
	assert.Contains(t, err.Error(), "bring back removed master keys or drop added ones")
	assert.Equal(t, newer, configBytes(t, v.backing))

	// A damaged config cannot be compared with the backup: refused unless
	// forced (breaker4 F9: damaging it let an old backup bring back
	// removed master keys without --force). The mount record's generation
	// is named as a clue.
	require.NoError(t, os.WriteFile(keys.ConfigPath(v.backing), []byte("{garbage"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(v.backing, keys.DirName, keys.MountsName), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(v.backing, keys.DirName, keys.MountsName,
		"otherhost-42.json"), []byte(`{"version":1,"host":"otherhost","pid":42,"generation":7}`), 0o600))
	_, err = keys.Restore(v.backing, cfg, keys.RestoreOptions{})
	require.ErrorIs(t, err, keys.ErrNotComparable)
	require.ErrorIs(t, err, keys.ErrMalformed)
	assert.Contains(t, err.Error(), "it cannot be read")
	assert.Contains(t, err.Error(), "name generation 7")
	assert.Equal(t, "{garbage", string(configBytes(t, v.backing)))
	require.NoError(t, os.RemoveAll(filepath.Join(v.backing, keys.DirName, keys.MountsName)))

	// Forced, the damaged config is moved aside, not lost.
	res, err = keys.Restore(v.backing, cfg, keys.RestoreOptions{Force: true})
	require.NoError(t, err)
	require.NotEmpty(t, res.Damaged)
	damaged, err := os.ReadFile(res.Damaged)
	require.NoError(t, err)
	assert.Equal(t, "{garbage", string(damaged))

	// Another volume's backup is refused, forced or not.
	other := newVolume(t)
	for _, force := range []bool{false, true} {
		_, err = keys.Restore(other.backing, cfg, keys.RestoreOptions{Force: force})
		require.ErrorIs(t, err, keys.ErrVolumeMismatch)
	}
}

func TestRestoreRefusesOlderGeneration(t *testing.T) {
	v := newVolume(t)
	old, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)

	// A rotation, as a later issue will do it: new ring key, new generation.
	_, err = v.ring.AddKey()
	require.NoError(t, err)
	_, err = keys.UpdateConfig(v.backing, func(c *keys.Config) error {
		m, err := masterkey.Open(context.Background(), c.Masters[0], masterkey.Options{})
		if err != nil {
			return err
		}
		sealed, err := keys.SealRing(context.Background(), v.ring, c.VolumeID, c.Masters[0].ID, m)
		if err != nil {
			return err
		}
		c.Ring.Generation, c.Ring.Keys = v.ring.Generation(), v.ring.Keys()
		c.Ring.Sealed[c.Masters[0].ID] = sealed
		return nil
	})
	require.NoError(t, err)

	newer := configBytes(t, v.backing)
	_, err = keys.Restore(v.backing, old, keys.RestoreOptions{})
	require.ErrorIs(t, err, keys.ErrRollback)
	assert.Contains(t, err.Error(), fmt.Sprintf("ring generation %d, the volume is at %d",
		old.Ring.Generation, v.ring.Generation()))
	assert.Equal(t, newer, configBytes(t, v.backing))

	_, err = keys.Restore(v.backing, old, keys.RestoreOptions{Force: true})
	require.NoError(t, err)
	got, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)
	assert.Equal(t, old.Ring.Generation, got.Ring.Generation)
}

func TestUnlockKindAndSkipKind(t *testing.T) {
	v := newVolume(t)
	priv, err := recovery.Generate()
	require.NoError(t, err)
	defer priv.Wipe()
	e, err := priv.Enrollment()
	require.NoError(t, err)
	rec, err := keys.AddMaster(context.Background(), v.backing, v.ring, e, keys.AddOptions{})
	require.NoError(t, err)
	cfg, err := keys.ReadConfig(v.backing)
	require.NoError(t, err)

	var tried []string
	failed := func(m keys.MasterEntry, _ error) { tried = append(tried, m.Kind) }
	open := masterkey.Opener(context.Background(), masterkey.Options{})

	// Only the recovery master, which fails without its private key.
	_, _, err = keys.Unlock(context.Background(), cfg, open,
		keys.UnlockOptions{Kind: recovery.Kind, Failed: failed})
	require.ErrorIs(t, err, recovery.ErrNoPrivateKey)
	assert.Equal(t, []string{"recovery"}, tried)

	// Everything but the recovery master.
	tried = nil
	_, used, err := keys.Unlock(context.Background(), cfg, open,
		keys.UnlockOptions{SkipKind: recovery.Kind, Failed: failed})
	require.NoError(t, err)
	assert.Equal(t, v.cfg.Masters[0].ID, used.ID)
	assert.Empty(t, tried)

	// With the file master gone, nothing is left to try.
	_, err = keys.RemoveMaster(v.backing, v.cfg.Masters[0].ID, keys.RemoveOptions{})
	require.NoError(t, err)
	cfg, err = keys.ReadConfig(v.backing)
	require.NoError(t, err)
	_, _, err = keys.Unlock(context.Background(), cfg, open, keys.UnlockOptions{SkipKind: recovery.Kind})
	require.ErrorIs(t, err, keys.ErrNoCandidate)
	_, used, err = keys.Unlock(context.Background(), cfg,
		masterkey.Opener(context.Background(), masterkey.Options{RecoveryKey: "-",
			RecoveryKeyText: func(context.Context) (*keys.Secret, error) {
				return keys.SecretFromBytes([]byte(priv.Text())), nil
			}}), keys.UnlockOptions{Kind: recovery.Kind})
	require.NoError(t, err)
	assert.Equal(t, rec.ID, used.ID)
}

// TestRestoreForceKeepsReplaced is breaker3's F7: restore --force of an
// older backup replaced the current config, the only copy of the newer
// ring keys, without a trace. A copy of it is kept now, mode 0600, and
// putting it back gives the volume its newer config again.
func TestRestoreForceKeepsReplaced(t *testing.T) {
	v := newVolume(t)
	backup := filepath.Join(t.TempDir(), "vol.backup")
	_, err := keys.WriteBackup(v.backing, backup)
	require.NoError(t, err)
	cfg, _, err := keys.ReadBackup(backup)
	require.NoError(t, err)
	v.add(t, newKeyFile(t))
	newer := configBytes(t, v.backing)

	res, err := keys.Restore(v.backing, cfg, keys.RestoreOptions{Force: true})
	require.NoError(t, err)
	require.NotEmpty(t, res.Replaced)
	assert.Equal(t, filepath.Join(v.backing, keys.DirName), filepath.Dir(res.Replaced))
	assert.Contains(t, filepath.Base(res.Replaced), keys.ConfigName+".replaced-")
	kept, err := os.ReadFile(res.Replaced)
	require.NoError(t, err)
	assert.Equal(t, newer, kept)
	fi, err := os.Stat(res.Replaced)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// A second forced restore within the same second keeps its own copy.
	require.NoError(t, os.WriteFile(keys.ConfigPath(v.backing), kept, 0o600))
	res2, err := keys.Restore(v.backing, cfg, keys.RestoreOptions{Force: true})
	require.NoError(t, err)
	require.NotEmpty(t, res2.Replaced)
	assert.NotEqual(t, res.Replaced, res2.Replaced)
	kept, err = os.ReadFile(res2.Replaced)
	require.NoError(t, err)
	assert.Equal(t, newer, kept)
}
