//go:build linux

package fs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
)

// headerBlock is the block number integrityError uses for the file header.
const headerBlock = -1

// integrityError reports backing data that failed verification: a block or
// header that was altered, torn by a crash, moved from elsewhere, or that no
// key of the ring can unwrap. It never carries plaintext or key material.
type integrityError struct {
	path  string // backing path, for the log line
	file  pather // the file, to name it under the mount; may be nil
	block int64  // block number, or headerBlock
	err   error
}

// Error implements error.
func (e *integrityError) Error() string {
	if e.block == headerBlock {
		return fmt.Sprintf("failed to verify header of %s: %v", e.path, e.err)
	}
	return fmt.Sprintf("failed to verify block %d of %s: %v", e.block, e.path, e.err)
}

// Unwrap returns the underlying error.
func (e *integrityError) Unwrap() error {
	return e.err
}

// errno converts an error to the errno a FUSE request answers. It is the one
// place where Go errors become syscall.Errno: integrity failures are logged
// as warnings with the backing path and block and become EIO; a backing path
// too long is ENAMETOOLONG; errors wrapping an errno keep it; anything else
// is logged and becomes EIO.
func (f *filesystem) errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}

	var ie *integrityError
	if errors.As(err, &ie) {
		ev := f.log.Warn().Str("backing", ie.path)
		if ie.block == headerBlock {
			ev = ev.Str("block", "header")
		} else {
			ev = ev.Int64("block", ie.block)
		}
		ev.Str("reason", ie.err.Error()).Msg("file failed integrity check, returning EIO")
		if f.opts.Integrity != nil {
			f.opts.Integrity(f.mountPath(ie), ie.block, ie.err)
		}
		return syscall.EIO
	}

	// A backing path longer than PATH_MAX (a directory's record, or an
	// entry, under a tree that renames made too deep) is a limit, not
	// damage: the directory stays intact and reachable from higher up.
	if errors.Is(err, syscall.ENAMETOOLONG) {
		return syscall.ENAMETOOLONG
	}

	var re *recordError
	if errors.As(err, &re) {
		f.log.Warn().Str("backing", re.dir).Str("reason", re.err.Error()).
			Msg("directory record missing or damaged, directory unreadable, returning EIO")
		return syscall.EIO
	}

	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	f.log.Error().Err(err).Msg("request failed, returning EIO")
	return syscall.EIO
}

// mountPath returns the path under the mount of the file ie names: from
// the node tree, which holds the names the kernel uses (plaintext even when
// names are encrypted), or else from its backing path.
func (f *filesystem) mountPath(ie *integrityError) string {
	if ie.file != nil {
		if p := ie.file.mountPath(); p != "" {
			return p
		}
	}
	rel, err := filepath.Rel(f.backing, ie.path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return ie.path
	}
	return "/" + filepath.ToSlash(rel)
}
