package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// editConfig rewrites the volume.json of backing through change, as
// someone who can write the backing directory would (no key needed).
func editConfig(t *testing.T, backing string, change func(c map[string]any)) {
	t.Helper()
	path := keys.ConfigPath(backing)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(b, &c))
	change(c)
	b, err = json.MarshalIndent(c, "", " ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// backingState is a snapshot of backing without the audit head anchor,
// which the refusal's audit record moves.
func backingState(t *testing.T, backing string) map[string]string {
	t.Helper()
	s := snapshot(t, backing)
	for k := range s {
		if filepath.Base(k) == audit.AnchorName {
			delete(s, k)
		}
	}
	return s
}

// TestRotateRefusesPlantedRecoveryKey is breaker finding F4: someone who can
// write the backing directory copies a recovery entry (public key, tag and
// sealed copy) from a volume of their own into the victim's volume.json.
// Every way of rotating refuses, names the entry, writes nothing but the
// audit record, and the planter's recovery key opens nothing.
func TestRotateRefusesPlantedRecoveryKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"rotate", nil},
		{"reencrypt", []string{"--reencrypt"}},
		{"if due", []string{"--if-due"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			victim := newFixture(t)
			logPath := filepath.Join(victim.dir, "audit.jsonl")
			requireOK(t, cli(t, "init", victim.backing, "--master", victim.keyURI(),
				"--audit-log", logPath, "--max-key-age", "30d"))
			attacker := newFixture(t)
			attacker.init(t)
			rk := filepath.Join(attacker.dir, "attacker.recovery")
			requireOK(t, cli(t, "recovery", "new", attacker.backing, "--out", rk))

			var a map[string]any
			b, err := os.ReadFile(keys.ConfigPath(attacker.backing))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &a))
			var planted map[string]any
			for _, m := range a["masters"].([]any) {
				if m.(map[string]any)["kind"] == "recovery" {
					planted = m.(map[string]any)
				}
			}
			require.NotNil(t, planted)
			id := planted["id"].(string)
			editConfig(t, victim.backing, func(c map[string]any) {
				c["masters"] = append(c["masters"].([]any), planted)
				ring := c["ring"].(map[string]any)
				ring["sealed"].(map[string]any)[id] = a["ring"].(map[string]any)["sealed"].(map[string]any)[id]
				// Old enough for --if-due (the key list is public metadata).
				for _, k := range ring["keys"].([]any) {
					k.(map[string]any)["created"] = "2020-01-01T00:00:00Z"
				}
			})
			before := backingState(t, victim.backing)

			r := cli(t, append([]string{"rotate", victim.backing}, tt.args...)...)
			assertFailure(t, r, exitFailure, "master key "+id+" (recovery) has a tag that does not verify")
			assert.Contains(t, r.stderr, "nothing was changed")
			assert.Contains(t, r.stderr, "hint: if "+id+" is a recovery key you made")
			assert.Contains(t, r.stderr, "coffer master remove "+victim.backing+" "+id)
			assert.Equal(t, before, backingState(t, victim.backing), "nothing written")

			integrity := ofEvent(auditLines(t, logPath), audit.EventIntegrity)
			require.Len(t, integrity, 1)
			assert.Equal(t, id, integrity[0]["master"])
			assert.Equal(t, audit.OutcomeFailed, integrity[0]["outcome"])
			requireOK(t, cli(t, "audit", "verify", logPath, "--backing", victim.backing))

			// The planted key opens nothing.
			mnt := filepath.Join(victim.dir, "mnt")
			require.NoError(t, os.Mkdir(mnt, 0o700))
			r = cliProcess(t, "mount", victim.backing, mnt, "--recovery-key", rk)
			assert.Equal(t, exitFailure, r.code, "stderr: %s", r.stderr)
			assert.False(t, isMounted(t, mnt))
		})
	}
}

// TestRotateRefusesUntaggedRecoveryKey checks a recovery entry written
// before entry tags existed: rotate refuses with the way out, which works.
func TestRotateRefusesUntaggedRecoveryKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", filepath.Join(f.dir, "old.txt")))
	old := f.masterID(t, "recovery:")
	editConfig(t, f.backing, func(c map[string]any) {
		for _, m := range c["masters"].([]any) {
			delete(m.(map[string]any), "tag")
		}
	})
	before := backingState(t, f.backing)

	r := cli(t, "rotate", f.backing)
	assertFailure(t, r, exitFailure, "master key "+old+" (recovery) has no tag in volume.json")
	assert.Contains(t, r.stderr, "coffer recovery new "+f.backing+", then coffer master remove "+
		f.backing+" "+old)
	assert.Contains(t, r.stderr, "coffer rotate "+f.backing+" --recovery-key FILE")
	assert.Equal(t, before, backingState(t, f.backing), "nothing written")

	// The way out the hint gives.
	rk := filepath.Join(f.dir, "new.txt")
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", rk))
	requireOK(t, cli(t, "master", "remove", f.backing, old))
	requireOK(t, cli(t, "rotate", f.backing))
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	for _, m := range cfg.Masters {
		require.NotNil(t, m.Tag, "master key %s", m.ID)
		assert.Equal(t, primaryOf(t, f.backing), m.Tag.Key)
	}
}

// TestRotateWithOldRecoveryKeyAtHand checks the other way out for a
// recovery entry without a tag: rotate with the recovery key given opens
// the entry, which proves it, and tags it; later rotations need no key.
func TestRotateWithOldRecoveryKeyAtHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	rk := filepath.Join(f.dir, "old.txt")
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", rk))
	editConfig(t, f.backing, func(c map[string]any) {
		for _, m := range c["masters"].([]any) {
			delete(m.(map[string]any), "tag")
		}
	})

	requireOK(t, cli(t, "rotate", f.backing, "--recovery-key", rk))
	requireOK(t, cli(t, "rotate", f.backing))
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	ring, _, err := keys.Unlock(context.Background(), cfg,
		masterkey.Opener(context.Background(), masterkey.Options{RecoveryKey: rk}),
		keys.UnlockOptions{Kind: "recovery"})
	require.NoError(t, err, "the recovery key still opens the volume")
	for _, m := range cfg.Masters {
		assert.NoError(t, ring.VerifyEntry(cfg.VolumeID, m), "master key %s", m.ID)
	}
}

// TestMountWarnsUntaggedRecoveryKey checks that a mount's log warns about a
// recovery entry that the next rotation will refuse, and only then.
func TestMountWarnsUntaggedRecoveryKey(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", filepath.Join(f.dir, "rk.txt")))
	id := f.masterID(t, "recovery:")
	const warning = "coffer rotate will refuse this recovery key's entry"

	requireOK(t, f.mount(t))
	f.unmount(t)
	b, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.NotContains(t, string(b), warning)

	editConfig(t, f.backing, func(c map[string]any) {
		for _, m := range c["masters"].([]any) {
			delete(m.(map[string]any), "tag")
		}
	})
	requireOK(t, f.mount(t))
	f.unmount(t)
	b, err = os.ReadFile(f.log)
	require.NoError(t, err)
	assert.Contains(t, string(b), warning)
	assert.Contains(t, string(b), `"master":"`+id+`"`)
}
