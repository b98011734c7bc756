//go:build linux

package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInitModes runs keys create and init under umask 000 and checks that
// the key file, the .coffer folder and every file in it are still private:
// 0600 files in a 0700 folder.
func TestInitModes(t *testing.T) {
	dir := t.TempDir()
	backing := filepath.Join(dir, "backing")
	key := filepath.Join(dir, "master.key")
	require.NoError(t, os.Mkdir(backing, 0o700))
	sh(t, "", fmt.Sprintf("umask 000; %[1]s keys create file://%[2]s; %[1]s init %[3]s --master file://%[2]s",
		shellQuote(cofferBin), key, shellQuote(backing)))

	fi, err := os.Stat(key)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "key file")

	meta := filepath.Join(backing, ".coffer")
	require.NoError(t, filepath.WalkDir(meta, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		fi, err := d.Info()
		require.NoError(t, err)
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		assert.Equal(t, want, fi.Mode().Perm(), "%s", p)
		return nil
	}))
}

// copyForNobody copies the tested coffer into dir, where the unprivileged
// user can run it: the build directory is private to root.
func copyForNobody(t *testing.T, dir string) string {
	data, err := os.ReadFile(cofferBin)
	require.NoError(t, err)
	bin := filepath.Join(dir, "coffer")
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	return bin
}

// TestServiceUserMount creates and mounts a volume as an unprivileged user
// that owns the backing directory, as docs/admin-guide.md advises for a
// service: the mount goes through the setuid fusermount3, only that user can
// use it (not even root), and -o allow_other needs user_allow_other in
// /etc/fuse.conf, which the error says in one line.
func TestServiceUserMount(t *testing.T) {
	requireFUSE(t)
	requireTools(t, "setpriv")
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	home := filepath.Join(dir, "svc")
	require.NoError(t, os.Mkdir(home, 0o700))
	require.NoError(t, os.Chown(home, 65534, 65534))
	backing, mnt := filepath.Join(home, "backing"), filepath.Join(home, "mnt")
	key, log := "file://"+filepath.Join(home, "master.key"), filepath.Join(home, "mount.log")
	bin := copyForNobody(t, dir)
	asNobody := func(args ...string) (string, string, error) {
		full := append([]string{"--reuid=" + nobody, "--regid=" + nobody, "--clear-groups"}, args...)
		return tryRun("/", []string{"HOME=" + home}, "setpriv", full...)
	}
	runAsNobody := func(args ...string) (string, string, error) {
		return asNobody(append([]string{bin}, args...)...)
	}

	for _, step := range [][]string{
		{"mkdir", "-m", "700", backing, mnt},
		{bin, "keys", "create", key},
		{bin, "init", backing, "--master", key},
	} {
		_, stderr, err := asNobody(step...)
		require.NoError(t, err, "%v: %s", step, stderr)
	}

	registerMount(mnt)
	t.Cleanup(func() {
		if isMounted(mnt) {
			forceUnmount(t, mnt)
		}
	})
	_, stderr, err := runAsNobody("mount", backing, mnt, "--log-file", log)
	require.NoError(t, err, stderr)
	require.True(t, isMounted(mnt))
	_, stderr, err = asNobody("sh", "-c", "echo service > "+mnt+"/state")
	require.NoError(t, err, stderr)

	_, err = os.Stat(filepath.Join(mnt, "state"))
	assert.ErrorIs(t, err, fs.ErrPermission, "root used a mount without allow_other")

	_, stderr, err = runAsNobody("unmount", mnt)
	require.NoError(t, err, stderr)
	require.False(t, isMounted(mnt))

	_, stderr, err = runAsNobody("mount", backing, mnt, "--log-file", log, "-o", "allow_other")
	if fuseConfAllowsOther(t) {
		require.NoError(t, err, stderr)
		_, stderr, err = runAsNobody("unmount", mnt)
		require.NoError(t, err, stderr)
		return
	}
	require.Error(t, err)
	assert.Equal(t, 1, exitStatus(err))
	assert.Equal(t, "coffer: error: option allow_other needs user_allow_other in /etc/fuse.conf\n"+
		"hint: as root, add the line 'user_allow_other' to /etc/fuse.conf, or mount as root\n", stderr)
	assert.False(t, isMounted(mnt))
}

// fuseConfAllowsOther reports whether /etc/fuse.conf has user_allow_other.
func fuseConfAllowsOther(t *testing.T) bool {
	data, err := os.ReadFile("/etc/fuse.conf")
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

func exitStatus(err error) int {
	var exit interface{ ExitCode() int }
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}

// TestBackgroundMountLogsToJournal mounts without --log-file where journald
// listens, in a mount namespace whose /run/systemd/journal/socket leads to
// the test's own socket, and checks that the mount process sends its events
// there in journald's native protocol: one JSON event per entry, with the
// syslog identifier coffer and a priority that follows the level.
func TestBackgroundMountLogsToJournal(t *testing.T) {
	v := createVolume(t)
	sock := filepath.Join(v.dir, "journal.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()

	inMountNamespace(t, v, fmt.Sprintf(`
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
ln -s %[1]s /run/systemd/journal/socket
%[2]s mount %[3]s %[4]s
echo journal > %[4]s/f
%[2]s unmount %[4]s
`, shellQuote(sock), shellQuote(cofferBin), shellQuote(v.backing), shellQuote(v.mnt)))

	// The entries are queued on the socket; "unmounted" is the last one.
	var messages []string
	buf := make([]byte, 64<<10)
	for len(messages) == 0 || messages[len(messages)-1] != "unmounted" {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(cmdTimeout)))
		n, err := conn.Read(buf)
		require.NoError(t, err, "after %q", messages)
		fields := journalFields(t, buf[:n])
		assert.Equal(t, "coffer", fields["SYSLOG_IDENTIFIER"])
		assert.Equal(t, "6", fields["PRIORITY"], "info events: %s", fields["MESSAGE"])
		var ev struct {
			Level   string `json:"level"`
			Message string `json:"message"`
		}
		require.NoError(t, json.Unmarshal([]byte(fields["MESSAGE"]), &ev), fields["MESSAGE"])
		assert.Equal(t, "info", ev.Level)
		messages = append(messages, ev.Message)
	}
	assert.Subset(t, messages, []string{"volume unlocked", "mounted", "unmounted"})
	_, err = os.Stat(filepath.Join("/var/log/coffer", volumeIDOf(t, v)+".log"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "the mount also logged to its default log file")
}

// journalFields decodes one entry of journald's native protocol.
func journalFields(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		require.True(t, ok, "unterminated field")
		if k, val, ok := bytes.Cut(line, []byte("=")); ok {
			m[string(k)] = string(val)
			b = rest
			continue
		}
		require.GreaterOrEqual(t, len(rest), 8)
		n := binary.LittleEndian.Uint64(rest[:8])
		m[string(line)] = string(rest[8 : 8+n])
		b = rest[8+n+1:]
	}
	return m
}

// volumeIDOf returns the volume ID from coffer status.
func volumeIDOf(t *testing.T, v *volume) string {
	out := coffer(t, "status", v.backing)
	for _, line := range strings.Split(out, "\n") {
		if id, ok := strings.CutPrefix(line, "volume:"); ok {
			return strings.TrimSpace(id)
		}
	}
	t.Fatalf("no volume ID in coffer status:\n%s", out)
	return ""
}
