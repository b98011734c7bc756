//go:build linux

// Package reencrypt re-encrypts the files of an unmounted coffer volume:
// every file gets a new file ID and a new data key, wrapped by the ring's
// primary key, and its content is decrypted and sealed again block by
// block. It is the content half of coffer rotate --reencrypt; the ring
// changes are package keys'.
//
// Each file is rewritten into a new backing file next to it, under a
// reserved temporary name that carries the run's token, made durable with
// fsync and renamed over the original. A crash at any moment leaves every
// name on the original file or on its complete re-encrypted copy; the
// temporary files a crash leaves are removed by the next run. A file is
// done when its header holds a single slot, generation 1, on the target
// key: only a new file's header looks like that, so a resumed run skips
// the files already rewritten.
//
// Run must not be used while the volume is mounted: a mount keeps each open
// file's data key in memory and would write blocks under the old key into
// a file that no longer has it.
package reencrypt

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
	"github.com/cofferfs/coffer/fs/deeppath"
	"github.com/cofferfs/coffer/fs/names"
)

// TempPrefix starts the names of the temporary files of a run, followed by
// the run's token, a dot and the new file ID in hex. It starts with
// the reserved prefix of package names (".coffer."), so a mount with
// encrypted names hides it; only names with the run's token are removed.
const TempPrefix = names.ReencryptPrefix

// Keys wraps and unwraps data keys; the volume's key ring implements it.
type Keys interface {
	Wrap(secret []byte, ad func(keyID uint32) []byte) (keyID uint32, wrapped []byte, err error)
	Unwrap(keyID uint32, wrapped, associatedData []byte) ([]byte, error)
}

// Options tune Run.
type Options struct {
	// VolumeID is bound into every key slot.
	VolumeID [16]byte
	// Keys unwraps the old slots and wraps the new data keys with its
	// primary key, which must be Target.
	Keys Keys
	// Target is the ring's primary key.
	Target uint32
	// Token names the run's temporary files (hex, from the run's state).
	Token string
	// Progress, if set, is called after each file.
	Progress func(done int)
	// BeforeRename and AfterRename, if set, are called around the rename
	// of each rewritten file (test hooks).
	BeforeRename, AfterRename func()
	// Logger receives Info and Warn events.
	Logger zerolog.Logger
}

// Result is what a run did.
type Result struct {
	// Files counts the file headers seen.
	Files int
	// Rewritten counts the files re-encrypted by this run.
	Rewritten int
	// Skipped counts the files found already re-encrypted.
	Skipped int
	// Removed counts the temporary files of earlier runs removed.
	Removed int
	// Bytes counts the plaintext bytes re-encrypted.
	Bytes int64
}

// FileError reports the file that stopped a run. The original file is
// untouched.
type FileError struct {
	Path string // backing path
	Err  error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("failed to re-encrypt %s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Survey is what Scan found before a run.
type Survey struct {
	// Files counts the regular backing files (an upper bound of the files
	// Run rewrites).
	Files int
	// HardLinks lists the backing paths of regular files with more than
	// one link, which Run refuses to rewrite.
	HardLinks []string
}

// NewToken returns a fresh token for a run's temporary names.
func NewToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

// Scan counts the regular files under backing (outside its .coffer
// folder) and lists those with hard links.
func Scan(backing string) (*Survey, error) {
	s := &Survey{}
	err := walk(backing, func(_, p string, d iofs.DirEntry) error {
		s.Files++
		info, err := d.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 &&
			!strings.HasPrefix(d.Name(), TempPrefix) {
			s.HardLinks = append(s.HardLinks, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to scan backing directory: %w", err)
	}
	return s, nil
}

// Run re-encrypts every file under backing that is not yet on a new data
// key under opts.Target, removing the temporary files of earlier runs with
// the same token on the way. It stops at the first file that fails, with a
// *FileError; files rewritten before it stay rewritten. Every rename is
// durable (syncfs) when Run returns without error.
func Run(ctx context.Context, backing string, opts Options) (*Result, error) {
	if opts.Token == "" || opts.Target == 0 {
		return nil, errors.New("reencrypt: Run needs a token and a target key")
	}
	root, err := unix.Open(backing, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open backing directory: %w", err)
	}
	defer unix.Close(root)

	res := &Result{}
	r := &run{opts: opts, res: res, buf: make([]byte, content.CipherBlockSize)}
	done := 0
	err = walk(backing, func(p, full string, d iofs.DirEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.file(p, full, d.Name()); err != nil {
			return err
		}
		done++
		if opts.Progress != nil {
			opts.Progress(done)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if err := unix.Syncfs(root); err != nil {
		return res, fmt.Errorf("failed to sync backing file system: %w", err)
	}
	return res, nil
}

// walk calls f for every regular file under backing, skipping the .coffer
// folder at its root and entries that vanish meanwhile, with a path that
// reaches the file however deep it lies (p) and its full path for messages.
// A directory's entries are listed before f sees any of them, so files that
// f creates in it are not visited.
func walk(backing string, f func(p, full string, d iofs.DirEntry) error) error {
	clean := filepath.Clean(backing)
	return deeppath.Walk(clean, func(e deeppath.Entry) error {
		if e.IsDir() && e.Rel == ".coffer" {
			return iofs.SkipDir
		}
		if e.Type().IsRegular() {
			return f(e.Path, filepath.Join(clean, e.Rel), e.DirEntry)
		}
		return nil
	})
}

// run is the state of one Run.
type run struct {
	opts Options
	res  *Result
	buf  []byte
}

// file handles one backing file: a leftover temporary file is removed, a
// file header not yet on a new key is rewritten, anything else is left.
func (r *run) file(path, full, name string) error {
	if strings.HasPrefix(name, TempPrefix) {
		if !strings.HasPrefix(name, TempPrefix+r.opts.Token+".") {
			return nil // not ours: another run's token, or a user's file
		}
		if err := unix.Unlink(path); err != nil && !errors.Is(err, unix.ENOENT) {
			return &FileError{Path: full, Err: fmt.Errorf("failed to remove temporary file: %w", err)}
		}
		r.res.Removed++
		r.opts.Logger.Info().Str("backing", full).Msg("removed temporary file of an interrupted re-encryption")
		return nil
	}
	if err := r.rewrite(path); err != nil {
		return &FileError{Path: full, Err: err}
	}
	return nil
}

// rewrite re-encrypts the file at path if it has a header that needs it.
func (r *run) rewrite(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
		return nil // an empty file has no header and no key yet
	}
	h, err := readHeader(fd, st.Size)
	if err != nil || h == nil {
		return err
	}
	r.res.Files++
	if r.done(h) {
		r.res.Skipped++
		return nil
	}
	if st.Nlink > 1 {
		return fmt.Errorf("file has %d hard links; coffer rotate --reencrypt does not "+
			"rewrite hard-linked files", st.Nlink)
	}

	old, err := r.oldCipher(h)
	if err != nil {
		return err
	}
	return r.replace(path, fd, &st, old)
}

// readHeader reads the header of the backing file fd, or returns nil when
// the file is not a content file (a directory record, a sidecar).
func readHeader(fd int, size int64) (*content.Header, error) {
	if size < content.HeaderSize {
		return nil, nil
	}
	b := make([]byte, content.HeaderSize)
	if _, err := unix.Pread(fd, b, 0); err != nil {
		return nil, fmt.Errorf("failed to read header: %w", err)
	}
	if string(b[:6]) != "coffer" {
		return nil, nil
	}
	h, err := content.ParseHeader(b)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// done reports whether h is the header of a file created under the target
// key: one slot, generation 1. A re-wrap never writes generation 1.
func (r *run) done(h *content.Header) bool {
	s := h.Slots[0]
	return s.KeyID == r.opts.Target && s.Generation == 1 && h.Slots[1].Empty()
}

// oldCipher unwraps the file's data key from its working slot.
func (r *run) oldCipher(h *content.Header) (*content.Cipher, error) {
	var errs []error
	for _, i := range h.Order() {
		s := h.Slots[i]
		dek, err := r.opts.Keys.Unwrap(s.KeyID, s.Wrapped,
			content.SlotAD(r.opts.VolumeID, h.FileID, s.KeyID, s.Generation))
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		c, err := content.NewCipher(dek, h.FileID)
		clear(dek)
		return c, err
	}
	return nil, fmt.Errorf("no key slot unwraps: %w", errors.Join(errs...))
}

// newKey draws a file ID and data key and wraps the key with the target.
func (r *run) newKey() (*content.Cipher, []byte, error) {
	var id content.FileID
	_, _ = rand.Read(id[:])
	dek := make([]byte, content.DEKSize)
	_, _ = rand.Read(dek)
	defer clear(dek)

	keyID, wrapped, err := r.opts.Keys.Wrap(dek, func(keyID uint32) []byte {
		return content.SlotAD(r.opts.VolumeID, id, keyID, 1)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to wrap data key: %w", err)
	}
	if keyID != r.opts.Target {
		return nil, nil, fmt.Errorf("the ring's primary key is %d, not %d: the ring changed "+
			"during the re-encryption", keyID, r.opts.Target)
	}
	h := &content.Header{Version: content.Version, FileID: id}
	h.Slots[0] = content.Slot{KeyID: keyID, Generation: 1, Wrapped: wrapped}
	hdr, err := h.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	c, err := content.NewCipher(dek, id)
	return c, hdr, err
}

// replace writes the re-encrypted copy of the file open as fd next to it
// and renames it over path. On error the copy is removed and path is
// untouched.
func (r *run) replace(path string, fd int, st *unix.Stat_t, old *content.Cipher) error {
	if _, torn, err := content.PlainSize(st.Size); err != nil || torn {
		if err == nil {
			err = fmt.Errorf("its last block is torn (%w); run coffer fsck --repair first",
				content.ErrAuth)
		}
		return err
	}
	c, hdr, err := r.newKey()
	if err != nil {
		return err
	}
	id := c.FileID()
	tmp := filepath.Join(filepath.Dir(path), TempPrefix+r.opts.Token+"."+hex.EncodeToString(id[:]))
	out, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW,
		0o600)
	if err != nil {
		return fmt.Errorf("failed to create temporary file: %w", err)
	}
	err = r.copyFile(out, fd, st, old, c, hdr)
	if cerr := unix.Close(out); err == nil && cerr != nil {
		err = fmt.Errorf("failed to close temporary file: %w", cerr)
	}
	if err != nil {
		_ = unix.Unlink(tmp)
		return err
	}

	if r.opts.BeforeRename != nil {
		r.opts.BeforeRename()
	}
	if err := unix.Rename(tmp, path); err != nil {
		_ = unix.Unlink(tmp)
		return fmt.Errorf("failed to rename the re-encrypted file into place: %w", err)
	}
	r.res.Rewritten++
	if r.opts.AfterRename != nil {
		r.opts.AfterRename()
	}
	return nil
}

// copyFile writes header and re-sealed blocks to out, then the metadata,
// and makes it durable.
func (r *run) copyFile(out, in int, st *unix.Stat_t, old, c *content.Cipher, hdr []byte) error {
	w := bufio.NewWriterSize(fdWriter(out), 64*content.CipherBlockSize)
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("failed to write temporary file: %w", err)
	}
	plain := make([]byte, 0, content.BlockSize)
	sealed := make([]byte, 0, content.CipherBlockSize)
	for block := uint64(0); ; block++ {
		off := content.BlockOffset(block)
		if off >= st.Size {
			break
		}
		n := min(int64(content.CipherBlockSize), st.Size-off)
		b := r.buf[:n]
		if _, err := readFull(in, b, off); err != nil {
			return fmt.Errorf("failed to read block %d: %w", block, err)
		}
		p, err := old.Open(plain[:0], b, block)
		if err != nil {
			return fmt.Errorf("%w; the original is untouched: restore it from a backup or "+
				"delete it, then run coffer rotate --reencrypt again", err)
		}
		sealed = c.Seal(sealed[:0], p, block)
		clear(p)
		if _, err := w.Write(sealed); err != nil {
			return fmt.Errorf("failed to write temporary file: %w", err)
		}
		r.res.Bytes += int64(len(p))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("failed to write temporary file: %w", err)
	}
	if err := copyMeta(out, in, st); err != nil {
		return err
	}
	if err := unix.Fsync(out); err != nil {
		return fmt.Errorf("failed to sync temporary file: %w", err)
	}
	return nil
}

// readFull reads len(b) bytes at off.
func readFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.ErrUnexpectedEOF
		}
		n += m
	}
	return n, nil
}

// copyMeta gives out the owner, mode, extended attributes and times of in.
func copyMeta(out, in int, st *unix.Stat_t) error {
	if err := unix.Fchown(out, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("failed to copy owner: %w", err)
	}
	if err := unix.Fchmod(out, st.Mode&0o7777); err != nil {
		return fmt.Errorf("failed to copy mode: %w", err)
	}
	if err := copyXattrs(out, in); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(out), ts, 0); err != nil {
		return fmt.Errorf("failed to copy times: %w", err)
	}
	return nil
}

// fdPath names an open file descriptor for calls that take a path.
func fdPath(fd int) string {
	return fmt.Sprintf("/proc/self/fd/%d", fd)
}

// copyXattrs copies every extended attribute of in to out. user.* values
// of an encrypted volume are bound to their backing attribute name, not to
// the file, so they are copied as they are.
func copyXattrs(out, in int) error {
	sz, err := unix.Flistxattr(in, nil)
	if errors.Is(err, unix.ENOTSUP) || sz == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to list extended attributes: %w", err)
	}
	list := make([]byte, sz)
	sz, err = unix.Flistxattr(in, list)
	if err != nil {
		return fmt.Errorf("failed to list extended attributes: %w", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(list[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v, err := getXattr(in, name)
		if err != nil {
			return fmt.Errorf("failed to read extended attribute %q: %w", name, err)
		}
		if err := unix.Fsetxattr(out, name, v, 0); err != nil {
			return fmt.Errorf("failed to copy extended attribute %q: %w", name, err)
		}
	}
	return nil
}

func getXattr(fd int, name string) ([]byte, error) {
	for {
		sz, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, sz)
		n, err := unix.Fgetxattr(fd, name, v)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		return v[:n], nil
	}
}

// fdWriter writes to a file descriptor.
type fdWriter int

func (f fdWriter) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(int(f), b[n:])
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}
