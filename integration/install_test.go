//go:build linux

package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMakeInstall runs make install into a temporary DESTDIR with
// PREFIX=/usr, checks the installed files against the list of what an admin
// gets, checks that they work (the binary runs, the completion scripts
// parse, the unit runs the installed binary, the mount helper link points at
// it, the man pages render), then make uninstall leaves no file behind.
func TestMakeInstall(t *testing.T) {
	requireTools(t, "make", "bash", "realpath", "sed")
	dest := t.TempDir()
	args := []string{"-C", "..", "DESTDIR=" + dest, "PREFIX=/usr"}
	run(t, "", "make", append(args, "install")...)

	want := []string{
		"usr/bin/coffer",
		"usr/lib/systemd/system/coffer-rotate@.service",
		"usr/lib/systemd/system/coffer-rotate@.timer",
		"usr/lib/systemd/system/coffer@.service",
		"usr/sbin/mount.fuse.coffer",
		"usr/share/bash-completion/completions/coffer",
		"usr/share/doc/coffer/README.md",
		"usr/share/doc/coffer/admin-guide.md",
		"usr/share/doc/coffer/cli.md",
		"usr/share/doc/coffer/examples/volume.conf.example",
		"usr/share/fish/vendor_completions.d/coffer.fish",
		"usr/share/man/man1/coffer-init.1",
		"usr/share/man/man1/coffer-mount.1",
		"usr/share/man/man1/coffer-status.1",
		"usr/share/man/man1/coffer-unmount.1",
		"usr/share/man/man1/coffer.1",
		"usr/share/zsh/site-functions/_coffer",
	}
	got := installedFiles(t, dest)
	assert.Subset(t, got, want)
	for _, f := range got {
		assert.False(t, strings.Contains(f, "gen-man"), "the hidden gen-man command got a man page: %s", f)
	}

	bin := filepath.Join(dest, "usr/bin/coffer")
	assert.Contains(t, run(t, "", bin, "version"), "coffer")
	link, err := os.Readlink(filepath.Join(dest, "usr/sbin/mount.fuse.coffer"))
	require.NoError(t, err)
	assert.Equal(t, "../bin/coffer", link)
	unit, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/coffer@.service"))
	require.NoError(t, err)
	assert.Contains(t, string(unit), "ExecStart=/usr/bin/coffer mount --foreground ")
	assert.NotContains(t, string(unit), "@BINDIR@")
	rotate, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/coffer-rotate@.service"))
	require.NoError(t, err)
	assert.Contains(t, string(rotate), "ExecStart=/usr/bin/coffer rotate --if-due %f")
	assert.Contains(t, string(rotate), "file:///usr/share/doc/coffer/rotation.md")

	run(t, "", "bash", "-n", filepath.Join(dest, "usr/share/bash-completion/completions/coffer"))
	if requireManPage(t) {
		out := run(t, "", "man", "-l", filepath.Join(dest, "usr/share/man/man1/coffer-mount.1"))
		assert.Contains(t, out, "mount.fuse.coffer", "the mount page carries the help text")
	}

	run(t, "", "make", append(args, "uninstall")...)
	assert.Empty(t, installedFiles(t, dest), "make uninstall left files")
}

// requireManPage reports whether man(1) is there to render a page.
func requireManPage(t *testing.T) bool {
	_, _, err := tryRun("", nil, "man", "--version")
	return err == nil
}

// installedFiles lists the files and links under dir, relative to it.
func installedFiles(t *testing.T, dir string) []string {
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
		return nil
	}))
	sort.Strings(files)
	return files
}
