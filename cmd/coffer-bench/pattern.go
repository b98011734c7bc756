//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// Geometry of the data files.
const (
	patternBlock = 4096
	poolBlocks   = 257 // prime: the pool's period matches no power-of-two boundary
	stampSize    = 16  // block number and file salt at the start of each block
)

// pattern is the content of one data file. Block b is a 4 KiB slice of a
// random pool, chosen by b, whose first 16 bytes are replaced by b and the
// file's salt. A block read back from the wrong offset, from another file or
// from a stale version is caught, and making and checking the data costs a
// memory copy or compare, not a hash.
type pattern struct {
	pool []byte
	salt uint64
}

// newPattern returns the pattern of one file; seed makes the pool and salt
// tells files apart.
func newPattern(seed [32]byte, salt uint64) *pattern {
	pool := make([]byte, poolBlocks*patternBlock)
	r := rand.NewChaCha8(seed)
	_, _ = r.Read(pool)
	return &pattern{pool: pool, salt: salt}
}

// poolBlock returns the pool slice that block b is made of.
func (p *pattern) poolBlock(b uint64) []byte {
	i := b % poolBlocks * patternBlock
	return p.pool[i : i+patternBlock]
}

// stamp writes the block's stamp into dst.
func (p *pattern) stamp(dst []byte, b uint64) {
	binary.LittleEndian.PutUint64(dst[0:8], b)
	binary.LittleEndian.PutUint64(dst[8:16], p.salt)
}

// fill writes the content of the blocks starting at block first into buf,
// whose length is a multiple of patternBlock.
func (p *pattern) fill(buf []byte, first uint64) {
	for off := 0; off < len(buf); off += patternBlock {
		b := first + uint64(off/patternBlock)
		copy(buf[off:off+patternBlock], p.poolBlock(b))
		p.stamp(buf[off:], b)
	}
}

// check compares buf, read from block first on, with the pattern. The
// returned error is a *wrongDataError naming the first wrong byte.
func (p *pattern) check(buf []byte, first uint64) error {
	if len(buf)%patternBlock != 0 {
		return &wrongDataError{what: fmt.Sprintf("read of %d bytes at block %d: not whole blocks", len(buf), first)}
	}
	var want [stampSize]byte
	for off := 0; off < len(buf); off += patternBlock {
		b := first + uint64(off/patternBlock)
		got := buf[off : off+patternBlock]
		p.stamp(want[:], b)
		if !bytes.Equal(got[:stampSize], want[:]) || !bytes.Equal(got[stampSize:], p.poolBlock(b)[stampSize:]) {
			return &wrongDataError{what: fmt.Sprintf("block %d (offset %d) differs from what was written",
				b, b*patternBlock)}
		}
	}
	return nil
}

// wrongDataError reports that a file system returned bytes other than those
// written: the benchmark's correctness failure.
type wrongDataError struct {
	what string
}

func (e *wrongDataError) Error() string {
	return "wrong data: " + e.what
}
