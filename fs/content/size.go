package content

import "fmt"

// PlainSize returns the plaintext size of a backing file of cipherSize bytes.
//
// A backing file of 0 bytes is an empty file whose header was never written.
// A size that ends in 1 to Overhead bytes after the last full block is a torn
// tail: a crash cut the last block short. PlainSize then reports tornTail and
// the size of the full blocks only; reading the torn block fails with ErrAuth.
// Sizes below HeaderSize (other than 0) are ErrCorrupt.
func PlainSize(cipherSize int64) (size int64, tornTail bool, err error) {
	if cipherSize == 0 {
		return 0, false, nil
	}
	if cipherSize < HeaderSize {
		return 0, false, fmt.Errorf("failed to compute plaintext size: backing size %d: %w",
			cipherSize, ErrCorrupt)
	}

	n := cipherSize - HeaderSize
	full, rem := n/CipherBlockSize, n%CipherBlockSize
	size = full * BlockSize
	switch {
	case rem == 0:
		return size, false, nil
	case rem <= Overhead:
		return size, true, nil
	default:
		return size + rem - Overhead, false, nil
	}
}

// CipherSize returns the backing size of a file of plainSize plaintext bytes.
// It is HeaderSize for an empty file: truncating a file to zero keeps its
// header and so its key. plainSize must be in [0, MaxPlainSize]; CipherSize
// panics otherwise.
func CipherSize(plainSize int64) int64 {
	if plainSize < 0 || plainSize > MaxPlainSize {
		panic(fmt.Sprintf("content: CipherSize(%d) out of range", plainSize))
	}
	full, rem := plainSize/BlockSize, plainSize%BlockSize
	size := HeaderSize + full*CipherBlockSize
	if rem > 0 {
		size += rem + Overhead
	}
	return size
}

// BlockOffset returns the offset of block number block in the backing file.
func BlockOffset(block uint64) int64 {
	return HeaderSize + int64(block)*CipherBlockSize
}
