//go:build linux

package fs

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestOpenRacesRenameAndUnlink opens an existing name with O_CREAT while
// another goroutine renames or unlinks it, as logrotate does. On a local
// file system every open succeeds: it opens the old file or creates a new
// one. Through the mount the kernel's OPEN of the node it looked up can
// reach the daemon while the rename or unlink of that node is in flight,
// when the node's path is already stale; the open must not fail with
// ENOENT because of that.
func TestOpenRacesRenameAndUnlink(t *testing.T) {
	for _, mode := range []struct {
		name    string
		encrypt bool
		remove  func(dir string) error
	}{
		{"rename/encrypted", true, func(d string) error {
			return os.Rename(filepath.Join(d, "app.log"), filepath.Join(d, "app.log.1"))
		}},
		{"unlink/encrypted", true, func(d string) error { return os.Remove(filepath.Join(d, "app.log")) }},
		{"rename/plain", false, func(d string) error {
			return os.Rename(filepath.Join(d, "app.log"), filepath.Join(d, "app.log.1"))
		}},
		{"unlink/plain", false, func(d string) error { return os.Remove(filepath.Join(d, "app.log")) }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			v := newTestVolume(t)
			v.opts.EncryptNames = mode.encrypt
			mnt := v.mount(t)
			dir := filepath.Join(mnt, "cr")
			require.NoError(t, os.Mkdir(dir, 0o755))

			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					_ = mode.remove(dir) // ENOENT while the name is absent
				}
			}()
			errs := map[string]int{}
			var first error
			for range 1500 {
				err := appendLine(filepath.Join(dir, "app.log"))
				if err != nil {
					errs[errorName(err)]++
					if first == nil {
						first = err
					}
				}
			}
			close(done)
			wg.Wait()
			require.Empty(t, errs, "opens with O_CREAT failed (first: %v)", first)
		})
	}
}

// appendLine opens p as a log writer does and appends a line.
func appendLine(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("x\n"))
	return errors.Join(err, f.Close())
}

// errorName names the errno inside err, or err itself.
func errorName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}

// TestOpenStaleNode opens, through go-fuse's request API, a node whose
// backing file was renamed over or removed after its lookup, with the node
// tree not told: the moment of a rename or unlink in flight. The open must
// answer ESTALE (the kernel then looks the name up again), not open the
// file that now has the name under the old node, nor fail with ENOENT.
func TestOpenStaleNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(backing string) error
	}{
		{"renamed-over", func(b string) error {
			return os.Rename(filepath.Join(b, "b"), filepath.Join(b, "a"))
		}},
		{"removed", func(b string) error { return os.Remove(filepath.Join(b, "a")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVolume(t)
			for _, n := range []string{"a", "b"} {
				require.NoError(t, os.WriteFile(filepath.Join(v.backing, n), nil, 0o600))
			}
			root, err := NewRoot(v.backing, v.opts)
			require.NoError(t, err)
			raw := gofs.NewNodeFS(root, &gofs.Options{})
			var entry fuse.EntryOut
			require.Equal(t, fuse.OK, raw.Lookup(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, "a", &entry))

			require.NoError(t, tc.change(v.backing))
			in := &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: entry.NodeId}, Flags: syscall.O_RDONLY}
			var out fuse.OpenOut
			st := raw.Open(nil, in, &out)
			if st == fuse.OK {
				raw.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
			}
			require.Equal(t, fuse.Status(syscall.ESTALE), st, "open of the stale node: %v", st)
		})
	}
}

// TestPathOpsStaleNode sends, through go-fuse's request API, the requests
// that work on a node by its path (stat, chmod, readlink, the xattr calls)
// for a node whose backing entry was removed after its lookup, with the
// node tree not told: the moment of a rename or unlink in flight. Each must
// answer ESTALE, so that the kernel looks the name up again, not fail with
// ENOENT. A stat of a node whose name another file took meanwhile must
// answer ESTALE too, not report that file.
func TestPathOpsStaleNode(t *testing.T) {
	ops := []struct {
		name      string
		renamedOK bool // checks the inode, so a renamed-over node is stale too
		do        func(raw fuse.RawFileSystem, id uint64) fuse.Status
	}{
		{"getattr", true, func(raw fuse.RawFileSystem, id uint64) fuse.Status {
			return raw.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: id}}, &fuse.AttrOut{})
		}},
		{"statx", true, func(raw fuse.RawFileSystem, id uint64) fuse.Status {
			in := &fuse.StatxIn{InHeader: fuse.InHeader{NodeId: id}, SxMask: unix.STATX_BASIC_STATS}
			return raw.Statx(nil, in, &fuse.StatxOut{})
		}},
		{"chmod", false, func(raw fuse.RawFileSystem, id uint64) fuse.Status {
			in := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{
				InHeader: fuse.InHeader{NodeId: id}, Valid: fuse.FATTR_MODE, Mode: 0o640}}
			return raw.SetAttr(nil, in, &fuse.AttrOut{})
		}},
		{"getxattr", false, func(raw fuse.RawFileSystem, id uint64) fuse.Status {
			_, st := raw.GetXAttr(nil, &fuse.InHeader{NodeId: id}, "user.x", make([]byte, 64))
			return st
		}},
		{"listxattr", false, func(raw fuse.RawFileSystem, id uint64) fuse.Status {
			_, st := raw.ListXAttr(nil, &fuse.InHeader{NodeId: id}, make([]byte, 256))
			return st
		}},
	}
	changes := []struct {
		name   string
		change func(backing string) error
	}{
		{"renamed-over", func(b string) error {
			return os.Rename(filepath.Join(b, "b"), filepath.Join(b, "a"))
		}},
		{"removed", func(b string) error { return os.Remove(filepath.Join(b, "a")) }},
	}
	for _, op := range ops {
		for _, tc := range changes {
			if tc.name == "renamed-over" && !op.renamedOK {
				continue
			}
			t.Run(op.name+"/"+tc.name, func(t *testing.T) {
				v := newTestVolume(t)
				for _, n := range []string{"a", "b"} {
					require.NoError(t, os.WriteFile(filepath.Join(v.backing, n), nil, 0o600))
					require.NoError(t, unix.Setxattr(filepath.Join(v.backing, n), "user.x", []byte(n), 0))
				}
				raw, id := lookupRaw(t, v, "a")
				require.NoError(t, tc.change(v.backing))
				require.Equal(t, fuse.Status(syscall.ESTALE), op.do(raw, id), "%s of the stale node", op.name)
			})
		}
	}

	t.Run("readlink/removed", func(t *testing.T) {
		v := newTestVolume(t)
		require.NoError(t, os.Symlink("target", filepath.Join(v.backing, "a")))
		raw, id := lookupRaw(t, v, "a")
		require.NoError(t, os.Remove(filepath.Join(v.backing, "a")))
		_, st := raw.Readlink(nil, &fuse.InHeader{NodeId: id})
		require.Equal(t, fuse.Status(syscall.ESTALE), st)
	})

	t.Run("root", func(t *testing.T) {
		v := newTestVolume(t)
		root, err := NewRoot(v.backing, v.opts)
		require.NoError(t, err)
		raw := gofs.NewNodeFS(root, &gofs.Options{})
		var out fuse.AttrOut
		require.Equal(t, fuse.OK, raw.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}}, &out))
		assert.Equal(t, uint32(syscall.S_IFDIR), out.Mode&syscall.S_IFMT)
	})
}

// lookupRaw builds the request API of a file system on v and looks name up
// in its root, returning the node ID.
func lookupRaw(t *testing.T, v *testVolume, name string) (fuse.RawFileSystem, uint64) {
	t.Helper()
	root, err := NewRoot(v.backing, v.opts)
	require.NoError(t, err)
	raw := gofs.NewNodeFS(root, &gofs.Options{})
	var entry fuse.EntryOut
	require.Equal(t, fuse.OK, raw.Lookup(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, name, &entry))
	return raw, entry.NodeId
}
