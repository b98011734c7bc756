//go:build linux

package integration

import (
	"bufio"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCrash kills the mount process with SIGKILL while a process is
// writing, cleans up the dead mount with coffer unmount, mounts again and
// checks that every fsynced file is intact, that no file fails to decrypt,
// and that what reached the written file is what was written.
func TestCrash(t *testing.T) {
	v := createVolume(t)
	daemon := mountForeground(t, v)

	sums := map[string]string{}
	for i := 0; i < 20; i++ {
		name := filepath.Join("synced", string(rune('a'+i)))
		require.NoError(t, os.MkdirAll(v.path("synced"), 0o755))
		writeSynced(t, v.path(name), pseudoRandom(uint64(500+i), 3000*i+1))
		sums[name] = mustSHA256(t, v.path(name))
	}

	writer := childSpec{role: "pwrite", layout: ranges, data: v.path("busy.bin"),
		append: v.path("busy.log"), n: 1, chunk: 4099, chunks: 100000, lines: 100000, signalAfter: 500}
	cmd := writer.command()
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { killIfRunning(cmd) })
	require.NoError(t, stdin.Close())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "the writer did not start")
	require.Equal(t, "started\n", line)

	require.NoError(t, daemon.Process.Kill())
	_ = daemon.Wait()
	_, _ = io.Copy(io.Discard, stdout)
	assert.Error(t, cmd.Wait(), "the writer went on after the mount died")

	coffer(t, "unmount", v.mnt)
	require.False(t, isMounted(v.mnt))
	v.mount(t)

	for name, sum := range sums {
		assert.Equal(t, sum, mustSHA256(t, v.path(name)), "fsynced file %s", name)
	}
	t.Run("every file decrypts", func(t *testing.T) {
		err := filepath.WalkDir(v.mnt, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			_, err = os.ReadFile(p)
			assert.NoError(t, err, "read %s after the crash", p)
			return nil
		})
		require.NoError(t, err)
	})
	t.Run("the interrupted file holds what was written", func(t *testing.T) {
		data, err := os.ReadFile(writer.data)
		require.NoError(t, err)
		require.NotEmpty(t, data)
		if off := badByte(writer, data); off >= 0 {
			t.Errorf("byte %#x at offset %d of %d is neither zero nor written", data[off], off, len(data))
		}
		lines, err := os.ReadFile(writer.append)
		require.NoError(t, err)
		for i, l := range strings.SplitAfter(string(lines), "\n") {
			if l != "" && l != appendLine(0, i) && strings.HasSuffix(l, "\n") {
				t.Errorf("line %d is not what was appended: %q", i, l)
				break
			}
		}
	})
}

// mountForeground mounts v with coffer mount --foreground as a child of the
// test, which it can kill, and returns once the mount is ready (the
// "mounted" log line).
func mountForeground(t *testing.T, v *volume) *exec.Cmd {
	t.Helper()
	registerMount(v.mnt)
	cmd := exec.Command(cofferBin, "mount", "--foreground", "--log-format", "json", v.backing, v.mnt)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { killIfRunning(cmd) })

	sc := bufio.NewScanner(stderr)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), `"message":"mounted"`) {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			require.True(t, isMounted(v.mnt))
			return cmd
		}
	}
	err = cmd.Wait()
	require.Failf(t, "coffer mount --foreground exited before mounting",
		"%v\n%s", err, strings.Join(seen, "\n"))
	return nil
}

// writeSynced writes a file and fsyncs it.
func writeSynced(t *testing.T, path string, data []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	require.NoError(t, err)
	_, err = f.Write(data)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}
