//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// editFile replaces the match of pattern by repl in file p.
func editFile(t *testing.T, p, pattern, repl string) {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	re := regexp.MustCompile(pattern)
	require.Regexp(t, re, string(b))
	require.NoError(t, os.WriteFile(p, re.ReplaceAll(b, []byte(repl)), 0o600))
}

// TestNamesModeEditRefused is the breaker's reproduction: editing
// volume.json's names mode of an encrypted-names volume to plaintext (or
// deleting it) must not mount with names in the clear; every command that
// unlocks refuses, and so does restoring a backup edited the same way.
func TestNamesModeEditRefused(t *testing.T) {
	for _, edit := range []struct{ name, old, new string }{
		{"plaintext", `"names": "encrypted"`, `"names": "plaintext"`},
		{"deleted", `,\s*"names": "encrypted"`, ``},
	} {
		t.Run(edit.name, func(t *testing.T) {
			f := newMountFixture(t)
			f.init(t)
			editFile(t, filepath.Join(f.backing, ".coffer", "volume.json"), edit.old, edit.new)
			before := snapshot(t, f.backing)

			r := f.mount(t, "--master", f.keyURI())
			assertFailure(t, r, exitFailure, "volume.json says names are plaintext but the "+
				"sealed ring says encrypted: the config was altered; restore it from a backup")
			assert.False(t, isMounted(t, f.mnt))
			other := filepath.Join(f.dir, "other.key")
			requireOK(t, cli(t, "keys", "create", "file://"+other))
			r = cli(t, "master", "add", f.backing, "file://"+other)
			assertFailure(t, r, exitFailure, "the config was altered")
			assert.Equal(t, before, snapshot(t, f.backing))
		})
	}
}

// TestRestoreNamesModeEdited checks that restore refuses a backup whose
// names mode differs from the volume's.
func TestRestoreNamesModeEdited(t *testing.T) {
	f := newFixture(t)
	f.init(t)
	backup := filepath.Join(f.dir, "backup.json")
	requireOK(t, cli(t, "backup", f.backing, backup))
	editFile(t, backup, `,\s*"names": "encrypted"`, "")
	before := snapshot(t, f.backing)
	r := cli(t, "restore", f.backing, backup)
	assertFailure(t, r, exitFailure, "the backup says names are plaintext, the volume's "+
		"config encrypted")
	assert.Equal(t, before, snapshot(t, f.backing))
}
