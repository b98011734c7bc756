//go:build linux

package deeppath

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// component is a 60-byte directory name: 80 levels make a path of 4880
// bytes, longer than PATH_MAX.
var component = strings.Repeat("d", 60)

const levels = 80

// deepTree makes root/component/... (levels deep) with openat and mkdirat,
// as path-based calls cannot, and a file "leaf" holding "bottom" at the
// bottom. It returns the file's path relative to root.
func deepTree(t *testing.T, root, top string) string {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	rel := []string{}
	for i := range levels {
		name := component
		if i == 0 {
			name = top
		}
		require.NoError(t, unix.Mkdirat(fd, name, 0o700))
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		require.NoError(t, err)
		require.NoError(t, unix.Close(fd))
		fd, rel = next, append(rel, name)
	}
	defer unix.Close(fd)
	leaf, err := unix.Openat(fd, "leaf", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	require.NoError(t, err)
	_, err = unix.Write(leaf, []byte("bottom"))
	require.NoError(t, err)
	require.NoError(t, unix.Close(leaf))
	return filepath.Join(append(rel, "leaf")...)
}

// removeDeep lets t.TempDir's cleanup, which uses paths, remove the tree.
func removeDeep(t *testing.T, root string) {
	t.Cleanup(func() {
		var rels []string
		require.NoError(t, Walk(root, func(e Entry) error {
			rels = append(rels, e.Rel)
			return nil
		}))
		r := NewResolver(root)
		defer r.Close()
		for i := len(rels) - 1; i >= 0; i-- { // entries before their directory
			require.NoError(t, os.Remove(r.Path(rels[i])))
		}
	})
}

func TestWalkDeeperThanPathMax(t *testing.T) {
	root := t.TempDir()
	removeDeep(t, root)
	leafA := deepTree(t, root, "a")
	leafB := deepTree(t, root, "b")
	require.NoError(t, os.WriteFile(filepath.Join(root, "top"), []byte("top"), 0o600))
	require.Greater(t, len(filepath.Join(root, leafA)), unix.PathMax)
	_, err := os.ReadFile(filepath.Join(root, leafA))
	require.ErrorIs(t, err, unix.ENAMETOOLONG, "the tree is out of reach of plain paths")

	var files []string
	got := map[string]string{}
	dirs := 0
	require.NoError(t, Walk(root, func(e Entry) error {
		if e.IsDir() {
			dirs++
			return nil
		}
		files = append(files, e.Rel)
		b, err := os.ReadFile(e.Path)
		require.NoError(t, err, e.Rel)
		got[e.Rel] = string(b)
		return nil
	}))
	assert.Equal(t, []string{leafA, leafB, "top"}, files, "lexical order, directories first")
	assert.Equal(t, map[string]string{leafA: "bottom", leafB: "bottom", "top": "top"}, got)
	assert.Equal(t, 2*levels, dirs)
}

func TestWalkSkipDir(t *testing.T) {
	root := t.TempDir()
	removeDeep(t, root)
	deepTree(t, root, "a")
	leafB := deepTree(t, root, "b")
	var files []string
	require.NoError(t, Walk(root, func(e Entry) error {
		if e.IsDir() && e.Rel == "a" {
			return fs.SkipDir
		}
		if !e.IsDir() {
			files = append(files, e.Rel)
		}
		return nil
	}))
	assert.Equal(t, []string{leafB}, files)
}

// TestResolver reaches deep entries of two trees in turn (its descriptors
// follow from one to the other) and short ones as plain paths.
func TestResolver(t *testing.T) {
	root := t.TempDir()
	removeDeep(t, root)
	leafA := deepTree(t, root, "a")
	leafB := deepTree(t, root, "b")
	require.NoError(t, os.WriteFile(filepath.Join(root, "top"), []byte("top"), 0o600))

	r := NewResolver(root)
	defer r.Close()
	for _, rel := range []string{leafA, leafB, filepath.Dir(leafA), leafA, "top"} {
		p := r.Path(rel)
		assert.Less(t, len(p), unix.PathMax, rel)
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(p, &st), rel)
	}
	assert.Equal(t, filepath.Join(root, "top"), r.Path("top"), "a short path is used as it is")
	b, err := os.ReadFile(r.Path(leafB))
	require.NoError(t, err)
	assert.Equal(t, "bottom", string(b))

	// A symbolic link on the way is not followed.
	mid := filepath.Join(strings.Split(leafA, "/")[:40]...)
	require.NoError(t, os.Rename(r.Path(mid), r.Path(filepath.Join(filepath.Dir(mid), "moved"))))
	require.NoError(t, os.Symlink("moved", r.Path(mid)))
	r.Close()
	r = NewResolver(root)
	defer r.Close()
	_, err = os.ReadFile(r.Path(leafA))
	assert.Error(t, err)
	require.NoError(t, os.Remove(r.Path(mid)))
	require.NoError(t, os.Rename(r.Path(filepath.Join(filepath.Dir(mid), "moved")), r.Path(mid)))
}
