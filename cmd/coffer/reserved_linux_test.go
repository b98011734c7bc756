//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/keys"
)

// TestReservedLinksRefused is breaker3's F5: .coffer/mounts replaced by a
// symbolic link made root's mount write (and remove) its record in the
// folder it points to, and .coffer/undo as one failed every overwrite
// with ELOOP. A mount, and each command that writes to .coffer, now
// refuses at start in one line that names the entry and says to remove
// it; nothing is written through the link.
func TestReservedLinksRefused(t *testing.T) {
	t.Parallel()
	for _, entry := range []string{keys.MountsName, content.UndoDir} {
		t.Run(entry, func(t *testing.T) {
			t.Parallel()
			f := newMountFixture(t)
			f.init(t)
			victim := t.TempDir()
			p := filepath.Join(f.backing, keys.DirName, entry)
			require.NoError(t, os.RemoveAll(p))
			require.NoError(t, os.Symlink(victim, p))
			want := p + " is a symbolic link, not a directory"

			r := f.mount(t)
			assertFailure(t, r, exitFailure, want)
			assert.Contains(t, r.stderr, "remove it")
			assert.False(t, isMounted(t, f.mnt))
			for _, args := range [][]string{
				{"master", "add", f.backing, f.newKey(t, "second.key")},
				{"rotate", f.backing},
				{"backup", f.backing, filepath.Join(f.dir, "b.json")},
				{"fsck", f.backing, "--repair"},
			} {
				assertFailure(t, cli(t, args...), exitFailure, want)
			}
			entries, err := os.ReadDir(victim)
			require.NoError(t, err)
			assert.Empty(t, entries, "something was written through the link")

			// fsck without --repair reports it as a problem.
			r = cli(t, "fsck", f.backing)
			assert.Equal(t, exitDamaged, r.code, "stderr: %s", r.stderr)
			assert.Contains(t, r.stdout, filepath.Join(keys.DirName, entry)+": reserved: "+
				"a symbolic link, not a directory")

			require.NoError(t, os.Remove(p))
			requireOK(t, f.mount(t))
			requireOK(t, cliProcess(t, "unmount", f.mnt))
		})
	}
}
