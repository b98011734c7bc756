//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestLocks plays the same flock(2) and POSIX (fcntl) lock scenarios in a
// plain directory and in the mount, with helper processes holding or trying
// locks, and compares the outcomes: conflicts between processes, F_GETLK
// naming the holder, and the POSIX rules that locks belong to the process
// (two descriptors of one process do not conflict, and closing any of them,
// or unlocking through any of them, releases the lock).
func TestLocks(t *testing.T) {
	tests := []struct {
		name  string
		kind  string
		steps func(t *testing.T, path string) []string
	}{
		{"flock, held by another process", "flock", heldElsewhere},
		{"flock, two descriptors", "flock", twoDescriptors},
		{"posix, held by another process", "posix", heldElsewhere},
		{"posix, two descriptors", "posix", twoDescriptors},
		{"posix, closing another descriptor releases", "posix", closeOther},
		{"posix, unlocking through another descriptor", "posix", unlockOther},
	}
	v := newVolume(t)
	plain := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("%s-%d.lock", tc.kind, i)
			var outcomes [2][]string
			for j, dir := range []string{plain, v.mnt} {
				path := filepath.Join(dir, name)
				require.NoError(t, os.WriteFile(path, []byte("lock\n"), 0o644))
				outcomes[j] = tc.steps(t, path+"|"+tc.kind)
			}
			assert.Equal(t, outcomes[0], outcomes[1], "outcomes in a plain directory, then in the mount")
		})
	}
}

// splitLock splits the "path|kind" argument of a scenario.
func splitLock(arg string) (string, string) {
	path, kind, _ := strings.Cut(arg, "|")
	return path, kind
}

// heldElsewhere: another process holds the lock; this one tries, asks
// F_GETLK who holds it, then tries again once the holder exited.
func heldElsewhere(t *testing.T, arg string) []string {
	path, kind := splitLock(arg)
	release, pid := holdLock(t, path, kind)
	f := openRW(t, path)
	defer f.Close()

	out := []string{"while held: " + lockOutcome(lockFile(f, kind, false))}
	if kind == "posix" {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		require.NoError(t, unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk))
		out = append(out, fmt.Sprintf("F_GETLK: type %d, holder is the locker: %t",
			lk.Type, int(lk.Pid) == pid))
	}
	release()
	return append(out, "after release: "+lockOutcome(lockFile(f, kind, false)))
}

// twoDescriptors: this process locks through one descriptor, then tries
// through a second one.
func twoDescriptors(t *testing.T, arg string) []string {
	path, kind := splitLock(arg)
	f1, f2 := openRW(t, path), openRW(t, path)
	defer f1.Close()
	defer f2.Close()
	require.NoError(t, lockFile(f1, kind, false))
	return []string{"second descriptor: " + lockOutcome(lockFile(f2, kind, false)),
		"other process: " + tryLock(t, path, kind)}
}

// closeOther: this process locks through one descriptor and closes another.
func closeOther(t *testing.T, arg string) []string {
	path, kind := splitLock(arg)
	f1 := openRW(t, path)
	defer f1.Close()
	require.NoError(t, lockFile(f1, kind, false))
	out := []string{"other process, while locked: " + tryLock(t, path, kind)}
	require.NoError(t, openRW(t, path).Close())
	return append(out, "other process, after closing a second descriptor: "+tryLock(t, path, kind))
}

// unlockOther: this process locks through one descriptor and unlocks through
// another.
func unlockOther(t *testing.T, arg string) []string {
	path, kind := splitLock(arg)
	f1, f2 := openRW(t, path), openRW(t, path)
	defer f1.Close()
	defer f2.Close()
	require.NoError(t, lockFile(f1, kind, false))
	lk := unix.Flock_t{Type: unix.F_UNLCK}
	require.NoError(t, unix.FcntlFlock(f2.Fd(), unix.F_SETLK, &lk))
	return []string{"other process, after unlocking through the second: " + tryLock(t, path, kind)}
}

// holdLock starts a process that holds a lock on path; release makes it
// exit. It returns the holder's pid.
func holdLock(t *testing.T, path, kind string) (release func(), pid int) {
	holder := childSpec{role: "lock", kind: kind, data: path}.command()
	stdin, err := holder.StdinPipe()
	require.NoError(t, err)
	stdout, err := holder.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, holder.Start())
	t.Cleanup(func() { killIfRunning(holder) })

	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)
	return func() {
		require.NoError(t, stdin.Close())
		_, _ = io.Copy(io.Discard, stdout)
		require.NoError(t, holder.Wait())
	}, holder.Process.Pid
}

// tryLock runs a process that tries once to lock path and returns the
// outcome.
func tryLock(t *testing.T, path, kind string) string {
	out, err := childSpec{role: "trylock", kind: kind, data: path}.command().Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func openRW(t *testing.T, path string) *os.File {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	return f
}

// killIfRunning kills a helper process that a failed test left running.
func killIfRunning(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}
