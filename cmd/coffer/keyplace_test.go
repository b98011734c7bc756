package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPathWithin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	require.NoError(t, os.MkdirAll(filepath.Join(vol, "sub"), 0o700))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "volume2"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(vol, "sub"), filepath.Join(dir, "link")))
	require.NoError(t, os.Symlink(filepath.Join(dir, "volume2"), filepath.Join(vol, "out")))
	tests := []struct {
		name string
		path string
		want bool
	}{
		{"the directory itself", vol, true},
		{"an existing file's directory", filepath.Join(vol, "sub"), true},
		{"a file that does not exist yet", filepath.Join(vol, "sub", "new", "pin"), true},
		{"through a symbolic link into it", filepath.Join(dir, "link", "pin"), true},
		{"through a symbolic link out of it", filepath.Join(vol, "out", "pin"), false},
		{"dot-dot out of it", filepath.Join(vol, "sub", "..", "..", "pin"), false},
		{"a sibling with the same prefix", filepath.Join(dir, "volume2", "pin"), false},
		{"the parent", dir, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pathWithin(vol, tt.path)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestPathWithinRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	require.NoError(t, os.Mkdir("vol", 0o700))
	got, err := pathWithin("vol", filepath.Join(dir, "vol", "pin"))
	require.NoError(t, err)
	assert.True(t, got, "relative directory, absolute path")
	got, err = pathWithin(filepath.Join(dir, "vol"), "vol/pin")
	require.NoError(t, err)
	assert.True(t, got, "absolute directory, relative path")
}

// TestMasterAddSecretInBacking: a PIN, passphrase or recovery key file in
// the backing directory is refused before anything is unlocked or written.
func TestMasterAddSecretInBacking(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.init(t)
	inBacking := filepath.Join(f.backing, "secret.txt")
	require.NoError(t, os.WriteFile(inBacking, []byte("correct horse\n"), 0o600))
	second := f.newKey(t, "second.key")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"PIN file", []string{second, "--pin-file", inBacking}, "the PIN file (--pin-file) " +
			inBacking + " is inside the backing directory " + f.backing},
		{"passphrase file", []string{second, "--passphrase-file", inBacking},
			"the passphrase file (--passphrase-file) " + inBacking + " is inside the backing"},
		{"new passphrase file", append([]string{"passphrase:", "--new-passphrase-file",
			inBacking}, cheapArgon2...), "the passphrase file (--new-passphrase-file) " +
			inBacking + " is inside the backing"},
		{"recovery key file", []string{second, "--recovery-key", inBacking},
			"the recovery key file (--recovery-key) " + inBacking + " is inside the backing"},
		{"pin-source of a pkcs11 URI", []string{"pkcs11:token=t;object=o?pin-source=file:" +
			inBacking}, "the pin-source of the pkcs11: URI " + inBacking + " is inside the backing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, f.dir)
			r := cli(t, append([]string{"master", "add", f.backing}, tt.args...)...)
			assertFailure(t, r, exitFailure, tt.want)
			assert.Contains(t, r.stderr, "hint: keep it away from the ciphertext")
			assert.Equal(t, before, snapshot(t, f.dir))
		})
	}
}
