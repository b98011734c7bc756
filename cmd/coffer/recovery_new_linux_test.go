package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/recovery"
)

// TestRecoveryNewOutCrash kills "coffer recovery new --out FILE" at each of
// its kill points (SIGKILL, as a crash): FILE exists only if the volume
// lists the recovery key, and a key file left under the temporary name
// after the volume changed unlocks the volume.
func TestRecoveryNewOutCrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		point   int
		enrolls bool
	}{{1, false}, {2, true}} {
		t.Run(strconv.Itoa(tc.point), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.init(t)
			keyDir := filepath.Join(f.dir, "usb")
			require.NoError(t, os.Mkdir(keyDir, 0o700))
			out := filepath.Join(keyDir, "rk.txt")

			r := cliProcessEnv(t, []string{"COFFER_TEST_KILL_POINT=" + strconv.Itoa(tc.point)},
				"recovery", "new", f.backing, "--out", out)
			require.Equal(t, -1, r.code, "not killed: %s", r.stderr)

			list := f.masters(t)
			var rec []masterListEntry
			for _, m := range list {
				if m.Kind == recovery.Kind {
					rec = append(rec, m)
				}
			}
			_, err := os.Lstat(out)
			assert.ErrorIs(t, err, os.ErrNotExist, "a key file appeared under its name before the move")
			temps, err := filepath.Glob(filepath.Join(keyDir, ".rk.txt.tmp-*"))
			require.NoError(t, err)
			require.Len(t, temps, 1, "the key file under its temporary name")
			fi, err := os.Stat(temps[0])
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
			if !tc.enrolls {
				assert.Empty(t, rec, "killed before the config commit, yet enrolled")
				return
			}
			require.Len(t, rec, 1)
			// The key saved before the kill is the one enrolled.
			requireOK(t, cli(t, "fsck", f.backing, "--master", rec[0].ID, "--recovery-key", temps[0]))
		})
	}
}

// TestRecoveryNewOutNoTemp checks that a run that completes leaves the key
// under its name (mode 0600), unlocking, and no temporary file.
func TestRecoveryNewOutNoTemp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	out := filepath.Join(f.dir, "rk.txt")
	requireOK(t, cliProcess(t, "recovery", "new", f.backing, "--out", out))
	fi, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	temps, err := filepath.Glob(filepath.Join(f.dir, ".rk.txt.tmp-*"))
	require.NoError(t, err)
	assert.Empty(t, temps)
	var id string
	for _, m := range f.masters(t) {
		if m.Kind == recovery.Kind {
			id = m.ID
		}
	}
	require.NotEmpty(t, id)
	requireOK(t, cli(t, "fsck", f.backing, "--master", id, "--recovery-key", out))
}
