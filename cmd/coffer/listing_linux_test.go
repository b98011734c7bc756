package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/masterkey"
	"github.com/cofferfs/coffer/keys/recovery"
)

// TestRotateRefusesSwappedRecoveryKey is breaker5 F1 through the CLI: the
// holder of a removed master key replaces the public key of the admin's
// recovery entry (same ID) with their own, tagged under the current primary
// key. rotate refuses it (one integrity record, nothing written), and the
// fingerprints that master list and rotate show let the admin compare the
// entry with the paper key.
func TestRotateRefusesSwappedRecoveryKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	att := f.newKey(t, "attacker.key")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--master", att,
		"--audit-log", logPath))
	rk := filepath.Join(f.dir, "admin.recovery")
	first := f.masterID(t, f.keyURI())
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", rk, "--with", first))
	rec := f.masterID(t, "recovery:")
	paper, err := os.ReadFile(rk)
	require.NoError(t, err)
	var fp string
	for _, m := range f.masters(t) {
		if m.ID == rec {
			fp = m.Fingerprint
		}
	}
	require.NotEmpty(t, fp, "master list shows the recovery key's fingerprint")
	assert.Contains(t, string(paper), "coffer recovery key "+fp, "the one on paper")
	r := cli(t, "master", "list", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "recovery: key "+fp)

	r = cli(t, "rotate", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, rec+" (recovery key "+fp+")")
	started := ofEvent(auditLines(t, logPath), audit.EventRotationStarted)
	require.Len(t, started, 1)
	sealedTo := started[0]["detail"].(map[string]any)["sealed_to"].(string)
	assert.ElementsMatch(t, []string{first, f.masterID(t, att), rec + ":" + fp},
		strings.Split(sealedTo, ","))

	other := forgeRecoveryEntry(ctx, t, f, f.masterID(t, att), rec)
	before := backingState(t, f.backing)

	r = cli(t, "rotate", f.backing)
	assertFailure(t, r, exitFailure, "master key "+rec+
		" (recovery) is not the entry the last rotation sealed the ring to")
	assert.Contains(t, r.stderr, "nothing was changed")
	assert.Contains(t, r.stderr, "hint: the last rotation sealed the ring to another entry")
	assert.Equal(t, before, backingState(t, f.backing), "nothing written")
	integrity := ofEvent(auditLines(t, logPath), audit.EventIntegrity)
	require.Len(t, integrity, 1)
	assert.Equal(t, rec, integrity[0]["master"])

	// The swapped key shows another fingerprint in master list.
	for _, m := range f.masters(t) {
		if m.ID == rec {
			assert.Equal(t, other.Fingerprint(), m.Fingerprint)
		}
	}
}

// TestRotateRefusesSkippedEntryTurnedRecovery is breaker5 F3 through the
// CLI: the holder of a removed master key turns a file master entry into a
// recovery entry of their own, tagged under the current primary key; the
// admin rotates without it (--skip-master, --purge). That rotation warns
// and does not renew the entry's tag, and the next rotation refuses it.
func TestRotateRefusesSkippedEntryTurnedRecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	att, x := f.newKey(t, "attacker.key"), f.newKey(t, "x.key")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--master", att,
		"--master", x))
	requireOK(t, cli(t, "rotate", f.backing))
	attID, xID := f.masterID(t, att), f.masterID(t, x)

	forgeRecoveryEntry(ctx, t, f, attID, xID)

	r := cli(t, "rotate", f.backing, "--skip-master", xID, "--purge")
	requireOK(t, r)
	assert.Contains(t, r.stderr, "master key "+xID+" (recovery) is not the entry the last "+
		"rotation sealed the ring to")
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	m, ok := cfg.Master(xID)
	require.True(t, ok)
	assert.NotEqual(t, primaryOf(t, f.backing), m.Tag.Key, "its tag was not renewed")

	before := backingState(t, f.backing)
	r = cli(t, "rotate", f.backing)
	assertFailure(t, r, exitFailure, "master key "+xID+
		" (recovery) is not the entry the last rotation sealed the ring to")
	assert.Equal(t, before, backingState(t, f.backing), "nothing written")
}

// forgeRecoveryEntry is what the holder of master key heldID can do: unseal
// the ring with it, let the admin remove it, then turn entry target into a
// recovery entry of a fresh key of their own, tagged with the ring they
// kept. It returns that key.
func forgeRecoveryEntry(ctx context.Context, t *testing.T, f *fixture, heldID, target string) *recovery.PrivateKey {
	t.Helper()
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	held, _, err := keys.Unlock(ctx, cfg, masterkey.Opener(ctx, masterkey.Options{}),
		keys.UnlockOptions{Only: heldID})
	require.NoError(t, err)
	requireOK(t, cli(t, "master", "remove", f.backing, heldID))

	forged, err := recovery.Generate()
	require.NoError(t, err)
	t.Cleanup(forged.Wipe)
	en, err := forged.Enrollment()
	require.NoError(t, err)
	cfg, err = keys.ReadConfig(f.backing)
	require.NoError(t, err)
	found := false
	for i, m := range cfg.Masters {
		if m.ID == target {
			found = true
			cfg.Masters[i].Kind, cfg.Masters[i].URI = recovery.Kind, recovery.URI
			cfg.Masters[i].Params = en.Params
			cfg.Masters[i].Tag, err = held.TagEntry(cfg.VolumeID, cfg.Masters[i])
			require.NoError(t, err)
		}
	}
	require.True(t, found, "entry %s in the config", target)
	require.NoError(t, keys.WriteConfig(f.backing, cfg))
	return forged
}
