//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTarballListed(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"a/b", ".hidden/x", "a/.git"} {
		require.NoError(t, os.MkdirAll(filepath.Join(src, d), 0o755))
	}
	for _, f := range []string{"top.go", "a/one", "a/b/two", "a/.dot", ".hidden/x/three", "a/.git/four"} {
		require.NoError(t, os.WriteFile(filepath.Join(src, f), []byte(f), 0o644))
	}

	tb, err := makeTarball(src, filepath.Join(t.TempDir(), "t.tar"))
	require.NoError(t, err)
	assert.Len(t, tb.files, 6)
	assert.Len(t, tb.dirs, 6, "tree, a, a/b, a/.git, .hidden, .hidden/x")

	files, dirs := tb.listed()
	assert.Equal(t, 3, files, "top.go, a/one, a/b/two")
	assert.Equal(t, 2, dirs, "a and a/b")
}
