//go:build linux

package stress

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// side is one of the two directories the exerciser drives in lockstep: the
// file system under test or the reference.
type side struct {
	name   string // "reference" or "under test", for messages
	dir    string
	prefix string // prefix of every file name this side creates
	files  []*file
}

// file is one exercised file: its current path and three descriptors, so
// that reads, writes and appends go through different handles.
type file struct {
	path        string
	rw, app, ro int // -1 when closed
}

// result is what an operation returned.
type result struct {
	n    int64
	err  syscall.Errno
	data []byte // bytes read
}

func (r result) String() string {
	if r.err != 0 {
		return fmt.Sprintf("n=%d err=%v", r.n, r.err)
	}
	return fmt.Sprintf("n=%d", r.n)
}

// openSide creates n empty files named prefix+"f<i>" in dir and opens them.
func openSide(name, dir, prefix string, n int) (*side, error) {
	s := &side{name: name, dir: dir, prefix: prefix}
	for i := range n {
		f := &file{path: filepath.Join(dir, fmt.Sprintf("%sf%d", prefix, i)), rw: -1, app: -1, ro: -1}
		s.files = append(s.files, f)
		fd, err := unix.Open(f.path, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("failed to create %s: %w", f.path, err)
		}
		f.rw = fd
		if err := f.openRest(); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// openRest opens the descriptors that are closed.
func (f *file) openRest() error {
	for _, d := range []struct {
		fd    *int
		flags int
	}{{&f.rw, unix.O_RDWR}, {&f.app, unix.O_WRONLY | unix.O_APPEND}, {&f.ro, unix.O_RDONLY}} {
		if *d.fd >= 0 {
			continue
		}
		fd, err := unix.Open(f.path, d.flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("failed to open %s: %w", f.path, err)
		}
		*d.fd = fd
	}
	return nil
}

// closeFDs closes the file's descriptors and returns the first error, which
// for a file system is the report of a failed write-back.
func (f *file) closeFDs() error {
	var first error
	for _, fd := range []*int{&f.rw, &f.app, &f.ro} {
		if *fd < 0 {
			continue
		}
		if err := unix.Close(*fd); err != nil && first == nil {
			first = fmt.Errorf("failed to close %s: %w", f.path, err)
		}
		*fd = -1
	}
	return first
}

// close closes every descriptor of the side.
func (s *side) close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.closeFDs())
	}
	return errors.Join(errs...)
}

// remove closes and deletes the side's files.
func (s *side) remove() {
	_ = s.close()
	for _, f := range s.files {
		_ = os.Remove(f.path)
	}
}

// apply runs o with the written bytes data.
func (s *side) apply(o Op, data []byte) result {
	f := s.files[o.File]
	switch o.Kind {
	case Write:
		return pwriteAll(f.rw, data, o.Off)
	case Append:
		return writeAll(f.app, data)
	case Truncate:
		if o.Arg == 1 {
			return errResult(unix.Truncate(f.path, o.Off))
		}
		return errResult(unix.Ftruncate(f.rw, o.Off))
	case Allocate:
		return errResult(unix.Fallocate(f.rw, 0, o.Off, o.Len))
	case Read:
		return preadAll(f.ro, o.Len, o.Off)
	case MmapRead, MmapWrite:
		return mapped(f, o, data)
	case Fsync:
		if o.Arg == 1 {
			return errResult(unix.Fdatasync(f.rw))
		}
		return errResult(unix.Fsync(f.rw))
	case Reopen:
		if err := f.closeFDs(); err != nil {
			return errResult(err)
		}
		return errResult(f.openRest())
	case Rename:
		return s.rename(f, o)
	}
	return result{err: syscall.EINVAL}
}

// rename moves the file to a name derived from the op, over an existing
// file if o.Arg is 1. The descriptors stay open.
func (s *side) rename(f *file, o Op) result {
	to := filepath.Join(s.dir, fmt.Sprintf("%sf%d.%x", s.prefix, o.File, o.Seed))
	if o.Arg == 1 {
		if err := os.WriteFile(to, []byte("the file a rename replaces\n"), 0o644); err != nil {
			return errResult(err)
		}
	}
	if err := unix.Rename(f.path, to); err != nil {
		return errResult(err)
	}
	f.path = to
	return result{}
}

// mapped runs a MmapRead or MmapWrite: Off is taken modulo the size and the
// range cut at the end of the file, since a mapping cannot grow it.
func mapped(f *file, o Op, data []byte) result {
	var st unix.Stat_t
	if err := unix.Fstat(f.rw, &st); err != nil || st.Size == 0 {
		return errResult(err)
	}
	off := o.Off % st.Size
	end := min(off+o.Len, st.Size)
	lo := off &^ int64(os.Getpagesize()-1)
	m, err := unix.Mmap(f.rw, lo, int(end-lo), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return errResult(err)
	}
	defer func() { _ = unix.Munmap(m) }()

	r := result{n: end - off}
	if o.Kind == MmapRead {
		r.data = slices.Clone(m[off-lo : end-lo])
		return r
	}
	copy(m[off-lo:], data[:end-off])
	if o.Arg == 1 {
		r.err = errnoOf(unix.Msync(m, unix.MS_SYNC))
	}
	return r
}

func pwriteAll(fd int, b []byte, off int64) result {
	var r result
	for int(r.n) < len(b) {
		n, err := unix.Pwrite(fd, b[r.n:], off+r.n)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.err = errnoOf(err)
			return r
		}
		r.n += int64(n)
	}
	return r
}

func writeAll(fd int, b []byte) result {
	var r result
	for int(r.n) < len(b) {
		n, err := unix.Write(fd, b[r.n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.err = errnoOf(err)
			return r
		}
		r.n += int64(n)
	}
	return r
}

// preadAll reads up to n bytes at off, stopping early only at the end of
// the file or on an error.
func preadAll(fd int, n, off int64) result {
	r := result{data: make([]byte, n)}
	for r.n < n {
		m, err := unix.Pread(fd, r.data[r.n:], off+r.n)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.err = errnoOf(err)
			break
		}
		if m == 0 {
			break
		}
		r.n += int64(m)
	}
	r.data = r.data[:r.n]
	return r
}

func errResult(err error) result {
	return result{err: errnoOf(err)}
}

// errnoOf returns the errno in err, EIO for an error without one.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}

// size returns the size of file i as fstat reports it.
func (s *side) size(i int) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(s.files[i].rw, &st); err != nil {
		return 0, fmt.Errorf("failed to stat %s: %w", s.files[i].path, err)
	}
	return st.Size, nil
}

// readWhole opens file i again by its path, so that the kernel drops its
// cached pages, and reads all of it; it also returns the size stat(2)
// reports for the path.
func (s *side) readWhole(i int) ([]byte, int64, error) {
	f := s.files[i]
	var st unix.Stat_t
	if err := unix.Stat(f.path, &st); err != nil {
		return nil, 0, fmt.Errorf("failed to stat %s: %w", f.path, err)
	}
	fd, err := unix.Open(f.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, st.Size, fmt.Errorf("failed to open %s: %w", f.path, err)
	}
	defer unix.Close(fd)
	r := preadAll(fd, st.Size+BlockSize, 0)
	if r.err != 0 {
		return nil, st.Size, fmt.Errorf("failed to read %s: %w", f.path, r.err)
	}
	return r.data, st.Size, nil
}
