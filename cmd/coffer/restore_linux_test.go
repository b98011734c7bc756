package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// restoreFixture makes a backup, then rotates, so that the backup is older
// than the config and restoring it needs --force.
func restoreFixture(t *testing.T, f *mountFixture) (backup string, config []byte) {
	t.Helper()
	backup = filepath.Join(f.dir, "bk")
	requireOK(t, cli(t, "backup", f.backing, backup))
	requireOK(t, cliProcess(t, "rotate", f.backing))
	config, err := os.ReadFile(filepath.Join(f.backing, keys.DirName, keys.ConfigName))
	require.NoError(t, err)
	return backup, config
}

// assertRestoreRefused checks that restore --force fails naming the cause
// and leaves the config as it was.
func assertRestoreRefused(t *testing.T, f *mountFixture, backup string, config []byte, want string) {
	t.Helper()
	r := cliProcess(t, "restore", f.backing, backup, "--force")
	assertFailure(t, r, exitFailure, want)
	assert.Contains(t, r.stderr, "hint: ")
	after, err := os.ReadFile(filepath.Join(f.backing, keys.DirName, keys.ConfigName))
	require.NoError(t, err)
	assert.Equal(t, string(config), string(after), "a refused restore changed the config")
}

// TestRestoreRefusedWhileMounted: a running mount keeps the ring it loaded
// and would wrap new files under a key the restored config lacks, so restore
// refuses until the volume is unmounted.
func TestRestoreRefusedWhileMounted(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	backup, config := restoreFixture(t, f)
	requireOK(t, f.mount(t))

	assertRestoreRefused(t, f, backup, config, "failed to restore: volume "+f.backing+
		" is mounted: unmount first")
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	waitVolumeFree(t, f.backing)
	requireOK(t, cliProcess(t, "restore", f.backing, backup, "--force"))
}

func TestRestoreRefusedWhileMountedShared(t *testing.T) {
	f := newSharedFixture(t)
	backup, config := restoreFixture(t, f.mountFixture)
	f.mountBoth(t)

	assertRestoreRefused(t, f.mountFixture, backup, config, "is mounted: unmount first")
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	assertRestoreRefused(t, f.mountFixture, backup, config, "is mounted: unmount first")
	requireOK(t, cliProcess(t, "unmount", f.mnt2))
	waitVolumeFree(t, f.backing)
	requireOK(t, cliProcess(t, "restore", f.backing, backup, "--force"))
}

// TestRestoreRefusedMountElsewhere: a mount on another host shares no lock
// with this one; its record in .coffer/mounts is what refuses the restore.
func TestRestoreRefusedMountElsewhere(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	backup, config := restoreFixture(t, f)
	dir := filepath.Join(f.backing, keys.DirName, keys.MountsName)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	ack := filepath.Join(dir, "elsewhere-77.json")
	require.NoError(t, os.WriteFile(ack,
		[]byte(`{"version":1,"host":"elsewhere","pid":77,"generation":1}`+"\n"), 0o600))

	assertRestoreRefused(t, f, backup, config, "is mounted (elsewhere pid 77): unmount first")
	require.NoError(t, os.Remove(ack))
	requireOK(t, cliProcess(t, "restore", f.backing, backup, "--force"))
}
