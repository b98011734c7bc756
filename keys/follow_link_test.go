//go:build unix

package keys_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

// TestMountRecordNotThroughLink checks that a running mount whose
// .coffer/mounts is replaced by a symbolic link (after the start-up check)
// neither writes nor removes its record where the link points, and that
// MountAcks does not read records there (breaker3 F5).
func TestMountRecordNotThroughLink(t *testing.T) {
	v := newVolume(t)
	f := keys.NewFollower(v.backing, v.ring, zerolog.Nop())
	stop := f.Watch(time.Hour)
	acks, err := keys.MountAcks(v.backing)
	require.NoError(t, err)
	require.Len(t, acks, 1)

	victim := t.TempDir()
	mounts := filepath.Join(v.backing, keys.DirName, keys.MountsName)
	require.NoError(t, os.Rename(mounts, filepath.Join(victim, "moved")))
	require.NoError(t, os.Symlink(victim, mounts))
	require.NoError(t, os.WriteFile(filepath.Join(victim, "planted-1.json"),
		[]byte(`{"version":1,"host":"planted","pid":1,"generation":1}`), 0o600))
	// A file where the link points, under the name of this mount's record.
	require.NoError(t, os.WriteFile(filepath.Join(victim, acks[0].Name), []byte("keep"), 0o600))
	require.NoError(t, f.Refresh(true))
	stop()

	entries, err := os.ReadDir(victim)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"moved", "planted-1.json", acks[0].Name}, names,
		"a record was written or removed through the link")
	_, err = keys.MountAcks(v.backing)
	assert.ErrorContains(t, err, "is a symbolic link")
}
