package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal: what a user types
// is written to the master; the program reads the slave as its terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return m, s
}

// typeAhead queues lines on the terminal, as if typed ahead.
func typeAhead(t *testing.T, master *os.File, lines ...string) {
	t.Helper()
	for _, l := range lines {
		_, err := master.WriteString(l + "\n")
		require.NoError(t, err)
	}
}

// readTerminal returns what the program wrote to the terminal so far.
func readTerminal(t *testing.T, master *os.File) string {
	t.Helper()
	fd := int(master.Fd()) // Fd puts the file in blocking mode: call it once
	require.NoError(t, unix.SetNonblock(fd, true))
	defer func() { require.NoError(t, unix.SetNonblock(fd, false)) }()
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if n <= 0 || err != nil {
			return string(out)
		}
		out = append(out, buf[:n]...)
	}
}

// cliTTY runs coffer in this process with a terminal as standard input.
func cliTTY(t *testing.T, tty *os.File, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, tty, &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// processTTY runs coffer as a process with a terminal as standard input.
func processTTY(t *testing.T, tty *os.File, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdin = tty
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

func TestInitPromptsTwice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	master, tty := openPTY(t)

	typeAhead(t, master, "first try", "does not match")
	r := cliTTY(t, tty, append([]string{"init", f.backing, "--master", "passphrase:"}, cheapArgon2...)...)
	assertFailure(t, r, exitFailure, "passphrases do not match")
	assert.Empty(t, snapshot(t, f.backing)[".coffer"], "a failed init left a volume")

	typeAhead(t, master, "typed passphrase", "typed passphrase")
	r = cliTTY(t, tty, append([]string{"init", f.backing, "--master", "passphrase:"}, cheapArgon2...)...)
	requireOK(t, r)
	assert.NotContains(t, r.stderr, "passphrase:", "prompts go to the terminal, not stderr")
	assert.NotContains(t, r.stderr+r.stdout, "typed passphrase")
	assert.Contains(t, readTerminal(t, master), "Repeat passphrase: ")
}

func TestMountPromptsAndPassesPassphrase(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	pass := f.passphraseFile(t, "pass.txt", "typed passphrase")
	requireOK(t, cli(t, append([]string{"init", f.backing, "--master", "passphrase:",
		"--passphrase-file", pass}, cheapArgon2...)...))
	master, tty := openPTY(t)
	before := snapshot(t, f.backing)

	typeAhead(t, master, "not it")
	r := processTTY(t, tty, "mount", f.backing, f.mnt, "--log-file", f.log)
	assertFailure(t, r, exitFailure, "wrong master key")
	assert.Contains(t, readTerminal(t, master), "Passphrase for volume ")
	assert.False(t, isMounted(t, f.mnt))
	assert.Equal(t, before, snapshot(t, f.backing))

	// The background mount process gets the passphrase from the parent,
	// which read it on the terminal.
	typeAhead(t, master, "typed passphrase")
	r = processTTY(t, tty, "mount", f.backing, f.mnt, "--log-file", f.log)
	requireOK(t, r)
	assert.True(t, isMounted(t, f.mnt))
	logData, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.NotContains(t, string(logData), "typed passphrase")
}

func TestMountPromptsOnlyWithoutKeyFile(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	pass := f.passphraseFile(t, "pass.txt", "typed passphrase")
	requireOK(t, cli(t, append([]string{"init", f.backing, "--master", f.keyURI(), "--master", "passphrase:",
		"--passphrase-file", pass}, cheapArgon2...)...))
	master, tty := openPTY(t)

	r := processTTY(t, tty, "mount", f.backing, f.mnt, "--log-file", f.log)
	requireOK(t, r)
	assert.Empty(t, readTerminal(t, master), "prompted although the key file is readable")
	requireOK(t, cliProcess(t, "unmount", f.mnt))

	require.NoError(t, os.Rename(f.key, f.key+".away"))
	typeAhead(t, master, "typed passphrase")
	r = processTTY(t, tty, "mount", f.backing, f.mnt, "--log-file", f.log)
	requireOK(t, r)
	assert.Contains(t, readTerminal(t, master), "Passphrase for volume ")
	assert.True(t, isMounted(t, f.mnt))
}
