//go:build linux

package fs

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// POSIX record locks belong to a process (the kernel's lock owner), not to a
// descriptor: two descriptors of one process never conflict, either one can
// unlock, and closing any descriptor of the file releases them all. The
// backing file system only offers that through the daemon's own process,
// which would make every client one owner. So each lock owner gets its own
// open file description of the backing file and its locks are open file
// description (OFD) locks on it: they conflict with other owners, other
// mounts and other processes of the backing directory, and never with the
// owner itself.

// lockPoll bounds the wait between attempts of a blocking lock request.
const lockPoll = 20 * time.Millisecond

// posixLocks is the lock state of one inode.
type posixLocks struct {
	mu     sync.Mutex
	owners map[uint64]*lockOwner
}

// lockOwner is one lock owner's state on one inode.
type lockOwner struct {
	fd     int         // open file description holding the owner's locks
	pid    uint32      // process that last took a lock, for F_GETLK
	ranges []lockRange // what the owner holds, to name it in F_GETLK
	busy   int         // requests using fd; it is closed only when 0
}

// lockRange is a locked byte range, with an inclusive end.
type lockRange struct {
	start, end uint64
	typ        uint32
}

// owner returns the state of owner, opening its file description from h's
// if create is set. The caller holds l.mu.
func (l *posixLocks) owner(owner uint64, h *handle, create bool) (*lockOwner, error) {
	if o := l.owners[owner]; o != nil || !create {
		return o, nil
	}
	ofd, err := reopen(h)
	if err != nil {
		return nil, fmt.Errorf("failed to open lock descriptor: %w", err)
	}
	if l.owners == nil {
		l.owners = make(map[uint64]*lockOwner)
	}
	o := &lockOwner{fd: ofd}
	l.owners[owner] = o
	return o, nil
}

// reopen opens a new file description of h's backing inode, through /proc
// so that it also works for a file unlinked or renamed meanwhile. It is
// read-write if possible, for write locks taken through any handle.
func reopen(h *handle) (int, error) {
	p := fmt.Sprintf("/proc/self/fd/%d", h.fd)
	if !h.fs.opts.ReadOnly {
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil || (err != unix.EACCES && err != unix.EPERM && err != unix.EROFS) {
			return fd, err
		}
	}
	return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// done ends a request on o and forgets the owner once it holds nothing.
// The caller holds l.mu.
func (l *posixLocks) done(owner uint64, o *lockOwner) {
	o.busy--
	if o.busy == 0 && len(o.ranges) == 0 {
		_ = unix.Close(o.fd)
		delete(l.owners, owner)
	}
}

// setlk takes, changes or drops a lock of owner, waiting for it if wait is
// set until ctx is cancelled.
func (l *posixLocks) setlk(ctx context.Context, h *handle, owner uint64, lk *fuse.FileLock, wait bool) error {
	l.mu.Lock()
	o, err := l.owner(owner, h, lk.Typ != syscall.F_UNLCK)
	if o == nil || err != nil {
		l.mu.Unlock()
		return err // unlocking what was never locked is a no-op
	}
	o.busy++
	l.mu.Unlock()

	var flk syscall.Flock_t
	lk.ToFlockT(&flk)
	if err := confine(&flk); err != nil {
		l.mu.Lock()
		l.done(owner, o)
		l.mu.Unlock()
		return err
	}
	err = retryLock(ctx, wait, func() error {
		return syscall.FcntlFlock(uintptr(o.fd), unix.F_OFD_SETLK, &flk)
	})

	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		o.ranges = setRange(o.ranges, lockRange{start: lk.Start, end: lk.End, typ: lk.Typ})
		if lk.Typ != syscall.F_UNLCK {
			o.pid = lk.Pid
		}
	}
	l.done(owner, o)
	return err
}

// getlk reports a lock that would conflict with lk for owner, naming its
// process if the holder uses this mount.
func (l *posixLocks) getlk(h *handle, owner uint64, lk *fuse.FileLock, out *fuse.FileLock) error {
	l.mu.Lock()
	defer l.mu.Unlock()

	fd := h.fd // holds no record locks (but a shared mount's flocks), so it sees every owner's
	if o := l.owners[owner]; o != nil {
		fd = o.fd // sees every owner's but this one's
	}
	var flk syscall.Flock_t
	lk.ToFlockT(&flk)
	if err := confine(&flk); err != nil {
		return err
	}
	if err := syscall.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &flk); err != nil {
		return err
	}
	if flk.Start+flk.Len == content.LockBase {
		flk.Len = 0 // confined "to the end of the file"
	}
	out.FromFlockT(&flk)
	out.Pid = 0
	if out.Typ == syscall.F_UNLCK {
		return nil
	}
	for id, o := range l.owners {
		if id != owner && o.holds(out.Start, out.End, out.Typ) {
			out.Pid = o.pid
			break
		}
	}
	return nil
}

// confine keeps an application's lock below content.LockBase, where the
// locks that coordinate shared mounts start (shared.go): a lock to the end
// of the file ends there, and one that starts there is refused.
func confine(flk *syscall.Flock_t) error {
	if flk.Start < 0 || flk.Start >= content.LockBase {
		return syscall.EINVAL
	}
	if flk.Len == 0 || flk.Len > content.LockBase-flk.Start {
		flk.Len = content.LockBase - flk.Start
	}
	return nil
}

// release drops every lock of owner, as closing a descriptor does.
func (l *posixLocks) release(owner uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()

	o := l.owners[owner]
	if o == nil {
		return
	}
	unlock := syscall.Flock_t{Type: syscall.F_UNLCK}
	_ = syscall.FcntlFlock(uintptr(o.fd), unix.F_OFD_SETLK, &unlock)
	o.ranges = nil
	o.busy++
	l.done(owner, o)
}

// closeAll drops the locks of every owner; the inode has no handle left.
func (l *posixLocks) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, o := range l.owners {
		_ = unix.Close(o.fd)
		delete(l.owners, id)
	}
}

// holds reports whether o holds a lock of type typ overlapping [start, end].
func (o *lockOwner) holds(start, end uint64, typ uint32) bool {
	for _, r := range o.ranges {
		if r.start <= end && start <= r.end && r.typ == typ {
			return true
		}
	}
	return false
}

// setRange applies a lock or unlock to an owner's ranges: the new range
// replaces whatever the owner held in it.
func setRange(ranges []lockRange, n lockRange) []lockRange {
	var out []lockRange
	for _, r := range ranges {
		if r.end < n.start || n.end < r.start {
			out = append(out, r)
			continue
		}
		if r.start < n.start {
			out = append(out, lockRange{start: r.start, end: n.start - 1, typ: r.typ})
		}
		if r.end > n.end {
			out = append(out, lockRange{start: n.end + 1, end: r.end, typ: r.typ})
		}
	}
	if n.typ != syscall.F_UNLCK {
		out = append(out, n)
	}
	return out
}

// retryLock runs try once, or, if wait is set, until it stops failing with
// EAGAIN or ctx is cancelled (EINTR). A blocking lock call would keep
// waiting after the client gave up, and then take a lock nobody releases.
func retryLock(ctx context.Context, wait bool, try func() error) error {
	delay := 100 * time.Microsecond
	for {
		err := try()
		if !wait || (err != unix.EAGAIN && err != unix.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return syscall.EINTR
		case <-time.After(delay):
		}
		delay = min(2*delay, lockPoll)
	}
}
