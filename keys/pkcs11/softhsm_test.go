//go:build cgo && unix

package pkcs11

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/pkcs11/softhsmtest"
)

const testPIN = softhsmtest.PIN

// newSoftHSM gives the test a private token store, after checking that no
// module is loaded: a module initialised by an earlier test would still see
// that test's store.
func newSoftHSM(t *testing.T) *softhsmtest.Store {
	t.Helper()
	softhsmtest.Require(t)
	modules.Lock()
	loaded := len(modules.m)
	modules.Unlock()
	require.Zero(t, loaded, "a module is still loaded: an earlier test did not wipe its masters")
	return softhsmtest.New(t)
}

// runTool runs a program that must succeed and returns its output.
func runTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool, args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", tool, args, out)
	return string(out)
}
