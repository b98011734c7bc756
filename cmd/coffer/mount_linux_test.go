package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requireFUSE skips a test that needs FUSE where it is missing, except on
// CI, where a missing FUSE is a failure.
func requireFUSE(t *testing.T) {
	t.Helper()
	_, errDev := os.Stat("/dev/fuse")
	_, errBin := fusermountPath()
	if errDev == nil && errBin == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("FUSE is not available (/dev/fuse: %v, fusermount3: %v)", errDev, errBin)
	}
	t.Skipf("FUSE is not available (/dev/fuse: %v, fusermount3: %v)", errDev, errBin)
}

// mountFixture is a fixture with a mount point and a mount log.
type mountFixture struct {
	*fixture
	mnt, log string
}

func newMountFixture(t *testing.T) *mountFixture {
	t.Helper()
	requireFUSE(t)
	f := &mountFixture{fixture: newFixture(t)}
	f.mnt = filepath.Join(f.dir, "mnt")
	f.log = filepath.Join(f.dir, "mount.log")
	require.NoError(t, os.Mkdir(f.mnt, 0o700))
	t.Cleanup(func() { forceUnmount(t, f.mnt) })
	return f
}

// mount runs "coffer mount" in the background mode, as a process.
func (f *mountFixture) mount(t *testing.T, extra ...string) result {
	t.Helper()
	args := append([]string{"mount", f.backing, f.mnt, "--log-file", f.log}, extra...)
	r := cliProcess(t, args...)
	if r.code != exitOK {
		f.dumpLog(t)
	}
	return r
}

func (f *mountFixture) dumpLog(t *testing.T) {
	if b, err := os.ReadFile(f.log); err == nil {
		t.Logf("mount log:\n%s", b)
	}
}

// isMounted reports whether dir is a coffer mount point.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return false
	}
	canon, err := canonicalPath(dir)
	require.NoError(t, err)
	m, err := findMount(canon)
	require.NoError(t, err)
	return m != nil && m.fsType == fsType
}

// forceUnmount removes a mount a test left behind, even after a failure.
func forceUnmount(t *testing.T, dir string) {
	if !isMounted(t, dir) {
		return
	}
	if r := cliProcess(t, "unmount", dir); r.code != exitOK {
		t.Logf("coffer unmount %s in cleanup: %s", dir, r.stderr)
	}
	if isMounted(t, dir) {
		_ = exec.Command("fusermount3", "-u", "-z", dir).Run()
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	}
}

func TestMountRoundTrip(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)

	r := f.mount(t)
	requireOK(t, r)
	require.True(t, isMounted(t, f.mnt), "coffer mount returned but nothing is mounted")
	assert.Empty(t, r.stdout)

	secret := "Password=hunter2-through-the-mount"
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "app.config"), []byte(secret), 0o600))
	got, err := os.ReadFile(filepath.Join(f.mnt, "app.config"))
	require.NoError(t, err)
	assert.Equal(t, secret, string(got))
	_, err = os.Stat(filepath.Join(f.backing, "app.config"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "names are encrypted by default")
	enc := cli(t, "path", "encrypt", f.backing, "/app.config")
	requireOK(t, enc)
	stored, err := os.ReadFile(strings.TrimSuffix(enc.stdout, "\n"))
	require.NoError(t, err)
	assert.NotContains(t, string(stored), "hunter2", "plaintext in the backing directory")

	link := filepath.Join(f.dir, "backing-link")
	require.NoError(t, os.Symlink(f.backing, link))
	for _, b := range []string{f.backing, link} {
		st := cli(t, "status", b)
		requireOK(t, st)
		assert.Contains(t, st.stdout, "mounted on:       "+f.mnt)
	}

	requireOK(t, cliProcess(t, "unmount", f.mnt))
	assert.False(t, isMounted(t, f.mnt), "coffer unmount returned but the mount is still there")
	assertFailure(t, cliProcess(t, "unmount", f.mnt), exitFailure, "is not mounted")

	logData, err := os.ReadFile(f.log)
	require.NoError(t, err)
	assert.Contains(t, string(logData), `"message":"mounted"`)
	assert.Contains(t, string(logData), `"message":"unmounted"`)
}

func TestMountRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, f *mountFixture) (backing, mnt string)
		extra []string
		want  string
		hint  string
	}{
		{"mount point missing", func(t *testing.T, f *mountFixture) (string, string) {
			return f.backing, filepath.Join(f.dir, "nope")
		}, nil, "does not exist", "hint: create it: mkdir"},
		{"mount point is a file", func(t *testing.T, f *mountFixture) (string, string) {
			p := filepath.Join(f.dir, "file")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			return f.backing, p
		}, nil, "is not a directory", ""},
		{"mount point not empty", func(t *testing.T, f *mountFixture) (string, string) {
			require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "x"), nil, 0o600))
			return f.backing, f.mnt
		}, nil, "is not empty", "hint: coffer mounts only on an empty directory"},
		{"mount point inside backing", func(t *testing.T, f *mountFixture) (string, string) {
			p := filepath.Join(f.backing, "inner")
			require.NoError(t, os.Mkdir(p, 0o700))
			return f.backing, p
		}, nil, "inside the backing directory", ""},
		{"backing not initialised", func(t *testing.T, f *mountFixture) (string, string) {
			p := filepath.Join(f.dir, "plain")
			require.NoError(t, os.Mkdir(p, 0o700))
			return p, f.mnt
		}, nil, "not initialised", "hint: initialise it"},
		{"backing missing", func(t *testing.T, f *mountFixture) (string, string) {
			return filepath.Join(f.dir, "nope"), f.mnt
		}, nil, "does not exist", ""},
		{"unknown master ID", func(t *testing.T, f *mountFixture) (string, string) {
			return f.backing, f.mnt
		}, []string{"--master", "0badc0de"}, "volume has no master key 0badc0de", "hint: its master keys:"},
		{"interrupted init", func(t *testing.T, f *mountFixture) (string, string) {
			require.NoError(t, os.Remove(filepath.Join(f.backing, ".coffer", "volume.json")))
			return f.backing, f.mnt
		}, nil, "without volume.json", "and run coffer init again"},
		{"key file readable by others", func(t *testing.T, f *mountFixture) (string, string) {
			require.NoError(t, os.Chmod(f.key, 0o640))
			return f.backing, f.mnt
		}, nil, "failed to unlock volume", "hint: chmod 600 "},
		{"wrong key file", func(t *testing.T, f *mountFixture) (string, string) {
			require.NoError(t, os.Remove(f.key))
			requireOK(t, cli(t, "keys", "create", f.keyURI()))
			return f.backing, f.mnt
		}, nil, "wrong master key", "hint: check the key file or passphrase"},
		{"missing key file", func(t *testing.T, f *mountFixture) (string, string) {
			require.NoError(t, os.Remove(f.key))
			return f.backing, f.mnt
		}, nil, "no such file or directory", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMountFixture(t)
			f.init(t)
			backing, mnt := tt.setup(t, f)
			before := snapshot(t, f.backing)

			args := append([]string{"mount", backing, mnt, "--log-file", f.log}, tt.extra...)
			r := cliProcess(t, args...)
			assertFailure(t, r, exitFailure, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, tt.hint)
			}
			assert.LessOrEqual(t, strings.Count(r.stderr, "chmod"), 1, "advice printed twice: %s", r.stderr)
			if strings.Contains(tt.name, "interrupted") {
				assert.Contains(t, r.stderr, "rmdir "+filepath.Join(f.backing, ".coffer"))
			}
			assert.False(t, isMounted(t, mnt), "a refused mount is mounted")
			assert.Equal(t, before, snapshot(t, f.backing), "a refused mount changed the backing directory")
		})
	}
}

func TestMountAlreadyMounted(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t))
	before := snapshot(t, f.backing)

	r := f.mount(t)
	assertFailure(t, r, exitFailure, "is already a mount point (fuse.coffer)")
	assert.Contains(t, r.stderr, "hint: unmount it first: coffer unmount "+f.mnt)
	assert.Equal(t, before, snapshot(t, f.backing))
	assert.True(t, isMounted(t, f.mnt), "the first mount must survive")
}

func TestMountBackingTwice(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	mnt2 := filepath.Join(f.dir, "mnt2")
	require.NoError(t, os.Mkdir(mnt2, 0o700))
	t.Cleanup(func() { forceUnmount(t, mnt2) })
	requireOK(t, f.mount(t))
	before := snapshot(t, f.backing)

	r := cliProcess(t, "mount", f.backing, mnt2, "--log-file", f.log)
	assertFailure(t, r, exitFailure, "backing directory "+f.backing+" is already mounted")
	assert.Contains(t, r.stderr, "hint: 'coffer status "+f.backing+"'")
	assert.False(t, isMounted(t, mnt2), "a second mount of one backing directory is mounted")
	assert.True(t, isMounted(t, f.mnt), "the first mount must survive")
	assert.Equal(t, before, snapshot(t, f.backing))

	requireOK(t, cliProcess(t, "unmount", f.mnt))
	requireOK(t, cliProcess(t, "mount", f.backing, mnt2, "--log-file", f.log))
	assert.True(t, isMounted(t, mnt2))
	requireOK(t, cliProcess(t, "unmount", mnt2))
}

func TestMountLogFileRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		log  func(t *testing.T, f *mountFixture) string
		code int
		want string
	}{
		{"inside backing", func(t *testing.T, f *mountFixture) string {
			return filepath.Join(f.backing, "mount.log")
		}, exitUsage, "is inside the backing directory"},
		{"inside .coffer", func(t *testing.T, f *mountFixture) string {
			return filepath.Join(f.backing, ".coffer", "volume.json")
		}, exitUsage, "is inside the backing directory"},
		{"inside mount point", func(t *testing.T, f *mountFixture) string {
			return filepath.Join(f.mnt, "mount.log")
		}, exitUsage, "is inside the mount point"},
		{"symlink into backing", func(t *testing.T, f *mountFixture) string {
			link := filepath.Join(f.dir, "logs")
			require.NoError(t, os.Symlink(f.backing, link))
			return filepath.Join(link, "mount.log")
		}, exitUsage, "is inside the backing directory"},
		{"dangling symlink into backing", func(t *testing.T, f *mountFixture) string {
			link := filepath.Join(f.dir, "dangling.log")
			require.NoError(t, os.Symlink(filepath.Join(f.backing, "mount.log"), link))
			return link
		}, exitFailure, "symbolic link to a missing file"},
		{"missing directory", func(t *testing.T, f *mountFixture) string {
			return filepath.Join(f.dir, "no", "such", "mount.log")
		}, exitFailure, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMountFixture(t)
			f.init(t)
			log := tt.log(t, f)
			before, beforeDir := snapshot(t, f.backing), snapshot(t, f.dir)

			r := cliProcess(t, "mount", f.backing, f.mnt, "--log-file", log)
			assertFailure(t, r, tt.code, tt.want)
			assert.False(t, isMounted(t, f.mnt))
			assert.Equal(t, before, snapshot(t, f.backing))
			assert.Equal(t, beforeDir, snapshot(t, f.dir), "a refused mount created files")
		})
	}
}

func TestMountPointSymlink(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	link := filepath.Join(f.dir, "mnt-link")
	require.NoError(t, os.Symlink(f.mnt, link))

	r := cliProcess(t, "mount", f.backing, link, "--log-file", f.log)
	requireOK(t, r)
	require.True(t, isMounted(t, f.mnt), "the symlink's target must be the mount point")
	require.NoError(t, os.WriteFile(filepath.Join(link, "f"), []byte("data"), 0o600))
	got, err := os.ReadFile(filepath.Join(f.mnt, "f"))
	require.NoError(t, err)
	assert.Equal(t, "data", string(got))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.Equal(t, fs.ModeSymlink, fi.Mode().Type(), "the symlink must stay a symlink")

	requireOK(t, cliProcess(t, "unmount", link))
	assert.False(t, isMounted(t, f.mnt))
}

func TestMountMasterURIErrors(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	before := snapshot(t, f.backing)
	tests := []struct {
		name, master string
		code         int
		want, hint   string
	}{
		{"malformed", "file:relative/key", exitUsage, "malformed", "hint: master key URIs:"},
		{"unknown scheme", "foo:bar", exitUsage, `unknown`, "(supported: file:///ABSOLUTE/PATH, passphrase:,"},
		{"not supported yet", "dpapi:machine", exitFailure, "not supported", ""},
		{"tpm2 not enrolled", "tpm2:", exitFailure, "volume has no master key tpm2:", "hint: its master keys:"},
		{"unknown key file", "file:///nonexistent/key", exitFailure, "volume has no master key", "hint: its master keys:"},
		{"unknown ID", "0badc0de", exitFailure, "volume has no master key 0badc0de", "hint: its master keys:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.mount(t, "--master", tt.master)
			assertFailure(t, r, tt.code, tt.want)
			if tt.hint != "" {
				assert.Contains(t, r.stderr, tt.hint)
			}
			assert.False(t, isMounted(t, f.mnt))
			assert.Equal(t, before, snapshot(t, f.backing))
		})
	}
}

func TestMountPassphrase(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	good := f.passphraseFile(t, "good.txt", "the right passphrase")
	bad := f.passphraseFile(t, "bad.txt", "the wrong passphrase")
	args := append([]string{"init", f.backing, "--master", "passphrase:", "--passphrase-file", good},
		cheapArgon2...)
	requireOK(t, cli(t, args...))
	before := snapshot(t, f.backing)

	r := f.mount(t, "--passphrase-file", bad)
	assertFailure(t, r, exitFailure, "wrong master key")
	assert.False(t, isMounted(t, f.mnt))
	assert.Equal(t, before, snapshot(t, f.backing))

	// No terminal, no file: a clear error, not a hang.
	r = f.mount(t)
	assertFailure(t, r, exitFailure, "no terminal")
	assert.Contains(t, r.stderr, "hint: pass --passphrase-file FILE")
	assert.Equal(t, before, snapshot(t, f.backing))

	requireOK(t, f.mount(t, "--passphrase-file", good))
	require.True(t, isMounted(t, f.mnt))
	require.NoError(t, os.WriteFile(filepath.Join(f.mnt, "f"), []byte("data"), 0o600))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	assert.False(t, isMounted(t, f.mnt))
}

func TestMountReadOnly(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	requireOK(t, f.mount(t, "-o", "ro"))
	err := os.WriteFile(filepath.Join(f.mnt, "f"), []byte("x"), 0o600)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EROFS)
}

func TestMountForegroundSignal(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			f := newMountFixture(t)
			f.init(t)

			readyR, readyW, err := os.Pipe()
			require.NoError(t, err)
			defer readyR.Close()
			cmd := exec.Command(os.Args[0], "mount", "--foreground", "--ready-fd=3", "--log-file", f.log,
				f.backing, f.mnt)
			cmd.Env = append(os.Environ(), mainEnv+"=1")
			cmd.ExtraFiles = []*os.File{readyW}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			readyW.Close()
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
				}
			})

			var msg readyMessage
			require.NoError(t, json.NewDecoder(readyR).Decode(&msg), "stderr: %s", stderr.String())
			require.True(t, msg.OK, "mount failed: %s", msg.Error)
			require.True(t, isMounted(t, f.mnt))

			require.NoError(t, cmd.Process.Signal(sig))
			require.NoError(t, cmd.Wait(), "stderr: %s", stderr.String())
			assert.Equal(t, 0, cmd.ProcessState.ExitCode())
			assert.False(t, isMounted(t, f.mnt), "the mount survived %s", sig)
		})
	}
}

func TestUnmountRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	assertFailure(t, cli(t, "unmount", dir), exitFailure, "is not mounted")
	assertFailure(t, cli(t, "unmount", filepath.Join(dir, "missing")), exitFailure, "does not exist")

	r := cli(t, "unmount", "/proc")
	assertFailure(t, r, exitFailure, "is not a coffer mount (it is proc)")
}

func TestMountMasterSelection(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	good := f.passphraseFile(t, "good.txt", "right")
	bad := f.passphraseFile(t, "bad.txt", "wrong")
	requireOK(t, cli(t, append([]string{"init", f.backing, "--master", f.keyURI(), "--master", "passphrase:",
		"--passphrase-file", good}, cheapArgon2...)...))
	cfg := readVolumeJSON(t, f.backing)
	require.Len(t, cfg.Masters, 2)

	// Restricted to the passphrase, a valid key file must not be used.
	r := f.mount(t, "--master", "passphrase:", "--passphrase-file", bad)
	assertFailure(t, r, exitFailure, "wrong master key")
	r = f.mount(t, "--master", cfg.Masters[1].ID, "--passphrase-file", bad)
	assertFailure(t, r, exitFailure, "wrong master key")
	assert.False(t, isMounted(t, f.mnt))

	requireOK(t, f.mount(t, "--master", cfg.Masters[0].ID))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
	requireOK(t, f.mount(t, "--master", "passphrase:", "--passphrase-file", good))
	requireOK(t, cliProcess(t, "unmount", f.mnt))
}

func TestMountChildInheritsNoStrayFDs(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)

	// Both ends of a pipe, inherited by "coffer mount" without close-on-exec,
	// as a careless caller would leave them.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	stray := fdTarget(t, int(r.Fd()))

	cmd := exec.Command(os.Args[0], "mount", f.backing, f.mnt, "--log-file", f.log)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	// Above fds 3 and 4, which the mount process gets its own pipes on.
	cmd.ExtraFiles = []*os.File{nil, nil, nil, r, w}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "coffer mount: %s", out)
	require.True(t, isMounted(t, f.mnt))

	pid := mountProcess(t, f.mnt)
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	for _, e := range entries {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		assert.NotEqual(t, stray, target, "the mount process holds fd %s of its caller's pipe", e.Name())
		assert.NotContains(t, target, "passphrase", "fd %s", e.Name())
	}
}

// fdTarget returns what /proc says fd of this process points at.
func fdTarget(t *testing.T, fd int) string {
	t.Helper()
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	require.NoError(t, err)
	return target
}

// mountProcess finds the background process serving mnt.
func mountProcess(t *testing.T, mnt string) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if slices.Contains(args, "--ready-fd=3") && slices.Contains(args, mnt) {
			return pid
		}
	}
	t.Fatalf("no mount process serves %s", mnt)
	return 0
}

// TestMountConcurrentSameMountPoint holds one mount of volume A between its
// checks of the mount point and the mount (COFFER_TEST_PAUSE), then mounts
// volume B on the same directory: B must be refused, not stacked on or under
// A. Both the background and the foreground mount process take the lock.
func TestMountConcurrentSameMountPoint(t *testing.T) {
	t.Parallel()
	for _, fg := range []bool{false, true} {
		t.Run(fmt.Sprintf("foreground=%v", fg), func(t *testing.T) {
			t.Parallel()
			f := newMountFixture(t)
			f.init(t)
			b2 := filepath.Join(f.dir, "backing2")
			require.NoError(t, os.Mkdir(b2, 0o700))
			requireOK(t, cli(t, "init", b2, "--master", f.keyURI()))

			args := []string{"mount", f.backing, f.mnt, "--log-file", f.log}
			if fg {
				args = append(args, "--foreground")
			}
			p := startPaused(t, args, "mount-checked")

			r := cliProcess(t, "mount", b2, f.mnt, "--log-file", filepath.Join(f.dir, "mount2.log"))
			assertFailure(t, r, exitFailure, "mount point "+f.mnt+" is being mounted by another coffer process")
			assert.Contains(t, r.stderr, "hint: wait for it to finish")
			assert.False(t, isMounted(t, f.mnt), "the refused mount is mounted")

			if fg {
				// Killed while held: the lock goes with the process, and
				// the mount point takes the next mount.
				require.NoError(t, p.cmd.Process.Kill())
				<-p.exited
				requireOK(t, cliProcess(t, "mount", b2, f.mnt, "--log-file", filepath.Join(f.dir, "mount2.log")))
			} else {
				requireOK(t, p.resume(t))
			}
			assert.Equal(t, 1, countMounts(t, f.mnt))
			requireOK(t, cliProcess(t, "unmount", f.mnt))
			assert.Equal(t, 0, countMounts(t, f.mnt))
		})
	}
}

// countMounts returns how many entries of the mount table are on dir.
func countMounts(t *testing.T, dir string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && fields[1] == dir {
			n++
		}
	}
	return n
}

// TestRemountRightAfterUnmount mounts and unmounts one volume on one mount
// point again and again with no pause: "coffer unmount" returns when the
// mount table drops the mount, a moment before the old mount process exits
// and lets go of its lock on the mount point, and the next mount must wait
// for that instead of reporting another mount in progress.
func TestRemountRightAfterUnmount(t *testing.T) {
	t.Parallel()
	f := newMountFixture(t)
	f.init(t)
	for i := 0; i < 8; i++ {
		requireOK(t, cliProcess(t, "mount", f.backing, f.mnt, "--log-file", f.log))
		requireOK(t, cliProcess(t, "unmount", f.mnt))
	}
	assert.Equal(t, 0, countMounts(t, f.mnt))
}
