package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// TestAuditMountEvents mounts a volume twice through the CLI, the second
// time after a master key fails and with a tampered file, and checks that
// each event is in the audit log exactly once per action, with its fields.
func TestAuditMountEvents(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	pass := f.passphraseFile(t, "pass.txt", "the right passphrase")
	wrong := f.passphraseFile(t, "wrong.txt", "a wrong passphrase")
	// Plaintext names, so that the test finds the backing file by its name.
	args := append([]string{"init", f.backing, "--master", "passphrase:", "--master", f.keyURI(),
		"--passphrase-file", pass, "--audit-log", logPath, "--plaintext-names"}, cheapArgon2...)
	requireOK(t, cli(t, args...))
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	passID, fileID := cfg.Masters[0].ID, cfg.Masters[1].ID

	// First mount: the passphrase master unlocks; write a file.
	requireOK(t, f.mount(t, "--passphrase-file", pass))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "secret.txt"), []byte("hunter2"), 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	// Damage the file's first block behind the mount's back.
	backingFile := filepath.Join(f.backing, "secret.txt")
	b, err := os.ReadFile(backingFile)
	require.NoError(t, err)
	b[content.BlockOffset(0)+content.NonceSize+2] ^= 0x01
	require.NoError(t, os.WriteFile(backingFile, b, 0o600))

	// Second mount: the wrong passphrase fails, the key file unlocks; reads
	// of the damaged file fail, several times.
	requireOK(t, f.mount(t, "--passphrase-file", wrong))
	for range 3 {
		_, err := os.ReadFile(filepath.Join(f.mnt, "secret.txt"))
		require.ErrorIs(t, err, syscall.EIO)
	}
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	records := auditLines(t, logPath)
	for _, r := range records {
		t.Logf("%v %v %v %v", r["seq"], r["event"], r["master"], r["reason"])
	}
	primary := cfg.Ring.Keys[0].ID

	mounts := ofEvent(records, audit.EventMount)
	require.Len(t, mounts, 2)
	assert.Equal(t, passID, mounts[0]["master"])
	assert.Equal(t, fileID, mounts[1]["master"])
	for _, m := range mounts {
		assert.Equal(t, "ok", m["outcome"])
		assert.EqualValues(t, primary, m["ring_key"])
		assert.Equal(t, f.mnt, m["detail"].(map[string]any)["mountpoint"])
		assert.NotEqualValues(t, os.Getpid(), m["pid"], "the mount process writes it")
	}
	assert.Equal(t, "passphrase", mounts[0]["detail"].(map[string]any)["kind"])

	unlocks := ofEvent(records, audit.EventUnlock)
	require.Len(t, unlocks, 1)
	assert.Equal(t, passID, unlocks[0]["master"])
	assert.Equal(t, "failed", unlocks[0]["outcome"])
	assert.Contains(t, unlocks[0]["reason"], "wrong master key")
	assert.NotContains(t, unlocks[0], "mac", "written before the ring was unlocked")

	integrity := ofEvent(records, audit.EventIntegrity)
	require.Len(t, integrity, 1, "one record per file per window")
	assert.Equal(t, "/secret.txt", integrity[0]["path"])
	assert.Equal(t, "failed", integrity[0]["outcome"])
	assert.EqualValues(t, 1, integrity[0]["count"])
	assert.Equal(t, "0", integrity[0]["detail"].(map[string]any)["block"])
	assert.Contains(t, integrity[0]["reason"], "authentication")
	dropped := ofEvent(records, audit.EventIntegrityDropped)
	require.Len(t, dropped, 1, "the other failed reads are counted at unmount")
	assert.GreaterOrEqual(t, dropped[0]["count"], 2.0)

	unmounts := ofEvent(records, audit.EventUnmount)
	require.Len(t, unmounts, 2)
	assert.Equal(t, fileID, unmounts[1]["master"])
	assert.Len(t, ofEvent(records, audit.EventInit), 1)
	assert.Len(t, ofEvent(records, audit.EventCheckpoint), 3, "init and each mount close the log")

	// The order of one mount's life.
	var order []string
	for _, r := range records[len(records)-6:] {
		order = append(order, r["event"].(string))
	}
	assert.Equal(t, []string{"unlock", "mount", "integrity", "integrity-dropped", "unmount",
		"checkpoint"}, order)

	v := cli(t, "audit", "verify", logPath, "--backing", f.backing, "--master", fileID)
	requireOK(t, v)
	assert.Contains(t, v.stdout, "1 records without")
}

// TestAuditFailedMount checks that a mount whose only master key fails
// leaves one unlock record and no mount record.
func TestAuditFailedMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	require.NoError(t, os.Remove(f.key))
	requireOK(t, cli(t, "keys", "create", f.keyURI()))

	assertFailure(t, f.mount(t), exitFailure, "wrong master key")
	logPath, err := audit.DefaultPath(cfg.VolumeID)
	require.NoError(t, err)
	records := auditLines(t, logPath)
	unlocks := ofEvent(records, audit.EventUnlock)
	require.Len(t, unlocks, 1)
	assert.Equal(t, cfg.Masters[0].ID, unlocks[0]["master"])
	assert.Equal(t, "file", unlocks[0]["detail"].(map[string]any)["kind"])
	assert.Contains(t, unlocks[0]["reason"], "wrong master key")
	assert.Empty(t, ofEvent(records, audit.EventMount))

	requireOK(t, cli(t, "audit", "verify", logPath, "--backing", f.backing, "--chain-only"))
}

// TestAuditRecoveryMount checks that a mount with the recovery key records
// its use once, beside the mount record.
func TestAuditRecoveryMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	rk := f.recoveryNew(t)
	cfg, err := keys.ReadConfig(f.backing)
	require.NoError(t, err)
	recoveryID := cfg.Masters[1].ID

	requireOK(t, f.mount(t, "--recovery-key", rk))
	f.unmount(t)

	logPath, err := audit.DefaultPath(cfg.VolumeID)
	require.NoError(t, err)
	records := auditLines(t, logPath)
	used := ofEvent(records, audit.EventRecoveryUsed)
	require.Len(t, used, 1)
	assert.Equal(t, recoveryID, used[0]["master"])
	assert.Contains(t, used[0], "mac")
	mounts := ofEvent(records, audit.EventMount)
	require.Len(t, mounts, 1)
	assert.Equal(t, recoveryID, mounts[0]["master"])
	assert.Equal(t, "recovery", mounts[0]["detail"].(map[string]any)["kind"])
	assert.Empty(t, ofEvent(records, audit.EventUnlock), "only the recovery key was tried")
	requireOK(t, cli(t, "audit", "verify", logPath, "--backing", f.backing, "--chain-only"))
}

// TestAuditVerifyAfterRotations rotates the ring three times: each purge
// record is MACed with a key that the next rotation purges, and the log
// must still verify with the ring that is left.
func TestAuditVerifyAfterRotations(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logPath := filepath.Join(f.dir, "audit.jsonl")
	requireOK(t, cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", logPath))
	for range 3 {
		requireOK(t, cliProcess(t, "rotate", f.backing))
	}
	records := auditLines(t, logPath)
	assert.Len(t, ofEvent(records, audit.EventKeyPurged), 3)
	v := cli(t, "audit", "verify", logPath, "--backing", f.backing)
	requireOK(t, v)
	assert.Contains(t, v.stdout, "is intact")
}

// TestAuditLogInsideMountPoint checks that a mount does not use an audit
// log under its own mount point, which it would have to write through
// itself: it warns and writes to the default log, and nothing appears in
// the bare mount point.
func TestAuditLogInsideMountPoint(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	logPath := filepath.Join(f.mnt, "audit.jsonl")
	requireOK(t, cli(t, "audit", "config", f.backing, "--log", logPath))
	require.NoError(t, os.Remove(logPath)) // else the mount point is not empty
	r := f.mount(t)
	requireOK(t, r)
	assert.Contains(t, r.stderr, "not using the audit log "+logPath)
	assert.Contains(t, r.stderr, "it lies inside "+f.mnt)
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	assert.NoFileExists(t, logPath, "nothing written under the mount point")
	assert.NotEmpty(t, ofEvent(auditLines(t, auditLogOf(t, f.backing)), audit.EventMount))
}
