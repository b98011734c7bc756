package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

func TestParseMountInfo(t *testing.T) {
	t.Parallel()
	const table = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 22 0:40 / /srv/my\040app rw,nosuid,nodev,relatime shared:2 master:1 - fuse.coffer /srv/app\040enc rw,user_id=0
46 22 0:41 / /proc rw - proc proc rw
`
	entries, err := parseMountInfo(strings.NewReader(table))
	require.NoError(t, err)
	want := []mountEntry{
		{mountPoint: "/", fsType: "ext4", source: "/dev/sda1"},
		{mountPoint: "/srv/my app", fsType: "fuse.coffer", source: "/srv/app enc"},
		{mountPoint: "/proc", fsType: "proc", source: "proc"},
	}
	assert.Equal(t, want, entries)

	_, err = parseMountInfo(strings.NewReader("1 2 3\n"))
	assert.Error(t, err)
}

func TestUnescapeMountField(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"plain", "/mnt/a", "/mnt/a"},
		{"space", `/mnt/a\040b`, "/mnt/a b"},
		{"tab and newline", `/a\011b\012c`, "/a\tb\nc"},
		{"backslash", `/a\134b`, `/a\b`},
		{"not an escape", `/a\x`, `/a\x`},
		{"short escape at end", `/a\04`, `/a\04`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, unescapeMountField(tt.in))
		})
	}
}

func TestMountOptionsParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		options               []string
		ro, allowOther, debug bool
		wantErr               string
	}{
		{"none", nil, false, false, false, ""},
		{"ro", []string{"ro"}, true, false, false, ""},
		{"all", []string{"ro", "allow_other", "debug"}, true, true, true, ""},
		{"rw after ro", []string{"ro", "rw"}, false, false, false, ""},
		{"unknown", []string{"frob"}, false, false, false, `unknown mount option "frob"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := mountOptions{backing: "b", mountPoint: "m", options: tt.options}
			err := o.parse()
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				assert.Equal(t, exitUsage, exitCode(err))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.ro, o.readOnly)
			assert.Equal(t, tt.allowOther, o.allowOther)
			assert.Equal(t, tt.debug, o.debug)
			assert.True(t, filepath.IsAbs(o.backing) && filepath.IsAbs(o.mountPoint))
		})
	}
}

// TestMountOptionsShared checks that -o shared, which --shared adds and the
// mount helper passes on from fstab, turns shared mode on and reaches the
// mount process.
func TestMountOptionsShared(t *testing.T) {
	o := mountOptions{backing: "/b", mountPoint: "/m", options: []string{"allow_other", "shared"}}
	require.NoError(t, o.parse())
	assert.True(t, o.shared)
	assert.True(t, o.allowOther)
	args := o.childArgs(&app{logLevel: "info"}, "/l")
	assert.Contains(t, args, "allow_other,shared")

	o = mountOptions{backing: "/b", mountPoint: "/m", options: []string{"ro"}}
	require.NoError(t, o.parse())
	assert.False(t, o.shared, "shared only when asked for")
}

func TestChildArgs(t *testing.T) {
	t.Parallel()
	o := mountOptions{backing: "/b", mountPoint: "/-m", options: []string{"ro", "debug"}, master: "1a2b3c4d"}
	a := &app{logLevel: "debug"}
	got := o.childArgs(a, "/var/log/coffer/x.log")
	assert.Equal(t, []string{"mount", "--foreground", "--ready-fd=3", "--passphrase-fd=4", "--pin-fd=5",
		"--log-level=debug", "--log-format=json", "--log-file=/var/log/coffer/x.log",
		"-o", "ro,debug", "--master=1a2b3c4d", "--", "/b", "/-m"}, got)
	for _, arg := range got {
		assert.NotContains(t, arg, "passphrase-file", "the passphrase file must not reach the child")
	}

	// A PIN read by the parent is for one token, named to the child.
	o.pinToken = "coffer"
	assert.Contains(t, o.childArgs(a, "/l"), "--pin-token=coffer")
	o.pinToken = ""

	// No log file: the child logs to the journal.
	got = o.childArgs(a, "")
	assert.Contains(t, got, "--log-journal")
	for _, arg := range got {
		assert.NotContains(t, arg, "--log-file")
	}
}

func TestLogPath(t *testing.T) {
	vol := keys.VolumeID{0xab}
	o := mountOptions{logFile: "/x/y.log"}
	p, err := o.logPath(vol)
	require.NoError(t, err)
	assert.Equal(t, "/x/y.log", p)

	p, err = mountOptions{}.logPath(vol)
	require.NoError(t, err)
	name := vol.String() + ".log"
	if os.Geteuid() == 0 {
		assert.Equal(t, "/var/log/coffer/"+name, p)
		return
	}
	t.Setenv("XDG_STATE_HOME", "/state")
	p, err = mountOptions{}.logPath(vol)
	require.NoError(t, err)
	assert.Equal(t, "/state/coffer/"+name, p)
}

func TestCheckAllowOther(t *testing.T) {
	dir := t.TempDir()
	old := fuseConfPath
	t.Cleanup(func() { fuseConfPath = old })
	fuseConfPath = filepath.Join(dir, "fuse.conf")

	assert.NoError(t, checkAllowOther(0), "root may always use allow_other")
	err := checkAllowOther(1000)
	assert.ErrorContains(t, err, "user_allow_other", "no fuse.conf")
	assert.NotEmpty(t, hintsOf(err))
	require.NoError(t, os.WriteFile(fuseConfPath, []byte("# user_allow_other\n"), 0o644))
	assert.ErrorContains(t, checkAllowOther(1000), "user_allow_other", "commented out")
	require.NoError(t, os.WriteFile(fuseConfPath, []byte("mount_max = 9\n user_allow_other\n"), 0o644))
	assert.NoError(t, checkAllowOther(1000))
}

// TestMountOptionsAbsolutePaths checks that every file or device path a
// background mount hands its child is absolute: the child runs in /. The
// mount helper's key=value options become these same flags.
func TestMountOptionsAbsolutePaths(t *testing.T) {
	t.Chdir(t.TempDir())
	wd, err := os.Getwd()
	require.NoError(t, err)
	o := mountOptions{backing: "b", mountPoint: "m",
		masterFlags: masterFlags{pinFile: "pin", tpmDevice: "tpm.sock", recoveryKey: "rk"}}
	require.NoError(t, o.parse())
	assert.Equal(t, filepath.Join(wd, "pin"), o.pinFile)
	assert.Equal(t, filepath.Join(wd, "tpm.sock"), o.tpmDevice)
	assert.Equal(t, filepath.Join(wd, "rk"), o.recoveryKey)
	assert.Contains(t, o.childArgs(&app{}, "/l"), "--pin-file="+filepath.Join(wd, "pin"))
	assert.Contains(t, o.childArgs(&app{}, "/l"), "--tpm-device="+filepath.Join(wd, "tpm.sock"))

	o = mountOptions{backing: "b", mountPoint: "m", masterFlags: masterFlags{recoveryKey: "-"}}
	require.NoError(t, o.parse())
	assert.Equal(t, "-", o.recoveryKey, "- reads standard input")
}
