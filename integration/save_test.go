//go:build linux

package integration

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAtomicSave replays the ways editors save a file, in a plain directory
// and in the mount, and compares the results. While each save runs, a reader
// keeps the original open: POSIX says it goes on reading the old contents.
func TestAtomicSave(t *testing.T) {
	requireTools(t, "sed", "grep")
	tests := []struct {
		name    string
		save    func(t *testing.T, dir, path, content string)
		inPlace bool // the open reader sees the new contents
	}{
		{name: "temp file, fsync, rename over", save: saveRename},
		{name: "backup rename, then write", save: saveBackup},
		{name: "sed -i", save: func(t *testing.T, dir, path, _ string) {
			run(t, dir, "sed", "-i", "s/password = old/password = new/", path)
		}},
		{name: "truncate and rewrite in place", inPlace: true,
			save: func(t *testing.T, _, path, content string) {
				require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
			}},
	}

	v := newVolume(t)
	plainRoot := t.TempDir()
	marker := fixtureMarker(t, "save")
	original := "[db]\nuser = app\npassword = old " + marker + "\n" + string(make([]byte, 5000)) + "end\n"
	updated := "[db]\nuser = app\npassword = new " + marker + "\n" + string(make([]byte, 5000)) + "end\n"

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			trees := make([]tree, 2)
			for j, root := range []string{plainRoot, v.mnt} {
				dir := filepath.Join(root, string(rune('a'+i)))
				require.NoError(t, os.Mkdir(dir, 0o755))
				path := filepath.Join(dir, "app.conf")
				require.NoError(t, os.WriteFile(path, []byte(original), 0o640))

				reader, err := os.Open(path)
				require.NoError(t, err)
				tc.save(t, dir, path, updated)
				old, err := io.ReadAll(reader)
				require.NoError(t, err)
				require.NoError(t, reader.Close())

				data, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, updated, string(data), "contents after save")
				if tc.inPlace {
					assert.Equal(t, updated, string(old), "the open reader sees the rewrite")
				} else {
					assert.Equal(t, original, string(old), "the open reader sees the old file")
				}
				trees[j] = snapshot(t, dir)
			}
			compareTrees(t, trees[0], trees[1], ignoreMtime|ignoreRoot)
		})
	}

	v.unmount(t)
	assertNoPlaintext(t, v.backing, marker)
}

// saveRename writes a temporary file next to path, fsyncs it, renames it
// over path and fsyncs the directory, like vim with backupcopy=no or most
// IDEs.
func saveRename(t *testing.T, dir, path, content string) {
	tmp := filepath.Join(dir, ".app.conf.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.NoError(t, os.Rename(tmp, path))
	syncDir(t, dir)
}

// saveBackup renames the original to a backup, writes a new file and
// fsyncs it, like emacs.
func saveBackup(t *testing.T, dir, path, content string) {
	require.NoError(t, os.Rename(path, path+"~"))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	syncDir(t, dir)
}

// syncDir fsyncs a directory.
func syncDir(t *testing.T, dir string) {
	d, err := os.Open(dir)
	require.NoError(t, err)
	require.NoError(t, d.Sync())
	require.NoError(t, d.Close())
}
