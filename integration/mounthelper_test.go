//go:build linux

package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// inMountNamespace runs a bash script in a private mount namespace in which
// a temporary directory holding a "coffer" link to the tested binary is
// bound over /usr/local/sbin. mount(8) runs mount.fuse3 with no PATH, and
// mount.fuse3 runs "coffer" through /bin/sh, whose default PATH starts with
// /usr/local/sbin: this is how an installed coffer is found, without
// installing anything on the host. Whatever the script mounts is detached
// when it exits, so a failing script leaves no mount and no process behind.
func inMountNamespace(t *testing.T, v *volume, script string) string {
	t.Helper()
	requireTools(t, "unshare", "mount", "umount", "mount.fuse3")
	bin := filepath.Join(t.TempDir(), "sbin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	require.NoError(t, os.Symlink(cofferBin, filepath.Join(bin, "coffer")))

	// The mount process reports on this socket; after the script, the test
	// waits for its last report, sent once it has finished with the volume.
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()

	full := fmt.Sprintf("trap 'umount -l %s 2>/dev/null || true' EXIT\n"+
		"mount --bind %s /usr/local/sbin\n%s", shellQuote(v.mnt), shellQuote(bin), script)
	out := runEnv(t, "", []string{"NOTIFY_SOCKET=" + sock}, "unshare", "--mount", "--propagation", "private",
		"bash", "-euo", "pipefail", "-c", full)

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(cmdTimeout)))
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		require.NoError(t, err, "the mount process did not report its end")
		if strings.Contains(string(buf[:n]), "STATUS=unmounted") {
			return out
		}
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// mountInfoLine is the script line that prints the mount's options and type
// as "OPTIONS FSTYPE SOURCE", from the namespace's mount table.
func mountInfoLine(mnt string) string {
	return fmt.Sprintf("findmnt -n -o OPTIONS,FSTYPE,SOURCE --mountpoint %s\n", shellQuote(mnt))
}

// TestMountTypeFuseCoffer mounts a volume with mount -t fuse.coffer through
// mount(8) and mount.fuse3, with the options an fstab line would carry:
// master= and log-file= as key=value, generic options coffer ignores, and
// suid and dev, which must not take effect.
func TestMountTypeFuseCoffer(t *testing.T) {
	v := createVolume(t)
	opts := strings.Join([]string{"master=" + v.keyURI(), "log-file=" + v.log, "ro",
		"nofail", "_netdev", "x-systemd.requires=network-online.target", "comment=test",
		"suid", "dev", "noatime", "defaults"}, ",")

	out := inMountNamespace(t, v, fmt.Sprintf(`
mount -t fuse.coffer %[1]s %[2]s -o %[3]s
%[4]s
if touch %[2]s/new 2>/dev/null; then echo "wrote to a read-only mount"; exit 1; fi
umount %[2]s
`, shellQuote(v.backing), shellQuote(v.mnt), shellQuote(opts), mountInfoLine(v.mnt)))

	fields := strings.Fields(out)
	require.Len(t, fields, 3, "findmnt output: %q", out)
	mountOpts := strings.Split(fields[0], ",")
	assert.Subset(t, mountOpts, []string{"ro", "nosuid", "nodev"}, "mount options")
	assert.Equal(t, "fuse.coffer", fields[1])
	assert.Equal(t, v.backing, fields[2])
	assert.False(t, isMounted(v.mnt))

	log, err := os.ReadFile(v.log)
	require.NoError(t, err, "the log-file= option was not used")
	assert.Contains(t, string(log), `"message":"unmounted"`)
}

// TestFstabLine mounts a volume from an /etc/fstab-style file with mount
// --fstab, the way systemd's fstab generator and mount -a read it, writes a
// file through it, and checks it after a second mount by coffer mount.
func TestFstabLine(t *testing.T) {
	v := createVolume(t)
	fstab := filepath.Join(v.dir, "fstab")
	line := fmt.Sprintf("# coffer volume\n%s %s fuse.coffer master=%s,log-file=%s,nofail,"+
		"x-systemd.after=network-online.target,_netdev 0 0\n", v.backing, v.mnt, v.keyURI(), v.log)
	require.NoError(t, os.WriteFile(fstab, []byte(line), 0o644))

	out := inMountNamespace(t, v, fmt.Sprintf(`
mount --fstab %[1]s %[2]s
%[3]s
echo from-fstab > %[2]s/greeting
fusermount3 -u %[2]s
`, shellQuote(fstab), shellQuote(v.mnt), mountInfoLine(v.mnt)))
	fields := strings.Fields(out)
	require.Len(t, fields, 3, "findmnt output: %q", out)
	assert.Subset(t, strings.Split(fields[0], ","), []string{"rw", "nosuid", "nodev"})

	v.mount(t)
	got, err := os.ReadFile(v.path("greeting"))
	require.NoError(t, err)
	assert.Equal(t, "from-fstab\n", string(got))
}

// TestMountHelperCallingForms runs the binary as mount.fuse3 and mount(8)
// run a helper: "coffer SOURCE MOUNTPOINT -o OPTIONS" found in PATH by
// mount.fuse3, and "mount.fuse.coffer SOURCE MOUNTPOINT -o OPTIONS -t
// fuse.coffer" as mount(8) runs /sbin/mount.fuse.coffer.
func TestMountHelperCallingForms(t *testing.T) {
	requireTools(t, "mount.fuse3")
	v := createVolume(t)
	bin := t.TempDir()
	require.NoError(t, os.Symlink(cofferBin, filepath.Join(bin, "coffer")))
	require.NoError(t, os.Symlink(cofferBin, filepath.Join(bin, "mount.fuse.coffer")))
	opts := "master=" + v.keyURI() + ",log-file=" + v.log + ",nofail"
	path := "PATH=" + bin + ":" + os.Getenv("PATH")

	forms := []struct {
		name string
		cmd  []string
	}{
		{"mount.fuse3 runs coffer from PATH", []string{"mount.fuse3", v.backing, v.mnt, "-t", "fuse.coffer",
			"-o", opts}},
		{"mount.fuse.coffer as mount(8) runs it", []string{filepath.Join(bin, "mount.fuse.coffer"),
			v.backing, v.mnt, "-n", "-o", opts, "-t", "fuse.coffer"}},
	}
	for i, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			registerMount(v.mnt)
			runEnv(t, "", []string{path}, f.cmd[0], f.cmd[1:]...)
			require.True(t, isMounted(v.mnt))
			name := fmt.Sprintf("file%d", i)
			require.NoError(t, os.WriteFile(v.path(name), []byte(f.name), 0o600))
			v.unmount(t)
			v.mount(t)
			got, err := os.ReadFile(v.path(name))
			require.NoError(t, err)
			assert.Equal(t, f.name, string(got))
			v.unmount(t)
		})
	}
}

// TestMountHelperBadOptions checks that the helper form refuses what it
// cannot honour with a one-line error and leaves nothing mounted.
func TestMountHelperBadOptions(t *testing.T) {
	v := createVolume(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown option", []string{v.backing, v.mnt, "-o", "master=" + v.keyURI() + ",frobnicate"},
			`unknown mount option "frobnicate"`},
		{"option and flag disagree", []string{"mount", v.backing, v.mnt, "--master", v.keyURI(),
			"-o", "master=file:///nonexistent"}, "mount option master= and flag --master disagree"},
		{"another type", []string{v.backing, v.mnt, "-t", "fuse.sshfs"},
			`file system type "fuse.sshfs" is not coffer's`},
		{"fake mount", []string{v.backing, v.mnt, "-f"}, `unsupported mount helper argument "-f"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := tryRun("", nil, cofferBin, tc.args...)
			require.Error(t, err)
			assert.Contains(t, stderr, "coffer: error: "+tc.wantErr)
			assert.False(t, isMounted(v.mnt))
		})
	}
}

// TestMountHelperWrongKey mounts through mount.fuse3 with a key file that is
// not the volume's: the mount process's error reaches the caller's stderr,
// the exit status is not 0, and nothing is mounted.
func TestMountHelperWrongKey(t *testing.T) {
	requireTools(t, "mount.fuse3")
	v := createVolume(t)
	other := "file://" + filepath.Join(v.dir, "other.key")
	coffer(t, "keys", "create", other)
	bin := t.TempDir()
	require.NoError(t, os.Symlink(cofferBin, filepath.Join(bin, "coffer")))

	registerMount(v.mnt)
	_, stderr, err := tryRun("", []string{"PATH=" + bin + ":" + os.Getenv("PATH")}, "mount.fuse3",
		v.backing, v.mnt, "-t", "fuse.coffer", "-o", "master="+other+",log-file="+v.log)
	require.Error(t, err)
	assert.Contains(t, stderr, "coffer: error: volume has no master key file://")
	assert.False(t, isMounted(v.mnt))

	require.NoError(t, os.Remove(v.key))
	require.NoError(t, os.Rename(strings.TrimPrefix(other, "file://"), v.key))
	_, stderr, err = tryRun("", []string{"PATH=" + bin + ":" + os.Getenv("PATH")}, "mount.fuse3",
		v.backing, v.mnt, "-t", "fuse.coffer", "-o", "log-file="+v.log)
	require.Error(t, err)
	assert.Contains(t, stderr, "coffer: error: failed to unlock volume")
	assert.Contains(t, stderr, "wrong master key")
	assert.False(t, isMounted(v.mnt))
}
