//go:build linux

package fs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeepTreeNameTooLong grows a tree by renames (as breaker F4 did) past
// the depth where backing paths exceed PATH_MAX, in a volume with encrypted
// names, and then works at every depth through a fresh mount: every answer
// is success or ENAMETOOLONG, never EIO. The top directory's name is chosen
// so that one directory's backing path fits while the path of its record
// (.coffer.dir) does not, which used to read as a damaged record (EIO).
func TestDeepTreeNameTooLong(t *testing.T) {
	v := newTestVolume(t)
	v.opts.EncryptNames = true
	mnt := v.mount(t)

	const depth = 200
	const level = 24 // "/" and the 23-byte encrypted name of "a"
	top := ""
	var hit int
	for l := 1; l <= 30 && top == ""; l++ {
		name := strings.Repeat("t", l)
		before := rootNames(t, v.backing)
		require.NoError(t, os.Mkdir(filepath.Join(mnt, name), 0o700))
		enc := newName(t, before, rootNames(t, v.backing))
		for k := 1; k <= depth; k++ {
			dir := len(v.backing) + 1 + len(enc) + level*k
			if dir < syscall.PathMax && dir+len("/"+".coffer.dir") >= syscall.PathMax {
				top, hit = name, k
				break
			}
		}
	}
	require.NotEmpty(t, top, "no top name puts a record just past PATH_MAX")

	base := filepath.Join(mnt, top)
	require.NoError(t, os.Mkdir(filepath.Join(base, "a"), 0o700))
	for range depth {
		require.NoError(t, os.Mkdir(filepath.Join(base, "b"), 0o700))
		require.NoError(t, os.Rename(filepath.Join(base, "a"), filepath.Join(base, "b", "a")))
		require.NoError(t, os.Rename(filepath.Join(base, "b"), filepath.Join(base, "a")))
	}

	fresh := filepath.Join(v.mount(t), top) // no directory key cached
	tooLong := map[int]bool{}
	for k := 1; k <= depth+1; k++ {
		p := filepath.Join(fresh, strings.Repeat("a/", k))
		_, lerr := os.Lstat(p)
		_, rerr := os.ReadDir(p)
		_, cerr := os.Lstat(filepath.Join(p, "nothing"))
		for _, err := range []error{lerr, rerr, cerr} {
			if err == nil || errors.Is(err, os.ErrNotExist) {
				continue
			}
			require.ErrorIs(t, err, syscall.ENAMETOOLONG, "depth %d", k)
			tooLong[k] = true
		}
	}
	assert.True(t, tooLong[hit], "depth %d, whose record is past PATH_MAX, answers ENAMETOOLONG", hit)
	assert.False(t, tooLong[hit-2], "depth %d is within reach", hit-2)
	assert.NotContains(t, v.logs.String(), "directory record missing or damaged")
}

// rootNames lists the backing directory's root.
func rootNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// newName returns the one name in after that is not in before.
func newName(t *testing.T, before, after map[string]bool) string {
	t.Helper()
	for n := range after {
		if !before[n] {
			return n
		}
	}
	t.Fatal("no new backing name")
	return ""
}
