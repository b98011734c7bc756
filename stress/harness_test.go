//go:build linux

package stress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	// cmdTimeout bounds every command the tests run, so that a hung mount
	// fails the test instead of the whole run.
	cmdTimeout = 5 * time.Minute

	// readyTimeout bounds the wait for a mount to appear and for a mount
	// process to exit; the machines are small and busy.
	readyTimeout = 2 * time.Minute

	// pollInterval is how often a wait for a mount table change looks.
	pollInterval = 20 * time.Millisecond
)

// requireOrSkip skips the test when ok is false, or fails it when CI is set:
// CI must never pass by skipping.
func requireOrSkip(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// requireRoot checks that this process can mount FUSE and tmpfs file
// systems.
func requireRoot(t testing.TB) {
	t.Helper()
	_, err := os.Stat("/dev/fuse")
	requireOrSkip(t, err == nil, "/dev/fuse is not available: %v", err)
	_, err = exec.LookPath("fusermount3")
	requireOrSkip(t, err == nil, "fusermount3 is not installed: %v", err)
	requireOrSkip(t, os.Geteuid() == 0, "the stress tests mount file systems and need root")
}

// The coffer binary, built once on first use. TestMain must stay cheap:
// go test -list and fuzz workers run it too.
var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// cofferBin returns the coffer binary: COFFER_STRESS_BIN if set, else one
// built from this module with go build.
func cofferBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("COFFER_STRESS_BIN"); bin != "" {
			buildBin, buildErr = filepath.Abs(bin)
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "coffer-stress-build-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "coffer")
		cmd := exec.Command("go", "build", "-o", buildBin, "github.com/cofferfs/coffer/cmd/coffer")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("failed to build coffer (run the tests from the module, "+
				"or set COFFER_STRESS_BIN): %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return buildBin
}

func removeBuildDir() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// run runs a command that must succeed within cmdTimeout and returns its
// standard output.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := tryRun(name, args...)
	require.NoError(t, err, "%s %s\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), stdout, stderr)
	return stdout
}

func tryRun(name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// Everything a test mounts or starts is registered here, so that TestMain
// can fail the run if anything outlives the tests.
var (
	registryMu sync.Mutex
	mountPts   []string
	procs      []*exec.Cmd
)

func registerMount(dir string) {
	registryMu.Lock()
	defer registryMu.Unlock()
	mountPts = append(mountPts, dir)
}

func registerProc(cmd *exec.Cmd) {
	registryMu.Lock()
	defer registryMu.Unlock()
	procs = append(procs, cmd)
}

// leaked lists registered mount points still mounted and registered
// processes still running.
func leaked() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	var out []string
	for _, dir := range mountPts {
		if fstype, ok := mountType(dir); ok {
			out = append(out, fmt.Sprintf("mount %s (%s)", dir, fstype))
		}
	}
	for _, cmd := range procs {
		if cmd.Process != nil && cmd.Process.Signal(syscall.Signal(0)) == nil {
			out = append(out, fmt.Sprintf("process %d: %s", cmd.Process.Pid, strings.Join(cmd.Args, " ")))
		}
	}
	return out
}

// cleanupLeaks kills leaked processes and detaches leaked mounts.
func cleanupLeaks() {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, cmd := range procs {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	}
	for _, dir := range mountPts {
		if _, ok := mountType(dir); ok {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	}
}

// mountType returns the file system type mounted on dir, from
// /proc/self/mountinfo; the last entry wins, as mounts stack.
func mountType(dir string) (string, bool) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	var fstype string
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		// id parent major:minor root mountpoint options ... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 1 || unescapeMount(fields[4]) != dir {
			continue
		}
		fstype, found = tail[0], true
	}
	return fstype, found
}

func isFUSEMounted(dir string) bool {
	fstype, ok := mountType(dir)
	return ok && strings.HasPrefix(fstype, "fuse")
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// waitFor polls cond until it is true, failing after readyTimeout or as
// soon as stop is closed.
func waitFor(t testing.TB, what string, stop <-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-stop:
			if cond() {
				return
			}
			t.Fatalf("gave up waiting for %s: stopped", what)
		case <-deadline.C:
			t.Fatalf("gave up waiting for %s after %v", what, readyTimeout)
		case <-tick.C:
		}
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it in cleanup, registered before any mount made on top of it so that
// cleanups run in the right order.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("size=%d,mode=0700", size)))
	registerMount(dir)
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("failed to unmount tmpfs %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// volume is a coffer volume made for one test: a key file, a backing
// directory and a mount point, served by a coffer mount --foreground child.
type volume struct {
	key     string
	backing string
	mnt     string
	proc    *mountProc
}

// mountProc is a running coffer mount --foreground.
type mountProc struct {
	cmd  *exec.Cmd
	log  *syncBuffer   // its standard error: the mount's JSON log
	done chan struct{} // closed once it exited and its output was read
	err  error         // what Wait returned, once done is closed
}

// newVolume creates a volume whose backing directory is created in parent
// (a new temporary directory if empty) and mounts it.
func newVolume(t *testing.T, parent string) *volume {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if parent == "" {
		parent = dir
	}
	v := &volume{
		key:     filepath.Join(dir, "master.key"),
		backing: filepath.Join(parent, "backing"),
		mnt:     filepath.Join(dir, "mnt"),
	}
	require.NoError(t, os.Mkdir(v.backing, 0o700))
	require.NoError(t, os.Mkdir(v.mnt, 0o755))
	bin := cofferBin(t)
	run(t, bin, "keys", "create", "file://"+v.key)
	run(t, bin, "init", v.backing, "--master", "file://"+v.key)
	t.Cleanup(func() { v.cleanup(t) })
	v.mount(t)
	return v
}

// path returns the plaintext path of name in the mount.
func (v *volume) path(name string) string { return filepath.Join(v.mnt, name) }

// backingPath returns the backing file of name.
func (v *volume) backingPath(name string) string { return filepath.Join(v.backing, name) }

// mount starts coffer mount --foreground and waits until the mount is in
// the mount table.
func (v *volume) mount(t testing.TB) {
	t.Helper()
	registerMount(v.mnt)
	cmd := exec.Command(cofferBin(t), "mount", "--foreground", "--log-format", "json",
		"--log-level", "info", v.backing, v.mnt)
	p := &mountProc{cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	registerProc(cmd)
	v.proc = p
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.log.WriteLine(sc.Text())
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	waitFor(t, "the mount on "+v.mnt, p.done, func() bool { return isFUSEMounted(v.mnt) })
}

// unmount unmounts with coffer unmount and waits for the mount process to
// exit.
func (v *volume) unmount(t testing.TB) {
	t.Helper()
	run(t, cofferBin(t), "unmount", v.mnt)
	v.waitExit(t)
	require.False(t, isFUSEMounted(v.mnt), "%s is still mounted after coffer unmount", v.mnt)
}

// kill kills the mount process with SIGKILL and waits for it. The dead
// mount stays, failing every access with ENOTCONN, until detach: processes
// still working in it must stop first, or they would go on in the
// directory below.
func (v *volume) kill(t testing.TB) {
	t.Helper()
	require.NoError(t, v.proc.cmd.Process.Kill())
	v.waitExit(t)
}

// waitExit waits for the mount process to exit.
func (v *volume) waitExit(t testing.TB) {
	t.Helper()
	select {
	case <-v.proc.done:
	case <-time.After(readyTimeout):
		_ = v.proc.cmd.Process.Kill()
		<-v.proc.done
		t.Fatalf("the mount process did not exit within %v", readyTimeout)
	}
}

// alive reports whether the mount process still runs.
func (v *volume) alive() bool {
	select {
	case <-v.proc.done:
		return false
	default:
		return true
	}
}

// detach removes a dead FUSE mount with fusermount3 -u -z, or umount2 with
// MNT_DETACH if that fails.
func detach(t testing.TB, mnt string) {
	t.Helper()
	if !isFUSEMounted(mnt) {
		return
	}
	if _, stderr, err := tryRun("fusermount3", "-u", "-z", mnt); err != nil {
		t.Logf("fusermount3 -u -z %s: %v: %s", mnt, err, stderr)
	}
	if isFUSEMounted(mnt) {
		require.NoError(t, unix.Unmount(mnt, unix.MNT_DETACH), "detach %s", mnt)
	}
	require.False(t, isFUSEMounted(mnt), "%s is still mounted", mnt)
}

// cleanup unmounts the volume if it is still mounted and stops its
// process, and shows the mount's log when the test failed.
func (v *volume) cleanup(t *testing.T) {
	if v.proc == nil {
		return
	}
	if isFUSEMounted(v.mnt) && v.alive() {
		if _, stderr, err := tryRun(cofferBin(t), "unmount", v.mnt); err != nil {
			t.Errorf("coffer unmount %s failed in cleanup: %v: %s", v.mnt, err, stderr)
		}
	}
	if v.alive() {
		select {
		case <-v.proc.done:
		case <-time.After(readyTimeout):
			t.Errorf("the mount process of %s did not exit; killing it", v.mnt)
			_ = v.proc.cmd.Process.Kill()
			<-v.proc.done
		}
	}
	if isFUSEMounted(v.mnt) {
		detach(t, v.mnt)
	}
	if t.Failed() {
		t.Logf("last lines of the mount's log:\n%s", v.proc.log.Tail(40))
	}
}

// warnings returns the mount log's records at level warn or above that
// contain substr.
func (v *volume) warnings(substr string) []string {
	var out []string
	for _, line := range v.proc.log.Lines() {
		if strings.Contains(line, substr) &&
			(strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`)) {
			out = append(out, line)
		}
	}
	return out
}

// syncBuffer collects lines written by one goroutine and read by others.
type syncBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *syncBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, s)
}

func (b *syncBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

func (b *syncBuffer) Tail(n int) string {
	lines := b.Lines()
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// errorsIs is errors.Is for errno checks in assertions.
func errorsIs(err error, target syscall.Errno) bool { return errors.Is(err, target) }
