package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listenGram listens on a Unix datagram socket at path, closed in cleanup.
func listenGram(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readGram reads one datagram.
func readGram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

// stateOf parses the VAR=value lines of an sd_notify message.
func stateOf(msg string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(msg, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestSDNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	tests := []struct {
		name, socket, addr string
	}{
		{"path", path, path},
		{"abstract", "@coffer-test-" + strconv.Itoa(os.Getpid()), "@coffer-test-" + strconv.Itoa(os.Getpid())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := listenGram(t, tc.addr)
			t.Setenv("NOTIFY_SOCKET", tc.socket)
			require.NoError(t, sdNotify("READY=1\nSTATUS=x"))
			assert.Equal(t, "READY=1\nSTATUS=x", readGram(t, conn))
		})
	}

	t.Run("no socket set", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		assert.NoError(t, sdNotify("READY=1"))
	})
	t.Run("nobody listening", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
		assert.ErrorContains(t, sdNotify("READY=1"), "failed to notify the service manager")
	})
}

// parseJournal decodes an entry of journald's native protocol, both the
// NAME=value and the length-prefixed binary form of a field.
func parseJournal(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		require.GreaterOrEqual(t, i, 0, "unterminated field")
		line := b[:i]
		b = b[i+1:]
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			m[string(k)] = string(v)
			continue
		}
		require.GreaterOrEqual(t, len(b), 8)
		n := binary.LittleEndian.Uint64(b[:8])
		require.LessOrEqual(t, 8+n+1, uint64(len(b)))
		m[string(line)] = string(b[8 : 8+n])
		require.Equal(t, byte('\n'), b[8+n])
		b = b[8+n+1:]
	}
	return m
}

func TestJournalWriter(t *testing.T) {
	old := journalSocket
	journalSocket = filepath.Join(t.TempDir(), "journal")
	t.Cleanup(func() { journalSocket = old })
	conn := listenGram(t, journalSocket)
	require.True(t, journalAvailable())

	a := &app{logLevel: "debug"}
	require.NoError(t, logToJournal(a))
	tests := []struct {
		name     string
		log      func()
		priority string
		message  string
	}{
		{"info", func() { a.log.Info().Str("mountpoint", "/m").Msg("mounted") }, "6", "mounted"},
		{"warn", func() { a.log.Warn().Msg("tampered") }, "4", "tampered"},
		{"error", func() { a.log.Error().Msg("failed") }, "3", "failed"},
		{"debug", func() { a.log.Debug().Msg("trace") }, "7", "trace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.log()
			e := parseJournal(t, []byte(readGram(t, conn)))
			assert.Equal(t, tc.priority, e["PRIORITY"])
			assert.Equal(t, "coffer", e["SYSLOG_IDENTIFIER"])
			var ev map[string]any
			require.NoError(t, json.Unmarshal([]byte(e["MESSAGE"]), &ev), "MESSAGE is one JSON event")
			assert.Equal(t, tc.message, ev["message"])
		})
	}

	t.Run("a value with a newline", func(t *testing.T) {
		var b bytes.Buffer
		journalField(&b, "MESSAGE", []byte("two\nlines"))
		e := parseJournal(t, b.Bytes())
		assert.Equal(t, "two\nlines", e["MESSAGE"])
	})
	t.Run("no journal", func(t *testing.T) {
		journalSocket = filepath.Join(t.TempDir(), "none")
		assert.False(t, journalAvailable())
		assert.ErrorContains(t, logToJournal(&app{logLevel: "info"}), "failed to connect to the journal")
	})
}

// startNotified starts coffer mount with NOTIFY_SOCKET pointing at a fresh
// listener, and returns the command and the listener.
func startNotified(t *testing.T, args ...string) (*exec.Cmd, *net.UnixConn, *strings.Builder) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn := listenGram(t, sock)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1", "NOTIFY_SOCKET="+sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, conn, &stderr
}

// TestNotifyForeground runs a foreground mount as systemd runs a Type=notify
// service: READY=1 comes only once the mount answers, with the process's own
// PID; SIGTERM brings STOPPING=1, an unmount and exit status 0.
func TestNotifyForeground(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	cmd, conn, stderr := startNotified(t, "mount", "--foreground", "--log-file", f.log, f.backing, f.mnt)

	ready := stateOf(readGram(t, conn))
	require.Equal(t, "1", ready["READY"], "stderr: %s", stderr)
	assert.Equal(t, strconv.Itoa(cmd.Process.Pid), ready["MAINPID"])
	assert.Contains(t, ready["STATUS"], "serving "+f.backing)
	require.True(t, isMounted(t, f.mnt))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "f"), []byte("x"), 0o600), "mount answers")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, "1", stateOf(readGram(t, conn))["STOPPING"])
	assert.Equal(t, "unmounted", stateOf(readGram(t, conn))["STATUS"])
	require.NoError(t, cmd.Wait(), "stderr: %s", stderr)
	assert.False(t, isMounted(t, f.mnt))
}

// TestNotifyBackgroundSIGTERM runs a background mount under a notify socket:
// the mount process names itself as MAINPID, and SIGTERM to it unmounts.
func TestNotifyBackgroundSIGTERM(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	cmd, conn, stderr := startNotified(t, "mount", "--log-file", f.log, f.backing, f.mnt)
	require.NoError(t, cmd.Wait(), "stderr: %s", stderr)
	require.True(t, isMounted(t, f.mnt))

	ready := stateOf(readGram(t, conn))
	require.Equal(t, "1", ready["READY"])
	pid, err := strconv.Atoi(ready["MAINPID"])
	require.NoError(t, err)
	require.NotEqual(t, cmd.Process.Pid, pid, "MAINPID must be the mount process, not the parent")

	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	assert.Equal(t, "1", stateOf(readGram(t, conn))["STOPPING"])
	assert.Equal(t, "unmounted", stateOf(readGram(t, conn))["STATUS"])
	assert.False(t, isMounted(t, f.mnt))
	log, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.Contains(t, string(log), `"signal":"terminated"`)
}
