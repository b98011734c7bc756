//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
	"github.com/cofferfs/coffer/keys/pkcs11"
)

// editFile replaces the match of pattern by repl in file p.
func editFile(t *testing.T, p, pattern, repl string) {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	re := regexp.MustCompile(pattern)
	require.Regexp(t, re, string(b))
	require.NoError(t, os.WriteFile(p, re.ReplaceAll(b, []byte(repl)), 0o600))
}

// TestNamesModeEditRefused is the breaker's reproduction: editing
// volume.json's names mode of an encrypted-names volume to plaintext (or
// deleting it) must not mount with names in the clear; every command that
// unlocks refuses, and so does restoring a backup edited the same way.
func TestNamesModeEditRefused(t *testing.T) {
	t.Parallel()
	for _, edit := range []struct{ name, old, new string }{
		{"plaintext", `"names": "encrypted"`, `"names": "plaintext"`},
		{"deleted", `,\s*"names": "encrypted"`, ``},
	} {
		t.Run(edit.name, func(t *testing.T) {
			f := newMountFixture(t)
			f.init(t)
			editFile(t, filepath.Join(f.backing, ".coffer", "volume.json"), edit.old, edit.new)
			before := snapshot(t, f.backing)

			r := f.mount(t, "--master", f.keyURI())
			assertFailure(t, r, exitFailure, "volume.json says names are plaintext but the "+
				"sealed ring says encrypted: the config was altered; restore it from a backup")
			assert.False(t, isMounted(t, f.mnt))
			other := filepath.Join(f.dir, "other.key")
			requireOK(t, cli(t, "keys", "create", "file://"+other))
			r = cli(t, "master", "add", f.backing, "file://"+other)
			assertFailure(t, r, exitFailure, "the config was altered")
			assert.Equal(t, before, snapshot(t, f.backing))
		})
	}
}

// TestRestoreNamesModeEdited checks that restore refuses a backup whose
// names mode differs from the volume's.
func TestRestoreNamesModeEdited(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	backup := filepath.Join(f.dir, "backup.json")
	requireOK(t, cli(t, "backup", f.backing, backup))
	editFile(t, backup, `,\s*"names": "encrypted"`, "")
	before := snapshot(t, f.backing)
	r := cli(t, "restore", f.backing, backup)
	assertFailure(t, r, exitFailure, "the backup says names are plaintext, the volume's "+
		"config encrypted")
	assert.Equal(t, before, snapshot(t, f.backing))
}

// TestSecretFileFIFORefused is the breaker's reproduction of a mount that
// hung forever, deaf to SIGTERM, on a key file that is a named pipe: key,
// PIN and recovery key files are opened without blocking and refused unless
// regular. The process runs under a deadline so that a regression fails
// instead of hanging the suite.
func TestSecretFileFIFORefused(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	require.NoError(t, os.Remove(f.key))
	require.NoError(t, mkfifo(f.key))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "mount", f.backing, f.mnt, "--log-file", f.log,
		"--master", f.keyURI())
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "the mount hung")
	require.Error(t, err)
	assert.Contains(t, stderr.String(), "key file "+f.key+" is a named pipe (FIFO), not a "+
		"regular file")
	assert.False(t, isMounted(t, f.mnt))

	fifo := f.key
	_, err = pkcs11.ReadPINFile(fifo)
	assert.ErrorContains(t, err, "PIN file "+fifo+" is a named pipe (FIFO), not a regular file")
}

// TestKMSEndpointCheckedAtParse checks that a malformed --kms-endpoint is a
// usage error before anything is opened.
func TestKMSEndpointCheckedAtParse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	for _, bad := range []string{"htp://localhost:4566", "http://", "localhost:4566"} {
		r := cli(t, "mount", f.backing, filepath.Join(f.dir, "m"), "--kms-endpoint", bad)
		assertFailure(t, r, exitUsage, "--kms-endpoint")
		r = cli(t, "init", filepath.Join(f.dir, "other"), "--master", f.keyURI(),
			"--kms-endpoint", bad)
		assertFailure(t, r, exitUsage, "--kms-endpoint")
	}
}

// TestUnlockOrSignal checks that a signal ends an unlock stuck where no
// context reaches (here, a function that never returns).
func TestUnlockOrSignal(t *testing.T) {
	t.Parallel()
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGTERM
	block := make(chan struct{})
	defer close(block)
	_, _, err := unlockOrSignal(context.Background(), sigs,
		func(context.Context) (*keys.Ring, keys.MasterEntry, error) {
			<-block
			return nil, keys.MasterEntry{}, nil
		})
	assert.ErrorContains(t, err, "interrupted by terminated while unlocking the volume")
}

// auditLogOf returns the default audit log path of the volume in backing.
func auditLogOf(t *testing.T, backing string) string {
	t.Helper()
	cfg, err := keys.ReadConfig(backing)
	require.NoError(t, err)
	p, err := audit.DefaultPath(cfg.VolumeID)
	require.NoError(t, err)
	return p
}

// TestAuditConfigRefusesForeignFiles is the breaker's reproduction: audit
// config --log naming another volume's log, or a file that is no audit log
// at all, changed the settings half-way (audit.json pointed at the file,
// the head anchor was gone). Now it is refused before anything changes, and
// the file is not touched.
func TestAuditConfigRefusesForeignFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	other := newFixture(t)
	other.init(t)
	plain := filepath.Join(f.dir, "hosts")
	require.NoError(t, os.WriteFile(plain, []byte("127.0.0.1 localhost\n"), 0o644))

	// watch is what must not change: the default logs of all tests share one
	// folder, so only the other volume's log is watched there.
	otherLog := auditLogOf(t, other.backing)
	for _, tt := range []struct{ name, file, watch, want string }{
		{"another volume's log", otherLog, otherLog, "is the audit log of volume"},
		{"not a log", plain, f.dir, "holds other data (its first line is not an audit record)"},
		{"a folder", f.dir, filepath.Dir(f.dir), "is a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, filepath.Join(f.backing, ".coffer"))
			content := snapshot(t, tt.watch)
			r := cli(t, "audit", "config", f.backing, "--log", tt.file)
			assertFailure(t, r, exitFailure, tt.want)
			assert.Equal(t, before, snapshot(t, filepath.Join(f.backing, ".coffer")))
			assert.Equal(t, content, snapshot(t, tt.watch))
		})
	}

	// The volume's own settings still work both ways.
	moved := filepath.Join(f.dir, "moved.jsonl")
	requireOK(t, cli(t, "audit", "config", f.backing, "--log", moved))
	requireOK(t, cli(t, "audit", "config", f.backing, "--default-log"))
	requireOK(t, cli(t, "audit", "config", f.backing, "--log", moved))
}

// TestKeyCommandsAvoidForeignAuditLog checks that commands that use a key
// neither append to another volume's log named in an edited audit.json nor
// go without a record: they warn and write to their own default log.
func TestKeyCommandsAvoidForeignAuditLog(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	other := newFixture(t)
	other.init(t)
	foreign := auditLogOf(t, other.backing)
	settings := filepath.Join(f.backing, ".coffer", "audit.json")
	require.NoError(t, os.WriteFile(settings, []byte(`{"version":1,"log":"`+foreign+`"}`), 0o600))
	foreignBefore := snapshot(t, foreign)
	own := auditLogOf(t, f.backing)

	r := f.mount(t, "--master", f.keyURI())
	requireOK(t, r)
	assert.Contains(t, r.stderr, "coffer: warning: not using the audit log "+foreign)
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	r = cli(t, "master", "add", f.backing, f.newKey(t, "second.key"))
	requireOK(t, r)
	assert.Contains(t, r.stderr, "its first record is of volume")
	assert.Equal(t, foreignBefore, snapshot(t, foreign))
	records := auditLines(t, own)
	assert.Len(t, ofEvent(records, audit.EventMount), 1)
	assert.Len(t, ofEvent(records, audit.EventMasterAdded), 1)

	// Moving away from the foreign log to the default one is allowed.
	r = cli(t, "audit", "config", f.backing, "--default-log")
	requireOK(t, r)
	assert.Equal(t, foreignBefore, snapshot(t, foreign))
	r = cli(t, "audit", "config", f.backing)
	requireOK(t, r)
	assert.Empty(t, r.stderr)
}

// TestInitAuditLogNotALog checks the message for an --audit-log that holds
// something else than an audit log.
func TestInitAuditLogNotALog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	plain := filepath.Join(f.dir, "notes.txt")
	require.NoError(t, os.WriteFile(plain, []byte("hello\n"), 0o600))
	r := cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", plain)
	assertFailure(t, r, exitUsage, "is not empty and is not an audit log")
	other := newFixture(t)
	other.init(t)
	r = cli(t, "init", f.backing, "--master", f.keyURI(), "--audit-log", auditLogOf(t, other.backing))
	assertFailure(t, r, exitUsage, "already holds the audit log of volume")
}

// TestMasterAddKeyInsideBacking is the breaker's reproduction: master add
// with a relative backing directory enrolled a key file inside it (also
// through a symlink from outside), which every mount then refuses. It must
// be refused at enrollment, as init does.
func TestMasterAddKeyInsideBacking(t *testing.T) {
	f := newFixture(t)
	f.init(t)
	inner := filepath.Join(f.backing, "inner.key")
	requireOK(t, cli(t, "keys", "create", "file://"+inner))
	link := filepath.Join(f.dir, "link.key")
	require.NoError(t, os.Symlink(inner, link))
	t.Chdir(f.dir)
	before := snapshot(t, f.backing)
	for _, uri := range []string{"file://" + inner, "file://" + link} {
		for _, backing := range []string{"backing", f.backing} {
			r := cli(t, "master", "add", backing, uri)
			assertFailure(t, r, r.code, "key file is inside the backing directory")
			assert.NotEqual(t, exitOK, r.code)
			assert.Equal(t, before, snapshot(t, f.backing))
		}
	}
}

// TestMinorUsageErrors covers the breaker's minor findings: an unknown
// completion shell, and Argon2 flags that are not numbers, are one-line
// usage errors (exit 2) without Go internals.
func TestMinorUsageErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := cli(t, "completion", "tcsh")
	assertFailure(t, r, exitUsage, `unknown command "tcsh" for "coffer completion"`)
	requireOK(t, cli(t, "completion", "bash"))
	for _, tt := range []struct{ flag, value, want string }{
		{"--argon2-time", "x", `invalid argument "x" for "--argon2-time" flag: not a whole number`},
		{"--argon2-threads", "999", `invalid argument "999" for "--argon2-threads" flag: out of range`},
	} {
		r := cli(t, "init", f.backing, "--master", "passphrase:", tt.flag, tt.value)
		assertFailure(t, r, exitUsage, tt.want)
		assert.NotContains(t, r.stderr, "strconv")
	}
}

// TestStatusStaleMount checks that status tells a mount whose process died
// (ENOTCONN) from a live one, and says how to clear it.
func TestStatusStaleMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	pid := mountProcess(t, f.mnt)
	fd, err := unix.PidfdOpen(pid, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Kill(pid, unix.SIGKILL))
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, -1) // readable once the process has exited
		if err == unix.EINTR {
			continue
		}
		require.NoError(t, err)
		require.Equal(t, 1, n)
		break
	}

	r := cli(t, "status", f.backing)
	requireOK(t, r)
	assert.Contains(t, r.stdout, "mounted on:       no")
	assert.Regexp(t, `stale mount:\s+`+regexp.QuoteMeta(f.mnt)+` \(the mount process died\): `+
		`fusermount3 -u `, r.stdout)
}

// TestStatusStoppedMount checks that status returns, and says so, when the
// process serving a mount is stopped: status must not touch the mount,
// where any access waits until the process resumes.
func TestStatusStoppedMount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	pid := mountProcess(t, f.mnt)
	require.NoError(t, unix.Kill(pid, unix.SIGSTOP))
	t.Cleanup(func() { _ = unix.Kill(pid, unix.SIGCONT) }) // before the unmount
	waitState(t, pid, procStopped)

	// A guard, not a synchronisation: without the fix status never
	// returns, and the test must fail rather than hang.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "status", f.backing)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	out, err := cmd.Output()
	require.NoError(t, ctx.Err(), "status did not return while the mount process was stopped")
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `mounted on:\s+`+regexp.QuoteMeta(f.mnt)+`\n`, string(out))
	assert.Regexp(t, `not answering:\s+`+regexp.QuoteMeta(f.mnt)+
		fmt.Sprintf(` \(the mount process %d is stopped\): kill -CONT %d`, pid, pid), string(out))

	cmd = exec.CommandContext(ctx, os.Args[0], "status", f.backing, "--json")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	out, err = cmd.Output()
	require.NoError(t, err, "%s", out)
	var st volumeStatus
	require.NoError(t, json.Unmarshal(out, &st))
	assert.Equal(t, []string{f.mnt}, st.NotAnswering)

	// Resumed, it answers again and status says nothing more.
	require.NoError(t, unix.Kill(pid, unix.SIGCONT))
	waitState(t, pid, procRunning)
	r := cli(t, "status", f.backing)
	requireOK(t, r)
	assert.NotContains(t, r.stdout, "not answering")
}

// waitState waits until process pid is in state want: the kernel sets the
// state when the signal is delivered, not when kill returns. It polls
// /proc, as nothing notifies a stop to a process that is not the parent.
func waitState(t *testing.T, pid int, want procState) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a guard against a hang only
	for processState(pid) != want {
		require.True(t, time.Now().Before(deadline), "process %d never reached state %d", pid, want)
		runtime.Gosched()
	}
}

// TestProcessState checks the parse of /proc/PID/stat, whose command name
// may hold spaces and parentheses.
func TestProcessState(t *testing.T) {
	dir := t.TempDir()
	old := procRoot
	procRoot = dir
	t.Cleanup(func() { procRoot = old })
	for pid, tt := range map[int]struct {
		stat string
		want procState
	}{
		1: {"1 (coffer) S 1 2 3", procRunning},
		2: {"2 (a) T) T 1 2 3", procStopped},
		3: {"3 (x y) t 1", procStopped},
		4: {"4 (z) Z 1", procGone},
	} {
		d := filepath.Join(dir, strconv.Itoa(pid))
		require.NoError(t, os.Mkdir(d, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(d, "stat"), []byte(tt.stat), 0o600))
		assert.Equal(t, tt.want, processState(pid), tt.stat)
	}
	assert.Equal(t, procGone, processState(5))
}

// TestCopiedBackingAuditWarning checks the warning when two copies of one
// backing directory (cp -a) share the default audit log: one plain line
// that says what to do, not a JSON log line.
func TestCopiedBackingAuditWarning(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	cp := filepath.Join(f.dir, "copy")
	out, err := exec.Command("cp", "-a", f.backing, cp).CombinedOutput()
	require.NoError(t, err, "%s", out)

	requireOK(t, cli(t, "master", "add", cp, f.newKey(t, "a.key")))
	r := cli(t, "master", "add", f.backing, f.newKey(t, "b.key"))
	requireOK(t, r)
	assert.Contains(t, r.stderr, "coffer: warning: audit log ")
	assert.Contains(t, r.stderr, "give it its own log: coffer audit config "+f.backing+" --log FILE")
	assert.Equal(t, 1, strings.Count(r.stderr, "coffer: warning:"), "stderr: %s", r.stderr)
	assert.NotContains(t, r.stderr, "{")
}

// TestMountLogFileNotALog checks that mount --log-file refuses an existing
// file that is not a JSON-lines log, and leaves it unchanged.
func TestMountLogFileNotALog(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	require.NoError(t, os.WriteFile(f.log, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	r := f.mount(t, "--master", f.keyURI())
	assertFailure(t, r, exitUsage, "holds something else than a coffer log")
	b, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.Equal(t, "root:x:0:0::/root:/bin/sh\n", string(b))
	assert.False(t, isMounted(t, f.mnt))
}

// A log whose first line is a warning the command printed before its JSON
// events is a coffer log: a later mount appends to it.
func TestMountLogFileStartsWithWarning(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	const warning = "coffer: warning: audit log X ends at record 5, but this volume's head anchor says 2\n"
	require.NoError(t, os.WriteFile(f.log, []byte(warning), 0o600))
	requireOK(t, f.mount(t, "--master", f.keyURI()))
	requireOK(t, cli(t, "unmount", f.mnt))
	b, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), warning), "log: %s", b)
	assert.Greater(t, len(b), len(warning))
}
