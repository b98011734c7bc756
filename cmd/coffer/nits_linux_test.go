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

// TestErrorWording checks the wording of usage errors the breaker found
// confusing: each a usage error with one error line, the hint that fits
// and nothing said twice.
func TestErrorWording(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	mnt := t.TempDir()
	for _, tt := range []struct {
		name      string
		args      []string
		want      string
		hint, not string // in and not in stderr
	}{
		{"master option twice", []string{"mount", f.backing, mnt, "-o", "master=A,master=B"},
			`mount option master= given twice, as "A" and "B"`, "give it once", "disagree"},
		{"master option and flag", []string{"mount", f.backing, mnt, "-o", "master=A", "--master", "B"},
			"mount option master= and flag --master disagree", "", "twice"},
		{"comma in an option value", []string{"mount", f.backing, mnt, "-o", "master=tpm2:?pcrs=0,7"},
			`unknown mount option "7"`, "cannot hold a comma", ""},
		{"known options", []string{"mount", f.backing, mnt, "-o", "frob"},
			`unknown mount option "frob"`, "debug, exec, noexec, shared", "comma"},
		{"empty backing", []string{"status", ""}, "empty argument BACKING", "usage: coffer status", ""},
		{"empty mount point", []string{"mount", f.backing, ""}, "empty argument MOUNTPOINT", "", ""},
		{"unknown event", []string{"audit", "show", f.backing, "--event", "nosuchevent"},
			`unknown event "nosuchevent" for --event`, "events: init, mount,", ""},
		{"bad max key age", []string{"config", f.backing, "--max-key-age", "-1"},
			`invalid --max-key-age "-1"`, "or off (or 0) for no maximum", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, tt.args...)
			assertFailure(t, r, exitUsage, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, "hint: ")
				assert.Contains(t, r.stderr, tt.hint)
			}
			if tt.not != "" {
				assert.NotContains(t, r.stderr, tt.not)
			}
		})
	}

	// The list of schemes is printed once.
	r := cli(t, "init", f.backing, "--master", "gopher://x")
	assertFailure(t, r, exitUsage, "unknown master key scheme")
	assert.Equal(t, 1, strings.Count(r.stderr, "passphrase:,"), r.stderr)
}

// TestRecoveryKeyModeHint checks that a recovery key file open to others
// gets its chmod hint once, and no hint about choosing another master key.
func TestRecoveryKeyModeHint(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	rk := filepath.Join(f.dir, "recovery.txt")
	requireOK(t, cli(t, "recovery", "new", f.backing, "--out", rk))
	require.NoError(t, os.Chmod(rk, 0o644))
	other := filepath.Join(f.dir, "other.key")
	requireOK(t, cli(t, "keys", "create", "file://"+other))
	for _, args := range [][]string{
		{"fsck", f.backing, "--recovery-key", rk},
		{"master", "add", f.backing, "file://" + other, "--recovery-key", rk},
	} {
		r := cli(t, args...)
		assertFailure(t, r, exitFailure, "is accessible to group or others (mode 0644)")
		assert.Equal(t, 1, strings.Count(r.stderr, "hint: chmod 600 "+rk), r.stderr)
		assert.NotContains(t, r.stderr, "--with ID", args[0])
	}
}
