//go:build cgo && unix

package pkcs11

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	testPIN   = "246810"
	testSOPIN = "13579753"
)

// softHSM is a private SoftHSM2 token store for one test.
type softHSM struct {
	dir      string // the token directory
	pinFile  string // holds testPIN, mode 0600
	conf     string
	toolPath string
}

// newSoftHSM points SOFTHSM2_CONF at a new token store in t.TempDir().
// Without SoftHSM2 the test is skipped, or fails when CI=true.
func newSoftHSM(t *testing.T) *softHSM {
	t.Helper()
	tool, err := exec.LookPath("softhsm2-util")
	if err == nil {
		_, err = os.Stat(DefaultModule)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SoftHSM2 is missing (%v): run scripts/deps.sh", err)
		}
		t.Skipf("SoftHSM2 is missing (%v): run scripts/deps.sh", err)
	}
	modules.Lock()
	loaded := len(modules.m)
	modules.Unlock()
	require.Zero(t, loaded, "a module is still loaded: an earlier test did not wipe its masters")

	dir := t.TempDir()
	h := &softHSM{dir: filepath.Join(dir, "tokens"), conf: filepath.Join(dir, "softhsm2.conf"),
		pinFile: filepath.Join(dir, "pin"), toolPath: tool}
	require.NoError(t, os.Mkdir(h.dir, 0o700))
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		h.dir)
	require.NoError(t, os.WriteFile(h.conf, []byte(conf), 0o600))
	require.NoError(t, os.WriteFile(h.pinFile, []byte(testPIN+"\n"), 0o600))
	t.Setenv("SOFTHSM2_CONF", h.conf)
	return h
}

// initToken initialises a token labelled label with testPIN.
func (h *softHSM) initToken(t *testing.T, label string) {
	t.Helper()
	h.run(t, "--init-token", "--free", "--label", label, "--so-pin", testSOPIN, "--pin", testPIN)
}

// run runs softhsm2-util (or another tool) on the store and returns its output.
func (h *softHSM) run(t *testing.T, args ...string) string {
	t.Helper()
	return runTool(t, h.toolPath, args...)
}

func runTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(context.Background(), tool, args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", tool, args, out)
	return string(out)
}
