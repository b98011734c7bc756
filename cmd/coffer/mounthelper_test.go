package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHelperArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"mount.fuse3 form", []string{"/b", "/m", "-o", "master=x,ro"},
			[]string{"mount", "/b", "/m", "-o", "master=x,ro"}, ""},
		{"mount(8) form", []string{"/b", "/m", "-n", "-s", "-v", "-o", "rw", "-t", "fuse.coffer"},
			[]string{"mount", "/b", "/m", "-o", "rw"}, ""},
		{"joined -o, repeated", []string{"/b", "/m", "-oro", "-o", "debug"},
			[]string{"mount", "/b", "/m", "-o", "ro,debug"}, ""},
		{"no options", []string{"/b", "/m"}, []string{"mount", "/b", "/m"}, ""},
		{"missing mount point", []string{"/b"}, nil, "missing argument"},
		{"missing -o value", []string{"/b", "/m", "-o"}, nil, "missing value of -o"},
		{"other type", []string{"/b", "/m", "-t", "ext4"}, nil, `file system type "ext4"`},
		{"namespace", []string{"/b", "/m", "-N", "1"}, nil, `unsupported mount helper argument "-N"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := helperArgs(tc.args)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestIsHelperCall(t *testing.T) {
	t.Parallel()
	root := newRootCommand(&app{})
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{"absolute paths", []string{"/srv/a.enc", "/srv/a", "-o", "ro"}, true},
		{"existing relative directory", []string{dir, "mnt"}, true},
		{"command", []string{"mount", "/srv/a.enc", "/srv/a"}, false},
		{"help", []string{"help", "mount"}, false},
		{"unknown word", []string{"mout", "x"}, false},
		{"flag first", []string{"--log-level", "debug"}, false},
		{"one argument", []string{"/srv/a.enc"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, isHelperCall(root, tc.args))
		})
	}
}

func TestHelperProgram(t *testing.T) {
	t.Parallel()
	assert.True(t, helperNames[helperProgram("/sbin/mount.fuse.coffer")])
	assert.True(t, helperNames[helperProgram("mount.coffer")])
	assert.False(t, helperNames[helperProgram("/usr/local/bin/coffer")])
}

func TestIgnoredOptionsNeverReachTheMount(t *testing.T) {
	t.Parallel()
	for _, opt := range []string{"nofail", "_netdev", "noauto", "auto", "user", "users", "defaults",
		"x-systemd.requires=tpm2.target", "x-foo", "comment=hi", "nodev", "nosuid", "dev", "suid"} {
		assert.True(t, isIgnoredOption(opt), opt)
	}
	for _, opt := range []string{"ro", "rw", "allow_other", "debug", "noexec", "exec", "master=x"} {
		assert.False(t, isIgnoredOption(opt), opt)
	}
}
