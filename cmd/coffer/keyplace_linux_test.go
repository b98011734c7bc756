package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMasterAddKeyInsideMount: while the volume is mounted, a key file or
// PIN file inside its mount is refused (the next mount could not read
// them); a recovery key read from there only draws a warning.
func TestMasterAddKeyInsideMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	recoveryFile := f.recoveryNew(t)
	requireOK(t, f.mount(t))
	require.NoError(t, os.Mkdir(filepath.Join(f.mnt, "keys"), 0o700))
	inside := "file://" + filepath.Join(f.mnt, "keys", "host.key")
	requireOK(t, cli(t, "keys", "create", inside))

	before := f.config(t)
	r := cli(t, "master", "add", f.backing, inside)
	assertFailure(t, r, exitFailure, "the key file "+filepath.Join(f.mnt, "keys",
		"host.key")+" is inside a mount of the volume it unlocks ("+f.mnt+"): the next mount "+
		"could not read it")
	assert.Contains(t, r.stderr, "hint: keep it outside the volume")
	assert.Equal(t, before, f.config(t))
	r = cli(t, "rotate", f.backing, "--master", f.masterID(t, f.keyURI())+"="+inside)
	assertFailure(t, r, exitFailure, "is inside a mount of the volume it unlocks")
	assert.Equal(t, before, f.config(t))

	pin := filepath.Join(f.mnt, "keys", "pin")
	f.writeThrough(t, "keys/pin", "1234\n")
	second := f.newKey(t, "second.key")
	r = cli(t, "master", "add", f.backing, second, "--pin-file", pin)
	assertFailure(t, r, exitFailure, "the PIN file (--pin-file) "+pin+" is inside a mount of "+
		"the volume it unlocks")
	assert.Equal(t, before, f.config(t))

	// A recovery key used once, read from the mount: allowed, with a warning.
	b, err := os.ReadFile(recoveryFile)
	require.NoError(t, err)
	f.writeThrough(t, "keys/recovery.txt", string(b))
	rk := filepath.Join(f.mnt, "keys", "recovery.txt")
	r = cli(t, "master", "add", f.backing, second, "--recovery-key", rk)
	requireOK(t, r)
	assert.Contains(t, r.stderr, "the recovery key file (--recovery-key) "+rk+" is inside "+
		f.mnt+", a mount of this volume: keep a copy outside it")
	f.masterID(t, second)
}

// TestMountSecretInsideMountPoint: mount refuses a PIN or passphrase file
// under its own mount point or in the backing directory, and warns of a
// master key file under the mount point (it can never unlock this mount).
func TestMountSecretInsideMountPoint(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	pin := filepath.Join(f.mnt, "pin")
	r := f.mount(t, "--pin-file", pin)
	assertFailure(t, r, exitFailure, "the PIN file (--pin-file) "+pin+" is inside a mount of "+
		"the volume it unlocks ("+f.mnt+")")
	assert.False(t, isMounted(t, f.mnt))

	inBacking := filepath.Join(f.backing, "pass.txt")
	require.NoError(t, os.WriteFile(inBacking, []byte("correct horse\n"), 0o600))
	r = f.mount(t, "--passphrase-file", inBacking)
	assertFailure(t, r, exitFailure, "the passphrase file (--passphrase-file) "+inBacking+
		" is inside the backing directory "+f.backing)
	assert.False(t, isMounted(t, f.mnt))
	require.NoError(t, os.Remove(inBacking))

	// A master key enrolled from a directory that later became the mount
	// point: the mount works with the other key and warns of this one.
	key := filepath.Join(f.mnt, "later.key")
	requireOK(t, cli(t, "keys", "create", "file://"+key))
	requireOK(t, cli(t, "master", "add", f.backing, "file://"+key))
	id := f.masterID(t, "file://"+key)
	require.NoError(t, os.Rename(key, filepath.Join(f.dir, "later.key")))
	r = f.mount(t)
	requireOK(t, r)
	assert.Contains(t, r.stderr, "master key "+id+": the key file "+key+
		" is inside "+f.mnt+", a mount of this volume")
}
