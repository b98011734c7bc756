//go:build linux

package check

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	cofferfs "github.com/cofferfs/coffer/fs"
	"github.com/cofferfs/coffer/fs/content"
)

const (
	bs  = content.BlockSize
	cbs = content.CipherBlockSize

	// chunkBlocks is how many blocks one read takes.
	chunkBlocks = 256

	// maxUndoFile bounds the undo records read: one request's blocks
	// and more.
	maxUndoFile = 8 << 20
)

// file is one backing file under check.
type file struct {
	*checker
	rel    string
	fd     int
	size   int64 // backing size
	cipher *content.Cipher
	undos  []*content.Undo // the file's undo records: one, or one per shared mount
}

// check checks the file's size, header and blocks.
func (f *file) check() error {
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return err
	}
	f.size = st.Size
	plain, torn, err := content.PlainSize(f.size)
	if err != nil {
		f.add(f.rel, -1, KindSize, RepairNone, "%v", err)
		return nil
	}
	if f.size == 0 {
		return nil
	}
	if ok, err := f.header(); !ok || err != nil {
		return err
	}
	f.loadUndo()

	n := (plain + bs - 1) / bs
	for first := int64(0); first < n; {
		if k := f.holeBlocks(first, n); k > 0 {
			// A hole reads as zeros, which never authenticate: the
			// mount never leaves one, so each such block is lost.
			f.addRun(f.rel, first, first+k-1, KindBlock, zerosDetail)
			f.report.Blocks += k
			first += k
			continue
		}
		end := min(first+chunkBlocks, n, f.dataEnd(first))
		if err := f.blocks(first, end, n, torn); err != nil {
			return err
		}
		first = end
	}
	if torn {
		return f.tornTail(n)
	}
	return nil
}

// holeBlocks returns how many blocks from first on lie wholly in a hole of
// the backing file (SEEK_DATA), so that they are reported without being
// read. The last block (n-1), which a repair may cut or roll back, and
// blocks an undo record holds a pre-image of are left to the full check.
func (f *file) holeBlocks(first, n int64) int64 {
	off := content.BlockOffset(uint64(first))
	data, err := unix.Seek(f.fd, off, unix.SEEK_DATA)
	if err == unix.ENXIO { // no data after off
		data = f.size
	} else if err != nil || data <= off {
		return 0
	}
	k := min((data-off)/cbs, n-1-first)
	for _, u := range f.undos {
		if int64(u.First) >= first && int64(u.First) < first+k {
			k = int64(u.First) - first
		}
		if int64(u.First) < first && u.PreImage(uint64(first)) != nil {
			return 0
		}
	}
	return max(k, 0)
}

// dataEnd returns the block after the last one that starts before the next
// hole from block first on, so that a read stops at the hole; at least
// first+1.
func (f *file) dataEnd(first int64) int64 {
	off := content.BlockOffset(uint64(first))
	hole, err := unix.Seek(f.fd, off, unix.SEEK_HOLE)
	if err != nil || hole <= off {
		return first + 1
	}
	return first + (hole-off+cbs-1)/cbs
}

// header parses the header and unwraps the data key, reporting whether
// the blocks can be checked.
func (f *file) header() (bool, error) {
	b := make([]byte, content.HeaderSize)
	if err := preadFull(f.fd, b, 0); err != nil {
		return false, fmt.Errorf("failed to read header: %w", err)
	}
	h, err := content.ParseHeader(b)
	if err != nil {
		f.add(f.rel, -1, KindHeader, RepairNone, "%v", err)
		return false, nil
	}
	f.ids[content.UndoName(h.FileID)] = true

	var errs []error
	for _, i := range h.Order() {
		s := h.Slots[i]
		ad := content.SlotAD(f.opts.VolumeID, h.FileID, s.KeyID, s.Generation)
		dek, err := f.opts.Keys.Unwrap(s.KeyID, s.Wrapped, ad)
		if err == nil {
			f.cipher, err = content.NewCipher(dek, h.FileID)
			clear(dek)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if len(errs) > 0 {
			f.add(f.rel, -1, KindSlot, RepairNone,
				"the current key slot does not unwrap (%v); the other one does, and a key rotation rewrites it",
				errors.Join(errs...))
		}
		return true, nil
	}
	f.add(f.rel, -1, KindHeader, RepairNone, "no key slot unwraps: %v", errors.Join(errs...))
	return false, nil
}

// loadUndo reads the file's usable undo records: its own, and those that
// shared mounts keep (<file ID>.<tag>).
func (f *file) loadUndo() {
	dir := filepath.Join(f.backing, cofferfs.ReservedName, content.UndoDir)
	name := content.UndoName(f.cipher.FileID())
	paths := []string{filepath.Join(dir, name)}
	if tagged, err := filepath.Glob(filepath.Join(dir, name+".*")); err == nil {
		paths = append(paths, tagged...)
	}
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() > maxUndoFile {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if u, err := content.ParseUndo(b); err == nil && u.FileID == f.cipher.FileID() {
			f.undos = append(f.undos, u)
		}
	}
}

// preImage returns the authentic pre-image of block b and the record that
// holds it, or nil. fits must accept them too.
func (f *file) preImage(b int64, fits func(pre []byte, u *content.Undo) bool) ([]byte, *content.Undo) {
	for _, u := range f.undos {
		pre := u.PreImage(uint64(b))
		if pre == nil || !fits(pre, u) {
			continue
		}
		if _, err := f.cipher.Open(nil, pre, uint64(b)); err == nil {
			return pre, u
		}
	}
	return nil, nil
}

// blocks checks blocks [first, end) of a file of n whole or partial
// blocks.
func (f *file) blocks(first, end, n int64, torn bool) error {
	start := content.BlockOffset(uint64(first))
	stop := min(content.BlockOffset(uint64(end)), f.size)
	buf := make([]byte, stop-start)
	if err := preadFull(f.fd, buf, start); err != nil {
		return fmt.Errorf("failed to read blocks %d to %d: %w", first, end-1, err)
	}
	for b := first; b < end; b++ {
		cur := buf[(b-first)*cbs : min((b-first+1)*cbs, int64(len(buf)))]
		f.report.Blocks++
		if _, err := f.cipher.Open(nil, cur, uint64(b)); err != nil {
			if err := f.bad(b, cur, b == n-1 && !torn); err != nil {
				return err
			}
		}
	}
	return nil
}

// bad reports block b, whose bytes cur fail authentication.
func (f *file) bad(b int64, cur []byte, last bool) error {
	at := content.BlockOffset(uint64(b))
	if pre, _ := f.preImage(b, func(pre []byte, _ *content.Undo) bool {
		return content.Torn(cur, pre, at)
	}); pre != nil {
		p := f.add(f.rel, b, KindBlock, RepairRestore, "fails authentication: an overwrite was cut by a crash; "+
			"the undo record holds its last complete version, which the mount reads")
		if f.opts.Repair {
			if err := pwriteFull(f.fd, pre, at); err != nil {
				return err
			}
			p.Repaired = true
		}
		return nil
	}
	if last {
		return f.cutLast(b, KindBlock, "fails authentication")
	}
	if allZero(cur) {
		f.add(f.rel, b, KindBlock, RepairNone, "%s", zerosDetail)
		return nil
	}
	f.add(f.rel, b, KindBlock, RepairNone, "fails authentication; its content is lost")
	return nil
}

// zerosDetail describes a block that reads as zeros, as a hole in the
// backing file does (truncate -s, a file system's repair): the mount never
// leaves one.
const zerosDetail = "fails authentication: it reads as zeros (a hole in the backing file); " +
	"its content is lost"

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// tornTail reports the torn last block b.
func (f *file) tornTail(b int64) error {
	n := f.size - content.BlockOffset(uint64(b))
	return f.cutLast(b, KindTornTail, fmt.Sprintf("cut to %d bytes, before its first plaintext byte", n))
}

// cutLast reports the damaged last block b. If the undo record holds the
// old last block from before a write that grew it, the repair rolls that
// write back; otherwise it cuts the block off.
func (f *file) cutLast(b int64, kind, detail string) error {
	at := content.BlockOffset(uint64(b))
	pre, u := f.preImage(b, func(pre []byte, u *content.Undo) bool {
		return at+int64(len(pre)) == u.OldSize && f.size >= u.OldSize
	})
	if pre != nil {
		p := f.add(f.rel, b, kind, RepairRollback, "%s: a write that grew the last block was cut by a crash; "+
			"the undo record holds the block as it was before", detail)
		if f.opts.Repair {
			if err := ftruncate(f.fd, u.OldSize); err != nil {
				return err
			}
			if err := pwriteFull(f.fd, pre, at); err != nil {
				return err
			}
			p.Repaired = true
		}
		return nil
	}
	p := f.add(f.rel, b, kind, RepairTruncate, "%s; its content is lost", detail)
	if f.opts.Repair {
		if err := ftruncate(f.fd, at); err != nil {
			return err
		}
		p.Repaired = true
	}
	return nil
}

// preadFull fills b from offset off.
func preadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrUnexpectedEOF
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// pwriteFull writes all of b at offset off.
func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to repair backing file: %w", err)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// ftruncate sets the backing size.
func ftruncate(fd int, size int64) error {
	for {
		err := unix.Ftruncate(fd, size)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to cut backing file: %w", err)
		}
		return nil
	}
}
