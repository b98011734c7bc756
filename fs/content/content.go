package content

import (
	"errors"
	"math"
)

// Sizes and limits of format version 1.
const (
	// BlockSize is the plaintext size of every block but the last.
	BlockSize = 4096
	// NonceSize is the size of the random XChaCha20 nonce stored in front of
	// each block.
	NonceSize = 24
	// TagSize is the size of the Poly1305 tag stored after each block.
	TagSize = 16
	// Overhead is the number of bytes a sealed block adds to its plaintext.
	Overhead = NonceSize + TagSize
	// CipherBlockSize is the on-disk size of a full block.
	CipherBlockSize = BlockSize + Overhead
	// HeaderSize is the size of the file header in front of block 0.
	HeaderSize = 280
	// Version is the file format version this package reads and writes.
	Version = 1
	// DEKSize is the size of a file's data encryption key.
	DEKSize = 32
	// MaxWrapped is the largest wrapped DEK a header slot can hold.
	MaxWrapped = 114
	// MaxPlainSize is the largest plaintext size coffer supports: the most
	// whole blocks whose backing size fits in an int64. Callers must refuse
	// larger sizes (EFBIG) before calling CipherSize.
	MaxPlainSize = (math.MaxInt64 - HeaderSize) / CipherBlockSize * BlockSize
)

const (
	magic      = "coffer"
	slotOffset = 24
	slotSize   = 128
	slotData   = 14 // offset of the wrapped DEK inside a slot
	slotADTag  = "coffer-dek-v1\x00"
	blockADLen = 16 + 8
)

// ErrAuth reports that a block or key slot failed authentication: it was
// tampered with, torn by a crash, moved, or belongs to another file.
var ErrAuth = errors.New("authentication failed")

// ErrCorrupt reports a malformed header or a backing file size that no valid
// file can have.
var ErrCorrupt = errors.New("corrupt file")

// FileID is the random identifier stored in a file's header. It binds every
// block and key slot to the file.
type FileID [16]byte
