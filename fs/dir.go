//go:build linux

package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rootDir is the directory handle of the root: the loopback's, with the
// reserved folder left out of the listing. Entry offsets come from the
// backing directory, so skipping an entry keeps seeking correct.
type rootDir struct {
	inner gofs.FileHandle
}

var (
	_ gofs.FileReaddirenter = (*rootDir)(nil)
	_ gofs.FileSeekdirer    = (*rootDir)(nil)
	_ gofs.FileFsyncdirer   = (*rootDir)(nil)
	_ gofs.FileReleasedirer = (*rootDir)(nil)
)

// Readdirent returns the next entry that is not the reserved folder.
func (d *rootDir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	r, ok := d.inner.(gofs.FileReaddirenter)
	if !ok {
		return nil, 0
	}
	for {
		e, errno := r.Readdirent(ctx)
		if errno != 0 || e == nil || e.Name != ReservedName {
			return e, errno
		}
	}
}

// Seekdir implements gofs.FileSeekdirer.
func (d *rootDir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.inner.(gofs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

// Fsyncdir implements gofs.FileFsyncdirer.
func (d *rootDir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if s, ok := d.inner.(gofs.FileFsyncdirer); ok {
		return s.Fsyncdir(ctx, flags)
	}
	return syscall.ENOTSUP
}

// Releasedir implements gofs.FileReleasedirer.
func (d *rootDir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.inner.(gofs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}
