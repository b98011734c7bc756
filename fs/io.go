//go:build linux

package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cofferfs/coffer/fs/content"
)

const (
	bs  = content.BlockSize
	cbs = content.CipherBlockSize
)

// pageSize is the unit of the kernel's page cache reads.
var pageSize = int64(os.Getpagesize())

// zeroChunk is how much plaintext a gap fill encrypts per backing write.
const zeroChunk = 256 << 10

// zeros is the plaintext of gap fills. It is never written to.
var zeros = make([]byte, zeroChunk)

// sizes describes a backing file.
type sizes struct {
	cipher int64 // backing size
	plain  int64 // plaintext size of the readable blocks
	torn   bool  // the last block was cut to 1..Overhead bytes
}

// stat reads the backing size. A size no file can have is an integrity
// error.
func (h *handle) stat() (sizes, error) {
	var st unix.Stat_t
	if err := unix.Fstat(h.fd, &st); err != nil {
		return sizes{}, fmt.Errorf("failed to stat backing file: %w", err)
	}
	return h.sizes(st.Size)
}

// sizes describes a backing file of cipherSize bytes.
func (h *handle) sizes(cipherSize int64) (sizes, error) {
	plain, torn, err := content.PlainSize(cipherSize)
	if err != nil {
		return sizes{cipher: cipherSize}, &integrityError{path: h.path(), file: h.node, block: headerBlock, err: err}
	}
	return sizes{cipher: cipherSize, plain: plain, torn: torn}, nil
}

// tornError is the error for an access to the torn last block.
func (h *handle) tornError(sz sizes) error {
	return &integrityError{path: h.path(), file: h.node, block: sz.plain / bs,
		err: fmt.Errorf("block cut to %d bytes: %w", sz.cipher-content.BlockOffset(uint64(sz.plain/bs)),
			content.ErrAuth)}
}

// cipher returns the file's cipher, unwrapping its key on first use. The
// caller holds ino.mu and the file has a header.
func (h *handle) cipher() (*content.Cipher, error) {
	if c := h.ino.cipher.Load(); c != nil && h.current(c) {
		return c, nil
	}
	return h.loadCipher(nil)
}

// loadCipher unwraps the file's key from the header hdr, or, if hdr is nil,
// from the header it reads, unless another request loaded it meanwhile. The
// caller holds ino.mu.
func (h *handle) loadCipher(hdr []byte) (*content.Cipher, error) {
	h.ino.loadMu.Lock()
	defer h.ino.loadMu.Unlock()
	if c := h.ino.cipher.Load(); c != nil && h.current(c) {
		return c, nil
	}

	if hdr == nil {
		hdr = make([]byte, content.HeaderSize)
		if err := preadFull(h.fd, hdr, 0); err != nil {
			return nil, h.readError(err, headerBlock)
		}
	}
	c, err := h.fs.openHeader(hdr, h.path)
	var ie *integrityError
	if errors.As(err, &ie) && h.mayRereadHeader() {
		// A rotation writes the new key slot and wipes the old one in
		// place, under a write lock on the header in the lock space of
		// shared mounts (fs/rewrap), and a read that met both slots
		// while they changed finds neither whole. Read once more under a
		// read lock of the header, which waits for that writer.
		if hook := headerRereadHook.Load(); hook != nil {
			(*hook)()
		}
		if again, lerr := h.readHeaderLocked(); lerr == nil {
			c, err = h.fs.openHeader(again, h.path)
		}
	}
	if errors.As(err, &ie) {
		ie.file = h.node
	}
	if err != nil {
		return nil, err
	}
	h.ino.cipher.Store(c)
	return c, nil
}

// mayRereadHeader reports whether readHeaderLocked can wait for the header
// lock: not when this mount holds a write lock that covers the header (no
// rotation can be writing it then, and the wait would be on ourselves).
// The caller holds ino.mu.
func (h *handle) mayRereadHeader() bool {
	l := h.ino.wlock
	return l == nil || !l.covers(0, content.HeaderSize)
}

// readHeaderLocked reads the header while holding a read lock on it in the
// lock space of shared mounts, through a descriptor of its own.
func (h *handle) readHeaderLocked() ([]byte, error) {
	l, err := h.lockRange(0, content.HeaderSize, false)
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	hdr := make([]byte, content.HeaderSize)
	if err := preadFull(h.fd, hdr, 0); err != nil {
		return nil, err
	}
	return hdr, nil
}

// headerRereadHook, set by tests only, runs when a header failed, before it
// is read again under the header lock.
var headerRereadHook atomic.Pointer[func()]

// current reports whether the cached cipher c is still the file's. Only in
// shared mode can the file start over (with a new key) behind the mount.
func (h *handle) current(c *content.Cipher) bool {
	if !h.fs.opts.Shared {
		return true
	}
	ok, err := h.sameFile(c)
	return ok && err == nil
}

// readError turns a short read, a backing file that shrank under us, into
// an integrity error and passes other errors on.
func (h *handle) readError(err error, block int64) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &integrityError{path: h.path(), file: h.node, block: block, err: err}
	}
	return fmt.Errorf("failed to read backing file: %w", err)
}

// readAt reads plaintext at off into dest and returns the byte count, short
// only at the end of the file.
func (h *handle) readAt(dest []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	h.ino.mu.RLock()
	defer h.ino.mu.RUnlock()
	l, err := h.lockRead(off, int64(len(dest)))
	if err != nil {
		return 0, err
	}
	defer l.unlock()

	ahead, sealed, cipherSize, known := h.readAhead(dest, off)
	if ahead != nil {
		defer putBuf(ahead)
		if !known {
			return len(dest), nil
		}
	}
	var sz sizes
	if known {
		sz, err = h.sizes(cipherSize)
	} else {
		sz, err = h.stat()
	}
	if err != nil {
		return 0, err
	}
	if sz.torn && off+int64(len(dest)) > sz.plain {
		return 0, h.tornError(sz)
	}
	if h.shrunk(off, int64(len(dest)), sz.plain) {
		return 0, &integrityError{path: h.path(), file: h.node, block: sz.plain / bs, err: errShrunk}
	}
	if off >= sz.plain || len(dest) == 0 {
		return 0, nil
	}
	c, err := h.cipher()
	if err != nil {
		return 0, err
	}
	return h.decrypt(c, dest, off, min(off+int64(len(dest)), sz.plain), sz, sealed)
}

// readAhead reads whole blocks at a block-aligned off into dest without
// asking the backing file's size first, the usual case (the kernel reads
// pages; O_DIRECT reads of aligned blocks): it issues the one pread of the
// sealed blocks, from the header on if the file's key is not loaded yet
// (the first read of a file starts at 0), and loads the key from the header
// it read. If that returns every block and they all authenticate, no size
// can change the answer: it returns the buffer and known false, and dest
// holds the plaintext. If the file ends inside the range (a read returns no
// more bytes, after some), its size is known: it returns sealed, the bytes
// read from the first block on, and the backing size, known true, for the
// full way to go on without a stat or a second read of the data. Otherwise
// (a read from a block past 0 with the key not loaded, shared mode, a
// header or block that fails, an error) it returns nil, and the full way
// reads again, reporting or repairing what failed. The caller holds ino.mu
// and returns buf with putBuf.
func (h *handle) readAhead(dest []byte, off int64) (buf *[]byte, sealed []byte, cipherSize int64, known bool) {
	if h.fs.opts.Shared || off%bs != 0 || len(dest) == 0 || len(dest)%bs != 0 {
		return nil, nil, 0, false
	}
	first, nblocks := off/bs, len(dest)/bs
	start := content.BlockOffset(uint64(first))
	from := start
	c := h.ino.cipher.Load()
	if c == nil {
		if first != 0 {
			return nil, nil, 0, false
		}
		from = 0
	}
	cb := getBuf(int(start-from) + nblocks*cbs)
	n, err := preadToEnd(h.fd, *cb, from)
	if err != nil || n == 0 || from+int64(n) < start { // the file may end before off
		putBuf(cb)
		return nil, nil, 0, false
	}
	if c == nil {
		if c, err = h.loadCipher((*cb)[:content.HeaderSize]); err != nil {
			putBuf(cb)
			return nil, nil, 0, false
		}
	}
	sealed = (*cb)[start-from : n]
	if n < len(*cb) {
		return cb, sealed, from + int64(n), true
	}

	err = forBlocks(nblocks, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			s := sealed[i*cbs : (i+1)*cbs]
			if _, err := c.Open(dest[i*bs:i*bs], s, uint64(first)+uint64(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		putBuf(cb)
		return nil, nil, 0, false
	}
	return cb, nil, 0, false
}

// preadToEnd reads into b from off until b is full or a read returns no
// bytes, the only sure sign of the end of the file, and returns the count.
func preadToEnd(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], off+int64(n))
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

// errShrunk reports a read past the end of a file that got shorter behind
// the mount: removed blocks or a backing file cut at a block boundary.
var errShrunk = errors.New("read past the end: the backing file shrank behind the mount")

// shrunk reports whether a read of n bytes at off shows that the kernel
// believes the file larger than its plaintext size, and no change through
// this mount explains it. The kernel reads whole pages below its file size
// (or, with O_DIRECT, from below its file size on); a short answer would
// make it fill the rest with zeros and hand them to the reader as data.
func (h *handle) shrunk(off, n, size int64) bool {
	if h.fs.opts.Shared {
		return false // other mounts change sizes; direct I/O reads end at EOF
	}
	past := off+n > (size+pageSize-1)/pageSize*pageSize
	if h.direct {
		past = off >= size
	}
	return past && h.ino.size.Load() != size
}

// decrypt reads the blocks holding plaintext [off, end) with one pread and
// decrypts them into dest. end is at most the plaintext size. If ahead is
// not nil, it holds the backing bytes from the first of those blocks to
// the end of the file, read already.
func (h *handle) decrypt(c *content.Cipher, dest []byte, off, end int64, sz sizes, ahead []byte) (int, error) {
	first, last := off/bs, (end-1)/bs
	start := content.BlockOffset(uint64(first))
	stop := min(content.BlockOffset(uint64(last+1)), sz.cipher)

	cb := &ahead
	if int64(len(ahead)) < stop-start {
		cb = getBuf(int(stop - start))
		defer putBuf(cb)
		if err := preadFull(h.fd, *cb, start); err != nil {
			return 0, h.readError(err, first)
		}
	}
	*cb = (*cb)[:stop-start]

	// Requests that start and end on block boundaries (or at the end of
	// the file), the usual case, decrypt straight into dest.
	straight := off%bs == 0 && (end%bs == 0 || end == sz.plain)
	var out []byte
	if straight {
		out = dest[:0]
	} else {
		pb := getBuf(int(last-first+1) * bs)
		defer putBuf(pb)
		out = (*pb)[:0]
	}

	// Block i of the request is at i*cbs in the ciphertext and opens to
	// i*bs; all but the file's last block are full. Large requests are
	// opened on several goroutines; if a block fails, the request is
	// opened again in order by h.open, which may repair it.
	sealed := *cb
	nblocks := int(last - first + 1)
	err := forBlocks(nblocks, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			s := sealed[i*cbs : min((i+1)*cbs, len(sealed))]
			if _, err := c.Open(out[i*bs:i*bs], s, uint64(first)+uint64(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		out = out[:len(sealed)-nblocks*content.Overhead]
	} else {
		for b := first; b <= last; b++ {
			n := min(cbs, len(sealed))
			if out, err = h.open(c, out, sealed[:n], b); err != nil {
				return 0, err
			}
			sealed = sealed[n:]
		}
	}
	if straight {
		return len(out), nil
	}
	return copy(dest, out[off-first*bs:end-first*bs]), nil
}

// writeAt writes data at plaintext offset off. A gap between the end of the
// file and off is filled with encrypted zeros first.
func (h *handle) writeAt(data []byte, off int64) (int, error) {
	if err := h.checkWritable(); err != nil {
		return 0, err
	}
	end := off + int64(len(data))
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if end > content.MaxPlainSize {
		return 0, syscall.EFBIG
	}
	if len(data) == 0 {
		return 0, nil
	}

	h.ino.mu.Lock()
	defer h.ino.mu.Unlock()
	l, err := h.lockChange(func(sz sizes) (int64, int64) { return writeRange(sz, off, end) })
	if err != nil {
		return 0, err
	}
	defer h.unlockChange(l)
	return h.writeLocked(data, off)
}

// appendAt writes data at the end of the file as it is once the file is
// locked: an O_APPEND write of a shared mount, whose kernel may not know
// what other mounts appended.
func (h *handle) appendAt(data []byte) (int, error) {
	if err := h.checkWritable(); err != nil {
		return 0, err
	}
	if len(data) == 0 {
		return 0, nil
	}
	n := int64(len(data))

	h.ino.mu.Lock()
	defer h.ino.mu.Unlock()
	l, err := h.lockChange(func(sz sizes) (int64, int64) { return writeRange(sz, sz.plain, sz.plain+n) })
	if err != nil {
		return 0, err
	}
	defer h.unlockChange(l)
	sz, err := h.stat()
	if err != nil {
		return 0, err
	}
	if sz.plain+n > content.MaxPlainSize {
		return 0, syscall.EFBIG
	}
	return h.writeLocked(data, sz.plain)
}

// writeLocked is writeAt under the file's locks.
func (h *handle) writeLocked(data []byte, off int64) (int, error) {
	var w blockWriter
	defer w.release()
	if err := h.writer(&w, off+int64(len(data))); err != nil {
		return 0, err
	}
	// The gap up to the block of off; write fills the rest of that block,
	// so that no block is written twice in one operation.
	err := w.extend(off / bs * bs)
	if err == nil {
		err = w.write(data, off)
	}
	if err != nil {
		w.rollback()
		return 0, err
	}
	h.ino.size.Store(w.size)
	return len(data), nil
}

// truncate sets the plaintext size. Shrinking re-encrypts the new last block
// if it is partial; growing appends encrypted zeros; zero drops the header,
// so the next write starts the file with a fresh key.
func (h *handle) truncate(size int64) error {
	if err := h.checkWritable(); err != nil {
		return err
	}
	if size < 0 {
		return syscall.EINVAL
	}
	if size > content.MaxPlainSize {
		return syscall.EFBIG
	}

	h.ino.mu.Lock()
	defer h.ino.mu.Unlock()
	l, err := h.lockChange(func(sz sizes) (int64, int64) { return truncRange(sz, size) })
	if err != nil {
		return err
	}
	defer h.unlockChange(l)

	if err := h.resize(size); err != nil {
		return err
	}
	h.ino.size.Store(size)
	return nil
}

// resize is truncate under the lock.
func (h *handle) resize(size int64) error {
	if size == 0 {
		// Also the way out for a file whose header is damaged.
		if err := h.dropUndo(); err != nil {
			return err
		}
		if err := ftruncate(h.fd, 0); err != nil {
			return err
		}
		h.ino.cipher.Store(nil)
		return nil
	}

	sz, err := h.stat()
	switch {
	case err != nil:
		return err
	case size < sz.plain || (sz.torn && size == sz.plain):
		return h.shrink(sz, size)
	case size == sz.plain:
		return nil
	}

	var w blockWriter
	defer w.release()
	if err := h.writer(&w, size); err != nil {
		return err
	}
	if err := w.extend(size); err != nil {
		w.rollback()
		return err
	}
	return nil
}

// allocate implements fallocate mode 0: it extends the file with encrypted
// zeros up to off+length and never shrinks it.
func (h *handle) allocate(off, length int64) error {
	if err := h.checkWritable(); err != nil {
		return err
	}
	end := off + length
	if off < 0 || length <= 0 || end < off {
		return syscall.EINVAL
	}
	if end > content.MaxPlainSize {
		return syscall.EFBIG
	}

	h.ino.mu.Lock()
	defer h.ino.mu.Unlock()
	l, err := h.lockChange(func(sz sizes) (int64, int64) { return writeRange(sz, off, end) })
	if err != nil {
		return err
	}
	defer h.unlockChange(l)

	var w blockWriter
	defer w.release()
	if err := h.writer(&w, end); err != nil {
		return err
	}
	if err := w.extend(end); err != nil {
		w.rollback()
		return err
	}
	h.ino.size.Store(w.size)
	return nil
}

// shrink cuts the file to size bytes, size being below its plaintext size
// (or equal to it, to cut off a torn block). The caller holds ino.mu.
func (h *handle) shrink(sz sizes, size int64) error {
	if err := h.dropUndo(); err != nil {
		return err
	}
	rem := size % bs
	if rem == 0 {
		return ftruncate(h.fd, content.CipherSize(size))
	}

	c, err := h.cipher()
	if err != nil {
		return err
	}
	b := size / bs
	pb := getBuf(bs)
	defer putBuf(pb)
	old, err := h.readBlock(c, (*pb)[:0], b, sz.plain)
	if err != nil {
		return err
	}

	cb := getBuf(cbs)
	defer putBuf(cb)
	sealed := c.Seal((*cb)[:0], old[:rem], uint64(b))
	if err := ftruncate(h.fd, content.CipherSize(size)); err != nil {
		return err
	}
	return pwriteFull(h.fd, sealed, content.BlockOffset(uint64(b)))
}

// readBlock reads and decrypts block b of a file of plaintext size size,
// appending the plaintext to dst.
func (h *handle) readBlock(c *content.Cipher, dst []byte, b, size int64) ([]byte, error) {
	n := min(bs, size-b*bs) + content.Overhead
	cb := getBuf(int(n))
	defer putBuf(cb)
	if err := preadFull(h.fd, *cb, content.BlockOffset(uint64(b))); err != nil {
		return nil, h.readError(err, b)
	}
	return h.open(c, dst, *cb, b)
}

// open authenticates and decrypts the bytes sealed of block b, appending
// the plaintext to dst. A block that fails may be an overwrite cut by a
// crash, which the undo record repairs.
func (h *handle) open(c *content.Cipher, dst, sealed []byte, b int64) ([]byte, error) {
	out, err := c.Open(dst, sealed, uint64(b))
	if err != nil {
		return h.recoverBlock(c, dst, sealed, b, err)
	}
	return out, nil
}

// checkWritable refuses changes through a handle whose backing file is open
// read-only. Every change of the file's data starts with it, so it also
// marks the inode changed (see Flush).
func (h *handle) checkWritable() error {
	switch {
	case h.writable:
		if !h.ino.changed.Load() {
			h.ino.changed.Store(true)
		}
		return nil
	case h.fs.opts.ReadOnly:
		return syscall.EROFS
	default:
		return syscall.EBADF
	}
}

// blockWriter encrypts writes to one file under its exclusive lock.
type blockWriter struct {
	h      *handle
	c      *content.Cipher
	size   int64  // current plaintext size
	header []byte // header to write with the first block of a new file
	start  int64  // backing size before the operation

	// undo is the undo record this operation wrote, nil until it
	// overwrites existing blocks: a header, then the old bytes from
	// backing offset undoAt to start, which rollback also uses.
	undo   *[]byte
	undoAt int64

	// old holds the sealed bytes of block oldBlock as readOld read them
	// and they authenticated, until the next backing write; saveUndo
	// takes them from here instead of reading them again when they are
	// all it needs (an append to a partial last block).
	old      *[]byte
	oldBlock int64
	oldN     int
	oldValid bool
}

// release returns the writer's buffers.
func (w *blockWriter) release() {
	if w.undo != nil {
		putBuf(w.undo)
		w.undo = nil
	}
	if w.old != nil {
		putBuf(w.old)
		w.old = nil
	}
}

// writer prepares w for writes that end at end. It refuses them if they would
// touch a torn last block and draws a new key if the file has no header
// yet. The caller holds ino.mu exclusively and calls rollback if the
// operation fails.
func (h *handle) writer(w *blockWriter, end int64) error {
	sz, err := h.stat()
	if err != nil {
		return err
	}
	if sz.torn && end > sz.plain {
		return h.tornError(sz)
	}

	*w = blockWriter{h: h, size: sz.plain, start: sz.cipher}
	if sz.cipher == 0 {
		w.c, w.header, err = h.fs.newKey()
	} else {
		w.c, err = h.cipher()
	}
	return err
}

// rollback undoes a failed operation: it writes back the old bytes of the
// blocks it overwrote, kept in its undo record, and cuts the backing file
// back to its old size. A failure to write (ENOSPC, EFBIG, EIO) thus leaves
// the file as it was, unless restoring fails too.
func (w *blockWriter) rollback() {
	w.h.ino.undoKeep = true
	if w.undo != nil {
		_ = pwriteFull(w.h.fd, (*w.undo)[content.UndoHeaderSize:], w.undoAt)
	}
	// In shared mode, a change locked short of the end of the file did
	// not change its size, and another process may have since.
	if w.h.ino.wlock.toEnd() {
		_ = ftruncate(w.h.fd, w.start)
	}
}

// extend fills the file with encrypted zeros up to size, in chunks that end
// on block boundaries.
func (w *blockWriter) extend(size int64) error {
	for w.size < size {
		n := min(size-w.size, zeroChunk-w.size%bs)
		if err := w.write(zeros[:n], w.size); err != nil {
			return err
		}
	}
	return nil
}

// write encrypts data at plaintext offset off, at most the current size,
// with one backing write. Partial blocks at either end are read, decrypted
// and merged first.
func (w *blockWriter) write(data []byte, off int64) error {
	end := off + int64(len(data))
	newSize := max(w.size, end)
	first, last := off/bs, (end-1)/bs

	// Only the first and the last block can be partial and need their
	// old plaintext; every block before the last is full, so block i of
	// the request goes at a fixed place in out, and the blocks are sealed
	// in place, on several goroutines for large requests.
	nblocks := int(last - first + 1)
	var ends [2][]byte
	for i, b := range [2]int64{first, last} {
		if i == 1 && last == first {
			ends[1] = ends[0]
			break
		}
		pb := getBuf(bs)
		defer putBuf(pb)
		plain, err := w.blockPlain(data, off, b, newSize, (*pb)[:0])
		if err != nil {
			return err
		}
		ends[i] = plain
	}
	plain := func(i int) []byte {
		switch i {
		case 0:
			return ends[0]
		case nblocks - 1:
			return ends[1]
		}
		at := (first+int64(i))*bs - off
		return data[at : at+bs]
	}

	hl := len(w.header)
	total := hl + (nblocks-1)*cbs + len(ends[1]) + content.Overhead
	cb := getBuf(total)
	defer putBuf(cb)
	out := (*cb)[:total]
	copy(out, w.header)
	_ = forBlocks(nblocks, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			at := hl + i*cbs
			w.c.Seal(out[at:at], plain(i), uint64(first)+uint64(i))
		}
		return nil
	})

	if err := w.store(out, first); err != nil {
		return err
	}
	if w.header != nil {
		w.h.ino.cipher.Store(w.c)
		w.header = nil
	}
	w.size = newSize
	return nil
}

// store writes the sealed blocks from block first on with one backing
// write. If they overwrite bytes of the file as it was before the
// operation, it first saves those in the undo record.
func (w *blockWriter) store(out []byte, first int64) error {
	if w.header != nil {
		return pwriteFull(w.h.fd, out, 0)
	}
	at := content.BlockOffset(uint64(first))
	if at < w.start {
		if err := w.saveUndo(first, at, min(at+int64(len(out)), w.start)); err != nil {
			return err
		}
	}
	w.oldValid = false
	return pwriteFull(w.h.fd, out, at)
}

// saveUndo writes the file's undo record: the backing bytes [at, end),
// from block first on, with one write. An operation writes each block at
// most once, and so saves at most once.
func (w *blockWriter) saveUndo(first, at, end int64) error {
	if w.undo != nil {
		return fmt.Errorf("failed to save undo record: bytes %d..%d saved already: %w", at, end,
			syscall.EINVAL)
	}
	n := int(end - at)
	buf := getBuf(content.UndoHeaderSize + n)
	rec := content.AppendUndoHeader((*buf)[:0], w.c.FileID(), uint64(first), w.start, n)
	rec = rec[:content.UndoHeaderSize+n]
	var err error
	if w.oldValid && w.oldBlock == first && n <= w.oldN {
		copy(rec[content.UndoHeaderSize:], (*w.old)[:n])
	} else if err = preadFull(w.h.fd, rec[content.UndoHeaderSize:], at); err != nil {
		err = w.h.readError(err, first)
	}
	if err == nil {
		var fd int
		if fd, err = w.h.undoFD(w.c.FileID()); err == nil {
			err = pwriteFull(fd, rec, 0)
		}
	}
	if err != nil {
		putBuf(buf)
		return err
	}
	w.undo, w.undoAt = buf, at
	return nil
}

// readOld reads and decrypts block b for a read-modify-write into scratch,
// and keeps its sealed bytes for saveUndo if they authenticate as they are.
func (w *blockWriter) readOld(b int64, scratch []byte) ([]byte, error) {
	if w.old == nil {
		w.old = getBuf(cbs)
	}
	w.oldValid = false
	sealed := (*w.old)[:min(bs, w.size-b*bs)+content.Overhead]
	if err := preadFull(w.h.fd, sealed, content.BlockOffset(uint64(b))); err != nil {
		return nil, w.h.readError(err, b)
	}
	out, err := w.c.Open(scratch, sealed, uint64(b))
	if err != nil {
		// A cut overwrite restored from the undo record: the file
		// no longer holds these bytes.
		return w.h.recoverBlock(w.c, scratch, sealed, b, err)
	}
	w.oldBlock, w.oldN, w.oldValid = b, len(sealed), true
	return out, nil
}

// blockPlain returns the new plaintext of block b when data is written at
// off: a slice of data if it covers the whole block, else the old block
// decrypted into scratch with data copied over it.
func (w *blockWriter) blockPlain(data []byte, off, b, newSize int64, scratch []byte) ([]byte, error) {
	end := off + int64(len(data))
	bStart, bEnd := b*bs, min(b*bs+bs, newSize)
	dStart, dEnd := max(off, bStart), min(end, bEnd)
	if dStart == bStart && dEnd == bEnd {
		return data[dStart-off : dEnd-off], nil
	}

	// Bytes of the block after the data lie below the old size; bytes
	// before it too, or between the old size and off, a gap of zeros
	// (off is at most the size rounded up to a block).
	plain := scratch[:0]
	if bStart < w.size {
		old, err := w.readOld(b, scratch)
		if err != nil {
			return nil, err
		}
		plain = old
	}
	n := len(plain)
	plain = plain[:bEnd-bStart]
	clear(plain[n:])
	copy(plain[dStart-bStart:], data[dStart-off:dEnd-off])
	return plain, nil
}

// preadFull fills b from offset off, failing with io.ErrUnexpectedEOF if the
// file ends first.
func preadFull(fd int, b []byte, off int64) error {
	n, err := preadToEnd(fd, b, off)
	if err == nil && n < len(b) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// pwriteFault, set only by tests, injects failures: given the length of a
// write, it returns an error to fail it with after writing n bytes of it.
var pwriteFault func(length int) (n int, err error)

// pwriteFull writes all of b at offset off.
func pwriteFull(fd int, b []byte, off int64) error {
	if pwriteFault != nil {
		if n, err := pwriteFault(len(b)); err != nil {
			_, _ = unix.Pwrite(fd, b[:n], off)
			return err
		}
	}
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to write backing file: %w", err)
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
			return fmt.Errorf("failed to truncate backing file: %w", err)
		}
		return nil
	}
}
