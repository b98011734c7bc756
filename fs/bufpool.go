//go:build linux

package fs

import (
	"math/bits"
	"sync"
)

// Buffer pools for the data path. Reads and writes need a ciphertext buffer
// of up to one request (1 MiB plus overhead) and a plaintext buffer; pooling
// them by power-of-two size class keeps the hot path free of allocations.
const (
	minBufShift = 12 // 4 KiB
	maxBufShift = 22 // 4 MiB; larger buffers are not pooled
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

// getBuf returns a buffer of length n from the pools. Release it with putBuf.
func getBuf(n int) *[]byte {
	class := bufClass(n)
	if class < 0 {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bufPools[class].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(class+minBufShift))
	return &b
}

// putBuf returns a buffer obtained from getBuf to its pool.
func putBuf(p *[]byte) {
	c := cap(*p)
	class := bufClass(c)
	if class < 0 || c != 1<<(class+minBufShift) {
		return
	}
	bufPools[class].Put(p)
}

// bufClass returns the pool index for a buffer of n bytes, or -1 if n is too
// large to pool.
func bufClass(n int) int {
	shift := minBufShift
	if n > 1<<minBufShift {
		shift = bits.Len(uint(n - 1))
	}
	if shift > maxBufShift {
		return -1
	}
	return shift - minBufShift
}
