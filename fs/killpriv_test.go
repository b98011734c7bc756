//go:build linux

package fs

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// nobodyID is the unprivileged user and group the setuid tests write as.
const nobodyID = 65534

// suidOps are the changes to a file after which the kernel clears its
// setuid and setgid bits if the changing process lacks CAP_FSETID.
var suidOps = map[string]func(path string) error{
	"write": func(p string) error {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt([]byte("x"), 10); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	},
	"truncate": func(p string) error { return os.Truncate(p, 100) },
	"ftruncate": func(p string) error {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if err := f.Truncate(100); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	},
	"open O_TRUNC": func(p string) error {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		return f.Close()
	},
	"chown":          func(p string) error { return os.Chown(p, -1, -1) },
	"chown to owner": func(p string) error { return os.Chown(p, os.Getuid(), -1) },
}

// suidHelper runs SUID_OP on SUID_PATH, as whatever user it was started as.
func suidHelper() int {
	op := suidOps[os.Getenv("SUID_OP")]
	if op == nil {
		fmt.Fprintln(os.Stderr, "suid helper: unknown op", os.Getenv("SUID_OP"))
		return 2
	}
	if err := op(os.Getenv("SUID_PATH")); err != nil {
		fmt.Fprintln(os.Stderr, "suid helper:", err)
		return 1
	}
	return 0
}

// worldDir returns a new directory that every user can enter.
func worldDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(d), 0o755))
	require.NoError(t, os.Chmod(d, 0o755))
	return d
}

// helperAsNobody copies the test binary where the unprivileged user can run
// it and returns a function that runs op on a path as that user.
func helperAsNobody(t *testing.T) func(op, path string, groups []uint32) {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	bin := filepath.Join(worldDir(t), "fs.test")
	src, err := os.Open(self)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())

	return func(op, path string, groups []uint32) {
		t.Helper()
		cmd := exec.Command(bin)
		cmd.Env = []string{helperEnv + "=suid", "SUID_OP=" + op, "SUID_PATH=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID, Groups: groups},
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s as nobody: %s", op, out)
	}
}

// TestSetuidCleared checks that changes to a file clear its setuid and
// setgid bits through the mount exactly as the kernel does on a local file
// system, which is the reference: coffer negotiates CAP_HANDLE_KILLPRIV_V2
// and clears them itself.
func TestSetuidCleared(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: runs changes as another user") // CI runs as root
	}
	v := newTestVolume(t)
	require.NoError(t, os.Chmod(v.backing, 0o755))
	mnt := v.mountWith(t, func(o *Options) { o.AllowOther = true })
	require.NoError(t, os.Chmod(filepath.Dir(mnt), 0o755))
	local := worldDir(t)
	asNobody := helperAsNobody(t)

	// Who changes the file, owned by root:root: nobody, nobody with root
	// as a supplementary group (which keeps the setgid bit of a file that
	// is not group-executable), and root.
	users := []struct {
		name   string
		root   bool
		groups []uint32
	}{
		{name: "nobody", groups: []uint32{}},
		{name: "nobody in group root", groups: []uint32{0}},
		{name: "root", root: true},
	}
	modes := []uint32{0o6777, 0o2767, 0o4777, 0o0777}
	i := 0
	for _, u := range users {
		for _, name := range []string{"write", "truncate", "ftruncate", "open O_TRUNC", "chown", "chown to owner"} {
			for _, mode := range modes {
				i++
				t.Run(fmt.Sprintf("%s %s %04o", u.name, name, mode), func(t *testing.T) {
					got := map[string]uint32{}
					for _, dir := range []string{local, mnt} {
						p := filepath.Join(dir, fmt.Sprintf("f%d", i))
						require.NoError(t, os.WriteFile(p, make([]byte, 5000), 0o600))
						if strings.HasPrefix(name, "chown") && !u.root {
							// Only the owner may chown, even to -1, -1.
							require.NoError(t, os.Chown(p, nobodyID, 0))
						}
						require.NoError(t, unix.Chmod(p, mode))
						if u.root {
							require.NoError(t, suidOps[name](p))
						} else {
							asNobody(name, p, u.groups)
						}
						var st unix.Stat_t
						require.NoError(t, unix.Stat(p, &st))
						got[dir] = st.Mode &^ unix.S_IFMT
					}
					assert.Equal(t, fmt.Sprintf("%04o", got[local]), fmt.Sprintf("%04o", got[mnt]),
						"mode after %s by %s: local file system (reference) vs mount", name, u.name)
					if !u.root {
						// The reference itself: setuid goes, setgid
						// goes with group execute or outside the group.
						want := mode &^ unix.S_ISUID
						if mode&unix.S_IXGRP != 0 || len(u.groups) == 0 {
							want &^= unix.S_ISGID
						}
						assert.Equal(t, fmt.Sprintf("%04o", want), fmt.Sprintf("%04o", got[local]), "reference")
					}
				})
			}
		}
	}
}
