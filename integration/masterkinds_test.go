//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kindVolume creates a backing directory and mount point under
// t.TempDir() and initialises a volume whose only master key is master;
// flags go to init and to every mount.
func kindVolume(t *testing.T, master string, flags ...string) *volume {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	v := &volume{
		dir:     dir,
		backing: filepath.Join(dir, "backing"),
		mnt:     filepath.Join(dir, "mnt"),
		log:     filepath.Join(dir, "mount.log"),
	}
	require.NoError(t, os.Mkdir(v.backing, 0o700))
	require.NoError(t, os.Mkdir(v.mnt, 0o755))
	coffer(t, append([]string{"init", v.backing, "--master", master}, flags...)...)
	t.Cleanup(func() { v.cleanup(t) })
	return v
}

// mountWith mounts v with extra command-line flags.
func (v *volume) mountWith(t *testing.T, flags ...string) {
	t.Helper()
	registerMount(v.mnt)
	coffer(t, append([]string{"mount", v.backing, v.mnt, "--log-file", v.log}, flags...)...)
	require.True(t, isMounted(v.mnt), "coffer mount returned but %s is not mounted", v.mnt)
}

// roundTrip writes a file through the mount, remounts with flags and reads
// it back; the backing directory must not hold the plaintext.
func roundTrip(t *testing.T, v *volume, flags ...string) {
	t.Helper()
	const content = "sealed by a master key kind\n"
	v.mountWith(t, flags...)
	require.NoError(t, os.WriteFile(v.path("secret.txt"), []byte(content), 0o600))
	v.unmount(t)
	assertNoPlaintext(t, v.backing, "master key kind")

	v.mountWith(t, flags...)
	got, err := os.ReadFile(v.path("secret.txt"))
	require.NoError(t, err)
	assert.Equal(t, content, string(got))
	v.unmount(t)
}

// failMount runs a mount that must fail with exit code 1 and a one-line
// error containing want, mount nothing and change nothing in the backing
// directory.
func failMount(t *testing.T, v *volume, want string, flags ...string) {
	t.Helper()
	before := snapshot(t, v.backing)
	_, stderr, err := tryRun("", nil, cofferBin,
		append([]string{"mount", v.backing, v.mnt, "--log-file", v.log}, flags...)...)
	assert.Equal(t, 1, exitCode(err), "exit code; stderr: %s", stderr)
	errLines := 0
	for line := range strings.SplitSeq(stderr, "\n") {
		if strings.HasPrefix(line, "coffer: error:") {
			errLines++
			assert.Contains(t, line, want)
		}
	}
	assert.Equal(t, 1, errLines, "one error line; stderr: %s", stderr)
	assert.False(t, isMounted(v.mnt))
	compareTrees(t, withoutAudit(before), withoutAudit(snapshot(t, v.backing)), ignoreDirMtime)
}

// withoutAudit drops the audit log's head anchor, and the mtime of the
// .coffer folder it is replaced in, from a snapshot of a backing directory:
// a failed unlock is recorded in the audit log on purpose.
func withoutAudit(tr tree) tree {
	delete(tr, ".coffer/audit-head.json")
	if e, ok := tr[".coffer"]; ok {
		e.Mtime = 0
		tr[".coffer"] = e
	}
	return tr
}
