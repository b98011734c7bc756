//go:build linux

// Package deeppath reaches entries of a backing directory whose paths are
// longer than PATH_MAX (4096 bytes), which system calls refuse with
// ENAMETOOLONG however deep the file system lets a tree grow. Renames of
// directories through a mount can build such a tree, with encrypted names
// (which are longer than the plaintext ones) sooner than without.
//
// Walk goes down the tree through directory descriptors (openat), one per
// level, so the depth does not matter. Resolver turns a path relative to the
// root into a short one for the path-based calls of the offline tools:
// where the full path would be long, it names the entry relative to an open
// descriptor of a directory above it, as /proc/self/fd/N/REST. Short paths
// are returned as they are, so trees of ordinary depth take no detour.
package deeppath

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// limit is the longest path handed to a system call as it is; longer ones
// are split at directory descriptors. Half of PATH_MAX leaves room for the
// /proc/self/fd/N prefix and the last name.
const limit = unix.PathMax / 2

// fdPath names the entry rest relative to the open descriptor fd.
func fdPath(fd int, rest string) string {
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if rest == "" || rest == "." {
		return p
	}
	return p + "/" + rest
}

// Resolver makes short paths for entries under a root. It keeps descriptors
// of a chain of directories (the last one it needed and those above it), so
// that resolving the entries of one directory after another, as a depth-first
// walk does, opens each directory once. A path it returns stays valid until
// the next call of Path or Close. Not safe for concurrent use.
type Resolver struct {
	root    string
	anchors []anchor // each an ancestor of the next
}

type anchor struct {
	rel string
	fd  int
}

// NewResolver returns a Resolver for the entries under root.
func NewResolver(root string) *Resolver {
	return &Resolver{root: filepath.Clean(root)}
}

// Path returns a path that reaches root/rel. If the directory on the way
// cannot be opened, it returns the full path, whose use then fails with
// the cause (or ENAMETOOLONG).
func (r *Resolver) Path(rel string) string {
	rel = filepath.Clean(rel)
	full := filepath.Join(r.root, rel)
	if len(full) < limit {
		return full
	}
	fd, err := r.dir(filepath.Dir(rel))
	if err != nil {
		return full
	}
	return fdPath(fd, filepath.Base(rel))
}

// Close closes the descriptors that r keeps.
func (r *Resolver) Close() {
	for _, a := range r.anchors {
		_ = unix.Close(a.fd)
	}
	r.anchors = nil
}

// trim closes the anchors that are not rel or above it.
func (r *Resolver) trim(rel string) {
	for len(r.anchors) > 0 {
		a := r.anchors[len(r.anchors)-1]
		if a.rel == rel || a.rel == "." || strings.HasPrefix(rel, a.rel+"/") {
			return
		}
		_ = unix.Close(a.fd)
		r.anchors = r.anchors[:len(r.anchors)-1]
	}
}

// dir returns a descriptor of directory rel, opening it from the nearest
// anchor above it, in steps shorter than limit.
func (r *Resolver) dir(rel string) (int, error) {
	r.trim(rel)
	if len(r.anchors) == 0 {
		fd, err := unix.Open(r.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("failed to open %s: %w", r.root, err)
		}
		r.anchors = append(r.anchors, anchor{rel: ".", fd: fd})
	}
	for {
		top := r.anchors[len(r.anchors)-1]
		if top.rel == rel {
			return top.fd, nil
		}
		rest := rel
		if top.rel != "." {
			rest = rel[len(top.rel)+1:]
		}
		if len(rest) >= limit {
			cut := strings.LastIndexByte(rest[:limit], '/')
			if cut <= 0 {
				return -1, unix.ENAMETOOLONG
			}
			rest = rest[:cut]
		}
		fd, err := openBeneath(top.fd, rest, unix.O_PATH)
		if err != nil {
			return -1, err
		}
		next := rest
		if top.rel != "." {
			next = top.rel + "/" + rest
		}
		r.anchors = append(r.anchors, anchor{rel: next, fd: fd})
	}
}

// openBeneath opens directory rest under dirfd without following symbolic
// links on the way: the walkers go down real directories only.
func openBeneath(dirfd int, rest string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_DIRECTORY | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH}
	fd, err := unix.Openat2(dirfd, rest, &how)
	if errors.Is(err, unix.ENOSYS) && !strings.Contains(rest, "/") {
		fd, err = unix.Openat(dirfd, rest, flags|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	}
	return fd, err
}

// Entry is one entry that Walk visits.
type Entry struct {
	// Rel is the path relative to the root, for messages; it may be
	// longer than PATH_MAX.
	Rel string
	// Path reaches the entry while the callback runs: the full path,
	// or one relative to a descriptor of its directory if that is long.
	Path string
	iofs.DirEntry
}

// Walk calls fn for every entry under root (not root itself), depth first,
// each directory's entries in lexical order, each directory before its
// entries. If fn returns iofs.SkipDir for a directory, Walk does not go
// into it. A directory that vanishes before it is listed is skipped; one
// that cannot be listed otherwise ends the walk with the error. Walk holds
// one descriptor per level of the tree.
func Walk(root string, fn func(e Entry) error) error {
	root = filepath.Clean(root)
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("failed to open %s: %w", root, err)
	}
	return walkDir(root, ".", fd, fn)
}

// walkDir visits the entries of directory rel, open as fd, and closes fd.
func walkDir(root, rel string, fd int, fn func(e Entry) error) error {
	f := os.NewFile(uintptr(fd), fdPath(fd, ""))
	ents, err := f.ReadDir(-1)
	defer f.Close()
	if err != nil {
		return fmt.Errorf("failed to list %s: %w", filepath.Join(root, rel), err)
	}
	slices.SortFunc(ents, func(a, b iofs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })

	for _, d := range ents {
		e := Entry{Rel: filepath.Join(rel, d.Name()), DirEntry: d}
		e.Path = filepath.Join(root, e.Rel)
		if len(e.Path) >= limit {
			e.Path = fdPath(fd, d.Name())
		}
		err := fn(e)
		if errors.Is(err, iofs.SkipDir) && d.IsDir() {
			continue
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			continue
		}
		sub, err := openBeneath(fd, d.Name(), unix.O_RDONLY)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue // gone, or replaced since it was listed
		}
		if err != nil {
			return fmt.Errorf("failed to open %s: %w", e.Path, err)
		}
		if err := walkDir(root, e.Rel, sub, fn); err != nil {
			return err
		}
	}
	return nil
}
