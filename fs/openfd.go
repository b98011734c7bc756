//go:build linux

package fs

import (
	"context"
	"slices"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// openHandles are the open handles of a node. The kernel sends chmod,
// chown, utimes and getxattr of an open file without its handle (only
// ftruncate names one), and tar makes three such requests and two
// getxattrs of security.capability for every file it extracts while the
// file is open. With a handle at hand they go to its backing descriptor
// instead of walking the backing path, as a request naming the handle
// does: the descriptor is the node's backing inode, which is what the
// request is about even if the path now names another file.
type openHandles struct {
	mu sync.RWMutex // held shared while a request uses a handle
	hs []*handle
}

// track registers h, an open handle of n, until its release.
func (n *node) track(h *handle) {
	n.open.mu.Lock()
	defer n.open.mu.Unlock()
	n.open.hs = append(n.open.hs, h)
	h.owner = n
}

// untrack forgets h; a request using it has finished when this returns.
func (o *openHandles) untrack(h *handle) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if i := slices.Index(o.hs, h); i >= 0 {
		o.hs = slices.Delete(o.hs, i, i+1)
	}
}

// with runs fn with one of the open handles, which stays open until fn
// returns, and reports whether there was one.
func (o *openHandles) with(fn func(h *handle)) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if len(o.hs) == 0 {
		return false
	}
	fn(o.hs[0])
	return true
}

// setattrOpen serves a Setattr without a size change through an open
// handle of the regular file n, if it has one. A size change takes the
// path of truncate(2): the handle may be read-only.
func (n *node) setattrOpen(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) (syscall.Errno, bool) {
	if in.Valid&fuse.FATTR_SIZE != 0 || n.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFREG {
		return 0, false
	}
	var errno syscall.Errno
	ok := n.open.with(func(h *handle) { errno = h.Setattr(ctx, in, out) })
	return errno, ok
}
