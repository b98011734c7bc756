//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nobody is the unprivileged user the permission checks run as.
const nobody = "65534"

// TestAllowOther checks who may use a mount. Without -o allow_other only
// the user who mounted it gets in; with it, other users get in and the
// kernel enforces file permissions (default_permissions), and a file they
// create is theirs.
func TestAllowOther(t *testing.T) {
	requireTools(t, "setpriv", "cat", "sh")
	v := newVolume(t)
	// The temporary directories are 0700: let nobody reach the mount point.
	require.NoError(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	require.NoError(t, os.Chmod(v.dir, 0o755))
	require.NoError(t, os.Chmod(v.mnt, 0o755)) // the root of the mount is the 0700 backing directory
	require.NoError(t, os.WriteFile(v.path("public"), []byte("public\n"), 0o644))
	require.NoError(t, os.WriteFile(v.path("secret"), []byte("secret\n"), 0o600))
	require.NoError(t, os.Mkdir(v.path("drop"), 0o777))
	require.NoError(t, os.Chmod(v.path("drop"), 0o777))

	_, stderr, err := asNobody("cat", v.path("public"))
	assert.Error(t, err, "another user read a mount without allow_other")
	assert.Contains(t, stderr, "Permission denied")

	v.remount(t, "allow_other")
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr bool
	}{
		{"read a 0644 file", []string{"cat", v.path("public")}, "public\n", false},
		{"read a 0600 file", []string{"cat", v.path("secret")}, "", true},
		{"write a 0644 file of root", []string{"sh", "-c", "echo x >> " + v.path("public")}, "", true},
		{"create in a 0777 directory", []string{"sh", "-c", "echo mine > " + v.path("drop", "mine")}, "", false},
		{"create in the root-owned 0755 root", []string{"sh", "-c", "echo x > " + v.path("new")}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := asNobody(tc.args...)
			if tc.wantErr {
				assert.Error(t, err)
				assert.Contains(t, stderr, "Permission denied")
				return
			}
			require.NoError(t, err, stderr)
			assert.Equal(t, tc.wantOut, out)
		})
	}

	t.Run("the new file belongs to its creator", func(t *testing.T) {
		fi, err := os.Stat(v.path("drop", "mine"))
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		assert.Equal(t, nobody, strconv.FormatUint(uint64(st.Uid), 10), "owner in the mount")
		bfi, err := os.Stat(v.backingPath(t, "drop", "mine"))
		require.NoError(t, err)
		assert.Equal(t, st.Uid, bfi.Sys().(*syscall.Stat_t).Uid, "owner of the backing file")
	})
}

// asNobody runs a command as the unprivileged user.
func asNobody(args ...string) (string, string, error) {
	full := append([]string{"--reuid=" + nobody, "--regid=" + nobody, "--clear-groups"}, args...)
	return tryRun("/", nil, "setpriv", full...)
}
