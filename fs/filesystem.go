//go:build linux

package fs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// filesystem is the state of one coffer mount shared by all its nodes.
type filesystem struct {
	backing string // absolute, symlink-free path of the backing directory
	opts    Options
	log     zerolog.Logger
	root    *gofs.LoopbackRoot
	inodes  inodeTable
	names   *nameState // nil unless names are encrypted

	// flushOwners maps the cancel channel of a running FLUSH request to
	// its lock owner; see flushOwnerFS.
	flushOwners sync.Map

	// undo is the set of undo records the volume holds; see undoset.go.
	undo undoSet

	// killWrites holds the cancel channels of running WRITE requests
	// that must clear the setuid and setgid bits; see killpriv.go.
	killWrites sync.Map

	// directWrites holds, in shared mode, the cancel channels of running
	// WRITE requests that come from write(2), not from page write-back;
	// see handle.Write.
	directWrites sync.Map

	// undoTag names this process's undo records in shared mode, "" in
	// a mount of its own; see undo.go.
	undoTag string

	// undoDir is the descriptor of the undo folder; see undodir.go.
	undoDir undoDir

	// ns is the namespace lock of a shared mount with encrypted names,
	// nil otherwise; see nslock.go.
	ns *nsLock
}

func newFilesystem(backing string, opts Options) *filesystem {
	f := &filesystem{backing: backing, opts: opts, log: opts.Logger, ns: newNSLock(backing, opts)}
	if opts.EncryptNames {
		f.names = &nameState{}
	}
	f.undo.load(f)
	f.inodes.closed = f.closedUndo
	if opts.Shared {
		// Other processes create and remove undo records at any time:
		// the set of records is not to be trusted.
		f.undo.shared = true
		f.undoTag = undoTag()
	}
	return f
}

// newNode is the loopback's NewNode hook: every node of the tree is ours.
func (f *filesystem) newNode(r *gofs.LoopbackRoot, _ *gofs.Inode, _ string,
	_ *syscall.Stat_t) gofs.InodeEmbedder {
	return &node{LoopbackNode: gofs.LoopbackNode{RootData: r}, fs: f}
}

// keptOpenFlags are the open flags passed on to backing files. The access
// mode is ours to choose, O_APPEND and O_TRUNC are implemented here, and
// O_DIRECT would demand aligned buffers that the data path does not use.
const keptOpenFlags = syscall.O_SYNC | syscall.O_DSYNC | syscall.O_NOATIME

// openBacking opens the backing file at rel (relative to the backing
// directory) for a FUSE open with flags. It opens read-write whenever it can,
// because partial block writes read the block first; it falls back to
// read-only for a read-only open of a file we may not write. extra is added
// to the flags (O_CREAT, O_EXCL) and mode is used on creation.
func (f *filesystem) openBacking(rel string, flags, extra int,
	mode uint32) (fd int, writable bool, err error) {
	base := flags&keptOpenFlags | extra | syscall.O_CLOEXEC
	if f.opts.ReadOnly {
		fd, err = f.openat(rel, base|syscall.O_RDONLY, mode)
		return fd, false, err
	}

	fd, err = f.openat(rel, base|syscall.O_RDWR, mode)
	if err == nil {
		return fd, true, nil
	}
	readOnly := flags&syscall.O_ACCMODE == syscall.O_RDONLY
	if readOnly && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)) {
		fd, err = f.openat(rel, base|syscall.O_RDONLY, mode)
		return fd, false, err
	}
	return -1, false, err
}

// openat opens rel below the backing directory without following symlinks,
// so a symlink planted in the backing directory cannot redirect an open.
func (f *filesystem) openat(rel string, flags int, mode uint32) (int, error) {
	p := joinRel(f.backing, rel)
	// openat2 refuses a mode without O_CREAT, and file type bits, which
	// FUSE CREATE requests carry.
	if flags&unix.O_CREAT == 0 {
		mode = 0
	}
	mode &= 0o7777
	how := unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode), Resolve: unix.RESOLVE_NO_SYMLINKS}
	for {
		fd, err := unix.Openat2(unix.AT_FDCWD, p, &how)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOSYS:
			return unix.Open(p, flags|unix.O_NOFOLLOW, mode)
		}
		return fd, err
	}
}

// joinRel is filepath.Join(dir, rel) for a clean dir. A clean rel, as the
// mount builds them, is appended as it is: filepath.Join would join and
// clean it again on every open.
func joinRel(dir, rel string) string {
	switch {
	case rel == "" || dir == "" || !cleanRel(rel):
		return filepath.Join(dir, rel)
	case dir[len(dir)-1] == '/':
		return dir + rel
	}
	return dir + "/" + rel
}

// cleanRel reports whether rel is a relative path that filepath.Clean leaves
// as it is: no empty, "." or ".." element, no leading or trailing slash.
func cleanRel(rel string) bool {
	for {
		i := strings.IndexByte(rel, '/')
		elem := rel
		if i >= 0 {
			elem = rel[:i]
		}
		if elem == "" || elem == "." || elem == ".." {
			return false
		}
		if i < 0 {
			return true
		}
		rel = rel[i+1:]
	}
}

// newHandle wraps a backing fd in a file handle sharing the inode state of
// every other handle of the same backing inode. It takes ownership of fd.
func (f *filesystem) newHandle(n pather, fd int, writable bool) (*handle, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return f.newHandleKey(n, fd, writable, inodeKey{dev: st.Dev, ino: st.Ino}), nil
}

// newHandleKey is newHandle for a caller that has stat'ed fd already: k is
// its backing inode.
func (f *filesystem) newHandleKey(n pather, fd int, writable bool, k inodeKey) *handle {
	in := f.inodes.acquire(k)
	return &handle{fs: f, node: n, ino: in, fd: fd, writable: writable, direct: f.opts.Shared}
}

// newFile is a backing file that a create made: its attributes and the
// generation go-fuse derives from its birth time.
type newFile struct {
	st  syscall.Stat_t
	gen uint64
}

// ownNew stats the backing file the daemon just created through fd and,
// running as root, gives it the owner of the calling process, as the
// loopback does. The file already has that owner when the caller is the
// daemon's user, as with tar run as root: then nothing changes, and the
// chown is left out.
func ownNew(ctx context.Context, fd int) (*newFile, error) {
	st, gen, err := fstatx(fd)
	if err != nil {
		return nil, err
	}
	caller, ok := fuse.FromContext(ctx)
	if !daemonRoot || !ok || caller.Uid == st.Uid && caller.Gid == st.Gid {
		return &newFile{st: st, gen: gen}, nil
	}
	_ = unix.Fchown(fd, int(caller.Uid), int(caller.Gid))
	if st, gen, err = fstatx(fd); err != nil {
		return nil, err
	}
	return &newFile{st: st, gen: gen}, nil
}

// daemonRoot tells whether the daemon runs as root, which gives the files
// it creates the owner of the calling process.
var daemonRoot = os.Getuid() == 0

// openFlags are the FUSE open flags of a new handle: direct I/O in shared
// mode, where another process may change the file behind the page cache.
func (f *filesystem) openFlags() uint32 {
	if f.opts.Shared {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

// preserveOwner gives a file created by the daemon running as root the
// owner of the calling process, as the loopback does.
func preserveOwner(ctx context.Context, fd int) {
	if !daemonRoot {
		return
	}
	if caller, ok := fuse.FromContext(ctx); ok {
		_ = unix.Fchown(fd, int(caller.Uid), int(caller.Gid))
	}
}

// reportedSize is the size a regular file shows through the mount for a
// backing size. Damaged files report one byte more than their readable
// blocks: the kernel reads nothing past the size it knows, so the extra byte
// makes a read reach the damaged block and fail with EIO instead of ending
// early without notice.
func reportedSize(cipherSize int64) int64 {
	size, torn, err := content.PlainSize(cipherSize)
	if err != nil || torn {
		return size + 1
	}
	return size
}

// blocks512 returns st_blocks for a plaintext size: whole 4 KiB blocks in
// 512-byte units, so that no file looks sparse.
func blocks512(size uint64) uint64 {
	return (size + content.BlockSize - 1) / content.BlockSize * (content.BlockSize / 512)
}

// fixAttr turns the attributes of a backing file into those of its
// plaintext.
func fixAttr(a *fuse.Attr) {
	if a.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return
	}
	a.Size = uint64(reportedSize(int64(a.Size)))
	a.Blocks = blocks512(a.Size)
}

// fixStatx is fixAttr for statx results.
func fixStatx(s *fuse.Statx) {
	if uint32(s.Mode)&syscall.S_IFMT != syscall.S_IFREG {
		return
	}
	s.Size = uint64(reportedSize(int64(s.Size)))
	s.Blocks = blocks512(s.Size)
}
