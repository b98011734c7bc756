//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	// childEnv makes the test binary act as a helper process (see child_test.go)
	// instead of running tests.
	childEnv = "COFFER_IT_CHILD"

	// cmdTimeout bounds every external command so a hung mount fails the test
	// instead of the whole run.
	cmdTimeout = 5 * time.Minute
)

var (
	// cofferBin is the coffer binary built once by TestMain.
	cofferBin string

	// mountsMu guards mounts, every mount point a test has mounted.
	mountsMu sync.Mutex
	mounts   []string
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild(os.Args[1:]))
	}
	os.Exit(runTests(m))
}

// runTests builds coffer, runs the tests and fails the run if any mount
// point is still mounted afterwards.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "coffer-integration-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to create build dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	bin, err := buildCoffer(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cofferBin = bin

	race := filepath.Join(dir, "race")
	if os.Getenv("COFFER_IT_RACE") != "" {
		// Detached mounts have no stderr: send their race reports to files.
		os.Setenv("GORACE", "halt_on_error=0 log_path="+race)
	}

	code := m.Run()
	if reports, _ := filepath.Glob(race + ".*"); len(reports) > 0 {
		for _, r := range reports {
			data, _ := os.ReadFile(r)
			fmt.Fprintf(os.Stderr, "data race in coffer (%s):\n%s\n", r, data)
		}
		code = 1
	}
	if leaked := leakedMounts(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "leaked mounts: %s\n", strings.Join(leaked, ", "))
		for _, mnt := range leaked {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		return 1
	}
	return code
}

// buildCoffer builds ./cmd/coffer from the module root into dir. Setting
// COFFER_IT_RACE builds it with the race detector; setting COFFER_IT_BIN
// tests that binary instead of building one.
func buildCoffer(dir string) (string, error) {
	if bin := os.Getenv("COFFER_IT_BIN"); bin != "" {
		return filepath.Abs(bin)
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("failed to find the module root: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("failed to find the module root: not inside a module")
	}

	bin := filepath.Join(dir, "coffer")
	args := []string{"build", "-o", bin}
	if os.Getenv("COFFER_IT_RACE") != "" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/coffer")...)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to build coffer: %w\n%s", err, out)
	}
	return bin, nil
}

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

// requireFUSE checks that this process can mount FUSE file systems.
func requireFUSE(t testing.TB) {
	t.Helper()
	_, err := os.Stat("/dev/fuse")
	requireOrSkip(t, err == nil, "/dev/fuse is not available: %v", err)
	requireTools(t, "fusermount3")
	requireOrSkip(t, os.Geteuid() == 0, "integration tests need root")
}

// requireTools checks that every named program is installed.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		_, err := exec.LookPath(name)
		requireOrSkip(t, err == nil, "%s is not installed: %v", name, err)
	}
}

// tryRun runs name with args in dir (the current directory if empty), with
// extra environment variables env, and returns its stdout and stderr.
func tryRun(dir string, env []string, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A background mount that keeps our pipes open would hang Wait forever.
	cmd.WaitDelay = 10 * time.Second

	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = fmt.Errorf("%s exited but a child kept its stdout or stderr open: %w", name, err)
	}
	return stdout.String(), stderr.String(), err
}

// run runs a command that must succeed and returns its stdout.
func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	return runEnv(t, dir, nil, name, args...)
}

// runEnv is run with extra environment variables.
func runEnv(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := tryRun(dir, env, name, args...)
	require.NoError(t, err, "%s %s\nstdout: %s\nstderr: %s",
		name, strings.Join(args, " "), truncate(stdout), truncate(stderr))
	return stdout
}

// sh runs a bash script with pipefail; it must succeed.
func sh(t testing.TB, dir, script string) string {
	t.Helper()
	return run(t, dir, "bash", "-euo", "pipefail", "-c", script)
}

// coffer runs the coffer binary; it must succeed.
func coffer(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "", cofferBin, args...)
}

func truncate(s string) string {
	const max = 4000
	if len(s) <= max {
		return s
	}
	return s[:max] + fmt.Sprintf("... (%d more bytes)", len(s)-max)
}

// volume is a coffer volume made for one test: a key file, a backing
// directory, a mount point and the mount's log file, all under t.TempDir().
type volume struct {
	dir     string
	key     string
	backing string
	mnt     string
	log     string
}

// newVolume creates and mounts a volume with the given mount options (-o).
// The mount is undone in cleanup, even when the test fails.
func newVolume(t *testing.T, opts ...string) *volume {
	t.Helper()
	v := createVolume(t)
	v.mount(t, opts...)
	return v
}

// createVolume creates a key file and an initialised backing directory
// without mounting it.
func createVolume(t *testing.T) *volume {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	v := &volume{
		dir:     dir,
		key:     filepath.Join(dir, "master.key"),
		backing: filepath.Join(dir, "backing"),
		mnt:     filepath.Join(dir, "mnt"),
		log:     filepath.Join(dir, "mount.log"),
	}
	require.NoError(t, os.Mkdir(v.backing, 0o700))
	require.NoError(t, os.Mkdir(v.mnt, 0o755))

	coffer(t, "keys", "create", v.keyURI())
	coffer(t, "init", v.backing, "--master", v.keyURI())
	t.Cleanup(func() { v.cleanup(t) })
	return v
}

func (v *volume) keyURI() string { return "file://" + v.key }

// path returns the plaintext path of name inside the mount.
func (v *volume) path(name ...string) string {
	return filepath.Join(append([]string{v.mnt}, name...)...)
}

// backingPath returns the backing file of name, as "coffer path encrypt"
// maps it (names are encrypted).
func (v *volume) backingPath(t testing.TB, name ...string) string {
	t.Helper()
	out := coffer(t, "path", "encrypt", v.backing, "/"+filepath.Join(name...), "--master", v.keyURI())
	return strings.TrimSuffix(out, "\n")
}

// mount mounts the volume in the background; coffer mount returns only when
// the file system is ready.
func (v *volume) mount(t testing.TB, opts ...string) {
	t.Helper()
	args := []string{"mount", v.backing, v.mnt, "--log-file", v.log}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	registerMount(v.mnt)
	coffer(t, args...)
	require.True(t, isMounted(v.mnt), "coffer mount returned but %s is not mounted", v.mnt)
}

// unmount unmounts the volume with coffer unmount.
func (v *volume) unmount(t testing.TB) {
	t.Helper()
	coffer(t, "unmount", v.mnt)
	require.False(t, isMounted(v.mnt), "coffer unmount returned but %s is still mounted", v.mnt)
}

// remount unmounts and mounts again, so that every later read goes through
// a fresh daemon and an empty page cache.
func (v *volume) remount(t testing.TB, opts ...string) {
	t.Helper()
	v.unmount(t)
	v.mount(t, opts...)
}

// cleanup unmounts the volume if it is still mounted, falling back to a lazy
// unmount, and shows the mount's log when the test failed.
func (v *volume) cleanup(t *testing.T) {
	if isMounted(v.mnt) {
		_, stderr, err := tryRun("", nil, cofferBin, "unmount", v.mnt)
		if err != nil || isMounted(v.mnt) {
			t.Errorf("coffer unmount %s failed in cleanup: %v: %s", v.mnt, err, stderr)
			forceUnmount(t, v.mnt)
		}
	}
	if t.Failed() {
		v.dumpLog(t)
	}
}

// dumpLog logs the last lines of the mount's log file.
func (v *volume) dumpLog(t testing.TB) {
	data, err := os.ReadFile(v.log)
	if err != nil {
		t.Logf("no mount log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("last lines of %s:\n%s", v.log, strings.Join(lines, "\n"))
}

// forceUnmount detaches mnt with fusermount3 -u -z, then umount2(MNT_DETACH).
func forceUnmount(t testing.TB, mnt string) {
	if _, stderr, err := tryRun("", nil, "fusermount3", "-u", "-z", mnt); err != nil {
		t.Logf("fusermount3 -u -z %s: %v: %s", mnt, err, stderr)
	}
	if isMounted(mnt) {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("failed to detach %s: %v", mnt, err)
		}
	}
}

func registerMount(mnt string) {
	mountsMu.Lock()
	defer mountsMu.Unlock()
	mounts = append(mounts, mnt)
}

// leakedMounts returns the registered mount points that are still mounted.
func leakedMounts() []string {
	mountsMu.Lock()
	defer mountsMu.Unlock()
	var leaked []string
	for _, mnt := range mounts {
		if isMounted(mnt) {
			leaked = append(leaked, mnt)
		}
	}
	return leaked
}

// mountEntry returns the file system type and mount options of the FUSE
// mount at mnt, from /proc/self/mountinfo.
func mountEntry(mnt string) (fstype, opts string, ok bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", false
	}
	defer f.Close()

	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superopts
		pre, post, found := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !found || len(fields) < 6 || len(tail) < 1 || unescapeMount(fields[4]) != mnt {
			continue
		}
		if strings.HasPrefix(tail[0], "fuse") {
			fstype, opts, ok = tail[0], fields[5], true
		}
	}
	return fstype, opts, ok
}

func isMounted(mnt string) bool {
	_, _, ok := mountEntry(mnt)
	return ok
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
