//go:build linux

package fs

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/names"
)

// node is a file, directory, symlink or special file of the mount. The
// embedded loopback node answers every namespace operation on the backing
// directory; node overrides what touches file contents or sizes and guards
// the reserved folder in the root.
type node struct {
	gofs.LoopbackNode
	fs   *filesystem
	keys dirKeyCache               // name key of a directory, with encrypted names
	name atomic.Pointer[nameMemo]  // its own backing name, with encrypted names
	open openHandles               // of a regular file
	last atomic.Pointer[childMemo] // of a directory, with encrypted names
}

var (
	_ gofs.InodeEmbedder      = (*node)(nil)
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeStatxer        = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeTmpfiler       = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeReaddirer      = (*node)(nil)
	_ gofs.NodeCopyFileRanger = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeSetxattrer     = (*node)(nil)
	_ gofs.NodeRemovexattrer  = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ pather                  = (*node)(nil)
)

// backingPath returns the node's path in the backing directory, for logs.
func (n *node) backingPath() string {
	rel, err := n.rel()
	if err != nil {
		return filepath.Join(n.fs.backing, "(unknown: "+err.Error()+")")
	}
	return filepath.Join(n.fs.backing, rel)
}

// mountPath returns the node's path under the mount, "/dir/file", as the
// kernel names it; "" for a node no longer in the tree.
func (n *node) mountPath() string {
	if n.Inode.IsRoot() {
		return "/"
	}
	p := n.Path(nil)
	if p == "" || strings.HasPrefix(p, ".go-fuse") {
		return ""
	}
	return "/" + p
}

// reserved reports whether name is the reserved folder of the root or, with
// plaintext names, the name of a root directory record: a plaintext-names
// volume with a root record is refused as one whose config was altered
// (see checkNamesMode), so users cannot create one. With encrypted names it
// is an ordinary name.
func (n *node) reserved(name string) bool {
	if !n.IsRoot() {
		return false
	}
	return name == ReservedName || (name == names.RecordName && !n.fs.encrypted())
}

// Lookup hides the reserved folder and reports plaintext sizes.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.ENOENT
	}
	if n.fs.encrypted() {
		return n.encLookup(ctx, name, out)
	}
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		fixAttr(&out.Attr)
	}
	return ch, errno
}

// Getattr reports plaintext sizes.
func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Getattr(ctx, out)
	}
	if n.fs.encrypted() {
		return n.stale(n.encGetattr(out))
	}
	p, err := n.abs()
	if err != nil {
		return n.stale(n.fs.errno(err))
	}
	st, _, err := lstatx(p)
	if err != nil {
		return n.stale(gofs.ToErrno(err))
	}
	if !n.sameInode(&st) {
		return syscall.ESTALE
	}
	out.FromStat(&st)
	fixAttr(&out.Attr)
	return 0
}

// stale turns ENOENT from a request on a node by its path into ESTALE. The
// kernel sends requests for a node it looked up, but go-fuse serves them
// concurrently with a rename or unlink of the node, whose backing syscall
// may be done and the node tree not yet updated: the path built from the
// tree then names nothing. ESTALE makes the kernel look the name up again
// and retry (stat, chmod, readlink and the xattr calls do), as openSelf
// does for opens. The root has no such window. In shared mode another
// mount's unlink is the likelier cause, and ENOENT its answer: the kernel
// retries once only, and a second unlink by another mount during that retry
// would show the program ESTALE.
func (n *node) stale(errno syscall.Errno) syscall.Errno {
	if errno == syscall.ENOENT && !n.IsRoot() && !n.fs.opts.Shared {
		return syscall.ESTALE
	}
	return errno
}

// sameInode reports whether st, a stat of the node's backing path, is of
// the node's inode: in the window stale describes, a rename onto the old
// name makes the path name another file. In shared mode other processes
// replace entries at any moment and the kernel looks every name up again
// before each use (entry timeout 0), so what the name holds now is the
// answer, as on NFS; a check there would turn a replacement by another
// mount into ESTALE for the program whenever the kernel's one retry meets
// a second one.
func (n *node) sameInode(st *syscall.Stat_t) bool {
	return n.IsRoot() || n.fs.opts.Shared || n.fs.stable(st, 0).Ino == n.StableAttr().Ino
}

// Statx reports plaintext sizes.
func (n *node) Statx(ctx context.Context, f gofs.FileHandle, flags, mask uint32,
	out *fuse.StatxOut) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Statx(ctx, flags, mask, out)
	}
	if n.fs.encrypted() {
		return n.stale(n.encStatx(out))
	}
	if errno := n.LoopbackNode.Statx(ctx, nil, flags, mask, out); errno != 0 {
		return n.stale(errno)
	}
	st := syscall.Stat_t{Dev: unix.Mkdev(out.DevMajor, out.DevMinor), Ino: out.Ino}
	if !n.sameInode(&st) {
		return syscall.ESTALE
	}
	fixStatx(&out.Statx)
	return 0
}

// Setattr changes attributes; a size change goes through the encrypted
// truncation, the rest to the loopback.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn,
	out *fuse.AttrOut) syscall.Errno {
	if m, ok := in.GetMode(); ok && n.fs.encrypted() && m&syscall.S_ISVTX != 0 &&
		n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFREG {
		// The sticky bit of a regular backing file marks a symbolic
		// link; regular files never get it.
		rest := *in
		rest.Mode &^= syscall.S_ISVTX
		in = &rest
	}
	if h, ok := f.(*handle); ok {
		return h.Setattr(ctx, in, out)
	}
	if errno, ok := n.setattrOpen(ctx, in, out); ok {
		return errno
	}

	kill := killOnSetattr(ctx, in) && n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFREG
	if size, ok := in.GetSize(); ok {
		if err := n.truncate(size); err != nil {
			return n.fs.errno(err)
		}
		rest := *in
		rest.Valid &^= fuse.FATTR_SIZE
		in = &rest
	}
	if kill {
		if err := n.killSuidgid(ctx); err != nil {
			return n.fs.errno(err)
		}
	}
	if n.fs.encrypted() {
		return n.stale(n.encSetattr(in, out))
	}
	if errno := n.LoopbackNode.Setattr(ctx, nil, in, out); errno != 0 {
		return n.stale(errno)
	}
	fixAttr(&out.Attr)
	return 0
}

// truncate sets the plaintext size of the file without an open handle, as
// truncate(2) and open with O_TRUNC do.
func (n *node) truncate(size uint64) error {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	rel, err := n.rel()
	if err != nil {
		return err
	}
	fd, writable, err := n.fs.openBacking(rel, syscall.O_WRONLY, 0, 0)
	if err != nil {
		return err
	}
	h, err := n.fs.newHandle(n, fd, writable)
	if err != nil {
		return err
	}
	defer h.release()
	return h.truncate(int64(size))
}

// Open opens the backing file and returns a handle that encrypts and
// decrypts.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fd, writable, key, errno := n.openSelf(int(flags))
	if errno != 0 {
		return nil, 0, errno
	}
	h := n.fs.newHandleKey(n, fd, writable, key)
	h.setFlags(int(flags))
	if flags&syscall.O_TRUNC != 0 {
		if err := h.truncate(0); err != nil {
			h.release()
			return nil, 0, n.fs.errno(err)
		}
	}
	n.track(h)
	return h, n.fs.openFlags(), 0
}

// openSelf opens the backing file of n. The kernel sends OPEN for a node
// it looked up, but go-fuse serves requests concurrently: a rename or
// unlink of the node may be in flight, its backing syscall done and the
// node tree not yet updated, or the node already out of the tree. The path
// built from the tree then names nothing (ENOENT), nothing at all (a node
// out of the tree), or another file (the one a rename just moved onto the
// old name). Each of these answers ESTALE: the kernel then walks the path
// again with a fresh LOOKUP and opens what the name is now, or creates it
// with O_CREAT, as a local file system would. It also returns the backing
// inode, from the one fstat that both checks need.
func (n *node) openSelf(flags int) (int, bool, inodeKey, syscall.Errno) {
	if !n.IsRoot() {
		if _, parent := n.Parent(); parent == nil {
			return -1, false, inodeKey{}, syscall.ESTALE
		}
	}
	rel, err := n.rel()
	if errors.Is(err, syscall.ENOENT) {
		return -1, false, inodeKey{}, syscall.ESTALE
	}
	if err != nil {
		return -1, false, inodeKey{}, n.fs.errno(err)
	}
	fd, writable, err := n.fs.openBacking(rel, flags, 0, 0)
	if errors.Is(err, syscall.ENOENT) {
		return -1, false, inodeKey{}, syscall.ESTALE
	}
	if err != nil {
		return -1, false, inodeKey{}, n.fs.errno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		_ = syscall.Close(fd)
		return -1, false, inodeKey{}, gofs.ToErrno(err)
	}
	if !n.IsRoot() && n.fs.stable(&st, 0).Ino != n.StableAttr().Ino {
		_ = syscall.Close(fd)
		return -1, false, inodeKey{}, syscall.ESTALE
	}
	return fd, writable, inodeKey{dev: st.Dev, ino: st.Ino}, 0
}

// Create creates and opens a file. The backing file starts empty; its header
// is written with the first data.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32,
	out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.reserved(name) {
		return nil, nil, 0, syscall.EPERM
	}
	if n.fs.encrypted() {
		return n.encCreate(ctx, name, flags, mode, out)
	}

	h, _, errno := n.createAt(ctx, filepath.Join(n.Path(nil), name), int(flags), mode)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	ch, errno := n.Lookup(ctx, name, out)
	if errno != 0 {
		h.release()
		return nil, nil, 0, errno
	}
	h.node = ch.Operations().(*node)
	ch.Operations().(*node).track(h)
	return ch, h, n.fs.openFlags(), 0
}

// createAt opens the backing path rel with O_CREAT and returns its handle
// and, if it made the file, the file's attributes (nil if it opened a file
// that was there). The owner is set only if the file is new: with O_CREAT
// alone, a file that appeared since the kernel's lookup is opened as it is.
func (n *node) createAt(ctx context.Context, rel string, flags int,
	mode uint32) (*handle, *newFile, syscall.Errno) {
	fd, writable, err := n.fs.openBacking(rel, flags, syscall.O_CREAT|syscall.O_EXCL, mode)
	if err == syscall.EEXIST && flags&syscall.O_EXCL == 0 {
		h, errno := n.openExisting(rel, flags, mode)
		return h, nil, errno
	}
	if err != nil {
		return nil, nil, n.fs.errno(err)
	}

	nf, err := ownNew(ctx, fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, nil, gofs.ToErrno(err)
	}
	h := n.fs.newHandleKey(n, fd, writable, inodeKey{dev: nf.st.Dev, ino: nf.st.Ino})
	h.setFlags(flags)
	return h, nf, 0
}

// openExisting is createAt for a file that appeared since the kernel's
// lookup.
func (n *node) openExisting(rel string, flags int, mode uint32) (*handle, syscall.Errno) {
	fd, writable, err := n.fs.openBacking(rel, flags, 0, mode)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	h, err := n.fs.newHandle(n, fd, writable)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	h.setFlags(flags)
	if flags&syscall.O_TRUNC != 0 {
		if err := h.truncate(0); err != nil {
			h.release()
			return nil, n.fs.errno(err)
		}
	}
	return h, 0
}

// Tmpfile refuses O_TMPFILE: the file it makes can only be named through a
// link from /proc/self/fd, which the loopback cannot serve. ENOSYS makes the
// kernel answer EOPNOTSUPP without asking again, and programs fall back to
// a named temporary file.
func (n *node) Tmpfile(context.Context, uint32, uint32,
	*fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOSYS
}

// Mkdir guards the reserved name.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	if n.fs.encrypted() {
		return n.encMkdir(ctx, name, mode, out)
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

// Mknod guards the reserved name.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	if n.fs.encrypted() {
		return n.encMknod(ctx, name, mode, dev, out)
	}
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, dev, out)
	if errno == 0 {
		fixAttr(&out.Attr)
	}
	return ch, errno
}

// Symlink guards the reserved name.
func (n *node) Symlink(ctx context.Context, target, name string,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	if n.fs.encrypted() {
		return n.encSymlink(ctx, target, name, out)
	}
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

// Readlink returns the target of a symbolic link.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.fs.encrypted() {
		return n.encReadlink()
	}
	target, errno := n.LoopbackNode.Readlink(ctx)
	return target, n.stale(errno)
}

// Statfs reports the backing file system's numbers; with encrypted names,
// the name limit is that of plaintext names.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if n.fs.encrypted() {
		return n.encStatfs(out)
	}
	return n.LoopbackNode.Statfs(ctx, out)
}

// Link guards the reserved name and reports the plaintext size.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	if n.fs.encrypted() {
		return n.encLink(ctx, target, name, out)
	}
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	if errno == 0 {
		fixAttr(&out.Attr)
	}
	return ch, errno
}

// Rename refuses the reserved name as a target, and as a source (it is
// invisible, so the kernel never asks for it).
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder,
	newName string, flags uint32) syscall.Errno {
	if n.reserved(name) {
		return syscall.ENOENT
	}
	if np, ok := newParent.(*node); ok && np.reserved(newName) {
		return syscall.EPERM
	}
	forget := func() {}
	if np, ok := newParent.(*node); ok && flags&renameExchange == 0 {
		forget = np.forgetUndo(newName)
	}
	var errno syscall.Errno
	if n.fs.encrypted() {
		errno = n.encRename(name, newParent, newName, flags)
	} else {
		errno = n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	}
	if errno == 0 {
		forget()
	}
	return errno
}

// Unlink hides the reserved name.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.reserved(name) {
		return syscall.ENOENT
	}
	forget := n.forgetUndo(name)
	var errno syscall.Errno
	if n.fs.encrypted() {
		errno = n.encUnlink(name)
	} else {
		errno = n.LoopbackNode.Unlink(ctx, name)
	}
	if errno == 0 {
		forget()
	}
	return errno
}

// Rmdir hides the reserved name.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.reserved(name) {
		return syscall.ENOENT
	}
	if n.fs.encrypted() {
		return n.encRmdir(name)
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

// CopyFileRange declines: a byte copy between backing files would copy
// ciphertext bound to another file. ENOSYS makes the kernel fall back to
// reads and writes for the rest of the mount.
func (n *node) CopyFileRange(context.Context, gofs.FileHandle, uint64, *gofs.Inode,
	gofs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// OpendirHandle hides the reserved folder from listings of the root; with
// encrypted names it decrypts every listing.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.fs.encrypted() {
		fh, errno := n.encOpendir()
		return fh, 0, errno
	}
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 || !n.IsRoot() {
		return fh, fuseFlags, errno
	}
	return &dirHandle{inner: fh, show: hideReserved}, fuseFlags, 0
}

// Readdir hides the reserved folder from listings of the root; with
// encrypted names it decrypts every listing.
func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	if n.fs.encrypted() {
		return n.encReaddir()
	}
	ds, errno := n.LoopbackNode.Readdir(ctx)
	if errno != 0 || !n.IsRoot() {
		return ds, errno
	}
	return filterStream(ds, hideReserved)
}
