package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// plantRotation writes .coffer/rotation.json naming target, as anyone who
// can write the backing directory can.
func plantRotation(t *testing.T, backing string, target uint32) {
	t.Helper()
	p := filepath.Join(backing, keys.DirName, keys.RotationName)
	require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf(`{"version":1,"target":%d,`+
		`"retire":[],"started":"2026-12-05T01:00:00Z"}`+"\n", target)), 0o600))
}

// TestRotatePlantedStateStillRotates is breaker4 F7: a rotation.json naming
// the current primary made rotate "resume" a rotation that changed no key.
// Only the sealed ring says a rotation is in progress.
func TestRotatePlantedStateStillRotates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	old := primaryOf(t, f.backing)
	plantRotation(t, f.backing, old)

	r := cli(t, "rotate", f.backing)
	requireOK(t, r)
	next := primaryOf(t, f.backing)
	assert.NotEqual(t, old, next, "a new primary key")
	assert.Equal(t, map[uint32]keys.KeyState{next: keys.StatePrimary}, ringKeys(t, f.backing))
	assert.Contains(t, r.stderr, "the ring records no rotation in progress")
	assert.NotContains(t, r.stderr, "resuming")
}

// TestRotateResumesWhatTheRingRecords checks that a rotation stopped before
// its purge resumes even with its rotation.json deleted (breaker4 F1: a
// fresh rotation would have sealed to entries tagged under the old keys),
// and with one naming another key.
func TestRotateResumesWhatTheRingRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		state func(t *testing.T, backing string, old uint32)
	}{
		{name: "deleted", state: func(t *testing.T, backing string, _ uint32) {
			require.NoError(t, os.Remove(filepath.Join(backing, keys.DirName, keys.RotationName)))
		}},
		{name: "names the old key", state: func(t *testing.T, backing string, old uint32) {
			plantRotation(t, backing, old)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.init(t)
			old := primaryOf(t, f.backing)

			// A mount record of another host at the old generation stops
			// the rotation before its purge.
			mounts := filepath.Join(f.backing, keys.DirName, keys.MountsName)
			require.NoError(t, os.MkdirAll(mounts, 0o700))
			rec := filepath.Join(mounts, "otherhost-4242.json")
			require.NoError(t, os.WriteFile(rec, []byte(`{"version":1,"host":"otherhost",`+
				`"pid":4242,"generation":1,"updated":"2026-12-05T02:00:00Z"}`+"\n"), 0o600))
			r := cli(t, "rotate", f.backing, "--mount-wait", "1ms")
			require.NotEqual(t, exitOK, r.code)
			require.Contains(t, r.stderr, "retired, but not purged")
			target := primaryOf(t, f.backing)
			require.NotEqual(t, old, target)

			require.NoError(t, os.Remove(rec))
			tc.state(t, f.backing, old)
			r = cli(t, "rotate", f.backing)
			requireOK(t, r)
			assert.Contains(t, r.stderr, "resuming the rotation to ring key "+
				strconv.FormatUint(uint64(target), 10))
			assert.Equal(t, map[uint32]keys.KeyState{target: keys.StatePrimary},
				ringKeys(t, f.backing), "resumed: no other key added, the old one purged")
		})
	}
}

// TestReencryptPlantedStateStillRewrites is breaker4 F7 with --reencrypt: a
// planted reencrypt.json and rotation.json naming the current primary made
// every file count as already done; nothing was rewritten.
func TestReencryptPlantedStateStillRewrites(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.write(t, "a", []byte("first"))
	tr.write(t, "b", []byte("second"))
	f.unmount(t)
	old := primaryOf(t, f.backing)
	plantRotation(t, f.backing, old)
	require.NoError(t, os.WriteFile(filepath.Join(f.backing, keys.DirName, keys.ReencryptName),
		[]byte(fmt.Sprintf(`{"version":1,"target":%d,"token":"0123456789abcdef",`+
			`"generation":1,"started":"2026-12-05T01:00:00Z"}`+"\n", old)), 0o600))

	r := cli(t, "rotate", f.backing, "--reencrypt")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "re-encrypted 2 files with new data keys (0 already done)")
	next := primaryOf(t, f.backing)
	assert.NotEqual(t, old, next)
	for p, h := range contentHeaders(t, f.backing) {
		assert.Equal(t, next, h.key0, "%s", p)
	}
}

// TestRotateIfDueUsesSealedAge is breaker4 F8: the primary key's creation
// date moved into the future in volume.json kept rotate --if-due from ever
// rotating, and status showed the key as fresh. The sealed ring's date
// counts; status says its dates are unverified.
func TestRotateIfDueUsesSealedAge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	requireOK(t, cli(t, "config", f.backing, "--max-key-age", "1d"))
	old := primaryOf(t, f.backing)
	edit := func(created time.Time) {
		cfg, err := keys.ReadConfig(f.backing)
		require.NoError(t, err)
		for i := range cfg.Ring.Keys {
			cfg.Ring.Keys[i].Created = created
		}
		require.NoError(t, keys.WriteConfig(f.backing, cfg))
	}

	// Sealed date fresh, public date fresh: not due.
	r := cli(t, "rotate", f.backing, "--if-due")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "not due")
	assert.Equal(t, old, primaryOf(t, f.backing))

	// Public date moved forward: the sealed (fresh) date still decides,
	// and the disagreement is reported.
	edit(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
	r = cli(t, "rotate", f.backing, "--if-due")
	requireOK(t, r)
	assert.Contains(t, r.stdout, "not due")
	assert.Contains(t, r.stderr, "someone edited volume.json")
	st := cli(t, "status", f.backing)
	requireOK(t, st)
	assert.Contains(t, st.stdout, "unverified")
	assert.Contains(t, st.stdout, "dated in the future")

	// Two days on, the sealed date makes it due whatever volume.json says.
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	ctx := context.Background()
	ring, _, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		keys.UnlockOptions{})
	require.NoError(t, err)
	var warn bytes.Buffer
	assert.True(t, rotationDue(&warn, cfg, ring, time.Now().Add(48*time.Hour)))
	assert.Contains(t, warn.String(), "the sealed ring says")
	assert.False(t, cfg.RotationDue(time.Now().Add(48*time.Hour)), "the public date says not due")
}
