package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cliBounded runs coffer as a process like cliProcess, but kills it if it
// has not ended after a minute: the commands tested with it used to block
// for ever in an open. The bound only turns a hang into a failure.
func cliBounded(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	require.NoError(t, ctx.Err(), "coffer %v blocked: stderr: %s", args, stderr.String())
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// TestLogFIFORefused gives a named pipe (no reader) as audit log or mount log:
// each command is refused with one line, at once, and changes nothing.
func TestLogFIFORefused(t *testing.T) {
	t.Parallel()
	newFIFO := func(t *testing.T, f *fixture) string {
		p := filepath.Join(f.dir, "log.fifo")
		require.NoError(t, syscall.Mkfifo(p, 0o600))
		return p
	}
	t.Run("init --audit-log", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		p := newFIFO(t, f)
		r := cliBounded(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", p)
		assertFailure(t, r, exitFailure, "--audit-log "+p+" is a named pipe (FIFO), not a regular file")
		assert.Contains(t, r.stderr, "hint: choose a regular file")
		_, err := os.Stat(filepath.Join(f.backing, ".coffer"))
		assert.ErrorIs(t, err, os.ErrNotExist, "a refused init created the volume")
	})
	t.Run("audit config --log", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.init(t)
		p := newFIFO(t, f)
		before := snapshot(t, f.backing)
		r := cliBounded(t, "audit", "config", f.backing, "--log", p)
		assertFailure(t, r, exitFailure, "--log "+p+" is a named pipe (FIFO), not a regular file")
		assert.Equal(t, before, snapshot(t, f.backing))
	})
	t.Run("mount --log-file", func(t *testing.T) {
		t.Parallel()
		f := newMountFixture(t)
		f.init(t)
		p := newFIFO(t, f.fixture)
		r := cliBounded(t, "mount", f.backing, f.mnt, "--log-file", p)
		assertFailure(t, r, exitFailure, "--log-file "+p+" is a named pipe (FIFO), not a regular file")
		assert.False(t, isMounted(t, f.mnt))
	})
}
