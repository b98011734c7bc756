// Package content implements format version 1 of coffer's per-file on-disk
// format: the header with its two key slots, and the encrypted blocks that
// follow it. docs/format.md is the authoritative specification; this comment
// summarises it.
//
// # Layout
//
// A backing file is a header followed by sealed blocks:
//
//	offset  size  field
//	     0     6  magic "coffer"
//	     6     2  format version, uint16 big-endian (1)
//	     8    16  file ID, random
//	    24   128  slot 0
//	   152   128  slot 1
//	   280   ...  block 0, block 1, ...
//
// A key slot holds the file's data encryption key (DEK) wrapped by one key of
// the volume's key ring:
//
//	offset  size  field
//	     0     4  ring key ID, uint32 big-endian (0 = empty slot)
//	     4     8  generation, uint64 big-endian (0 in an empty slot)
//	    12     2  wrapped length L, uint16 big-endian, at most 114
//	    14   114  wrapped DEK (L bytes), then zero padding
//
// An empty slot is 128 zero bytes. Block i starts at 280 + i*4136:
//
//	+-----------+--------------------------------+-----------+
//	| nonce[24] | ciphertext[n], n = 1..4096     | tag[16]   |
//	+-----------+--------------------------------+-----------+
//
// Every block holds 4096 plaintext bytes except the last, which holds 1 to
// 4096. The plaintext size follows from the backing size alone; see
// [PlainSize] and [CipherSize].
//
// # Block encryption
//
// Blocks are sealed with XChaCha20-Poly1305 under the file's 32-byte DEK and
// a fresh 192-bit nonce from crypto/rand for every block write. Random nonces
// let any block be rewritten in place without keeping counters on disk, and at
// 192 bits a collision stays negligible however often a file is rewritten:
// after q block writes under one DEK its probability is at most q²/2¹⁹³.
//
// The associated data of block i is the file ID followed by i as a uint64
// big-endian:
//
//	file ID[16] || block number[8]
//
// so a block moved to another position or copied from another file fails to
// open with [ErrAuth], as does any modified or truncated block. Removing whole
// blocks from the end of a file is not detected: the file reads shorter.
//
// # Key slots
//
// The wrapped DEK is bound to its file, volume, ring key and generation by
// the associated data returned by [SlotAD]:
//
//	"coffer-dek-v1\x00"[14] || volume ID[16] || file ID[16] ||
//	    key ID[4] || generation[8]
//
// The current slot is the non-empty one with the higher generation (see
// [Header.Order]). A re-wrap under a new ring key writes the other slot with a
// higher generation ([Header.NextSlotAfter]), so the slot that holds a working
// key is never overwritten and a crash during a re-wrap leaves a readable
// file.
//
// # Errors and concurrency
//
// Tampered, torn or misplaced data is reported as [ErrAuth]; malformed headers
// and impossible sizes as [ErrCorrupt]; a header of a newer format version as
// a [*VersionError]. A [Cipher] is safe for concurrent use.
package content
