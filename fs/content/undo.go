package content

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Undo records. Before a write replaces blocks that already exist in a
// backing file, coffer saves their current ciphertext (the pre-images) in
// the file's undo record, with one write, and only then overwrites the
// blocks. A process killed in the middle of the overwrite leaves a block
// that is new up to a page boundary and old after it; its pre-image is the
// last complete version of that block. docs/format.md ("Undo records")
// specifies the layout and when a pre-image may be used.
const (
	// UndoDir is the folder, inside the volume's reserved folder, that
	// holds one undo record per file, named by UndoName.
	UndoDir = "undo"
	// UndoHeaderSize is the size of an undo record's header; the
	// pre-images follow it.
	UndoHeaderSize = 48
	// TearUnit is the granularity at which the kernel may stop copying a
	// write into the page cache when the writing process is killed: the
	// smallest page size, 4096. Larger pages stop at multiples of it.
	TearUnit = 4096
	// minTornSuffix is how many bytes a torn block must share with its
	// pre-image, at its end, to be taken for a cut overwrite of it: a
	// rewritten block (fresh nonce) matches old bytes at random only with
	// a chance of 2⁻¹²⁸ over 16 bytes.
	minTornSuffix = 16
)

const (
	undoMagic   = "cofferundo"
	undoVersion = 1
)

// Undo is a parsed undo record: the pre-images of the blocks an overwrite
// of the file FileID replaced, from block First on, as the backing file
// held them when it was OldSize bytes long.
type Undo struct {
	FileID  FileID
	First   uint64
	OldSize int64
	// Data holds the backing bytes from BlockOffset(First) on: whole
	// sealed blocks, the last one possibly shorter (the old last block).
	Data []byte
}

// UndoName returns the file name of the undo record of the file id: its ID
// in lowercase hex.
func UndoName(id FileID) string {
	return hex.EncodeToString(id[:])
}

// AppendUndoHeader appends the header of an undo record with n bytes of
// pre-images to dst. The pre-images follow it in the same write.
func AppendUndoHeader(dst []byte, id FileID, first uint64, oldSize int64, n int) []byte {
	dst = append(dst, undoMagic...)
	dst = binary.BigEndian.AppendUint16(dst, undoVersion)
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint64(dst, first)
	dst = binary.BigEndian.AppendUint64(dst, uint64(oldSize))
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// ParseUndo parses an undo record from b, which holds at least its header
// and as much of the file after it as the caller read. Data shares memory
// with b and is cut to the length the header states; a record whose
// pre-images b does not hold entirely is ErrCorrupt. The pre-images are not
// authenticated here: each is checked when it is used.
func ParseUndo(b []byte) (*Undo, error) {
	if len(b) < UndoHeaderSize || string(b[:len(undoMagic)]) != undoMagic {
		return nil, fmt.Errorf("failed to parse undo record: bad header: %w", ErrCorrupt)
	}
	if v := binary.BigEndian.Uint16(b[10:12]); v != undoVersion {
		return nil, fmt.Errorf("failed to parse undo record: version %d: %w", v, ErrCorrupt)
	}
	u := &Undo{
		First:   binary.BigEndian.Uint64(b[28:36]),
		OldSize: int64(binary.BigEndian.Uint64(b[36:44])),
	}
	copy(u.FileID[:], b[12:28])
	n := int64(binary.BigEndian.Uint32(b[44:48]))
	if u.First > uint64(MaxPlainSize/BlockSize) || u.OldSize < HeaderSize ||
		BlockOffset(u.First)+n > u.OldSize || n > int64(len(b)-UndoHeaderSize) {
		return nil, fmt.Errorf("failed to parse undo record: bad range: %w", ErrCorrupt)
	}
	u.Data = b[UndoHeaderSize : UndoHeaderSize+n]
	return u, nil
}

// PreImage returns the saved bytes of block, or nil if the record does not
// cover it.
func (u *Undo) PreImage(block uint64) []byte {
	if block < u.First || (block-u.First) >= uint64(len(u.Data)+CipherBlockSize-1)/CipherBlockSize {
		return nil
	}
	at := int(block-u.First) * CipherBlockSize
	return u.Data[at:min(at+CipherBlockSize, len(u.Data))]
}

// Torn reports whether cur, the bytes of a block at backing offset at that
// fail authentication, are what a killed overwrite of pre leaves: as long as
// pre, and equal to it from a page boundary inside the block to its end, for
// at least minTornSuffix bytes. A rewrite that completed, followed by any
// damage, does not look like this: its nonce is new and so are all its
// bytes.
func Torn(cur, pre []byte, at int64) bool {
	if len(cur) != len(pre) || len(cur) == 0 {
		return false
	}
	// The earliest page boundary inside the block from which cur and pre
	// agree to the end; a kill at an earlier boundary leaves them equal
	// from every later one too.
	first := (at/TearUnit + 1) * TearUnit
	for p := first; p < at+int64(len(cur)); p += TearUnit {
		i := int(p - at)
		if len(cur)-i >= minTornSuffix && bytes.Equal(cur[i:], pre[i:]) {
			return true
		}
	}
	return false
}
