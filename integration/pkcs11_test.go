//go:build linux && cgo

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/pkcs11/softhsmtest"
)

// TestPKCS11 creates an AES key in a SoftHSM2 token with coffer keys
// create, initialises a volume with it, mounts, writes, remounts and reads
// back; then a wrong PIN, no PIN and a deleted token must fail cleanly.
func TestPKCS11(t *testing.T) {
	requireFUSE(t)
	hsm := softhsmtest.New(t)
	hsm.InitToken(t, "coffer")
	const uri = "pkcs11:token=coffer;object=master"
	pin := "--pin-file=" + hsm.PINFile

	out := coffer(t, "keys", "create", uri, pin)
	assert.Contains(t, out, `created AES-256 key "master" in token "coffer"`)
	assert.Contains(t, out, "--master "+uri+"?module-path="+softhsmtest.Module)

	_, stderr, err := tryRun("", nil, cofferBin, "keys", "create", uri, pin)
	assert.Equal(t, 1, exitCode(err), "stderr: %s", stderr)
	assert.Contains(t, stderr, `token "coffer" already holds an object labelled "master"`)

	v := kindVolume(t, uri, pin)
	cfg, err := os.ReadFile(filepath.Join(v.backing, ".coffer", "volume.json"))
	require.NoError(t, err)
	assert.Contains(t, string(cfg), uri+"?module-path="+softhsmtest.Module)
	assert.NotContains(t, string(cfg), softhsmtest.PIN)
	roundTrip(t, v, pin)

	wrong := filepath.Join(t.TempDir(), "wrong-pin")
	require.NoError(t, os.WriteFile(wrong, []byte("000000\n"), 0o600))
	failMount(t, v, `wrong PIN for token "coffer"`, "--pin-file="+wrong)
	failMount(t, v, "no terminal to ask for the PIN on")

	hsm.DeleteToken(t, "coffer")
	failMount(t, v, `no token labelled "coffer"`, pin)
}

// TestPKCS11PINSource records the PIN file in the URI: mount needs no flag.
// Another token's key of the same label must not open the volume.
func TestPKCS11PINSource(t *testing.T) {
	requireFUSE(t)
	hsm := softhsmtest.New(t)
	hsm.InitToken(t, "coffer")
	uri := "pkcs11:token=coffer;object=master?pin-source=file:" + hsm.PINFile
	coffer(t, "keys", "create", uri)
	v := kindVolume(t, uri)
	roundTrip(t, v)

	// The same labels in a new token: a different key, so a wrong key.
	hsm.DeleteToken(t, "coffer")
	hsm.InitToken(t, "coffer")
	coffer(t, "keys", "create", uri)
	failMount(t, v, "did not authenticate the sealed ring")
}

// TestPKCS11RefusesPINValue checks that a PIN in the URI is refused before
// anything is written.
func TestPKCS11RefusesPINValue(t *testing.T) {
	backing := filepath.Join(t.TempDir(), "backing")
	require.NoError(t, os.Mkdir(backing, 0o700))
	_, stderr, err := tryRun("", nil, cofferBin, "init", backing, "--master",
		"pkcs11:token=coffer;object=master?pin-value=123456")
	assert.Equal(t, 2, exitCode(err), "stderr: %s", stderr)
	first, _, _ := strings.Cut(stderr, "\n")
	assert.Contains(t, first, "pin-value is refused")
	assert.NotContains(t, stderr, "123456")
	entries, err := os.ReadDir(backing)
	require.NoError(t, err)
	assert.Empty(t, entries)
}
