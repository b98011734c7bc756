//go:build linux

package integration

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// member is what TestTar compares about one tar member.
type member struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Size     int64
	Mtime    int64
	Linkname string
	SHA256   string
}

// TestTar extracts the Go source tree into the mount from a tarball made
// outside it, compares the result with the original using diff -r, then
// archives it again from the mount and compares every member with an archive
// of the original.
func TestTar(t *testing.T) {
	requireTools(t, "tar", "diff", "grep")
	goroot := strings.TrimSpace(run(t, "", "go", "env", "GOROOT"))
	work := t.TempDir()
	v := newVolume(t)

	orig := filepath.Join(work, "orig.tar")
	run(t, "", "tar", "--sort=name", "-C", goroot, "-cf", orig, "src")
	run(t, "", "tar", "-C", v.mnt, "-xf", orig)

	t.Run("diff", func(t *testing.T) {
		run(t, "", "diff", "-r", "--no-dereference", filepath.Join(goroot, "src"), v.path("src"))
	})

	t.Run("recreate", func(t *testing.T) {
		again := filepath.Join(work, "again.tar")
		run(t, "", "tar", "--sort=name", "-C", v.mnt, "-cf", again, "src")
		want, got := tarMembers(t, orig), tarMembers(t, again)
		require.NotEmpty(t, want)
		assert.Equal(t, len(want), len(got), "member count")
		compareMembers(t, want, got)
	})

	t.Run("at rest", func(t *testing.T) {
		v.unmount(t)
		assertNoPlaintext(t, v.backing, "Copyright 2009 The Go Authors. All rights reserved.",
			"func TestMain(m *testing.M)")
		v.mount(t)
	})
}

// tarMembers reads a tar archive into a list of members with the SHA-256
// of each regular file.
func tarMembers(t testing.TB, path string) []member {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()

	var out []member
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err, "failed to read %s", path)
		h := sha256.New()
		_, err = io.Copy(h, tr)
		require.NoError(t, err)
		out = append(out, member{
			Name: hdr.Name, Type: hdr.Typeflag, Mode: hdr.Mode, UID: hdr.Uid, GID: hdr.Gid,
			Size: hdr.Size, Mtime: hdr.ModTime.Unix(), Linkname: hdr.Linkname,
			SHA256: hex.EncodeToString(h.Sum(nil)),
		})
	}
}

// compareMembers compares two member lists in order, reporting at most 25
// differences.
func compareMembers(t testing.TB, want, got []member) {
	t.Helper()
	var bad int
	for i := 0; i < len(want) || i < len(got); i++ {
		var w, g member
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w == g {
			continue
		}
		if bad++; bad <= 25 {
			t.Errorf("member %d differs:\nwant %+v\ngot  %+v", i, w, g)
		}
	}
	if bad > 25 {
		t.Errorf("... and %d more differences", bad-25)
	}
}

// assertNoPlaintext asserts with grep that none of the markers occurs in any
// file under dir.
func assertNoPlaintext(t testing.TB, dir string, markers ...string) {
	t.Helper()
	args := []string{"-r", "-l", "-a", "-F"}
	for _, m := range markers {
		args = append(args, "-e", m)
	}
	stdout, stderr, err := tryRun("", nil, "grep", append(args, dir)...)
	code := exitCode(err)
	if code == 2 && onlyVanished(stderr) {
		// A file listed and then removed before grep opened it (an undo
		// record the mount removes when the kernel releases a handle,
		// after close has returned) is not at rest.
		code = 1
		if strings.TrimSpace(stdout) != "" {
			code = 0
		}
	}
	require.Contains(t, []int{0, 1}, code, "grep failed: %v: %s", err, stderr)
	assert.Equal(t, 1, code, "plaintext found in the backing directory, in:\n%s", truncate(stdout))
}

// onlyVanished reports whether every line of grep's stderr says a file it
// listed no longer exists.
func onlyVanished(stderr string) bool {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if !strings.HasSuffix(l, ": No such file or directory") {
			return false
		}
	}
	return len(lines) > 0 && lines[0] != ""
}

// exitCode returns the exit status of a command error (0 for nil, -1 if the
// command did not run or was killed).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
