//go:build linux

package check

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFileRemovedWhileChecking checks that a file removed between the
// listing and its open (a check next to a running mount, as in
// TestMountSharedRotateUnderLoad) is not reported as damage.
func TestFileRemovedWhileChecking(t *testing.T) {
	t.Parallel()
	v := newVolume(t)
	f := v.newFile(t, plain(1, bs))
	v.write(t, "gone", f.data)
	r, err := Run(v.dir, Options{VolumeID: v.id, Keys: v.ring, Progress: func(_ int, rel string) {
		if rel == "gone" {
			require.NoError(t, os.Remove(filepath.Join(v.dir, rel)))
		}
	}})
	require.NoError(t, err)
	assert.Empty(t, r.Problems)
}
