package main

import (
	"encoding/binary"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/keys"
)

// slotKeys returns, for every file header and directory record in backing,
// the ring key IDs of its non-empty slots (working or not), counted by key.
// It reads the key IDs at the offsets docs/format.md gives (slot 0 at 24,
// slot 1 at 152; key ID 0 is an empty slot), independently of the code
// under test.
func slotKeys(t *testing.T, backing string) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
	err := filepath.WalkDir(backing, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() && d.Name() == keys.DirName {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		if len(b) < 280 || (string(b[:6]) != "coffer" && string(b[:6]) != "cofdir") {
			return nil
		}
		for _, off := range []int{24, 152} {
			if id := binary.BigEndian.Uint32(b[off : off+4]); id != 0 {
				out[id]++
			}
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// TestRotateLocksOutRemovedMaster is breaker finding 1: a copy of
// volume.json taken before a master key was removed, with that key, must
// not open any file after ONE rotation. Before the fix, the re-wrap left
// the data key wrapped with the old ring key in each header's other slot,
// which the old config's ring still holds.
func TestRotateLocksOutRemovedMaster(t *testing.T) {
	t.Parallel()
	for _, names := range []string{"encrypted", "plaintext"} {
		t.Run(names, func(t *testing.T) {
			t.Parallel()
			testRotateLocksOutRemovedMaster(t, names)
		})
	}
}

func testRotateLocksOutRemovedMaster(t *testing.T, names string) {
	f := newMountFixture(t)
	lost := f.newKey(t, "lost.key")
	args := []string{"init", f.backing, "--master", f.keyURI(), "--master", lost}
	if names == "plaintext" {
		args = append(args, "--plaintext-names")
	}
	requireOK(t, cli(t, args...))
	requireOK(t, f.mount(t))
	secret := "db-password=s3cret"
	require.NoError(t, os.MkdirAll(filepath.Join(f.mnt, "etc"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "etc", "db.conf"), []byte(secret), 0o600))
	require.NoError(t, os.Symlink("etc/db.conf", filepath.Join(f.mnt, "link")))
	f.unmount(t)
	old := f.config(t)
	oldKey := primaryOf(t, f.backing)

	requireOK(t, cli(t, "master", "remove", f.backing, f.masterID(t, lost),
		"--with", f.keyURI()))
	requireOK(t, cliProcess(t, f.rotateArgs()...))
	next := primaryOf(t, f.backing)
	require.NotEqual(t, oldKey, next)
	got := slotKeys(t, f.backing)
	assert.Zero(t, got[oldKey], "no slot, working or not, names the old ring key")
	assert.Positive(t, got[next])

	// The attacker's copy: today's files, the old config.
	atk := filepath.Join(f.dir, "atk")
	require.NoError(t, exec.Command("cp", "-a", f.backing, atk).Run())
	require.NoError(t, os.WriteFile(keys.ConfigPath(atk), old, 0o600))
	requireOK(t, cli(t, "audit", "config", atk, "--log", filepath.Join(f.dir, "atk.audit")))
	atkm := filepath.Join(f.dir, "atkm")
	require.NoError(t, os.Mkdir(atkm, 0o700))
	t.Cleanup(func() { forceUnmount(t, atkm) })
	r := cliProcess(t, "mount", atk, atkm, "--master", lost, "--log-file",
		filepath.Join(f.dir, "atk.log"))
	requireOK(t, r) // the old config's ring unseals with the removed key

	for _, p := range []string{"etc/db.conf", "link"} {
		b, err := os.ReadFile(filepath.Join(atkm, p))
		assert.ErrorIs(t, err, syscall.EIO, "%s must not open with the removed key", p)
		assert.NotContains(t, string(b), "s3cret")
	}
	requireOK(t, cliProcess(t, "unmount", atkm))

	// The volume itself still reads everything with the remaining key.
	requireOK(t, f.mount(t))
	b, err := os.ReadFile(filepath.Join(f.mnt, "link"))
	require.NoError(t, err)
	assert.Equal(t, secret, string(b))
}

// TestRotateWipeRollsMountForward: a mount still on the old ring (another
// host's, which has not looked at the config yet) meets headers and
// directory records whose only slot is on the new ring key, the old slot
// wiped. It must roll forward to the new ring (through the carried copy
// under the old key, which stays until the purge) and read them, not fail
// with EIO. The rotation is held just before the purge (COFFER_TEST_PAUSE).
func TestRotateWipeRollsMountForward(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	cfg, ring := unlockFixture(t, f.backing)
	follower := keys.NewFollower(f.backing, ring, zerolog.Nop()) // no Watch: no ack
	mnt2 := filepath.Join(f.dir, "mnt2")
	require.NoError(t, os.Mkdir(mnt2, 0o700))
	srv, err := cofferfs.Mount(f.backing, mnt2, cofferfs.Options{VolumeID: cfg.VolumeID,
		Keys: follower, EncryptNames: cfg.EncryptedNames()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Unmount() })

	// Written through the other mount: never opened through mnt2.
	requireOK(t, f.mount(t))
	tr := tree{mnt: f.mnt, ref: filepath.Join(f.dir, "ref")}
	tr.populate(t, 12)
	old := primaryOf(t, f.backing)

	p := startPausedRotate(t, f.fixture, "purge")
	next := primaryOf(t, f.backing)
	require.NotEqual(t, old, next)
	assert.Zero(t, slotKeys(t, f.backing)[old], "every old slot is wiped before the purge")
	require.False(t, ring.Has(next), "mnt2 is still on the old ring")

	tree{mnt: mnt2, ref: tr.ref}.check(t)
	assert.True(t, ring.Has(next), "mnt2 rolled forward on meeting the new key")
	requireOK(t, p.resume(t))
	tr.check(t)
}
