package fs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMountSmoke(t *testing.T) {
	v, mnt := mountNew(t)
	p := filepath.Join(mnt, "hello.txt")
	require.NoError(t, os.WriteFile(p, []byte("hello, world"), 0o644))
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "hello, world", string(got))
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, int64(12), st.Size())
	raw, err := os.ReadFile(filepath.Join(v.backing, "hello.txt"))
	require.NoError(t, err)
	assert.Len(t, raw, 280+12+40)
	_, err = os.Stat(filepath.Join(mnt, ".coffer"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	ents, err := os.ReadDir(mnt)
	require.NoError(t, err)
	require.Len(t, ents, 1)
	t.Log(v.logs.String())
}
