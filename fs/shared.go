//go:build linux

package fs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// Shared mode (Options.Shared) lets several coffer processes, on one host or
// on several hosts of a shared file system, serve one backing directory at
// once. Each change of a file's blocks holds an open file description (OFD)
// write lock on the backing bytes it touches, to the end of the file for a
// change of its size or its last block, from offset 0 for a new header; each
// read holds a read lock on the blocks it reads. The locks live at
// content.LockBase plus the backing offset, out of the way of the
// applications' locks (locks.go confines those below it). Inside one
// process, ino.mu already orders the operations, so the OFD locks only ever
// meet those of other processes.

// rangeLock is a lock an operation holds on backing bytes [start, end) of a
// file, through a descriptor of the inode's lock pool; end 0 means to the
// end of any file.
type rangeLock struct {
	in         *inode
	fd         int
	write      bool
	start, end int64
}

// lockPool holds spare descriptors of one backing inode for range locks:
// OFD locks belong to the descriptor, so two operations at once need two.
type lockPool struct {
	mu   sync.Mutex
	free [2][]int // read-only or read-write, by lockPool index
}

// get returns a descriptor of h's backing inode, read-write if write.
func (p *lockPool) get(h *handle, write bool) (int, error) {
	i := poolIndex(write)
	p.mu.Lock()
	if n := len(p.free[i]); n > 0 {
		fd := p.free[i][n-1]
		p.free[i] = p.free[i][:n-1]
		p.mu.Unlock()
		return fd, nil
	}
	p.mu.Unlock()

	if write {
		return unix.Open(fmt.Sprintf("/proc/self/fd/%d", h.fd), unix.O_RDWR|unix.O_CLOEXEC, 0)
	}
	return reopen(h)
}

// put returns a descriptor, which holds no lock, to the pool.
func (p *lockPool) put(fd int, write bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free[poolIndex(write)] = append(p.free[poolIndex(write)], fd)
}

// closeAll closes the pool's descriptors; the inode has no handle left.
func (p *lockPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.free {
		for _, fd := range p.free[i] {
			_ = unix.Close(fd)
		}
		p.free[i] = nil
	}
}

func poolIndex(write bool) int {
	if write {
		return 1
	}
	return 0
}

// lockRange takes a read or write lock on backing bytes [start, end) of h's
// file, waiting for other processes to release theirs.
func (h *handle) lockRange(start, end int64, write bool) (*rangeLock, error) {
	fd, err := h.ino.pool.get(h, write)
	if err != nil {
		return nil, fmt.Errorf("failed to open lock descriptor: %w", err)
	}
	if err := setRangeLock(fd, start, end, write); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("failed to lock backing file: %w", err)
	}
	return &rangeLock{in: h.ino, fd: fd, write: write, start: start, end: end}, nil
}

// setRangeLock takes a read or write OFD lock on backing bytes [start, end)
// (end 0: to the end) in the lock space, blocking until it is granted.
func setRangeLock(fd int, start, end int64, write bool) error {
	typ := int16(unix.F_RDLCK)
	if write {
		typ = unix.F_WRLCK
	}
	return fcntlRange(fd, typ, start, end)
}

// fcntlRange runs F_OFD_SETLKW for a lock of type typ on [start, end).
func fcntlRange(fd int, typ int16, start, end int64) error {
	flk := unix.Flock_t{Type: typ, Whence: 0, Start: content.LockBase + start}
	if end > 0 {
		flk.Len = end - start
	}
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &flk)
		if err != unix.EINTR {
			return err
		}
	}
}

// unlock releases the lock and returns its descriptor to the pool. A nil
// lock (not shared mode) is a no-op.
func (l *rangeLock) unlock() {
	if l == nil {
		return
	}
	if err := fcntlRange(l.fd, unix.F_UNLCK, l.start, l.end); err != nil {
		_ = unix.Close(l.fd) // closing drops the lock
		return
	}
	l.in.pool.put(l.fd, l.write)
}

// covers reports whether the lock covers backing bytes [start, end).
func (l *rangeLock) covers(start, end int64) bool {
	return l.start <= start && (l.end == 0 || (end != 0 && end <= l.end))
}

// toEnd reports whether the lock reaches the end of the file, so that the
// operation may change the file's size. Without a lock (a mount of its own)
// every operation may.
func (l *rangeLock) toEnd() bool {
	return l == nil || l.end == 0
}

// lockRead takes the read lock for a read of plaintext [off, off+n), in
// shared mode; nil otherwise. The range depends on the request alone, so a
// file that grows or shrinks meanwhile needs no second attempt: a change of
// size locks to the end of the file and waits for the read.
func (h *handle) lockRead(off, n int64) (*rangeLock, error) {
	if !h.fs.opts.Shared || n <= 0 {
		return nil, nil
	}
	first, last := off/bs, (off+n-1)/bs
	return h.lockRange(content.BlockOffset(uint64(first)), content.BlockOffset(uint64(last+1)), false)
}

// lockChange takes the write lock for a change of the file, in shared mode;
// nil otherwise. need returns the backing range the change touches for the
// file's current sizes. Sizes read before the lock may be stale: once
// locked, the range is checked against fresh ones, and if the file changed
// so that it needs more, the whole file is locked instead. The caller holds
// ino.mu exclusively.
func (h *handle) lockChange(need func(sizes) (start, end int64)) (*rangeLock, error) {
	if !h.fs.opts.Shared {
		return nil, nil
	}
	needed := func() (int64, int64) {
		sz, err := h.stat()
		if err != nil {
			return 0, 0
		}
		return need(sz)
	}

	start, end := needed()
	l, err := h.lockRange(start, end, true)
	if err != nil {
		return nil, err
	}
	if l.covers(needed()) {
		h.ino.wlock = l
		return l, nil
	}
	l.unlock()
	if l, err = h.lockRange(0, 0, true); err != nil {
		return nil, err
	}
	h.ino.wlock = l
	return l, nil
}

// unlockChange releases a lock taken by lockChange.
func (h *handle) unlockChange(l *rangeLock) {
	if l != nil {
		h.ino.wlock = nil
		l.unlock()
	}
}

// writeRange is the backing range that writing plaintext [off, end) touches
// in a file of sizes sz: the blocks written, or, if the write reaches the
// last block or beyond, everything from the first block it changes (a gap
// fill starts at the old last block) to the end of the file. A file
// without a header gets one: from offset 0.
func writeRange(sz sizes, off, end int64) (int64, int64) {
	if sz.cipher < content.HeaderSize {
		return 0, 0
	}
	tail := sz.plain / bs // the partial last block, or the next one
	first, last := off/bs, (end-1)/bs
	if last < tail && !sz.torn {
		return content.BlockOffset(uint64(first)), content.BlockOffset(uint64(last + 1))
	}
	return content.BlockOffset(uint64(min(first, tail))), 0
}

// truncRange is the backing range a truncation to size touches.
func truncRange(sz sizes, size int64) (int64, int64) {
	if size == 0 || sz.cipher < content.HeaderSize {
		return 0, 0
	}
	return content.BlockOffset(uint64(min(size, sz.plain) / bs)), 0
}

// sameFile reports, in shared mode, whether the header on disk still
// belongs to the cached cipher c: another process may have cut the file to
// zero and started it over with a new file ID and key. The caller holds a
// range lock, which keeps the file ID in place (starting a file over locks
// from offset 0).
func (h *handle) sameFile(c *content.Cipher) (bool, error) {
	var id content.FileID
	if err := preadFull(h.fd, id[:], content.FileIDOffset); err != nil {
		return false, h.readError(err, headerBlock)
	}
	return id == c.FileID(), nil
}

// undoTag names this process's undo records in shared mode: host name and
// process ID, with anything but letters, digits, '-' and '_' replaced.
func undoTag() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, host)
	return clean + "-" + strconv.Itoa(os.Getpid())
}
