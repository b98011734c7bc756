//go:build unix

package keys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCheckReserved plants a symbolic link, and a wrong kind of entry, in
// place of each fixed entry of .coffer: each is refused, naming the entry.
func TestCheckReserved(t *testing.T) {
	t.Parallel()
	for _, e := range reservedEntries {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			backing := t.TempDir()
			dir := filepath.Join(backing, DirName)
			require.NoError(t, os.Mkdir(dir, 0o700))
			require.NoError(t, CheckReserved(backing))

			p := filepath.Join(dir, e.name)
			require.NoError(t, os.Symlink(t.TempDir(), p))
			err := CheckReserved(backing)
			var re *ReservedError
			require.True(t, errors.As(err, &re), "%v", err)
			assert.Equal(t, p, re.Path)
			assert.Contains(t, err.Error(), p+" is a symbolic link")
			assert.Equal(t, e.name == ConfigName, re.Config)

			require.NoError(t, os.Remove(p))
			if e.dir {
				require.NoError(t, os.WriteFile(p, nil, 0o600))
			} else {
				require.NoError(t, os.Mkdir(p, 0o700))
			}
			assert.ErrorContains(t, CheckReserved(backing), p+" is a ")
		})
	}
}

// TestReservedProblems checks the full list fsck reports: .coffer itself
// a link, links among the undo records and mount records, and unknown
// entries that are not regular files.
func TestReservedProblems(t *testing.T) {
	t.Parallel()
	backing := t.TempDir()
	dir := filepath.Join(backing, DirName)
	for _, d := range []string{"undo", MountsName, "stray"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o700))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigName), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "undo", "rec"), nil, 0o600))
	require.NoError(t, os.Symlink("/", filepath.Join(dir, "undo", "1bb13a988cc04b62")))
	require.NoError(t, os.Symlink("/", filepath.Join(dir, MountsName, "h-1.json")))
	var got []string
	for _, p := range ReservedProblems(backing) {
		rel, _ := filepath.Rel(backing, p.Path)
		got = append(got, rel+": "+p.Is)
	}
	assert.ElementsMatch(t, []string{
		".coffer/stray: a directory",
		".coffer/undo/1bb13a988cc04b62: a symbolic link",
		".coffer/mounts/h-1.json: a symbolic link",
	}, got)

	other := t.TempDir()
	require.NoError(t, os.Symlink(dir, filepath.Join(other, DirName)))
	assert.ErrorContains(t, CheckReserved(other), "is a symbolic link, not a directory")
}
