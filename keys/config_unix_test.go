//go:build unix

package keys

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadConfigNotAFile swaps a named pipe, and a symbolic link to a
// good config, in for volume.json: ReadConfig refuses both at once. A
// blocking open of the pipe would hang every create of a running mount,
// which reads the config to notice rotations (the test would hang too).
func TestReadConfigNotAFile(t *testing.T) {
	root := t.TempDir()
	good := filepath.Join(root, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"version":1}`), 0o600))

	fifo := filepath.Join(root, "fifo")
	require.NoError(t, os.MkdirAll(filepath.Join(fifo, DirName), 0o700))
	require.NoError(t, syscall.Mkfifo(ConfigPath(fifo), 0o600))
	_, err := ReadConfig(fifo)
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "named pipe")

	link := filepath.Join(root, "link")
	require.NoError(t, os.MkdirAll(filepath.Join(link, DirName), 0o700))
	require.NoError(t, os.Symlink(good, ConfigPath(link)))
	_, err = ReadConfig(link)
	require.ErrorIs(t, err, syscall.ELOOP)
}
