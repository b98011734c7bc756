//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unitTemplate is the shipped systemd unit, relative to this package.
const unitTemplate = "../dist/systemd/coffer@.service.in"

// namespaceDirectives give a service its own mount namespace, in which a
// FUSE mount is invisible to the rest of the system: the unit must not use
// them (TestMountNamespaceHidesMount shows why).
var namespaceDirectives = []string{
	"PrivateTmp", "ProtectSystem", "ProtectHome", "ReadWritePaths", "ReadOnlyPaths",
	"InaccessiblePaths", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
	"ProtectKernelLogs", "ProtectControlGroups", "PrivateMounts", "TemporaryFileSystem",
	"BindPaths", "BindReadOnlyPaths", "ProtectProc", "ProcSubset", "MountFlags", "RootDirectory",
	"PrivateUsers",
}

// writeUnit writes the unit with @BINDIR@ replaced by the directory of a
// "coffer" link to the tested binary, and an instance link to it, into a
// fresh directory; it returns the template's path.
func writeUnit(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	require.NoError(t, os.Symlink(cofferBin, filepath.Join(bin, "coffer")))
	data, err := os.ReadFile(unitTemplate)
	require.NoError(t, err)
	dir := t.TempDir()
	unit := filepath.Join(dir, "coffer@.service")
	text := strings.ReplaceAll(string(data), "@BINDIR@", bin)
	require.NoError(t, os.WriteFile(unit, []byte(text), 0o644))
	require.NoError(t, os.Symlink("coffer@.service", filepath.Join(dir, "coffer@test.service")))
	for _, u := range []string{"coffer-rotate@.service", "coffer-rotate@.timer"} {
		data, err := os.ReadFile(filepath.Join("../contrib/systemd", u))
		require.NoError(t, err)
		text := strings.ReplaceAll(string(data), "/usr/local/bin/coffer", filepath.Join(bin, "coffer"))
		require.NoError(t, os.WriteFile(filepath.Join(dir, u), []byte(text), 0o644))
	}
	return unit
}

// TestUnitVerify runs systemd-analyze verify on the unit and on an instance
// of it: it must pass without a single warning (unknown keys, a missing
// executable and bad values are warnings only).
func TestUnitVerify(t *testing.T) {
	requireTools(t, "systemd-analyze")
	unit := writeUnit(t)
	dir := filepath.Dir(unit)
	for _, u := range []string{unit, filepath.Join(dir, "coffer@test.service"),
		filepath.Join(dir, "coffer-rotate@.service"), filepath.Join(dir, "coffer-rotate@.timer")} {
		stdout, stderr, err := tryRun("", []string{"SYSTEMD_LOG_LEVEL=notice"}, "systemd-analyze",
			"verify", "--man=no", u)
		require.NoError(t, err, "stdout: %s\nstderr: %s", stdout, stderr)
		assert.Empty(t, strings.TrimSpace(stderr), "systemd-analyze verify %s", u)
	}

	settings := unitSettings(t, unit)
	for _, d := range namespaceDirectives {
		assert.NotContains(t, settings, d, "%s would hide the mount in the service's namespace", d)
	}
	assert.Equal(t, []string{"notify"}, settings["Type"])
}

// unitSettings parses a unit file into its keys and values, in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	m := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "unit line %q", line)
		m[k] = append(m[k], v)
	}
	require.NoError(t, sc.Err())
	return m
}

// expandUnit expands ${VAR} as systemd does for a variable from the
// EnvironmentFile: one argument, even when empty.
func expandUnit(cmdline string, env map[string]string) []string {
	var args []string
	for _, w := range strings.Fields(cmdline) {
		args = append(args, regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(w, func(s string) string {
			return env[s[2:len(s)-1]]
		}))
	}
	return args
}

// TestUnitCommandsUnderItsHardening runs the unit's ExecStart as systemd
// would, with the variables of a volume.conf, its capability bounding set
// and no_new_privs (applied with setpriv), and $NOTIFY_SOCKET: READY=1 must
// come, the allow_other mount must work for root and another user
// (creating, chown, chmod, writing another user's directory), and ExecStop
// must unmount so that the service exits 0. Seccomp and device-cgroup
// settings (LockPersonality, RestrictRealtime, DevicePolicy) need systemd
// as PID 1 and are only verified by TestUnitVerify.
func TestUnitCommandsUnderItsHardening(t *testing.T) {
	requireTools(t, "setpriv")
	v := createVolume(t)
	for _, d := range []string{filepath.Dir(v.dir), v.dir, v.backing, v.mnt} {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	s := unitSettings(t, writeUnit(t))
	env := map[string]string{"BACKING": v.backing, "MOUNTPOINT": v.mnt,
		"OPTIONS": "master=" + v.keyURI() + ",allow_other,log-file=" + v.log}
	start := expandUnit(s["ExecStart"][0], env)
	stop := expandUnit(strings.TrimPrefix(s["ExecStop"][0], "-"), env)

	caps := "-all"
	for _, c := range strings.Fields(s["CapabilityBoundingSet"][0]) {
		caps += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	require.Equal(t, []string{"yes"}, s["NoNewPrivileges"])
	sock := filepath.Join(v.dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()

	registerMount(v.mnt)
	cmd := exec.Command("setpriv", append([]string{"--no-new-privs", "--bounding-set=" + caps,
		"--inh-caps=-all"}, start...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
	})

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(cmdTimeout)))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	require.NoError(t, err, "no READY=1; stderr: %s", &stderr)
	assert.Contains(t, string(buf[:n]), "READY=1")
	assert.Contains(t, string(buf[:n]), "MAINPID="+strconv.Itoa(cmd.Process.Pid))

	sh(t, "", fmt.Sprintf(`
m=%[1]s
mkdir -m 777 $m/drop
setpriv --reuid=65534 --regid=65534 --clear-groups sh -ec "echo n > $m/drop/mine; chmod 600 $m/drop/mine; mkdir -m 700 $m/drop/nd"
test "$(stat -c %%u $m/drop/mine)" = 65534
test "$(cat $m/drop/mine)" = n
echo r > $m/drop/nd/rootfile
chown 65534:65534 $m/drop/nd/rootfile
chmod 644 $m/drop/mine
touch -d 2001-01-01 $m/drop/mine
`, shellQuote(v.mnt)))

	run(t, "", stop[0], stop[1:]...)
	require.NoError(t, cmd.Wait(), "stderr: %s", &stderr)
	assert.False(t, isMounted(v.mnt))
}

// TestMountNamespaceHidesMount shows why the unit uses none of the
// namespaceDirectives: systemd runs such a service in its own mount
// namespace whose mounts do not propagate back (as unshare --propagation
// slave does here), and a coffer mount made there is not seen outside.
func TestMountNamespaceHidesMount(t *testing.T) {
	requireTools(t, "unshare")
	v := createVolume(t)
	sock := filepath.Join(v.dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()

	runEnv(t, "", []string{"NOTIFY_SOCKET=" + sock}, "unshare", "--mount", "--propagation", "slave",
		cofferBin, "mount", v.backing, v.mnt, "--log-file", v.log)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(cmdTimeout)))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	pid, err := strconv.Atoi(stateValue(string(buf[:n]), "MAINPID"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGTERM) })

	assert.False(t, isMounted(v.mnt), "a mount made in a private namespace is visible outside")
	inside, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	require.NoError(t, err)
	assert.Contains(t, string(inside), " "+v.mnt+" ", "the mount exists in the service's namespace")

	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	for stateValue(string(buf[:n]), "STATUS") != "unmounted" {
		n, err = conn.Read(buf)
		require.NoError(t, err)
	}
}

// stateValue returns the value of key in an sd_notify message.
func stateValue(msg, key string) string {
	for _, line := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	return ""
}
