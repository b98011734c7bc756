//go:build linux

package fs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/names"
)

// This file holds the namespace operations of mounts with encrypted names.
// The loopback cannot serve them: it builds backing paths from plaintext
// names. Here every path component is the name encrypted under its parent
// directory's key, and symbolic links are regular backing files in the
// content format marked by the sticky bit (see docs/format.md).

// maxTarget is the longest symbolic link target, PATH_MAX less the NUL.
const maxTarget = 4095

// encrypted reports whether the mount encrypts names.
func (f *filesystem) encrypted() bool {
	return f.names != nil
}

// dirKey returns the name key of the directory n, loading it from the
// directory's record on first use.
func (n *node) dirKey() (*names.Key, error) {
	n.keys.mu.Lock()
	defer n.keys.mu.Unlock()
	if n.keys.key != nil {
		return n.keys.key, nil
	}
	rel, err := n.rel()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.fs.backing, rel)
	k, secret, err := n.fs.loadDirKey(dir)
	if err != nil && n.fs.ns.settles(err) {
		// Another mount's rmdir or rename holds the record away for
		// a moment: read it again once that has ended.
		k, secret, err = n.fs.ns.reload(n.fs, dir)
	}
	if err != nil {
		// A directory that another mount of a shared volume moved
		// or removed is gone, not damaged.
		return nil, goneDir(err)
	}
	clear(secret)
	n.keys.key = k
	return k, nil
}

// rel returns the node's path relative to the backing directory: with
// encrypted names, each component encrypted under its parent's key.
func (n *node) rel() (string, error) {
	if !n.fs.encrypted() {
		// Path answers "" for a node out of the tree (unlinked, or
		// not yet moved by go-fuse after a rename) as for the root:
		// that must not name the backing root.
		p := n.Path(nil)
		if p == "" && !n.IsRoot() {
			return "", syscall.ENOENT
		}
		return p, nil
	}
	var parts [16]string // from the node up; deeper paths grow it
	rev := parts[:0]
	size := 0
	cur := n.EmbeddedInode()
	for !cur.IsRoot() {
		name, parent := cur.Parent()
		if parent == nil {
			return "", syscall.ENOENT
		}
		pn, ok := parent.Operations().(*node)
		if !ok {
			return "", syscall.EIO
		}
		k, err := pn.dirKey()
		if err != nil {
			return "", err
		}
		backing, err := backingName(cur, k, name)
		if err != nil {
			return "", err
		}
		rev = append(rev, backing)
		size += len(backing) + 1
		cur = parent
	}
	// Backing names are never empty, ".", ".." or hold a slash: joined
	// as they are, they make a clean path without filepath.Join's pass.
	var b strings.Builder
	b.Grow(size)
	for i := len(rev) - 1; i >= 0; i-- {
		b.WriteString(rev[i])
		if i > 0 {
			b.WriteByte('/')
		}
	}
	return b.String(), nil
}

// nameMemo is a node's last encrypted name: the backing form of plain
// under key. Encryption being a function of the two alone, the memo is
// right whenever both match, whatever renames happened in between.
type nameMemo struct {
	key     *names.Key
	plain   string
	backing string
}

// backingName returns the backing form of name, the name of the inode in
// in its parent with the name key k. Every request on a node builds its
// backing path from the root down; the node keeps its last result, so a
// path costs one name encryption per component only after a rename.
func backingName(in *gofs.Inode, k *names.Key, name string) (string, error) {
	n, _ := in.Operations().(*node)
	if n != nil {
		if m := n.name.Load(); m != nil && m.key == k && m.plain == name {
			return m.backing, nil
		}
	}
	nm, err := k.Encrypt(name)
	if err != nil {
		return "", syscall.EIO
	}
	if n != nil {
		n.name.Store(&nameMemo{key: k, plain: name, backing: nm.Backing})
	}
	return nm.Backing, nil
}

// abs returns the node's absolute backing path.
func (n *node) abs() (string, error) {
	rel, err := n.rel()
	if err != nil {
		return "", err
	}
	return joinRel(n.fs.backing, rel), nil
}

// childMemo is the last name a directory encrypted for an entry: a create
// follows the kernel's lookup of the same name, which found nothing.
type childMemo struct {
	key   *names.Key
	plain string
	name  names.Name
}

// child is the backing form of a name in the directory n.
type child struct {
	key  *names.Key // the parent's name key
	name names.Name
	dir  string // absolute backing path of the parent
	rel  string // backing path of the entry, relative to the backing root
}

// abs returns the absolute backing path of the entry.
func (c child) abs() string {
	return filepath.Join(c.dir, c.name.Backing)
}

// child encrypts name for the directory n.
func (n *node) child(name string) (child, error) {
	if len(name) > names.MaxName {
		return child{}, syscall.ENAMETOOLONG
	}
	k, err := n.dirKey()
	if err != nil {
		return child{}, err
	}
	var nm names.Name
	if m := n.last.Load(); m != nil && m.key == k && m.plain == name {
		nm = m.name
	} else {
		if nm, err = k.Encrypt(name); err != nil {
			return child{}, syscall.EINVAL
		}
		n.last.Store(&childMemo{key: k, plain: name, name: nm})
	}
	rel, err := n.rel()
	if err != nil {
		return child{}, err
	}
	return child{key: k, name: nm, dir: joinRel(n.fs.backing, rel),
		rel: joinRel(rel, nm.Backing)}, nil
}

// addSidecar writes the sidecar of c if it has a long name. The returned
// function removes it again if it was created here; call it when creating
// the entry failed.
func (c child) addSidecar() (undo func(), err error) {
	if !c.name.Long() {
		return func() {}, nil
	}
	created, err := writeSidecar(c.dir, c.name)
	if err != nil {
		return nil, err
	}
	return func() {
		// An entry of that name that exists now (made by another mount
		// of the backing directory, which lost the race to us for the
		// sidecar) needs it.
		if _, err := os.Lstat(c.abs()); created && errors.Is(err, os.ErrNotExist) {
			_ = unix.Unlink(filepath.Join(c.dir, names.Sidecar(c.name.Backing)))
		}
	}, nil
}

// dropSidecar removes the sidecar of c, whose entry is gone.
func (c child) dropSidecar() {
	if c.name.Long() {
		_ = unix.Unlink(filepath.Join(c.dir, names.Sidecar(c.name.Backing)))
	}
}

// isLinkFile reports whether a backing stat is a symbolic link of a mount
// with encrypted names: a regular file with the sticky bit.
func isLinkFile(st *syscall.Stat_t) bool {
	return st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Mode&syscall.S_ISVTX != 0
}

// lstatx stats a backing path without following a symlink and returns the
// generation go-fuse derives from the birth time.
func lstatx(p string) (syscall.Stat_t, uint64, error) {
	return statxAt(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW)
}

// fstatx is lstatx for an open backing file.
func fstatx(fd int) (syscall.Stat_t, uint64, error) {
	return statxAt(fd, "", unix.AT_EMPTY_PATH)
}

// statxAt stats p relative to dirfd with flags, as lstatx does.
func statxAt(dirfd int, p string, flags int) (syscall.Stat_t, uint64, error) {
	var x unix.Statx_t
	var st syscall.Stat_t
	err := unix.Statx(dirfd, p, flags, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &x)
	if err != nil {
		return st, 0, err
	}
	st.Dev = unix.Mkdev(x.Dev_major, x.Dev_minor)
	st.Ino = x.Ino
	st.Nlink = uint64(x.Nlink)
	st.Mode = uint32(x.Mode)
	st.Uid, st.Gid = x.Uid, x.Gid
	st.Rdev = unix.Mkdev(x.Rdev_major, x.Rdev_minor)
	st.Size = int64(x.Size)
	st.Blksize = int64(x.Blksize)
	st.Blocks = int64(x.Blocks)
	st.Atim = syscall.NsecToTimespec(x.Atime.Sec*1e9 + int64(x.Atime.Nsec))
	st.Mtim = syscall.NsecToTimespec(x.Mtime.Sec*1e9 + int64(x.Mtime.Nsec))
	st.Ctim = syscall.NsecToTimespec(x.Ctime.Sec*1e9 + int64(x.Ctime.Nsec))
	gen := uint64(1)
	if x.Mask&unix.STATX_BTIME != 0 && (x.Btime.Sec != 0 || x.Btime.Nsec != 0) {
		gen = uint64(x.Btime.Sec)*1e9 + uint64(x.Btime.Nsec)
	}
	return st, gen, nil
}

// stable returns the node identity of a backing stat, as the loopback
// computes it, with symbolic links typed as such.
func (f *filesystem) stable(st *syscall.Stat_t, gen uint64) gofs.StableAttr {
	swapped := (st.Dev << 32) | (st.Dev >> 32)
	rootDev := (f.root.Dev << 32) | (f.root.Dev >> 32)
	mode := st.Mode
	if isLinkFile(st) {
		mode = syscall.S_IFLNK | 0o777
	}
	return gofs.StableAttr{Mode: mode, Gen: gen, Ino: (swapped ^ rootDev) ^ st.Ino}
}

// encAttr fills a with the plaintext attributes of a backing stat.
func encAttr(st *syscall.Stat_t, a *fuse.Attr) {
	a.FromStat(st)
	if isLinkFile(st) {
		a.Mode = syscall.S_IFLNK | 0o777
		a.Size = uint64(reportedSize(st.Size))
		a.Blocks = blocks512(a.Size)
		return
	}
	fixAttr(a)
}

// encLookup looks name up in the directory n.
func (n *node) encLookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	c, err := n.child(name)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	ch, errno := n.encEntry(ctx, c.abs(), out)
	if errno == syscall.ENOTDIR {
		// The directory n is gone: another mount of a shared volume
		// put a file under its name.
		errno = syscall.ENOENT
	}
	if errno != 0 {
		return nil, errno
	}
	if cn, ok := ch.Operations().(*node); ok {
		cn.name.Store(&nameMemo{key: c.key, plain: name, backing: c.name.Backing})
	}
	return ch, errno
}

// encEntry stats the backing entry p and returns its node.
func (n *node) encEntry(ctx context.Context, p string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	st, gen, err := lstatx(p)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return n.encEntryStat(ctx, &st, gen, out), 0
}

// encEntryStat returns the node of a backing entry with stat st.
func (n *node) encEntryStat(ctx context.Context, st *syscall.Stat_t, gen uint64,
	out *fuse.EntryOut) *gofs.Inode {
	encAttr(st, &out.Attr)
	return n.NewInode(ctx, n.fs.newNode(n.fs.root, nil, "", nil), n.fs.stable(st, gen))
}

// encGetattr reports the attributes of n.
func (n *node) encGetattr(out *fuse.AttrOut) syscall.Errno {
	p, err := n.abs()
	if err != nil {
		return n.fs.errno(err)
	}
	st, _, err := lstatx(p)
	if err != nil {
		return gofs.ToErrno(err)
	}
	if !n.sameInode(&st) {
		return syscall.ESTALE
	}
	encAttr(&st, &out.Attr)
	return 0
}

// encGetattrAt reports the attributes of the backing entry p.
func encGetattrAt(p string, out *fuse.AttrOut) syscall.Errno {
	st, _, err := lstatx(p)
	if err != nil {
		return gofs.ToErrno(err)
	}
	encAttr(&st, &out.Attr)
	return 0
}

// encStatx answers statx from the backing stat.
func (n *node) encStatx(out *fuse.StatxOut) syscall.Errno {
	var a fuse.AttrOut
	if errno := n.encGetattr(&a); errno != 0 {
		return errno
	}
	p, _ := n.abs()
	var x unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_ALL, &x); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatx(&x)
	out.Mode = uint16(a.Mode)
	out.Size = a.Size
	out.Blocks = a.Blocks
	return 0
}

// encSetattr changes mode, owner and times of n by path; the size was
// handled by the caller.
func (n *node) encSetattr(in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	p, err := n.abs()
	if err != nil {
		return n.fs.errno(err)
	}
	// A mode or owner change needs to know whether the entry is a
	// symbolic link, and a link its mode bits: the node's type says
	// which, and only a link is stat'ed (tar changes times, owner and
	// mode of every file it writes, one request each).
	var st syscall.Stat_t
	st.Mode = n.StableAttr().Mode & syscall.S_IFMT
	if st.Mode == syscall.S_IFLNK && in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID) != 0 {
		if st, _, err = lstatx(p); err != nil {
			return gofs.ToErrno(err)
		}
	}
	if m, ok := in.GetMode(); ok && !isLinkFile(&st) {
		if st.Mode&syscall.S_IFMT == syscall.S_IFREG {
			m &^= syscall.S_ISVTX // the sticky bit marks symbolic links
		}
		if err := syscall.Chmod(p, m); err != nil {
			return gofs.ToErrno(err)
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
		if err := unix.Fchownat(unix.AT_FDCWD, p, u, g, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return gofs.ToErrno(err)
		}
		if isLinkFile(&st) {
			// chown as root clears nothing but the set-ID bits; keep
			// the marker in any case.
			_ = syscall.Chmod(p, st.Mode&0o7777)
		}
	}
	mt, mok := in.GetMTime()
	at, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{timespec(at, aok), timespec(mt, mok)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return gofs.ToErrno(err)
		}
	}
	return encGetattrAt(p, out)
}

// encMkdir makes a directory with its record. It is made under a temporary
// name and renamed into place, so that no directory without a record ever
// appears under its name.
func (n *node) encMkdir(ctx context.Context, name string, mode uint32,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	unlock, errno := n.fs.nsBegin(false, n)
	if errno != 0 {
		return nil, errno
	}
	defer unlock()
	c, err := n.child(name)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	rec, key, err := n.fs.newRecord()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	tmp := filepath.Join(c.dir, names.TmpPrefix+randomHex())
	if err := syscall.Mkdir(tmp, 0o700); err != nil {
		return nil, gofs.ToErrno(err)
	}
	fail := func(err error) (*gofs.Inode, syscall.Errno) {
		_ = os.Remove(filepath.Join(tmp, names.RecordName))
		_ = syscall.Rmdir(tmp)
		return nil, n.fs.errno(err)
	}
	if err := writeRecord(tmp, rec); err != nil {
		return fail(err)
	}
	if err := syscall.Chmod(tmp, mode&0o7777); err != nil {
		return fail(err)
	}
	preserveOwnerPath(ctx, tmp)

	undo, err := c.addSidecar()
	if err != nil {
		return fail(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, c.abs(), unix.RENAME_NOREPLACE); err != nil {
		undo()
		return fail(err)
	}

	ch, errno := n.encEntry(ctx, c.abs(), out)
	if errno == 0 {
		cn := ch.Operations().(*node)
		cn.keys.mu.Lock()
		if cn.keys.key == nil {
			cn.keys.key = key
		}
		cn.keys.mu.Unlock()
	}
	return ch, errno
}

// emptyTarget prepares renaming directory src over directory dst: dst
// holding only its record is empty, so the record is removed. The returned
// function puts it back if the rename fails.
func emptyTarget(src, dst string) (restore func(), err error) {
	restore = func() {}
	var a, b syscall.Stat_t
	if syscall.Lstat(src, &a) != nil || syscall.Lstat(dst, &b) != nil ||
		a.Mode&syscall.S_IFMT != syscall.S_IFDIR || b.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return restore, nil // the rename itself reports what is wrong
	}
	ents, err := os.ReadDir(dst)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	for _, e := range ents {
		if e.Name() != names.RecordName {
			return nil, syscall.ENOTEMPTY
		}
	}
	recPath := filepath.Join(dst, names.RecordName)
	rec, err := readFile(recPath, names.RecordSize)
	if err != nil {
		return restore, nil
	}
	if err := unix.Unlink(recPath); err != nil {
		return nil, err
	}
	recordRemoved(dst)
	return func() { _ = writeRecord(dst, rec) }, nil
}

// encRmdir removes an empty directory: one holding only its record.
func (n *node) encRmdir(name string) syscall.Errno {
	unlock, errno := n.fs.nsBegin(true, n)
	if errno != 0 {
		return errno
	}
	defer unlock()
	c, err := n.child(name)
	if err != nil {
		return n.fs.errno(err)
	}
	p := c.abs()
	ents, err := os.ReadDir(p)
	if err != nil {
		return gofs.ToErrno(unwrapPathError(err))
	}
	for _, e := range ents {
		if e.Name() != names.RecordName {
			return syscall.ENOTEMPTY
		}
	}

	recPath := filepath.Join(p, names.RecordName)
	rec, recErr := readFile(recPath, names.RecordSize)
	if recErr == nil {
		if err := unix.Unlink(recPath); err != nil {
			return gofs.ToErrno(err)
		}
		recordRemoved(p)
	}
	if err := syscall.Rmdir(p); err != nil {
		if recErr == nil {
			_ = writeRecord(p, rec)
		}
		return gofs.ToErrno(err)
	}
	c.dropSidecar()
	return 0
}

// recordHook, set by tests only, runs in the moment between the removal of
// a directory's record and the rename over the directory or its removal.
var recordHook atomic.Pointer[func(dir string)]

// recordRemoved runs the test hook, if any, for the backing directory dir.
func recordRemoved(dir string) {
	if h := recordHook.Load(); h != nil {
		(*h)(dir)
	}
}

// unwrapPathError returns the errno inside an *os.PathError.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// encUnlink removes a file, symbolic link or special file.
func (n *node) encUnlink(name string) syscall.Errno {
	c, err := n.child(name)
	if err != nil {
		return n.fs.errno(err)
	}
	// Removing a long name's sidecar must not meet a create of the same
	// name in another mount, which keeps the sidecar it finds.
	unlock, errno := n.fs.nsBegin(c.name.Long(), n)
	if errno != 0 {
		return errno
	}
	defer unlock()
	if c, err = n.child(name); err != nil {
		return n.fs.errno(err)
	}
	if err := syscall.Unlink(c.abs()); err != nil {
		return gofs.ToErrno(err)
	}
	c.dropSidecar()
	return 0
}

// encMknod makes a special file (or an empty regular file).
func (n *node) encMknod(ctx context.Context, name string, mode, dev uint32,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	unlock, errno := n.fs.nsBegin(false, n)
	if errno != 0 {
		return nil, errno
	}
	defer unlock()
	c, err := n.child(name)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	if mode&syscall.S_IFMT == syscall.S_IFREG || mode&syscall.S_IFMT == 0 {
		mode &^= syscall.S_ISVTX
	}
	undo, err := c.addSidecar()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	if err := syscall.Mknod(c.abs(), mode, int(dev)); err != nil {
		undo()
		return nil, gofs.ToErrno(err)
	}
	preserveOwnerPath(ctx, c.abs())
	return n.encEntry(ctx, c.abs(), out)
}

// encSymlink stores a symbolic link: a regular backing file in the content
// format holding the target, marked with the sticky bit. It is written under
// a temporary name and renamed into place, so that no other mount of the
// backing directory ever sees it as a regular file or without its target.
func (n *node) encSymlink(ctx context.Context, target, name string,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if len(target) > maxTarget {
		return nil, syscall.ENAMETOOLONG
	}
	unlock, errno := n.fs.nsBegin(false, n)
	if errno != 0 {
		return nil, errno
	}
	defer unlock()
	c, err := n.child(name)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	tmpRel := filepath.Join(filepath.Dir(c.rel), names.TmpPrefix+randomHex())
	tmp := filepath.Join(n.fs.backing, tmpRel)
	fd, writable, err := n.fs.openBacking(tmpRel, syscall.O_WRONLY, syscall.O_CREAT|syscall.O_EXCL, 0o600)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	h, err := n.fs.newHandle(n, fd, writable)
	if err != nil {
		_ = syscall.Unlink(tmp)
		return nil, n.fs.errno(err)
	}
	_, err = h.writeAt([]byte(target), 0)
	if err == nil {
		err = unix.Fchmod(h.fd, syscall.S_ISVTX|0o600)
	}
	if err == nil {
		preserveOwner(ctx, h.fd)
	}
	h.release()
	if err != nil {
		_ = syscall.Unlink(tmp)
		return nil, n.fs.errno(err)
	}
	undo, err := c.addSidecar()
	if err != nil {
		_ = syscall.Unlink(tmp)
		return nil, n.fs.errno(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, c.abs(), unix.RENAME_NOREPLACE); err != nil {
		_ = syscall.Unlink(tmp)
		undo()
		return nil, gofs.ToErrno(err)
	}
	return n.encEntry(ctx, c.abs(), out)
}

// encReadlink decrypts the target of a symbolic link.
func (n *node) encReadlink() ([]byte, syscall.Errno) {
	rel, err := n.rel()
	if err != nil {
		return nil, n.stale(n.fs.errno(err))
	}
	fd, writable, err := n.fs.openBacking(rel, syscall.O_RDONLY, 0, 0)
	if err != nil {
		return nil, n.stale(gofs.ToErrno(err))
	}
	h, err := n.fs.newHandle(n, fd, writable)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	defer h.release()
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd, &st); err != nil {
		return nil, gofs.ToErrno(err)
	}
	if !n.sameInode(&st) {
		return nil, syscall.ESTALE
	}
	if !isLinkFile(&st) {
		return nil, syscall.EINVAL
	}
	buf := make([]byte, maxTarget+1)
	m, err := h.readAt(buf, 0)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	if m > maxTarget {
		return nil, n.fs.errno(&integrityError{path: n.backingPath(), block: 0,
			err: errors.New("symbolic link target longer than 4095 bytes")})
	}
	return buf[:m], 0
}

// encLink makes a hard link to target under name.
func (n *node) encLink(ctx context.Context, target gofs.InodeEmbedder, name string,
	out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	unlock, errno := n.fs.nsBegin(false, n)
	if errno != 0 {
		return nil, errno
	}
	defer unlock()
	src, err := tn.abs()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	c, err := n.child(name)
	if err != nil {
		return nil, n.fs.errno(err)
	}
	undo, err := c.addSidecar()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	if err := syscall.Link(src, c.abs()); err != nil {
		undo()
		return nil, gofs.ToErrno(err)
	}
	return n.encEntry(ctx, c.abs(), out)
}

// encRename renames, re-encrypting the name under the target directory's
// key. Sidecars belong to names, not to entries: the target name gets one
// before the rename, the source name loses its own after it (an exchange
// keeps both names, so both keep theirs).
func (n *node) encRename(name string, newParent gofs.InodeEmbedder, newName string,
	flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	unlock, errno := n.fs.nsBegin(true, n, np)
	if errno != 0 {
		return errno
	}
	defer unlock()
	from, err := n.child(name)
	if err != nil {
		return n.fs.errno(err)
	}
	to, err := np.child(newName)
	if err != nil {
		return n.fs.errno(err)
	}
	if from.abs() == to.abs() {
		return gofs.ToErrno(unix.Renameat2(unix.AT_FDCWD, from.abs(), unix.AT_FDCWD, to.abs(), uint(flags)))
	}

	undo, err := to.addSidecar()
	if err != nil {
		return n.fs.errno(err)
	}
	restore := func() {}
	if flags == 0 {
		if restore, err = emptyTarget(from.abs(), to.abs()); err != nil {
			undo()
			return gofs.ToErrno(err)
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, from.abs(), unix.AT_FDCWD, to.abs(), uint(flags)); err != nil {
		restore()
		undo()
		return gofs.ToErrno(err)
	}
	if flags&unix.RENAME_EXCHANGE == 0 {
		from.dropSidecar()
	}
	return 0
}

// encCreate creates and opens a regular file.
func (n *node) encCreate(ctx context.Context, name string, flags, mode uint32,
	out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	unlock, errno := n.fs.nsBegin(false, n)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer unlock()
	c, err := n.child(name)
	if err != nil {
		return nil, nil, 0, n.fs.errno(err)
	}
	undo, err := c.addSidecar()
	if err != nil {
		return nil, nil, 0, n.fs.errno(err)
	}
	h, nf, errno := n.createAt(ctx, c.rel, int(flags), mode&^syscall.S_ISVTX)
	if errno != 0 {
		undo()
		return nil, nil, 0, errno
	}
	if nf == nil {
		// The descriptor, not the path: no second walk of the backing
		// path.
		st, gen, err := fstatx(h.fd)
		if err != nil {
			h.release()
			return nil, nil, 0, gofs.ToErrno(err)
		}
		nf = &newFile{st: st, gen: gen}
	}
	ch := n.encEntryStat(ctx, &nf.st, nf.gen, out)
	cn := ch.Operations().(*node)
	cn.name.Store(&nameMemo{key: c.key, plain: name, backing: c.name.Backing})
	h.node = cn
	cn.track(h)
	return ch, h, n.fs.openFlags(), 0
}

// encStatfs reports the backing file system's numbers with the plaintext
// name limit.
func (n *node) encStatfs(out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Statfs(n.fs.backing, &s); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&s)
	out.NameLen = names.MaxName
	return 0
}

// preserveOwnerPath is preserveOwner for a path, not following symlinks.
func preserveOwnerPath(ctx context.Context, p string) {
	if !daemonRoot {
		return
	}
	if caller, ok := fuse.FromContext(ctx); ok {
		_ = unix.Fchownat(unix.AT_FDCWD, p, int(caller.Uid), int(caller.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
}
