//go:build linux

package fs

import (
	"context"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cofferfs/coffer/fs/names"
)

// dirHandle is a directory handle: the loopback's, with each entry passed
// through show, which may rewrite it or hide it (false). Entry offsets come
// from the backing directory, so hiding an entry keeps seeking correct.
type dirHandle struct {
	inner gofs.FileHandle
	show  func(e *fuse.DirEntry) bool
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
	_ gofs.FileFsyncdirer   = (*dirHandle)(nil)
	_ gofs.FileReleasedirer = (*dirHandle)(nil)
)

// Readdirent returns the next entry that show lets through.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	r, ok := d.inner.(gofs.FileReaddirenter)
	if !ok {
		return nil, 0
	}
	for {
		e, errno := r.Readdirent(ctx)
		if errno != 0 || e == nil || d.show(e) {
			return e, errno
		}
	}
}

// Seekdir implements gofs.FileSeekdirer.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.inner.(gofs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

// Fsyncdir implements gofs.FileFsyncdirer.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if s, ok := d.inner.(gofs.FileFsyncdirer); ok {
		return s.Fsyncdir(ctx, flags)
	}
	return syscall.ENOTSUP
}

// Releasedir implements gofs.FileReleasedirer.
func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.inner.(gofs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

// hideReserved is the show function of the root of a plaintext-names mount.
func hideReserved(e *fuse.DirEntry) bool {
	return e.Name != ReservedName && e.Name != names.RecordName
}

// shownEntry is what a listing learnt of the last entry it showed: its
// names and, for a regular backing file (stat'ed to tell symbolic links
// apart), its stat.
type shownEntry struct {
	plain, backing string
	st             syscall.Stat_t
	gen            uint64
	statted        bool
}

// decryptEntries returns the show function for the backing directory dir
// with name key k: it decrypts names, hides the record, sidecars and
// temporary names, types symbolic links, and skips names that do not
// decrypt with a warning naming the backing entry. If last is not nil, it
// records each entry shown there.
func (f *filesystem) decryptEntries(dir string, k *names.Key, last *shownEntry) func(e *fuse.DirEntry) bool {
	return func(e *fuse.DirEntry) bool {
		if last != nil {
			*last = shownEntry{}
		}
		if e.Name == "." || e.Name == ".." {
			return true
		}
		backing := e.Name
		var plain string
		var err error
		switch {
		case names.IsLong(backing):
			var sc []byte
			sc, err = readFile(filepath.Join(dir, names.Sidecar(backing)), 4*names.MaxName)
			if err == nil {
				plain, err = k.DecryptLong(backing, sc)
			}
		case names.Hidden(backing):
			return false
		default:
			plain, err = k.Decrypt(backing)
		}
		if err != nil {
			f.log.Warn().Str("backing", filepath.Join(dir, backing)).Str("reason", err.Error()).
				Msg("entry name does not decrypt, hiding it from the listing")
			return false
		}
		e.Name = plain
		var sh shownEntry
		if e.Mode&syscall.S_IFMT == syscall.S_IFREG {
			st, gen, err := lstatx(filepath.Join(dir, backing))
			if err == nil {
				if isLinkFile(&st) {
					e.Mode = syscall.S_IFLNK
				}
				sh.st, sh.gen, sh.statted = st, gen, true
			}
		}
		if last != nil {
			sh.plain, sh.backing = plain, backing
			*last = sh
		}
		return true
	}
}

// encDirHandle is the directory handle of a mount with encrypted names.
// It answers the lookups of READDIRPLUS itself, from the entry it just
// listed: the backing name is known and a regular file was stat'ed
// already, so each entry costs one stat and no name encryption.
type encDirHandle struct {
	dirHandle
	n    *node
	key  *names.Key
	dir  string // absolute backing path of the directory
	last shownEntry
}

var _ gofs.FileLookuper = (*encDirHandle)(nil)

// Lookup implements gofs.FileLookuper. go-fuse passes the name Readdirent
// returned last, except when it replays a listing the kernel interrupted;
// any other name takes the node's lookup.
func (d *encDirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l := d.last
	d.last = shownEntry{}
	if l.plain == "" || name != l.plain || d.n.reserved(name) {
		return d.n.Lookup(ctx, name, out)
	}
	st, gen := l.st, l.gen
	if !l.statted {
		var err error
		if st, gen, err = lstatx(filepath.Join(d.dir, l.backing)); err != nil {
			return nil, gofs.ToErrno(err)
		}
	}
	ch := d.n.encEntryStat(ctx, &st, gen, out)
	if cn, ok := ch.Operations().(*node); ok {
		cn.name.Store(&nameMemo{key: d.key, plain: name, backing: l.backing})
	}
	return ch, 0
}

// encOpendir opens the directory n for listing with decrypted names.
func (n *node) encOpendir() (gofs.FileHandle, syscall.Errno) {
	k, err := n.dirKey()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	p, err := n.abs()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	ds, errno := gofs.NewLoopbackDirStream(p)
	if errno != 0 {
		return nil, errno
	}
	d := &encDirHandle{dirHandle: dirHandle{inner: ds}, n: n, key: k, dir: p}
	d.show = n.fs.decryptEntries(p, k, &d.last)
	return d, 0
}

// filterStream lists ds through show.
func filterStream(ds gofs.DirStream, show func(e *fuse.DirEntry) bool) (gofs.DirStream, syscall.Errno) {
	defer ds.Close()
	var list []fuse.DirEntry
	for ds.HasNext() {
		e, errno := ds.Next()
		if errno != 0 {
			return nil, errno
		}
		if show(&e) {
			list = append(list, e)
		}
	}
	return gofs.NewListDirStream(list), 0
}

// encReaddir lists the directory n with decrypted names.
func (n *node) encReaddir() (gofs.DirStream, syscall.Errno) {
	k, err := n.dirKey()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	p, err := n.abs()
	if err != nil {
		return nil, n.fs.errno(err)
	}
	ds, errno := gofs.NewLoopbackDirStream(p)
	if errno != 0 {
		return nil, errno
	}
	return filterStream(ds, n.fs.decryptEntries(p, k, nil))
}
