//go:build linux

package fs

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cofferfs/coffer/fs/content"
)

// inodeKey identifies a backing inode.
type inodeKey struct {
	dev, ino uint64
}

// inode is the state shared by every open handle of one backing inode, so
// that hard links and repeated opens see one lock and one key.
type inode struct {
	key  inodeKey
	refs int // guarded by inodeTable.mu

	// mu orders access to the file's data: reads share it; writes,
	// truncation and header creation hold it exclusively, which makes each
	// read-modify-write of a block atomic for every other handle.
	mu sync.RWMutex

	// cipher caches the file's unwrapped data key. It is nil until the
	// header is first needed, and again after truncation to zero, which
	// drops the header. loadMu serialises loading under a shared mu.
	cipher atomic.Pointer[content.Cipher]
	loadMu sync.Mutex

	locks posixLocks

	// size is the plaintext size the last change through this mount left,
	// or -1 if there was none since the inode got its first handle. A read
	// past the end of the file is only expected right after such a change.
	size atomic.Int64

	// changed is set before the first change of the file's data through
	// this mount since the inode got its first handle: only then can the
	// backing file hold written data whose errors a close reports. See
	// handle.Flush.
	changed atomic.Bool

	// undoFD is the open undo record of the file undoID, or -1; see
	// undo.go. undoMade is set once a write through this mount saved a
	// record, undoKeep once an operation failed after it may have: the
	// record then outlives the last handle. Guarded by mu held
	// exclusively, or by inodeTable.mu once the last reference is gone.
	undoFD   int
	undoID   content.FileID
	undoMade bool
	undoKeep bool

	// pool holds descriptors for range locks in shared mode, and wlock
	// is the write lock of the change in progress (guarded by mu held
	// exclusively; readers under a shared mu see nil). See shared.go.
	pool  lockPool
	wlock *rangeLock
}

// inodeTable holds the inodes that have at least one open handle.
type inodeTable struct {
	mu sync.Mutex
	m  map[inodeKey]*inode

	// closed, if set, runs when the last reference to an inode is
	// dropped, under mu, so that no new handle of the inode starts
	// meanwhile.
	closed func(*inode)
}

// acquire returns the inode for k, creating it if needed, and takes a
// reference on it.
func (t *inodeTable) acquire(k inodeKey) *inode {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.m == nil {
		t.m = make(map[inodeKey]*inode)
	}
	in := t.m[k]
	if in == nil {
		in = &inode{key: k}
		in.size.Store(-1)
		in.undoFD = -1
		t.m[k] = in
	}
	in.refs++
	return in
}

// release drops a reference taken by acquire. The last one forgets the
// inode, its key and its locks.
func (t *inodeTable) release(in *inode) {
	t.mu.Lock()
	defer t.mu.Unlock()

	in.refs--
	if in.refs == 0 {
		delete(t.m, in.key)
		in.locks.closeAll()
		in.closeUndo()
		if t.closed != nil {
			t.closed(in)
		}
		in.pool.closeAll()
	}
}

// len returns the number of inodes with open handles.
func (t *inodeTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// newKey draws a file ID and data key for a new file and wraps the key. It
// returns the file's cipher and its marshalled header.
func (f *filesystem) newKey() (*content.Cipher, []byte, error) {
	var id content.FileID
	_, _ = rand.Read(id[:]) // never fails since Go 1.24
	dek := make([]byte, content.DEKSize)
	_, _ = rand.Read(dek)
	defer clear(dek)

	keyID, wrapped, err := f.opts.Keys.Wrap(dek, func(keyID uint32) []byte {
		return content.SlotAD(f.opts.VolumeID, id, keyID, 1)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to wrap data key: %w", err)
	}

	h := &content.Header{Version: content.Version, FileID: id}
	h.Slots[0] = content.Slot{KeyID: keyID, Generation: 1, Wrapped: wrapped}
	hdr, err := h.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create header: %w", err)
	}
	c, err := content.NewCipher(dek, id)
	if err != nil {
		return nil, nil, err
	}
	return c, hdr, nil
}

// openHeader parses a header and unwraps its data key, trying the current
// slot first and falling back to the other one. path names the file in
// errors and logs; it is called only then (building a backing path with
// encrypted names costs a name encryption per component).
func (f *filesystem) openHeader(b []byte, path func() string) (*content.Cipher, error) {
	h, err := content.ParseHeader(b)
	if err != nil {
		return nil, &integrityError{path: path(), block: headerBlock, err: err}
	}

	var errs []error
	for _, i := range h.Order() {
		c, err := f.unwrapSlot(h, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if len(errs) > 0 {
			f.log.Warn().Str("backing", path()).Str("block", "header").
				Str("reason", errors.Join(errs...).Error()).
				Msg("current key slot failed, using the other slot")
		}
		return c, nil
	}
	return nil, &integrityError{path: path(), block: headerBlock,
		err: fmt.Errorf("no key slot unwraps: %w", errors.Join(errs...))}
}

// unwrapSlot unwraps the data key in slot i of h.
func (f *filesystem) unwrapSlot(h *content.Header, i int) (*content.Cipher, error) {
	s := h.Slots[i]
	ad := content.SlotAD(f.opts.VolumeID, h.FileID, s.KeyID, s.Generation)
	dek, err := f.opts.Keys.Unwrap(s.KeyID, s.Wrapped, ad)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return content.NewCipher(dek, h.FileID)
}
