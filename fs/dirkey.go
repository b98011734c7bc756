//go:build linux

package fs

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/fs/names"
)

// nameState is the name encryption state of a mount with encrypted names.
type nameState struct {
	mu    sync.Mutex
	xattr *names.XattrKey // from the root's name secret; nil until loaded
}

// dirKeyCache holds a directory node's name key, loaded on first use from
// the directory's record.
type dirKeyCache struct {
	mu  sync.Mutex
	key *names.Key
}

// recordError reports a directory whose record is missing or damaged: the
// directory is unreadable (EIO) and a warning names it.
type recordError struct {
	dir string // backing path of the directory
	err error
}

// Error implements error.
func (e *recordError) Error() string {
	return fmt.Sprintf("failed to read directory record of %s: %v", e.dir, e.err)
}

// Unwrap returns the underlying error.
func (e *recordError) Unwrap() error {
	return e.err
}

// loadDirKey reads the record of the backing directory dir and unwraps its
// name secret. It returns the key and, for the caller that needs it, the
// secret, which the caller clears.
func (f *filesystem) loadDirKey(dir string) (*names.Key, []byte, error) {
	b, err := readSmall(filepath.Join(dir, names.RecordName), names.RecordSize)
	if err != nil {
		return nil, nil, &recordError{dir: dir, err: err}
	}
	rec, err := names.ParseRecord(b)
	if err != nil {
		return nil, nil, &recordError{dir: dir, err: err}
	}

	var errs []error
	for _, i := range rec.Order() {
		s := rec.Slots[i]
		ad := names.RecordAD(f.opts.VolumeID, rec.ID, s.KeyID, s.Generation)
		secret, err := f.opts.Keys.Unwrap(s.KeyID, s.Wrapped, ad)
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if len(errs) > 0 {
			f.log.Warn().Str("backing", dir).Str("reason", errors.Join(errs...).Error()).
				Msg("current slot of directory record failed, using the other slot")
		}
		k, err := names.NewKey(secret, rec.ID)
		if err != nil {
			clear(secret)
			return nil, nil, &recordError{dir: dir, err: err}
		}
		return k, secret, nil
	}
	return nil, nil, &recordError{dir: dir,
		err: fmt.Errorf("no key slot unwraps: %w", errors.Join(errs...))}
}

// newRecord returns a new directory record and its name key.
func (f *filesystem) newRecord() ([]byte, *names.Key, error) {
	return names.NewRecord(f.opts.Keys, f.opts.VolumeID)
}

// writeRecord creates the record file in the backing directory dir. It
// never replaces an existing record.
func writeRecord(dir string, b []byte) error {
	p := filepath.Join(dir, names.RecordName)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("failed to create directory record: %w", err)
	}
	if err := pwriteFull(fd, b, 0); err != nil {
		_ = unix.Close(fd)
		_ = unix.Unlink(p)
		return fmt.Errorf("failed to write directory record: %w", err)
	}
	if err := unix.Fsync(fd); err != nil {
		_ = unix.Close(fd)
		_ = unix.Unlink(p)
		return fmt.Errorf("failed to sync directory record: %w", err)
	}
	return unix.Close(fd)
}

// ErrNamesMode reports a plaintext-names file system over a backing
// directory whose root has a directory record: the volume encrypts names
// and its config was altered to say otherwise. Serving it would store new
// names in the clear next to the encrypted ones.
var ErrNamesMode = errors.New("the backing directory encrypts names but the volume is " +
	"opened with plaintext names: its config was altered; restore it from a backup")

// checkNamesMode refuses plaintext names over a root that has a record,
// which only an encrypted-names volume writes. It backs up the names mode
// that the sealed ring authenticates, for rings sealed before it did.
func (f *filesystem) checkNamesMode() error {
	if f.encrypted() {
		return nil
	}
	_, err := os.Lstat(filepath.Join(f.backing, names.RecordName))
	switch {
	case err == nil:
		return fmt.Errorf("failed to open file system: %w", ErrNamesMode)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("failed to check the backing root's directory record: %w", err)
	}
	return nil
}

// initRootRecord gives a fresh volume's backing root its record: one whose
// only entries are the reserved folder and hidden names. Any other root
// without a record stays unreadable.
func (f *filesystem) initRootRecord() error {
	_, err := os.Lstat(filepath.Join(f.backing, names.RecordName))
	if err == nil || !errors.Is(err, os.ErrNotExist) || f.opts.ReadOnly {
		return nil
	}
	ents, err := os.ReadDir(f.backing)
	if err != nil {
		return fmt.Errorf("failed to list backing directory: %w", err)
	}
	for _, e := range ents {
		if !names.Hidden(e.Name()) {
			return nil
		}
	}
	b, _, err := f.newRecord()
	if err != nil {
		return err
	}
	if err := writeRecord(f.backing, b); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return syncDir(f.backing)
}

// syncDir fsyncs a directory.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// readSmall reads a regular file of exactly size bytes without following a
// symlink.
func readSmall(p string, size int) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := make([]byte, size+1)
	n, err := readFull(fd, b)
	if err != nil {
		return nil, err
	}
	if n != size {
		return nil, fmt.Errorf("%d bytes, want %d: %w", n, size, content.ErrCorrupt)
	}
	return b[:n], nil
}

// readFile reads a regular file of at most limit bytes without following a
// symlink.
func readFile(p string, limit int) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := make([]byte, limit+1)
	n, err := readFull(fd, b)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("larger than %d bytes: %w", limit, content.ErrCorrupt)
	}
	return b[:n], nil
}

// readFull reads until b is full or the end of the file.
func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// writeSidecar creates the sidecar of a long name in the backing directory
// dir. It reports whether it created the file; an existing sidecar with the
// same content is kept, one with other content is replaced.
func writeSidecar(dir string, nm names.Name) (bool, error) {
	p := filepath.Join(dir, names.Sidecar(nm.Backing))
	if b, err := readFile(p, len(nm.Sidecar)); err == nil && names.SameSidecar(b, nm.Sidecar) {
		return false, nil
	}
	tmp := filepath.Join(dir, names.TmpPrefix+randomHex())
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("failed to create name sidecar: %w", err)
	}
	err = pwriteFull(fd, nm.Sidecar, 0)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Rename(tmp, p)
	}
	if err != nil {
		_ = unix.Unlink(tmp)
		return false, fmt.Errorf("failed to write name sidecar: %w", err)
	}
	return true, nil
}

// randomHex returns 16 random hex digits for temporary names.
func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// isErrno reports whether err is the errno e.
func isErrno(err error, e syscall.Errno) bool {
	return errors.Is(err, e)
}
