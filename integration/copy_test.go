//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCopyTree copies a tree with symlinks, hard links, special modes,
// owners, an xattr and nanosecond mtimes into the mount and back out with
// cp -a and rsync -a, and compares each copy with the original: diff -r for
// contents, stat for everything else.
func TestCopyTree(t *testing.T) {
	tests := []struct {
		name  string
		tools []string
		in    func(t *testing.T, src, dst string)
		out   func(t *testing.T, src, dst string)
	}{
		{
			name:  "cp -a",
			tools: []string{"cp"},
			in:    func(t *testing.T, src, dst string) { run(t, "", "cp", "-a", src, dst) },
			out:   func(t *testing.T, src, dst string) { run(t, "", "cp", "-a", src, dst) },
		},
		{
			name:  "rsync -aHX",
			tools: []string{"rsync"},
			in:    rsyncInto,
			out:   func(t *testing.T, src, dst string) { run(t, "", "rsync", "-aHX", src+"/", dst) },
		},
		{
			name:  "tar",
			tools: []string{"tar"},
			in:    tarCopy,
			out:   tarCopy,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			requireTools(t, append(tc.tools, "diff", "grep")...)
			v := newVolume(t)
			work := t.TempDir()
			marker := fixtureMarker(t, "tree")
			src := filepath.Join(work, "src")
			makeFixture(t, src, marker)

			tc.in(t, src, v.path("copy"))
			want := snapshot(t, src) // after tc.in, which may change src between passes
			run(t, "", "diff", "-r", "--no-dereference", src, v.path("copy"))
			compareTrees(t, want, snapshot(t, v.path("copy")), 0)

			out := filepath.Join(work, "out")
			tc.out(t, v.path("copy"), out)
			run(t, "", "diff", "-r", "--no-dereference", src, out)
			compareTrees(t, want, snapshot(t, out), 0)

			v.remount(t)
			compareTrees(t, want, snapshot(t, v.path("copy")), 0)
			v.unmount(t)
			assertNoPlaintext(t, v.backing, marker)
		})
	}
}

// rsyncInto copies src to dst with rsync -aHX, then changes the source and
// syncs again twice (with temporary files and renames, then --inplace), and
// checks that a checksum dry run finds nothing left to do.
func rsyncInto(t *testing.T, src, dst string) {
	run(t, "", "rsync", "-aHX", src+"/", dst)

	f, err := os.OpenFile(filepath.Join(src, "a/b/c/big"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("changed in the middle of a block"), 150000)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.WriteFile(filepath.Join(src, "a/new"), pseudoRandom(99, 5000), 0o644))
	require.NoError(t, os.Remove(filepath.Join(src, "one")))
	setFixtureTimes(t, src, 1)
	run(t, "", "rsync", "-aHX", "--delete", src+"/", dst)

	f, err = os.OpenFile(filepath.Join(src, "a/block+1"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(pseudoRandom(100, 9000))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	setFixtureTimes(t, src, 2)
	run(t, "", "rsync", "-aHX", "--inplace", "--no-whole-file", src+"/", dst)

	left := run(t, "", "rsync", "-aHXn", "--checksum", "--delete", "--itemize-changes",
		src+"/", dst)
	assert.Empty(t, left, "rsync --checksum still finds differences")
}

// tarCopy copies src to dst through a tar pipe that preserves everything.
func tarCopy(t *testing.T, src, dst string) {
	require.NoError(t, os.Mkdir(dst, 0o755))
	sh(t, "", "tar --xattrs --xattrs-include='*' -C "+src+" -cf - . | "+
		"tar --xattrs --xattrs-include='*' --same-owner -C "+dst+" -xpf -")
}
