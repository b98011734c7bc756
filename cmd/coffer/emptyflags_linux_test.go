//go:build linux

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestEmptyFlagValues is breaker3's F6: an empty flag value was taken as
// "not given" (--master ” mounted with any key, --recovery-key ” with
// the normal keys, audit config --log ” just showed the settings). Each
// is a usage error now, before anything happens, for every string flag.
func TestEmptyFlagValues(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"mount --master", []string{"mount", f.backing, f.mnt, "--master", ""}, "empty value for --master"},
		{"mount -o master=", []string{"mount", f.backing, f.mnt, "-o", "master="},
			"empty value for mount option master="},
		{"mount -o passphrase-file=", []string{"mount", f.backing, f.mnt, "-o", "ro,passphrase-file="},
			"empty value for mount option passphrase-file="},
		{"mount --recovery-key", []string{"mount", f.backing, f.mnt, "--recovery-key", ""},
			"empty value for --recovery-key"},
		{"mount --passphrase-file", []string{"mount", f.backing, f.mnt, "--passphrase-file="},
			"empty value for --passphrase-file"},
		{"mount --log-file", []string{"mount", f.backing, f.mnt, "--log-file", ""},
			"empty value for --log-file"},
		{"mount --tpm-device", []string{"mount", f.backing, f.mnt, "--tpm-device", ""},
			"empty value for --tpm-device"},
		{"audit config --log", []string{"audit", "config", f.backing, "--log", ""},
			"empty value for --log"},
		{"master add --with", []string{"master", "add", f.backing, "passphrase:", "--with", ""},
			"empty value for --with"},
		// breaker4 F5: list flags, fixed after the string flags.
		{"rotate --skip-master ''", []string{"rotate", f.backing, "--skip-master", ""},
			`invalid argument "" for "--skip-master" flag: empty value or list item`},
		{"rotate --skip-master ,", []string{"rotate", f.backing, "--skip-master", ","},
			`invalid argument "," for "--skip-master" flag: empty value or list item`},
		{"rotate --skip-master ID,", []string{"rotate", f.backing, "--skip-master", "0badc0de,"},
			"empty value or list item"},
		{"rotate --skip-master ID --skip-master ''",
			[]string{"rotate", f.backing, "--skip-master", "0badc0de", "--skip-master="},
			"empty value or list item"},
		{"audit show --event ''", []string{"audit", "show", f.backing, "--event", ""},
			"empty value or list item"},
		{"init --master ''", []string{"init", f.backing, "--master", ""},
			"empty value or list item"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, f.dir)
			r := cliProcess(t, tt.args...)
			assertFailure(t, r, exitUsage, tt.want)
			assert.False(t, isMounted(t, f.mnt))
			assert.Equal(t, before, snapshot(t, f.dir), "a usage error changed files")
		})
	}
}
