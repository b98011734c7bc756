//go:build cgo

package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/pkcs11/softhsmtest"
)

// TestMountPromptsForPIN checks that a background mount of a pkcs11 volume
// asks for the token PIN on the terminal and hands it to the mount process,
// that keys create asks too, and that without a terminal the error names
// --pin-file.
func TestMountPromptsForPIN(t *testing.T) {
	f := newMountFixture(t)
	hsm := softhsmtest.New(t)
	hsm.InitToken(t, "coffer")
	const uri = "pkcs11:token=coffer;object=master"
	requireOK(t, cli(t, "keys", "create", uri, "--pin-file", hsm.PINFile))
	requireOK(t, cli(t, "init", f.backing, "--master", uri, "--pin-file", hsm.PINFile))
	master, tty := openPTY(t)
	before := snapshot(t, f.backing)

	typeAhead(t, master, "000000")
	r := processTTY(t, tty, "mount", f.backing, f.mnt, "--log-file", f.log)
	assertFailure(t, r, exitFailure, `wrong PIN for token "coffer"`)
	assert.Contains(t, readTerminal(t, master), `PIN for token "coffer": `)
	assert.False(t, isMounted(t, f.mnt))
	assert.Equal(t, before, snapshot(t, f.backing))

	typeAhead(t, master, softhsmtest.PIN)
	r = processTTY(t, tty, "mount", f.backing, f.mnt, "--log-file", f.log)
	requireOK(t, r)
	assert.True(t, isMounted(t, f.mnt))
	logData, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.NotContains(t, string(logData), softhsmtest.PIN)
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	r = cliProcess(t, "mount", f.backing, f.mnt, "--log-file", f.log)
	assertFailure(t, r, exitFailure, "no terminal to ask for the PIN on")
	assert.Contains(t, r.stderr, "hint: pass --pin-file FILE")
	assert.False(t, isMounted(t, f.mnt))

	typeAhead(t, master, softhsmtest.PIN)
	r = processTTY(t, tty, "keys", "create", "pkcs11:token=coffer;object=second")
	requireOK(t, r)
	assert.Contains(t, readTerminal(t, master), `PIN for token "coffer": `)
	assert.Contains(t, r.stdout, `created AES-256 key "second" in token "coffer"`)
}
