package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// TestRotateIgnoresReusedPIDRecord leaves mount records in .coffer/mounts
// that name a live process which is no coffer mount (a PID reused after a
// reboot): one written before records held a start time, one whose start
// time differs, one from before the last reboot. The rotation ignores,
// removes and reports them, and purges. A record that does match the live
// process still holds the purge back.
func TestRotateIgnoresReusedPIDRecord(t *testing.T) {
	t.Parallel()
	other := exec.Command("sleep", "infinity")
	require.NoError(t, other.Start())
	t.Cleanup(func() {
		_ = other.Process.Kill()
		_ = other.Wait()
	})
	pid := other.Process.Pid
	boot, start, ok := keys.ProcessStart(pid)
	require.True(t, ok, "no start time of pid %d in /proc", pid)
	host, err := os.Hostname()
	require.NoError(t, err)

	write := func(t *testing.T, backing, name string, a keys.Ack) {
		dir := filepath.Join(backing, keys.DirName, keys.MountsName)
		require.NoError(t, os.MkdirAll(dir, 0o700))
		b, err := json.Marshal(a)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	base := keys.Ack{Version: 1, Host: host, PID: pid, Generation: 0}

	for _, tc := range []struct {
		name string
		ack  func() keys.Ack
		why  string
	}{
		{"no start time", func() keys.Ack { return base }, "its command line does not name"},
		{"other start time", func() keys.Ack {
			a := base
			a.BootID, a.StartTime = boot, start+1
			return a
		}, "its start time differs"},
		{"before reboot", func() keys.Ack {
			a := base
			a.BootID, a.StartTime = "00000000-0000-0000-0000-000000000000", start
			return a
		}, "written before the last reboot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.init(t)
			name := fmt.Sprintf("%s-%d.json", host, pid)
			write(t, f.backing, name, tc.ack())
			r := cliProcess(t, "rotate", f.backing, "--mount-wait", "1m")
			requireOK(t, r)
			assert.Contains(t, r.stdout, "purged ")
			assert.Contains(t, r.stderr, "coffer: warning: ignored and removed the stale mount record "+name)
			assert.Contains(t, r.stderr, tc.why)
			_, err := os.Stat(filepath.Join(f.backing, keys.DirName, keys.MountsName, name))
			assert.ErrorIs(t, err, os.ErrNotExist)
		})
	}

	t.Run("matching record counts", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.init(t)
		a := base
		a.BootID, a.StartTime = boot, start
		write(t, f.backing, "live.json", a)
		r := cliProcess(t, "rotate", f.backing, "--mount-wait", "1ms")
		assert.Equal(t, exitFailure, r.code, "stderr: %s", r.stderr)
		assert.Contains(t, r.stderr, "mounts still use an older ring")
		assert.Contains(t, r.stderr, fmt.Sprintf("pid %d", pid))
	})
}
