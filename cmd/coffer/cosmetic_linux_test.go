//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCosmeticFixes covers breaker3's F9: hints that name a path with a
// newline, backup to "-", the recovery-key hint loop, the init --help
// wording of --recovery-key, the concurrent-init wording and the empty
// recovery key message.
func TestCosmeticFixes(t *testing.T) {
	t.Parallel()

	t.Run("hint keeps a newline in a path", func(t *testing.T) {
		t.Parallel()
		d := filepath.Join(t.TempDir(), "sp ace\nnl")
		require.NoError(t, os.MkdirAll(filepath.Join(d, "back"), 0o700))
		r := cli(t, "status", filepath.Join(d, "back"))
		assertFailure(t, r, exitFailure, "")
		assert.Contains(t, r.stderr, "hint: initialise it: coffer init $'"+
			filepath.Dir(d)+"/sp ace\\nnl/back' --master URI")
	})

	t.Run("backup to -", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.init(t)
		r := cli(t, "backup", f.backing, "-")
		assertFailure(t, r, exitUsage, "backup FILE - is not supported")
		_, err := os.Lstat("-")
		assert.ErrorIs(t, err, os.ErrNotExist)
	})

	t.Run("keys create recovery", func(t *testing.T) {
		t.Parallel()
		r := cli(t, "keys", "create", "recovery:")
		assertFailure(t, r, exitUsage, "recovery keys are made for a volume")
		assert.Contains(t, r.stderr, "hint: make one for an existing volume: coffer recovery new BACKING")
		assert.NotContains(t, r.stderr, "coffer init BACKING --master recovery:")
	})

	t.Run("init with recovery but no key", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		r := cli(t, "init", f.backing, "--master", f.keyURI(), "--master", "recovery:")
		assertFailure(t, r, exitFailure, "--master recovery: needs --recovery-key FILE at init")
		assert.Contains(t, r.stderr, "then run: coffer recovery new "+f.backing)
	})

	t.Run("init help", func(t *testing.T) {
		t.Parallel()
		r := cli(t, "init", "--help")
		requireOK(t, r)
		i := strings.Index(r.stdout, "--recovery-key")
		require.GreaterOrEqual(t, i, 0)
		line := r.stdout[i : i+strings.Index(r.stdout[i:], "\n")]
		assert.Contains(t, line, "enrol the existing recovery key")
		assert.NotContains(t, line, "unlock")
	})

	t.Run("leftover or concurrent init", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		require.NoError(t, os.Mkdir(filepath.Join(f.backing, ".coffer"), 0o700))
		r := cli(t, "init", f.backing, "--master", f.keyURI())
		assertFailure(t, r, exitFailure, "another coffer init is creating the volume right now")
	})

	t.Run("empty recovery key", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.init(t)
		requireOK(t, cli(t, "recovery", "new", f.backing, "--out", filepath.Join(f.dir, "r.key")))
		empty := filepath.Join(f.dir, "empty.recovery")
		require.NoError(t, os.WriteFile(empty, nil, 0o600))
		r := cli(t, "mount", f.backing, t.TempDir(), "--recovery-key", empty)
		assertFailure(t, r, exitFailure, "recovery key is empty")
		assert.NotContains(t, r.stderr, "check that group")
	})
}

// TestMasterAddSameKeyFileRefused is breaker3's F9 item: master add took
// the enrolled key file again through a symbolic link (two masters, one
// key). The same file under another name is refused before any unlock.
func TestMasterAddSameKeyFileRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	link := filepath.Join(f.dir, "link.key")
	require.NoError(t, os.Symlink(f.key, link))
	hard := filepath.Join(f.dir, "hard.key")
	require.NoError(t, os.Link(f.key, hard))
	before := f.config(t)
	for _, p := range []string{link, hard, filepath.Join(f.dir, ".", "..", filepath.Base(f.dir),
		"master.key")} {
		r := cli(t, "master", "add", f.backing, "file://"+p)
		assertFailure(t, r, exitFailure, "is the same file as master key")
		assert.Equal(t, before, f.config(t))
	}
}
