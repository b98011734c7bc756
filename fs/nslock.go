//go:build linux

package fs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/names"
)

// Shared mounts with encrypted names coordinate their namespace changes
// through one lock per volume: an OFD lock on the first byte of
// NamespaceLockName in the reserved folder. Changes that remove or move
// directories, or rewrite their records (rmdir, rename), hold it
// exclusively; changes that only add or remove entries inside a directory
// (create, mkdir, mknod, symlink, link, unlink) hold it shared. Under the
// lock no other mount moves the directory a change works in, and a
// directory's record is never missing for a moment where another mount
// could see it. Mounts of their own never take it.

// NamespaceLockName is the lock file of shared mounts, in the reserved
// folder of the backing root.
const NamespaceLockName = "namespace.lock"

// nsLock hands out descriptors of the lock file: an OFD lock belongs to
// its descriptor, so two holders at once, in this process too, need two.
type nsLock struct {
	path string
	mu   sync.Mutex
	free []int

	// exclusive counts this process's holders of the exclusive lock.
	exclusive atomic.Int32
}

// newNSLock returns the namespace lock of a file system, or nil when the
// mount needs none: not shared, names not encrypted, or read-only.
func newNSLock(backing string, opts Options) *nsLock {
	if !opts.Shared || !opts.EncryptNames || opts.ReadOnly {
		return nil
	}
	return &nsLock{path: filepath.Join(backing, ReservedName, NamespaceLockName)}
}

// open returns a descriptor of the lock file, creating the file (and the
// reserved folder) if no mount has yet: O_CREAT without O_EXCL is safe
// when several mounts race to do it.
func (l *nsLock) open() (int, error) {
	l.mu.Lock()
	if n := len(l.free); n > 0 {
		fd := l.free[n-1]
		l.free = l.free[:n-1]
		l.mu.Unlock()
		return fd, nil
	}
	l.mu.Unlock()
	flags := unix.O_RDWR | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open(l.path, flags, 0o600)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdir(filepath.Dir(l.path), 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		fd, err = unix.Open(l.path, flags, 0o600)
	}
	return fd, err
}

// lock takes the lock, exclusive or shared, waiting for other holders.
// The returned function releases it.
func (l *nsLock) lock(exclusive bool) (func(), error) {
	fd, err := l.open()
	if err != nil {
		return nil, fmt.Errorf("failed to open namespace lock %s: %w", l.path, err)
	}
	typ := int16(unix.F_RDLCK)
	if exclusive {
		typ = unix.F_WRLCK
	}
	if err := fcntlByte(fd, typ); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("failed to take namespace lock %s: %w", l.path, err)
	}
	if exclusive {
		l.exclusive.Add(1)
	}
	return func() {
		if exclusive {
			l.exclusive.Add(-1)
		}
		if fcntlByte(fd, unix.F_UNLCK) != nil {
			_ = unix.Close(fd) // closing drops the lock
			return
		}
		l.mu.Lock()
		l.free = append(l.free, fd)
		l.mu.Unlock()
	}, nil
}

// fcntlByte sets an OFD lock of type typ on byte 0 of fd, waiting.
func fcntlByte(fd int, typ int16) error {
	flk := unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 1}
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &flk)
		if err != unix.EINTR {
			return err
		}
	}
}

// settles reports whether a failure to read a directory's record may be
// the moment of another mount's rmdir or rename over the directory, which
// take the record away under the exclusive lock: the record is missing but
// the directory is there. It is false without a lock (not shared) and
// while this process holds the lock exclusively, so that a holder never
// waits for itself; a reader then sees the error, as before.
func (l *nsLock) settles(err error) bool {
	var re *recordError
	if l == nil || l.exclusive.Load() > 0 || !errors.As(err, &re) || !errors.Is(re.err, os.ErrNotExist) {
		return false
	}
	_, serr := os.Lstat(re.dir)
	return serr == nil
}

// reload reads the record of the backing directory dir again under the
// shared lock, once no change that takes records away is running.
func (l *nsLock) reload(f *filesystem, dir string) (*names.Key, []byte, error) {
	unlock, err := l.lock(false)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	return f.loadDirKey(dir)
}

// lockNS takes the namespace lock of a shared mount; a no-op otherwise.
func (f *filesystem) lockNS(exclusive bool) (func(), error) {
	if f.ns == nil {
		return func() {}, nil
	}
	return f.ns.lock(exclusive)
}

// checkDir makes sure, in a shared mount, that the backing directory at
// n's path is the directory whose name key n has cached: another mount may
// have removed it and made another one of the same name, or moved another
// directory there, since the kernel looked n up. The caller holds the
// namespace lock, which keeps the answer true until it lets go. A
// directory that is no longer there is ENOENT; so is one replaced by
// another: n is gone, and names encrypted under its key would be invisible
// in the new directory.
func (n *node) checkDir() error {
	if n.fs.ns == nil || n.IsRoot() {
		return nil
	}
	k, err := n.dirKey()
	if err != nil {
		return goneDir(err)
	}
	dir, err := n.abs()
	if err != nil {
		return goneDir(err)
	}
	b, err := readSmall(filepath.Join(dir, names.RecordName), names.RecordSize)
	if err != nil {
		return goneDir(&recordError{dir: dir, err: err})
	}
	rec, err := names.ParseRecord(b)
	if err != nil {
		return &recordError{dir: dir, err: err}
	}
	if rec.ID != k.ID() {
		n.fs.log.Debug().Str("backing", dir).
			Msg("directory was replaced by another mount of the volume, returning ENOENT")
		return syscall.ENOENT
	}
	return nil
}

// goneDir turns the error of a record that cannot be read because its
// directory no longer exists, or is no longer a directory (another mount
// put something else under its name), into ENOENT; a directory without
// its record stays an error (EIO).
func goneDir(err error) error {
	var re *recordError
	if errors.As(err, &re) && (errors.Is(re.err, os.ErrNotExist) || errors.Is(re.err, syscall.ENOTDIR)) {
		if st, serr := os.Lstat(re.dir); serr != nil || !st.IsDir() {
			return syscall.ENOENT
		}
	}
	return err
}

// nsBegin takes the namespace lock for a change in the directories dirs
// and checks that each is still the directory it was (see checkDir). On
// success the returned function releases the lock.
func (f *filesystem) nsBegin(exclusive bool, dirs ...*node) (func(), syscall.Errno) {
	unlock, err := f.lockNS(exclusive)
	if err != nil {
		return nil, f.errno(err)
	}
	for _, d := range dirs {
		if err := d.checkDir(); err != nil {
			unlock()
			return nil, f.errno(err)
		}
	}
	return unlock, 0
}
