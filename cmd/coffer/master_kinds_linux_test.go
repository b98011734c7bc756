//go:build linux && cgo

package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/awskms/kmstest"
	"github.com/cofferfs/coffer/keys/pkcs11/softhsmtest"
)

// hsmKMSVolume is a volume with two master keys of different kinds: an AES
// key in a SoftHSM2 token and a KMS key on local-kms. Every command runs as
// a process: a PKCS#11 module keeps the token store it first saw.
type hsmKMSVolume struct {
	*mountFixture
	hsm            *softhsmtest.Store
	kms            *kmstest.Server
	hsmURI, kmsURI string
	hsmID, kmsID   string
	flags          []string // --pin-file and --kms-endpoint
}

func newHSMKMSVolume(t *testing.T) *hsmKMSVolume {
	t.Helper()
	v := &hsmKMSVolume{mountFixture: newMountFixture(t), hsm: softhsmtest.New(t)}
	kmstest.SetCredentials(t)
	v.kms = kmstest.Start(t)
	v.hsm.InitToken(t, "coffer")
	v.hsmURI = "pkcs11:token=coffer;object=master"
	v.kmsURI = "aws-kms://" + v.kms.CreateKey(t)
	v.flags = []string{"--pin-file=" + v.hsm.PINFile, "--kms-endpoint=" + v.kms.Endpoint}

	requireOK(t, cliProcess(t, append([]string{"keys", "create", v.hsmURI}, v.flags...)...))
	requireOK(t, cliProcess(t, append([]string{"init", v.backing, "--master", v.hsmURI},
		v.flags...)...))
	requireOK(t, cliProcess(t, append([]string{"master", "add", v.backing, v.kmsURI}, v.flags...)...))
	list := v.masters(t)
	require.Len(t, list, 2)
	assert.Equal(t, []string{"pkcs11", "aws-kms"}, []string{list[0].Kind, list[1].Kind})
	v.hsmID, v.kmsID = list[0].ID, list[1].ID
	return v
}

// mountWith mounts with the volume's flags and extra ones.
func (v *hsmKMSVolume) mountWith(t *testing.T, extra ...string) result {
	t.Helper()
	return v.mount(t, append(append([]string{}, v.flags...), extra...)...)
}

// TestHSMAndKMSEachUnlock unlocks with each of the two master keys; then,
// with local-kms stopped, adding another KMS key changes nothing and the
// SoftHSM2 key alone unlocks.
func TestHSMAndKMSEachUnlock(t *testing.T) {
	v := newHSMKMSVolume(t)
	requireOK(t, v.mountWith(t, "--master", v.hsmID))
	v.writeThrough(t, "data.txt", "two kinds, one ring")
	v.unmount(t)
	requireOK(t, v.mountWith(t, "--master", v.kmsID))
	assert.Equal(t, "two kinds, one ring", v.readThrough(t, "data.txt"))
	v.unmount(t)

	// Adding a KMS key while KMS is down changes nothing.
	another := "aws-kms://" + v.kms.CreateKey(t)
	v.kms.Stop()
	before := v.config(t)
	r := cliProcess(t, append([]string{"master", "add", v.backing, another, "--with", v.hsmID},
		v.flags...)...)
	assertFailure(t, r, exitFailure, "KMS is unreachable")
	assert.Equal(t, before, v.config(t), "volume.json changed")

	assertFailure(t, v.mountWith(t, "--master", v.kmsID), exitFailure, "KMS is unreachable")
	requireOK(t, v.mountWith(t))
	assert.Equal(t, "two kinds, one ring", v.readThrough(t, "data.txt"))
}

// TestHSMLostThenKMSLost deletes the SoftHSM2 token: the KMS key unlocks.
// Then local-kms stops too: the recovery key unlocks, and replaces both.
func TestHSMLostThenKMSLost(t *testing.T) {
	v := newHSMKMSVolume(t)
	recoveryFile := v.recoveryNew(t, "--with", v.kmsID, "--kms-endpoint="+v.kms.Endpoint)
	requireOK(t, v.mountWith(t))
	v.writeThrough(t, "data.txt", "outlives its keys")
	v.unmount(t)

	v.hsm.DeleteToken(t, "coffer")
	requireOK(t, v.mountWith(t))
	assert.Equal(t, "outlives its keys", v.readThrough(t, "data.txt"))
	v.unmount(t)
	list := v.masters(t)
	require.NotNil(t, list[1].LastUsed, "the KMS key unlocked")

	v.kms.Stop()
	assertFailure(t, v.mountWith(t), exitFailure, "no master key unlocked the volume")
	requireOK(t, v.mountWith(t, "--recovery-key", recoveryFile))
	assert.Equal(t, "outlives its keys", v.readThrough(t, "data.txt"))
	v.unmount(t)

	// Replace the lost keys with a key file, unlocking with the recovery key.
	key := v.newKey(t, "replacement.key")
	requireOK(t, cli(t, "master", "add", v.backing, key, "--recovery-key", recoveryFile))
	requireOK(t, cli(t, "master", "remove", v.backing, v.hsmID, "--recovery-key", recoveryFile))
	requireOK(t, cli(t, "master", "remove", v.backing, v.kmsID, "--recovery-key", recoveryFile))
	requireOK(t, v.mount(t))
	assert.Equal(t, "outlives its keys", v.readThrough(t, "data.txt"))
	_, err := os.Stat(recoveryFile)
	require.NoError(t, err)
}
