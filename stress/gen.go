//go:build linux

package stress

import (
	"math/rand/v2"
)

// BlockSize is the block size of the file system under test: offsets and
// lengths are drawn to cross its multiples often.
const BlockSize = 4096

// MaxWrite is the largest write the generator draws: 300 KiB, more than a
// FUSE request of the default 128 KiB and many blocks.
const MaxWrite = 300 << 10

// weights is how often each kind is drawn, out of their sum.
var weights = [numKinds]int{
	Write: 30, Append: 8, Truncate: 8, Allocate: 3, Read: 20,
	MmapRead: 5, MmapWrite: 6, Fsync: 6, Reopen: 3, Rename: 2,
}

// generator draws a seeded sequence of operations.
type generator struct {
	r       *rand.Rand
	files   int
	maxSize int64
}

func newGenerator(seed uint64, files int, maxSize int64) *generator {
	return &generator{r: rand.New(rand.NewPCG(seed, seed^0x5eed)), files: files, maxSize: maxSize}
}

// next draws an operation on one of the files; size returns a file's
// current size.
func (g *generator) next(size func(file int) int64) Op {
	o := Op{Kind: g.kind(), File: g.r.IntN(g.files), Seed: g.r.Uint64()}
	cur := size(o.File)
	switch o.Kind {
	case Write:
		o.Len = g.length()
		o.Off = g.writeOffset(cur, o.Len)
	case Append:
		o.Len = min(g.length(), max(1, g.maxSize-cur))
	case Truncate:
		o.Off = g.newSize(cur)
		o.Arg = g.r.IntN(2)
	case Allocate:
		o.Len = g.length()
		o.Off = g.writeOffset(cur, o.Len)
	case Read, MmapRead, MmapWrite:
		o.Len = g.length()
		o.Off = g.offset(cur + BlockSize)
		o.Arg = g.r.IntN(2)
	case Fsync, Rename:
		o.Arg = g.r.IntN(2)
	}
	return o
}

func (g *generator) kind() Kind {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := g.r.IntN(total)
	for k, w := range weights {
		if n < w {
			return Kind(k)
		}
		n -= w
	}
	panic("stress: weights do not add up")
}

// length draws a byte count from 1 to MaxWrite: mostly a few bytes or about
// a block, sometimes tens or hundreds of KiB.
func (g *generator) length() int64 {
	switch p := g.r.IntN(100); {
	case p < 35:
		return 1 + g.r.Int64N(64)
	case p < 60:
		return BlockSize - 128 + g.r.Int64N(257)
	case p < 90:
		return 1 + g.r.Int64N(64<<10)
	default:
		return 1 + g.r.Int64N(MaxWrite)
	}
}

// offset draws an offset below limit, half of the time within 64 bytes of a
// block boundary.
func (g *generator) offset(limit int64) int64 {
	limit = max(limit, 1)
	off := g.r.Int64N(limit)
	if g.r.IntN(2) == 0 {
		off = off/BlockSize*BlockSize + g.r.Int64N(129) - 64
	}
	return min(max(off, 0), limit-1)
}

// writeOffset draws where a write of n bytes goes: inside the file, at its
// end, or past it (leaving a gap that must read as zeros).
func (g *generator) writeOffset(cur, n int64) int64 {
	var off int64
	switch p := g.r.IntN(100); {
	case p < 65:
		off = g.offset(cur + 1)
	case p < 75:
		off = cur
	case p < 90:
		off = cur + 1 + g.r.Int64N(3*BlockSize)
	default:
		off = g.offset(g.maxSize)
	}
	return max(0, min(off, g.maxSize-n))
}

// newSize draws a truncation target: down, up by a little or a lot, to a
// block boundary, or to zero.
func (g *generator) newSize(cur int64) int64 {
	switch p := g.r.IntN(100); {
	case p < 35:
		return g.offset(cur + 1)
	case p < 65:
		return min(g.maxSize, cur+1+g.r.Int64N(2*BlockSize))
	case p < 80:
		return g.r.Int64N(g.maxSize) / BlockSize * BlockSize
	case p < 90:
		return g.offset(g.maxSize)
	default:
		return 0
	}
}
