//go:build linux

package fs

import (
	"context"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// flushOwnerFS hands the lock owner of FLUSH requests, which go-fuse's node
// API drops, to the file handle: closing a descriptor must release the POSIX
// locks of the closing process. The request's cancel channel, unique while
// the request runs, carries it to the handle's Flush through its context.
type flushOwnerFS struct {
	fuse.RawFileSystem
	fs *filesystem
}

// Flush implements fuse.RawFileSystem.
func (w *flushOwnerFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	w.fs.flushOwners.Store(cancel, in.LockOwner)
	defer w.fs.flushOwners.Delete(cancel)
	return w.RawFileSystem.Flush(cancel, in)
}

// Writev implements fuse.RawFileSystem (go-fuse serves WRITE with it): it
// passes the kernel's request to clear the setuid and setgid bits on to the
// handle, the same way as the lock owner of a flush.
func (w *flushOwnerFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		w.fs.killWrites.Store(cancel, struct{}{})
		defer w.fs.killWrites.Delete(cancel)
	}
	if w.fs.opts.Shared && in.WriteFlags&fuse.WRITE_CACHE == 0 {
		w.fs.directWrites.Store(cancel, struct{}{})
		defer w.fs.directWrites.Delete(cancel)
	}
	return w.RawFileSystem.Writev(cancel, in, data)
}

// directWrite reports whether the WRITE request ctx belongs to carries a
// write(2) of a process, not a write-back of cached (mmap) pages.
func (f *filesystem) directWrite(ctx context.Context) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok {
		return false
	}
	_, ok = f.directWrites.Load(fc.Cancel)
	return ok
}

// flushOwner returns the lock owner of the FLUSH request ctx belongs to.
func (f *filesystem) flushOwner(ctx context.Context) (uint64, bool) {
	fc, ok := ctx.(*fuse.Context)
	if !ok {
		return 0, false
	}
	v, ok := f.flushOwners.Load(fc.Cancel)
	if !ok {
		return 0, false
	}
	return v.(uint64), true
}
