//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBadInput runs coffer with wrong keys, wrong passphrases, missing or
// wrong directories and a config from the future. Each must exit with the
// documented code and a "coffer: error:" line, mount nothing, and leave the
// backing directory exactly as it was but for the audit head anchor (a
// failed unlock is recorded); the volume still mounts afterwards.
func TestBadInput(t *testing.T) {
	v := createVolume(t)
	v.mount(t)
	require.NoError(t, os.WriteFile(v.path("data.txt"), []byte("still here\n"), 0o600))
	v.unmount(t)

	dir := t.TempDir()
	pv := passphraseVolume(t, dir)
	otherKey := filepath.Join(dir, "other.key")
	coffer(t, "keys", "create", "file://"+otherKey)
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o700))
	full := filepath.Join(dir, "full")
	require.NoError(t, os.Mkdir(full, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(full, "keep"), []byte("x"), 0o644))

	tests := []struct {
		name  string
		setup func(t *testing.T) // undone by its own t.Cleanup
		args  []string
		code  int
		vol   *volume // whose backing must not change; v if nil
	}{
		{name: "wrong key file", setup: func(t *testing.T) { swapFile(t, v.key, otherKey) },
			args: []string{"mount", v.backing, v.mnt}, code: 1},
		{name: "key file readable by others", setup: func(t *testing.T) { chmodFor(t, v.key, 0o644) },
			args: []string{"mount", v.backing, v.mnt}, code: 1},
		{name: "missing key file", setup: func(t *testing.T) { hideFile(t, v.key) },
			args: []string{"mount", v.backing, v.mnt}, code: 1},
		{name: "wrong passphrase", args: []string{"mount", pv.backing, pv.mnt,
			"--passphrase-file", writeSecret(t, dir, "wrong", "not the passphrase\n")}, code: 1, vol: pv},
		{name: "backing directory missing",
			args: []string{"mount", filepath.Join(dir, "nowhere"), v.mnt}, code: 1},
		{name: "backing directory not initialised", args: []string{"mount", empty, v.mnt}, code: 1},
		{name: "init over an existing volume",
			args: []string{"init", v.backing, "--master", v.keyURI()}, code: 1},
		{name: "init of a directory that is not empty",
			args: []string{"init", full, "--master", v.keyURI()}, code: 1},
		{name: "mount point missing",
			args: []string{"mount", v.backing, filepath.Join(dir, "nowhere")}, code: 1},
		{name: "mount point not empty", args: []string{"mount", v.backing, full}, code: 1},
		{name: "already mounted", setup: func(t *testing.T) { mountFor(t, v) },
			args: []string{"mount", v.backing, v.mnt}, code: 1},
		{name: "config from a newer version", setup: func(t *testing.T) { futureConfig(t, v) },
			args: []string{"mount", v.backing, v.mnt}, code: 1},
		{name: "unknown mount option", args: []string{"mount", v.backing, v.mnt, "-o", "bogus"}, code: 2},
		{name: "malformed master URI",
			args: []string{"init", empty, "--master", "nosuchkind://x"}, code: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vol := v
			if tc.vol != nil {
				vol = tc.vol
			}
			if tc.setup != nil {
				tc.setup(t)
			}
			before := snapshot(t, vol.backing)
			wasMounted := isMounted(vol.mnt)

			_, stderr, err := tryRun("", nil, cofferBin, tc.args...)
			assert.Equal(t, tc.code, exitCode(err), "exit code; stderr: %s", stderr)
			assert.Contains(t, stderr, "coffer: error:")
			assert.Equal(t, wasMounted, isMounted(vol.mnt), "mount state changed")
			// A failed unlock is recorded: only the audit head anchor moves.
			compareTrees(t, withoutAudit(before), withoutAudit(snapshot(t, vol.backing)), 0)
			entries, err := os.ReadDir(empty)
			require.NoError(t, err)
			assert.Empty(t, entries, "a failed command wrote into an empty directory")
		})
	}

	t.Run("the volume still mounts", func(t *testing.T) {
		v.mount(t)
		data, err := os.ReadFile(v.path("data.txt"))
		require.NoError(t, err)
		assert.Equal(t, "still here\n", string(data))
	})
}

// passphraseVolume creates a volume under dir whose only master key is a
// passphrase (with cheap Argon2id costs), and checks that it mounts.
func passphraseVolume(t *testing.T, dir string) *volume {
	pv := &volume{
		dir: dir, backing: filepath.Join(dir, "pass-backing"), mnt: filepath.Join(dir, "pass-mnt"),
		log: filepath.Join(dir, "pass.log"),
	}
	require.NoError(t, os.Mkdir(pv.backing, 0o700))
	require.NoError(t, os.Mkdir(pv.mnt, 0o755))
	pass := writeSecret(t, dir, "pass", "correct horse battery staple\n")
	coffer(t, "init", pv.backing, "--master", "passphrase:", "--passphrase-file", pass,
		"--argon2-memory", "8", "--argon2-time", "1")
	t.Cleanup(func() { pv.cleanup(t) })

	registerMount(pv.mnt)
	coffer(t, "mount", pv.backing, pv.mnt, "--passphrase-file", pass, "--log-file", pv.log)
	require.True(t, isMounted(pv.mnt))
	pv.unmount(t)
	return pv
}

// writeSecret writes a 0600 file under dir and returns its path.
func writeSecret(t *testing.T, dir, name, content string) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// swapFile replaces the contents of path with those of other until the test
// ends.
func swapFile(t *testing.T, path, other string) {
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	data, err := os.ReadFile(other)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	t.Cleanup(func() { require.NoError(t, os.WriteFile(path, orig, 0o600)) })
}

// chmodFor changes the mode of path until the test ends.
func chmodFor(t *testing.T, path string, mode os.FileMode) {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(path, mode))
	t.Cleanup(func() { require.NoError(t, os.Chmod(path, fi.Mode())) })
}

// hideFile moves path away until the test ends.
func hideFile(t *testing.T, path string) {
	require.NoError(t, os.Rename(path, path+".hidden"))
	t.Cleanup(func() { require.NoError(t, os.Rename(path+".hidden", path)) })
}

// mountFor mounts v until the test ends.
func mountFor(t *testing.T, v *volume) {
	v.mount(t)
	t.Cleanup(func() { v.unmount(t) })
}

// futureConfig sets the config version to one from the future until the
// test ends.
func futureConfig(t *testing.T, v *volume) {
	path := filepath.Join(v.backing, ".coffer", "volume.json")
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(orig, &cfg))
	cfg["version"] = 99
	data, err := json.MarshalIndent(cfg, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	t.Cleanup(func() { require.NoError(t, os.WriteFile(path, orig, 0o600)) })
}
