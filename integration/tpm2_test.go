//go:build linux

package integration

import (
	"path/filepath"
	"testing"

	"github.com/cofferfs/coffer/keys/tpm2/tpm2test"
)

// TestTPM2 initialises a volume sealed to a swtpm with a PCR 7 policy,
// mounts it, writes, remounts and reads back; then the same volume against
// another TPM, without a TPM and after PCR 7 changed must fail cleanly.
func TestTPM2(t *testing.T) {
	requireFUSE(t)
	tpm := tpm2test.Start(t)
	dev := "--tpm-device=" + tpm.Socket
	v := kindVolume(t, "tpm2:?pcrs=7", dev)
	roundTrip(t, v, dev)

	other := tpm2test.Start(t)
	failMount(t, v, "sealed by another TPM", "--tpm-device="+other.Socket)
	failMount(t, v, "no TPM: "+filepath.Join(v.dir, "tpmrm0")+" does not exist",
		"--tpm-device="+filepath.Join(v.dir, "tpmrm0"))

	tpm.ExtendPCR(t, 7, "another boot loader")
	failMount(t, v, "PCR values changed since enrollment (changed: sha256 PCR 7)", dev)
}

// TestTPM2Fallback follows the advice of the PCR error: a volume with a
// tpm2 key and a passphrase still mounts with the passphrase after PCR 7
// changed, and a remount reads what was written before.
func TestTPM2Fallback(t *testing.T) {
	requireFUSE(t)
	tpm := tpm2test.Start(t)
	dev := "--tpm-device=" + tpm.Socket
	pass := writeSecret(t, t.TempDir(), "pass", "correct horse battery staple\n")
	v := kindVolume(t, "tpm2:?pcrs=7", dev, "--master", "passphrase:", "--passphrase-file", pass,
		"--argon2-memory", "8", "--argon2-time", "1")
	roundTrip(t, v, dev)

	tpm.ExtendPCR(t, 7, "another boot loader")
	failMount(t, v, "PCR values changed", dev)
	roundTrip(t, v, dev, "--passphrase-file", pass)
}
