//go:build linux

package fs

import (
	"context"
	"syscall"
	"time"
	"unsafe"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// pather names a file in logs by its backing path, and in the audit trail
// by its path under the mount ("" when unknown).
type pather interface {
	backingPath() string
	mountPath() string
}

// handle is an open regular file: a backing file descriptor plus the state
// shared with the other handles of the same backing inode. The kernel sends
// no request on a handle after its Release, so fd stays valid meanwhile.
type handle struct {
	fs       *filesystem
	node     pather
	ino      *inode
	fd       int
	writable bool  // fd is open read-write
	direct   bool  // opened with O_DIRECT: reads bypass the page cache
	append   bool  // opened with O_APPEND
	owner    *node // the node that tracks h (see openHandles), or nil
}

var (
	_ gofs.FileHandle    = (*handle)(nil)
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileWritever  = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileGetattrer = (*handle)(nil)
	_ gofs.FileStatxer   = (*handle)(nil)
	_ gofs.FileSetattrer = (*handle)(nil)
	_ gofs.FileLseeker   = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
	_ gofs.FileGetlker   = (*handle)(nil)
	_ gofs.FileSetlker   = (*handle)(nil)
	_ gofs.FileSetlkwer  = (*handle)(nil)
)

// path returns the backing path of the file, for logs.
func (h *handle) path() string {
	return h.node.backingPath()
}

// setFlags records the open flags that change how h reads and writes.
func (h *handle) setFlags(flags int) {
	h.direct = h.direct || flags&syscall.O_DIRECT != 0
	h.append = flags&syscall.O_APPEND != 0
}

// release closes the backing file and drops the inode reference, once.
func (h *handle) release() {
	if h.fd < 0 {
		return
	}
	if h.owner != nil {
		h.owner.open.untrack(h)
		h.owner = nil
	}
	_ = unix.Close(h.fd)
	h.fd = -1
	h.fs.inodes.release(h.ino)
}

// Read decrypts plaintext at off into dest.
func (h *handle) Read(_ context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.readAt(dest, off)
	if err != nil {
		return nil, h.fs.errno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write encrypts data at off. The kernel computes the offset of O_APPEND
// writes from the size it holds under its inode lock; see the package
// documentation for why the handle does not second-guess it.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.fs.killRequested(ctx) {
		if err := killSuidgid(ctx, h.fd); err != nil {
			return 0, h.fs.errno(err)
		}
	}
	var n int
	var err error
	if h.append && h.fs.opts.Shared && h.fs.directWrite(ctx) {
		// In shared mode the kernel's end of file may predate other
		// mounts' appends; pages written back (mmap) keep their offset.
		n, err = h.appendAt(data)
	} else {
		n, err = h.writeAt(data, off)
	}
	if err != nil {
		return 0, h.fs.errno(err)
	}
	return uint32(n), 0
}

// Writev is Write for data that arrived in several pieces.
func (h *handle) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if len(data) == 1 {
		return h.Write(ctx, data[0], off)
	}
	total := 0
	for _, d := range data {
		total += len(d)
	}
	b := getBuf(total)
	defer putBuf(b)
	at := 0
	for _, d := range data {
		at += copy((*b)[at:], d)
	}
	return h.Write(ctx, *b, off)
}

// Flush runs for every close(2) of a descriptor of the file. It releases
// the POSIX locks of the closing process, and reports errors of the backing
// file system by closing a duplicate of the backing descriptor; the backing
// file stays open until Release. Only written data has errors to report
// (a network file system writes it back at close): if nothing changed the
// file through this mount while it had a handle, there is nothing to close,
// which spares two system calls per file read.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if owner, ok := h.fs.flushOwner(ctx); ok {
		h.ino.locks.release(owner)
	}
	if !h.ino.changed.Load() {
		return 0
	}
	fd, err := unix.Dup(h.fd)
	if err != nil {
		return h.fs.errno(err)
	}
	return h.fs.errno(unix.Close(fd))
}

// Fsync flushes the backing file to stable storage.
func (h *handle) Fsync(context.Context, uint32) syscall.Errno {
	return h.fs.errno(unix.Fsync(h.fd))
}

// Release closes the handle.
func (h *handle) Release(context.Context) syscall.Errno {
	h.release()
	return 0
}

// Getattr reports the attributes of the backing file with the plaintext
// size.
func (h *handle) Getattr(_ context.Context, out *fuse.AttrOut) syscall.Errno {
	h.ino.mu.RLock()
	defer h.ino.mu.RUnlock()

	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd, &st); err != nil {
		return h.fs.errno(err)
	}
	out.FromStat(&st)
	fixAttr(&out.Attr)
	return 0
}

// Statx is Getattr for statx(2).
func (h *handle) Statx(_ context.Context, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	h.ino.mu.RLock()
	defer h.ino.mu.RUnlock()

	var st unix.Statx_t
	if err := unix.Statx(h.fd, "", int(flags)|unix.AT_EMPTY_PATH, int(mask), &st); err != nil {
		return h.fs.errno(err)
	}
	out.FromStatx(&st)
	fixStatx(&out.Statx)
	return 0
}

// Setattr changes attributes through the backing descriptor, which also
// works after the file was unlinked. Size goes before times, so that an
// explicit mtime is not overwritten by the truncation.
func (h *handle) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if mode, ok := in.GetMode(); ok {
		if err := unix.Fchmod(h.fd, mode); err != nil {
			return h.fs.errno(err)
		}
	}

	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := unix.Fchown(h.fd, u, g); err != nil {
			return h.fs.errno(err)
		}
	}

	if size, ok := in.GetSize(); ok {
		if err := h.truncate(int64(size)); err != nil {
			return h.fs.errno(err)
		}
	}
	if killOnSetattr(ctx, in) {
		if err := killSuidgid(ctx, h.fd); err != nil {
			return h.fs.errno(err)
		}
	}
	if err := h.setTimes(in); err != nil {
		return h.fs.errno(err)
	}
	return h.Getattr(ctx, out)
}

// setTimes applies the atime and mtime of in, if any, to the backing file.
func (h *handle) setTimes(in *fuse.SetAttrIn) error {
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) == 0 {
		return nil
	}
	ts := [2]unix.Timespec{
		timespec(in.GetATime()),
		timespec(in.GetMTime()),
	}
	// utimensat(fd, NULL, ...) is futimens(3); x/sys/unix has no wrapper.
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(h.fd), 0,
		uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// timespec converts an optional time to a utimensat(2) timestamp.
func timespec(t time.Time, ok bool) unix.Timespec {
	if !ok {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// Lseek answers SEEK_DATA and SEEK_HOLE, the only whence values the kernel
// forwards: a coffer file has no holes, gaps being stored as encrypted
// zeros.
func (h *handle) Lseek(_ context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	h.ino.mu.RLock()
	var st syscall.Stat_t
	err := syscall.Fstat(h.fd, &st)
	h.ino.mu.RUnlock()
	if err != nil {
		return 0, h.fs.errno(err)
	}

	size := uint64(reportedSize(st.Size))
	switch {
	case whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE:
		return 0, syscall.EINVAL
	case off >= size:
		return 0, syscall.ENXIO
	case whence == unix.SEEK_DATA:
		return off, 0
	default:
		return size, 0
	}
}

// Allocate implements fallocate(2) mode 0 by extending the file with
// encrypted zeros. Other modes (keep size, punch hole, zero range) would
// need holes or in-place zeroing and answer EOPNOTSUPP; posix_fallocate(3)
// then falls back to writing zeros.
func (h *handle) Allocate(_ context.Context, off, size uint64, mode uint32) syscall.Errno {
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	return h.fs.errno(h.allocate(int64(off), int64(size)))
}

// Getlk reports a POSIX lock that conflicts with lk. See locks.go for how
// locks map to the backing file.
func (h *handle) Getlk(_ context.Context, owner uint64, lk *fuse.FileLock, _ uint32,
	out *fuse.FileLock) syscall.Errno {
	return h.fs.errno(h.ino.locks.getlk(h, owner, lk, out))
}

// Setlk takes or drops a lock without waiting.
func (h *handle) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.fs.errno(h.lock(ctx, owner, lk, flags, false))
}

// Setlkw takes a lock, waiting for it.
func (h *handle) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.fs.errno(h.lock(ctx, owner, lk, flags, true))
}

// lock applies an flock(2) or POSIX lock request. flock locks belong to the
// open file, like the handle's backing descriptor, and are taken on it.
func (h *handle) lock(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, wait bool) error {
	if flags&fuse.FUSE_LK_FLOCK == 0 {
		return h.ino.locks.setlk(ctx, h, owner, lk, wait)
	}

	var op int
	switch lk.Typ {
	case syscall.F_RDLCK:
		op = syscall.LOCK_SH
	case syscall.F_WRLCK:
		op = syscall.LOCK_EX
	case syscall.F_UNLCK:
		op = syscall.LOCK_UN
	default:
		return syscall.EINVAL
	}
	if h.fs.opts.Shared {
		return h.flockShared(ctx, lk.Typ, wait)
	}
	return retryLock(ctx, wait, func() error { return unix.Flock(h.fd, op|unix.LOCK_NB) })
}

// flockShared takes an flock(2) lock of a shared mount as an OFD lock of
// the same open file description over every offset applications may lock:
// it then holds across hosts on every shared file system that passes
// byte-range locks on, and, unlike a real flock on NFS (which the client
// turns into a lock of the whole file), leaves the range locks of shared
// mounts (LockBase and up) alone.
func (h *handle) flockShared(ctx context.Context, typ uint32, wait bool) error {
	flk := unix.Flock_t{Type: int16(typ), Start: 0, Len: content.LockBase}
	return retryLock(ctx, wait, func() error {
		return unix.FcntlFlock(uintptr(h.fd), unix.F_OFD_SETLK, &flk)
	})
}
