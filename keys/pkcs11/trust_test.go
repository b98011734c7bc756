//go:build cgo && unix

package pkcs11

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/masterkey"
)

// buildMarkerLibrary compiles a shared library whose constructor appends a
// line to marker when the library is loaded, and returns its path in a new
// private directory. It is no PKCS#11 module: loading it fails after the
// constructor ran.
func buildMarkerLibrary(t *testing.T, marker string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	require.NoError(t, err, "gcc builds the cgo binding, so it must be installed")
	dir := t.TempDir()
	src := filepath.Join(dir, "marker.c")
	require.NoError(t, os.WriteFile(src, []byte(`#include <stdio.h>
__attribute__((constructor)) static void loaded(void) {
	FILE *f = fopen(MARKER, "a");
	if (f) { fputs("loaded\n", f); fclose(f); }
}
`), 0o600))
	lib := filepath.Join(dir, "marker.so")
	out, err := exec.Command(gcc, "-shared", "-fPIC", `-DMARKER="`+marker+`"`, "-o", lib,
		src).CombinedOutput()
	require.NoError(t, err, "gcc: %s", out)
	require.NoError(t, os.Chmod(lib, 0o755))
	return lib
}

// copyFile copies src to dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, perm))
	require.NoError(t, os.Chmod(dst, perm))
}

func TestUntrustedModulesAreNeverLoaded(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "loaded")
	lib := buildMarkerLibrary(t, marker)
	root := t.TempDir()
	backing := filepath.Join(root, "back")
	require.NoError(t, os.Mkdir(backing, 0o700))

	place := func(t *testing.T, dirMode, fileMode os.FileMode) string {
		dir := filepath.Join(t.TempDir(), "lib")
		require.NoError(t, os.Mkdir(dir, 0o755))
		p := filepath.Join(dir, "module.so")
		copyFile(t, lib, p, fileMode)
		require.NoError(t, os.Chmod(dir, dirMode))
		return p
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) string
		msg   string
	}{
		{name: "group-writable directory", msg: "is writable by group or others (mode 0775)",
			setup: func(t *testing.T) string { return place(t, 0o775, 0o755) }},
		{name: "world-writable file", msg: "is writable by group or others (mode 0757)",
			setup: func(t *testing.T) string { return place(t, 0o755, 0o757) }},
		{name: "inside the backing directory", msg: "it is inside the backing directory",
			setup: func(t *testing.T) string {
				p := filepath.Join(backing, "evil.so")
				copyFile(t, lib, p, 0o755)
				return p
			}},
		{name: "symbolic link into the backing directory", msg: "inside the backing directory",
			setup: func(t *testing.T) string {
				p := filepath.Join(backing, "evil2.so")
				copyFile(t, lib, p, 0o755)
				link := filepath.Join(place(t, 0o755, 0o755)+".d", "module.so")
				require.NoError(t, os.MkdirAll(filepath.Dir(link), 0o755))
				require.NoError(t, os.Symlink(p, link))
				return link
			}},
		{name: "a FIFO", msg: "is not a regular file",
			setup: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "fifo.so")
				require.NoError(t, syscall.Mkfifo(p, 0o644))
				return p
			}},
	}
	if os.Geteuid() == 0 {
		// Only root can give a file away; ownerProblem is checked for
		// every user in TestOwnerProblem.
		tests = append(tests, struct {
			name  string
			setup func(t *testing.T) string
			msg   string
		}{name: "owned by another user", msg: "is owned by uid 65534",
			setup: func(t *testing.T) string {
				p := place(t, 0o755, 0o755)
				require.NoError(t, os.Chown(p, 65534, 65534))
				return p
			}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.setup(t)
			uri := "pkcs11:token=coffer;object=master?module-path=" + p
			done := make(chan error, 1)
			go func() {
				_, err := Open(context.Background(), uri, masterkey.Options{Backing: backing})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatal("Open blocked: it must refuse the module before opening it")
			}
			require.ErrorIs(t, err, ErrUntrustedModule)
			assert.NotErrorIs(t, err, ErrModule, "the trust check comes before dlopen")
			assert.Contains(t, err.Error(), tt.msg)
			assert.Contains(t, err.Error(), p, "the error names the module")
			assert.NotContains(t, err.Error(), "\n")
			var te *ModuleTrustError
			require.ErrorAs(t, err, &te)
			assert.NotEmpty(t, te.Hint())
			assert.NoFileExists(t, marker, "the refused module must not have been loaded")
		})
	}

	// The control: the same library where only root can write it is
	// loaded (its constructor runs), then refused as no PKCS#11 module.
	t.Run("trusted place is loaded", func(t *testing.T) {
		p := place(t, 0o755, 0o755)
		_, err := Open(context.Background(), "pkcs11:token=coffer;object=master?module-path="+p,
			masterkey.Options{Backing: backing})
		require.ErrorIs(t, err, ErrModule)
		assert.NotErrorIs(t, err, ErrUntrustedModule)
		assert.Contains(t, err.Error(), "not a loadable PKCS#11 library")
		assert.FileExists(t, marker, "the control library must have been loaded")
	})
}

func TestCheckModule(t *testing.T) {
	softhsmtest := DefaultModule
	if _, err := os.Stat(softhsmtest); err == nil {
		got, err := checkModule(softhsmtest, t.TempDir())
		require.NoError(t, err, "SoftHSM as Debian installs it must pass")
		want, err := filepath.EvalSymlinks(softhsmtest)
		require.NoError(t, err)
		assert.Equal(t, want, got, "the resolved path is loaded")
	}

	// A link inside the backing directory to a trusted module is fine: the
	// module that loads is the link's target.
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib.so")
	require.NoError(t, os.WriteFile(lib, []byte("x"), 0o644))
	backing := t.TempDir()
	link := filepath.Join(backing, "link.so")
	require.NoError(t, os.Symlink(lib, link))
	got, err := checkModule(link, backing)
	require.NoError(t, err)
	assert.Equal(t, lib, got)

	// A relative backing directory is compared after resolving it.
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.NoError(t, os.Chdir(dir))
	t.Cleanup(func() { _ = os.Chdir(wd) })
	_, err = checkModule(lib, ".")
	require.ErrorIs(t, err, ErrUntrustedModule)

	_, err = checkModule(filepath.Join(dir, "missing.so"), "")
	require.ErrorIs(t, err, ErrModule)
	assert.Contains(t, err.Error(), "install it, or set module-path")
}

// fakeInfo is a fs.FileInfo with a chosen owner and mode.
type fakeInfo struct {
	fs.FileInfo
	mode fs.FileMode
	uid  uint32
}

func (f fakeInfo) Mode() fs.FileMode { return f.mode }
func (f fakeInfo) IsDir() bool       { return f.mode.IsDir() }
func (f fakeInfo) Sys() any          { return &syscall.Stat_t{Uid: f.uid} }

func TestOwnerProblem(t *testing.T) {
	me := uint32(os.Geteuid())
	tests := []struct {
		name string
		mode fs.FileMode
		uid  uint32
		want string
	}{
		{name: "root file", mode: 0o644, uid: 0},
		{name: "own file", mode: 0o755, uid: me},
		{name: "other user", mode: 0o644, uid: 4242, want: "owned by uid 4242"},
		{name: "group-writable file", mode: 0o664, uid: 0, want: "mode 0664"},
		{name: "world-writable directory", mode: fs.ModeDir | 0o777, uid: 0, want: "mode 0777"},
		{name: "sticky directory", mode: fs.ModeDir | fs.ModeSticky | 0o777, uid: 0},
		{name: "sticky directory of another user", mode: fs.ModeDir | fs.ModeSticky | 0o777,
			uid: 4242, want: "owned by uid 4242"},
		{name: "sticky bit on a file means nothing", mode: fs.ModeSticky | 0o666, uid: 0,
			want: "mode 0666"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ownerProblem("/p", fakeInfo{mode: tt.mode, uid: tt.uid})
			if tt.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Contains(t, got, tt.want)
		})
	}
}
