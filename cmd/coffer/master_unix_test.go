//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func mkfifo(path string) error { return unix.Mkfifo(path, 0o600) }

// startProcess starts coffer as a process and returns it running.
func startProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd
}

func TestMasterAddKilledLeavesOldState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	before := f.config(t)
	fifo := filepath.Join(f.dir, "pass.fifo")
	require.NoError(t, mkfifo(fifo))

	// master add opens the new passphrase file after unlocking: opening the
	// FIFO's other end returns once it is there; then it is killed.
	cmd := startProcess(t, append([]string{"master", "add", f.backing, "passphrase:",
		"--new-passphrase-file", fifo}, cheapArgon2...)...)
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	w.Close()

	assert.Equal(t, before, f.config(t), "volume.json changed")
	requireOK(t, cli(t, "master", "add", f.backing, f.newKey(t, "after.key")))
	assert.Len(t, f.masters(t), 2)
}
