package content

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSizeVectors checks sizes worked out by hand from the format rules:
// backing = 280 + full blocks * 4136 + (partial block ? bytes + 40 : 0).
func TestSizeVectors(t *testing.T) {
	tests := []struct {
		name    string
		cipher  int64
		plain   int64
		torn    bool
		wantErr bool
	}{
		{name: "no header yet", cipher: 0, plain: 0},
		{name: "one byte", cipher: 1, wantErr: true},
		{name: "partial header", cipher: 279, wantErr: true},
		{name: "negative", cipher: -1, wantErr: true},
		{name: "header only", cipher: 280, plain: 0},
		{name: "torn first block, 1 byte", cipher: 281, plain: 0, torn: true},
		{name: "torn first block, 40 bytes", cipher: 320, plain: 0, torn: true},
		{name: "one plaintext byte", cipher: 321, plain: 1},
		{name: "one full block", cipher: 4416, plain: 4096},
		{name: "full block and torn", cipher: 4417, plain: 4096, torn: true},
		{name: "full block and 40 torn", cipher: 4456, plain: 4096, torn: true},
		{name: "full block and one byte", cipher: 4457, plain: 4097},
		{name: "two full blocks", cipher: 8552, plain: 8192},
		{name: "10000 bytes", cipher: 280 + 2*4136 + 1808 + 40, plain: 10000},
		{name: "1 MiB", cipher: 280 + 256*4136, plain: 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, torn, err := PlainSize(tt.cipher)
			if tt.wantErr {
				assert.ErrorIs(t, err, ErrCorrupt)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.plain, plain)
			assert.Equal(t, tt.torn, torn)
			if !torn && tt.cipher != 0 {
				assert.Equal(t, tt.cipher, CipherSize(plain))
			}
		})
	}
}

// TestSizeInverse checks that CipherSize and PlainSize are inverses for every
// size within a few blocks of each of many block boundaries, including the
// largest.
func TestSizeInverse(t *testing.T) {
	boundaries := []int64{0, 1, 2, 3, 7, 255, 256, 4095, 1 << 20, 1 << 32, 1 << 40,
		MaxPlainSize/BlockSize - 2}
	for _, k := range boundaries {
		t.Run(fmt.Sprintf("block %d", k), func(t *testing.T) {
			checkInverse(t, k*BlockSize-2*BlockSize, k*BlockSize+2*BlockSize)
		})
	}
}

// checkInverse checks the inverse property for plaintext sizes in [lo, hi]
// and for every backing size between their images.
func checkInverse(t *testing.T, lo, hi int64) {
	lo, hi = max(lo, 0), min(hi, MaxPlainSize)
	for p := lo; p <= hi; p++ {
		c := CipherSize(p)
		got, torn, err := PlainSize(c)
		if !assert.NoError(t, err) || !assert.False(t, torn) || !assert.Equal(t, p, got) {
			return
		}
	}

	prev := int64(-1)
	for c := max(CipherSize(lo), HeaderSize); c <= CipherSize(hi); c++ {
		p, torn, err := PlainSize(c)
		require.NoError(t, err)
		require.GreaterOrEqual(t, p, prev, "plaintext size must not shrink as the backing grows")
		prev = p
		if torn {
			continue
		}
		if !assert.Equal(t, c, CipherSize(p), "backing size %d", c) {
			return
		}
	}
}

func TestTornTailOnlyAfterBlockBoundary(t *testing.T) {
	for c := int64(HeaderSize); c < HeaderSize+3*CipherBlockSize; c++ {
		_, torn, err := PlainSize(c)
		require.NoError(t, err)
		rem := (c - HeaderSize) % CipherBlockSize
		assert.Equal(t, rem >= 1 && rem <= Overhead, torn, "backing size %d", c)
	}
}

func TestMaxPlainSize(t *testing.T) {
	c := CipherSize(MaxPlainSize)
	assert.Positive(t, c)
	assert.LessOrEqual(t, c, int64(math.MaxInt64))
	assert.Less(t, int64(math.MaxInt64)-c, int64(CipherBlockSize), "one more block must not fit")

	assert.Panics(t, func() { CipherSize(MaxPlainSize + 1) })
	assert.Panics(t, func() { CipherSize(-1) })

	p, _, err := PlainSize(math.MaxInt64)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, p, int64(MaxPlainSize))
}

func TestBlockOffset(t *testing.T) {
	tests := []struct {
		name  string
		block uint64
		want  int64
	}{
		{name: "first", block: 0, want: 280},
		{name: "second", block: 1, want: 4416},
		{name: "third", block: 2, want: 8552},
		{name: "block 256", block: 256, want: 280 + 256*4136},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, BlockOffset(tt.block))
		})
	}
}
