//go:build linux

package fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

// Undo records make in-place overwrites survive a kill of the mount
// process. The kernel copies a write into the page cache one page at a time
// and stops between two pages when the writer gets SIGKILL, so an overwrite
// of a 4136-byte block can land in part. Before a write replaces blocks
// that exist in the backing file, it saves their ciphertext in the file's
// undo record (.coffer/undo/<file ID>) with one write; a block that later
// fails authentication and is such a cut overwrite (content.Torn) of its
// saved pre-image reads as that pre-image, its last complete version. See
// docs/format.md, "Undo records".

// In shared mode several processes may overwrite blocks of one file at
// once, so each keeps its own record of the file, named with its tag
// (<file ID>.<host>-<pid>); recovery looks at all records of the file.

// undoFD returns a descriptor of the undo record of file id, opened, and
// created, on first use. The caller holds ino.mu exclusively.
func (h *handle) undoFD(id content.FileID) (int, error) {
	in := h.ino
	if in.undoFD >= 0 && in.undoID == id {
		return in.undoFD, nil
	}
	in.closeUndo()
	if in.undoMade && in.undoID != id {
		h.fs.dropStaleUndo(in)
	}

	fd, err := h.fs.createUndo(id)
	if err != nil {
		return -1, err
	}
	in.undoFD, in.undoID, in.undoMade = fd, id, true
	h.fs.undo.add(id)
	return fd, nil
}

// dropStaleUndo removes this mount's record of the file ID that in had
// before the file was started over (another mount truncated it to 0 and a
// write gave it a new header): its pre-images belong to a file that is gone
// and are never read again, and in shared mode nothing else would remove it
// before the mount ends. The caller holds ino.mu exclusively.
func (f *filesystem) dropStaleUndo(in *inode) {
	if f.undo.take(in.undoID) {
		_ = f.unlinkUndo(f.undoName(in.undoID))
	}
	in.undoMade, in.undoKeep = false, false
}

// closeUndo closes the inode's undo record, if open.
func (in *inode) closeUndo() {
	if in.undoFD >= 0 {
		_ = unix.Close(in.undoFD)
		in.undoFD = -1
	}
}

// dropUndo removes the file's undo record before a truncation, which
// changes blocks without saving them: a pre-image must not outlive a change
// of its block that did not replace it. A file whose header does not open
// has no usable record; it is left for fsck. The caller holds ino.mu
// exclusively.
func (h *handle) dropUndo() error {
	if h.fs.undo.empty() {
		return nil
	}
	h.ino.closeUndo()
	if sz, err := h.stat(); err != nil || sz.cipher == 0 {
		return nil
	}
	c, err := h.cipher()
	if err != nil {
		return nil //nolint:nilerr // nothing to remove for an unreadable header
	}
	if !h.fs.undo.take(c.FileID()) {
		return nil
	}
	if err := h.fs.unlinkUndo(h.fs.undoName(c.FileID())); err != nil {
		return fmt.Errorf("failed to remove undo record: %w", err)
	}
	return nil
}

// readUndo reads the undo record name; nil if there is none.
func (f *filesystem) readUndo(name string) (*content.Undo, error) {
	fd, err := f.openUndo(name)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open undo record: %w", err)
	}
	defer unix.Close(fd)

	hdr := make([]byte, content.UndoHeaderSize)
	if err := preadFull(fd, hdr, 0); err != nil {
		return nil, fmt.Errorf("failed to read undo record: %w", err)
	}
	// The header alone, to learn the length; an implausible one fails
	// the full parse below.
	n := int(binary.BigEndian.Uint32(hdr[content.UndoHeaderSize-4:]))
	if n > maxUndo {
		return nil, fmt.Errorf("failed to read undo record: %d bytes: %w", n, content.ErrCorrupt)
	}
	b := make([]byte, content.UndoHeaderSize+n)
	copy(b, hdr)
	if err := preadFull(fd, b[content.UndoHeaderSize:], content.UndoHeaderSize); err != nil {
		return nil, fmt.Errorf("failed to read undo record: %w", err)
	}
	return content.ParseUndo(b)
}

// maxUndo bounds the pre-images read from a record, which come from an
// untrusted file: far more than one request (maxWrite) can overwrite.
const maxUndo = 8 << 20

// recoverBlock handles block b of the file, whose bytes cur failed
// authentication with authErr. If cur is an overwrite cut by a kill of the
// mount and the undo record holds the block's pre-image, it appends the
// pre-image's plaintext to dst, writes the pre-image back if the handle may
// write (under ino.mu, shared or exclusive: the bytes are the same for
// every reader), and logs a warning. Otherwise it returns the integrity
// error.
func (h *handle) recoverBlock(c *content.Cipher, dst, cur []byte, b int64, authErr error) ([]byte, error) {
	fail := &integrityError{path: h.path(), file: h.node, block: b, err: authErr}
	at := content.BlockOffset(uint64(b))
	var pre, out []byte
	for _, name := range h.fs.undoNames(c.FileID()) {
		u, err := h.fs.readUndo(name)
		if err != nil || u == nil || u.FileID != c.FileID() {
			continue
		}
		p := u.PreImage(uint64(b))
		if !content.Torn(cur, p, at) {
			continue
		}
		if out, err = c.Open(dst, p, uint64(b)); err == nil {
			pre = p
			break
		}
	}
	if pre == nil {
		return nil, fail
	}

	// In shared mode only a change, which holds the write lock on the
	// block, may write it; a reader leaves the repair to the next write.
	ev := h.fs.log.Warn().Str("backing", h.path()).Int64("block", b).Str("reason", authErr.Error())
	if h.writable && (!h.fs.opts.Shared || h.ino.wlock != nil) {
		h.ino.changed.Store(true) // a flush reports what the write left
		if err := pwriteFull(h.fd, pre, at); err != nil {
			ev = ev.AnErr("restore", err)
		} else {
			ev = ev.Bool("restored", true)
		}
	}
	ev.Msg("block was cut by a crash during an overwrite; using its last complete version from the undo record")
	return out, nil
}

// staleUndo returns the file ID of the backing file p if removing p (an
// unlink, or a rename over it) removes the file: a regular file with one
// link. Its undo record is removed after that succeeds. ok is false when
// the volume has no undo records.
func (f *filesystem) staleUndo(p string) (id content.FileID, ok bool) {
	if f.undo.empty() {
		return id, false
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 ||
		st.Size < content.HeaderSize {
		return id, false
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return id, false
	}
	defer unix.Close(fd)
	hdr := make([]byte, content.HeaderSize)
	if preadFull(fd, hdr, 0) != nil {
		return id, false
	}
	h, err := content.ParseHeader(hdr)
	if err != nil {
		return id, false
	}
	return h.FileID, true
}

// removeUndo removes the undo records of file id, if any: the file is
// gone. In shared mode these include other mounts' records.
func (f *filesystem) removeUndo(id content.FileID) {
	if !f.undo.take(id) {
		return
	}
	if f.undoTag == "" {
		_ = f.unlinkUndo(f.undoName(id))
		return
	}
	for _, name := range f.undoNames(id) {
		_ = f.unlinkUndo(name)
	}
}

// closedUndo runs when the last handle of in is gone. A record saved
// through this mount has served its purpose once every operation that
// overwrote blocks has finished: the pre-images matter only for a write
// that a kill stopped part way, and then no release follows. The record is
// removed, unless an operation failed after saving one (its rollback may
// have been cut short too), so that the next unlink of the file need not
// look for it.
func (f *filesystem) closedUndo(in *inode) {
	if in.undoMade && !in.undoKeep && f.undo.take(in.undoID) {
		// This mount's record only: in shared mode, another mount may
		// be overwriting blocks of the file under its own.
		_ = f.unlinkUndo(f.undoName(in.undoID))
	}
}

// childBacking returns the backing path of the entry name of directory n.
func (n *node) childBacking(name string) (string, bool) {
	if !n.fs.encrypted() {
		rel, err := n.rel()
		if err != nil {
			return "", false
		}
		return filepath.Join(n.fs.backing, rel, name), true
	}
	c, err := n.child(name)
	if err != nil {
		return "", false
	}
	return c.abs(), true
}

// forgetUndo returns a function that removes the undo record of the file
// that name in n is now, to be called once that entry is gone.
func (n *node) forgetUndo(name string) func() {
	if n.fs.undo.empty() {
		return func() {}
	}
	p, ok := n.childBacking(name)
	if !ok {
		return func() {}
	}
	id, ok := n.fs.staleUndo(p)
	if !ok {
		return func() {}
	}
	return func() { n.fs.removeUndo(id) }
}

// renameExchange is RENAME_EXCHANGE: an exchange replaces no file.
const renameExchange = unix.RENAME_EXCHANGE

// RemoveSharedUndo removes the undo records that this process kept as a
// shared mount of backing (Options.Shared). Call it once the mount is gone:
// after a clean unmount no write of this process can be cut short, so its
// records are of no further use. It follows no link below backing.
func RemoveSharedUndo(backing string) error {
	dfd, err := openUndoDirAt(backing)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to open the undo folder of %s: %w", backing, err)
	}
	defer unix.Close(dfd)
	names, err := listDir(dfd)
	if err != nil {
		return fmt.Errorf("failed to list undo records: %w", err)
	}
	suffix := "." + undoTag()
	var errs []error
	for _, name := range names {
		if strings.HasSuffix(name, suffix) {
			if err := unix.Unlinkat(dfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("failed to remove undo records: %w", errors.Join(errs...))
	}
	return nil
}
