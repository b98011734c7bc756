// Package softhsmtest gives tests a private SoftHSM2 token store: New points
// SOFTHSM2_CONF at a configuration whose token directory is under
// t.TempDir(), so each test has its own tokens and leaves nothing behind.
// Child processes inherit the variable, so a coffer binary run by the test
// sees the same tokens.
package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Module is the SoftHSM2 PKCS#11 module as Debian installs it.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN and SOPIN are the user and security officer PINs of every token
// InitToken makes.
const (
	PIN   = "246810"
	SOPIN = "13579753"
)

// Store is a private SoftHSM2 token store.
type Store struct {
	// Dir is the token directory.
	Dir string
	// Conf is the SoftHSM2 configuration file SOFTHSM2_CONF names.
	Conf string
	// PINFile holds PIN and a newline, mode 0600.
	PINFile string
	tool    string
}

// Require skips t when SoftHSM2 is not installed, or fails it when the CI
// environment variable is set: CI must never pass by skipping.
func Require(t testing.TB) string {
	t.Helper()
	tool, err := exec.LookPath("softhsm2-util")
	if err == nil {
		_, err = os.Stat(Module)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SoftHSM2 is not installed (make deps installs it): %v", err)
		}
		t.Skipf("SoftHSM2 is not installed (make deps installs it): %v", err)
	}
	return tool
}

// New creates an empty token store and sets SOFTHSM2_CONF for the rest of
// the test (so t must not be parallel). A PKCS#11 module that is already
// initialised in this process keeps the store it was initialised with.
func New(t *testing.T) *Store {
	t.Helper()
	tool := Require(t)
	dir := t.TempDir()
	s := &Store{Dir: filepath.Join(dir, "tokens"), Conf: filepath.Join(dir, "softhsm2.conf"),
		PINFile: filepath.Join(dir, "pin"), tool: tool}
	require.NoError(t, os.Mkdir(s.Dir, 0o700))
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		s.Dir)
	require.NoError(t, os.WriteFile(s.Conf, []byte(conf), 0o600))
	require.NoError(t, os.WriteFile(s.PINFile, []byte(PIN+"\n"), 0o600))
	t.Setenv("SOFTHSM2_CONF", s.Conf)
	return s
}

// InitToken initialises a new token labelled label, with PIN and SOPIN.
func (s *Store) InitToken(t testing.TB, label string) {
	t.Helper()
	s.Run(t, "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
}

// DeleteToken deletes the token labelled label and its keys.
func (s *Store) DeleteToken(t testing.TB, label string) {
	t.Helper()
	s.Run(t, "--delete-token", "--token", label)
}

// Run runs softhsm2-util with args on the store and returns its output.
func (s *Store) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(s.tool, args...).CombinedOutput()
	require.NoError(t, err, "softhsm2-util %v: %s", args, out)
	return string(out)
}
