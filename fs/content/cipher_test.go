package content

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"
)

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func testCipher(t testing.TB, id FileID) *Cipher {
	t.Helper()
	c, err := NewCipher(seq(0x80, DEKSize), id)
	require.NoError(t, err)
	return c
}

// independentOpen decrypts a sealed block with x/crypto directly and the block
// associated data built from the spec, not through Cipher.
func independentOpen(t testing.TB, key []byte, id FileID, block uint64,
	sealed []byte) ([]byte, error) {
	t.Helper()
	aead, err := chacha20poly1305.NewX(key)
	require.NoError(t, err)
	ad := append(append([]byte(nil), id[:]...), binary.BigEndian.AppendUint64(nil, block)...)
	return aead.Open(nil, sealed[:24], sealed[24:], ad)
}

// TestOpenKnownAnswer checks Open against a vector computed outside Go: a
// Python HChaCha20 written from draft-irtf-cfrg-xchacha-03 (checked against
// its section 2.2.1 and A.3.1 vectors) feeding pyca/cryptography's
// ChaCha20-Poly1305, with key 80..9f, nonce 40..57, file ID a0..af, block
// 0x0102030405060708 and associated data a0..af || 0102030405060708.
func TestOpenKnownAnswer(t *testing.T) {
	sealed, err := hex.DecodeString("404142434445464748494a4b4c4d4e4f5051525354555657" +
		"926315923e82d438977d14b8d69ee5650377405e3674a8dcff8ac33c756535c2" +
		"d7bac048a9433545fd58b4d26c97e3e8")
	require.NoError(t, err)
	var id FileID
	copy(id[:], seq(0xa0, 16))
	c := testCipher(t, id)

	plain, err := c.Open(nil, sealed, 0x0102030405060708)
	require.NoError(t, err)
	assert.Equal(t, "coffer block 0x0102030405060708\n", string(plain))

	indep, err := independentOpen(t, seq(0x80, DEKSize), id, 0x0102030405060708, sealed)
	require.NoError(t, err)
	assert.Equal(t, plain, indep)
}

func TestSealIndependentOpen(t *testing.T) {
	id := FileID{1, 2, 3}
	c := testCipher(t, id)
	tests := []struct {
		name  string
		size  int
		block uint64
	}{
		{name: "one byte", size: 1, block: 0},
		{name: "partial", size: 1000, block: 3},
		{name: "full", size: BlockSize, block: 1 << 40},
		{name: "max block number", size: BlockSize - 1, block: ^uint64(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := seq(7, tt.size)
			prefix := []byte("prefix")
			sealed := c.Seal(append([]byte(nil), prefix...), plain, tt.block)
			require.Len(t, sealed, len(prefix)+tt.size+Overhead)
			assert.Equal(t, prefix, sealed[:len(prefix)])
			sealed = sealed[len(prefix):]

			got, err := independentOpen(t, seq(0x80, DEKSize), id, tt.block, sealed)
			require.NoError(t, err)
			assert.Equal(t, plain, got)

			got, err = c.Open([]byte("x"), sealed, tt.block)
			require.NoError(t, err)
			assert.Equal(t, append([]byte("x"), plain...), got)
		})
	}
}

func TestSealFreshNonce(t *testing.T) {
	c := testCipher(t, FileID{})
	plain := make([]byte, BlockSize)
	a := c.Seal(nil, plain, 0)
	b := c.Seal(nil, plain, 0)
	assert.NotEqual(t, a[:NonceSize], b[:NonceSize])
	assert.NotEqual(t, a, b)
}

func TestSealPanicsOnBadLength(t *testing.T) {
	c := testCipher(t, FileID{})
	for _, n := range []int{0, BlockSize + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			assert.Panics(t, func() { c.Seal(nil, make([]byte, n), 0) })
		})
	}
}

func TestNewCipherKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			_, err := NewCipher(make([]byte, n), FileID{})
			assert.Error(t, err)
		})
	}
}

func TestOpenTamper(t *testing.T) {
	id := FileID{9, 9, 9}
	c := testCipher(t, id)
	other := testCipher(t, FileID{9, 9, 8})
	plain := seq(0, 100)
	sealed := c.Seal(nil, plain, 5)
	full := c.Seal(nil, make([]byte, BlockSize), 5)

	tests := []struct {
		name   string
		cipher *Cipher
		sealed []byte
		block  uint64
	}{
		{name: "other block number", cipher: c, sealed: sealed, block: 6},
		{name: "block 0", cipher: c, sealed: sealed, block: 0},
		{name: "other file ID", cipher: other, sealed: sealed, block: 5},
		{name: "truncated by one", cipher: c, sealed: sealed[:len(sealed)-1], block: 5},
		{name: "tag only", cipher: c, sealed: sealed[:Overhead], block: 5},
		{name: "empty", cipher: c, sealed: nil, block: 5},
		{name: "extended by one", cipher: c, sealed: append(bytes.Clone(sealed), 0), block: 5},
		{name: "full block plus one", cipher: c, sealed: append(bytes.Clone(full), 0), block: 5},
		{name: "all zero block", cipher: c, sealed: make([]byte, CipherBlockSize), block: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cipher.Open(nil, tt.sealed, tt.block)
			assert.ErrorIs(t, err, ErrAuth)
			assert.Contains(t, err.Error(), fmt.Sprintf("block %d", tt.block))
			assert.Nil(t, got)
		})
	}
}

func TestOpenEveryBitFlip(t *testing.T) {
	c := testCipher(t, FileID{1})
	for _, size := range []int{1, 333, BlockSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			sealed := c.Seal(nil, seq(3, size), 77)
			buf := make([]byte, 0, BlockSize)
			for i := range len(sealed) * 8 {
				sealed[i/8] ^= 1 << (i % 8)
				_, err := c.Open(buf, sealed, 77)
				sealed[i/8] ^= 1 << (i % 8)
				if !assert.ErrorIs(t, err, ErrAuth, "bit %d", i) {
					return
				}
			}
			_, err := c.Open(buf, sealed, 77)
			assert.NoError(t, err)
		})
	}
}

func TestCipherConcurrent(t *testing.T) {
	c := testCipher(t, FileID{4})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			plain := bytes.Repeat([]byte{byte(g)}, BlockSize)
			var sealed, opened []byte
			for i := range 200 {
				block := uint64(g*1000 + i)
				sealed = c.Seal(sealed[:0], plain[:1+i%BlockSize], block)
				var err error
				opened, err = c.Open(opened[:0], sealed, block)
				if !assert.NoError(t, err) || !assert.Equal(t, plain[:1+i%BlockSize], opened) {
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCipherAllocations(t *testing.T) {
	if raceEnabled {
		t.Log("allocation counts are not meaningful under the race detector")
		return
	}
	c := testCipher(t, FileID{4})
	plain := make([]byte, BlockSize)
	sealed := make([]byte, 0, CipherBlockSize)
	opened := make([]byte, 0, BlockSize)

	seal := testing.AllocsPerRun(100, func() { sealed = c.Seal(sealed[:0], plain, 1) })
	open := testing.AllocsPerRun(100, func() {
		var err error
		opened, err = c.Open(opened[:0], sealed, 1)
		require.NoError(t, err)
	})
	t.Logf("allocations per call: Seal %v, Open %v", seal, open)

	assert.Zero(t, seal)
	assert.Zero(t, open)
}

func BenchmarkSeal(b *testing.B) {
	c := testCipher(b, FileID{})
	plain := make([]byte, BlockSize)
	sealed := make([]byte, 0, CipherBlockSize)
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sealed = c.Seal(sealed[:0], plain, uint64(i))
	}
}

func BenchmarkOpen(b *testing.B) {
	c := testCipher(b, FileID{})
	sealed := c.Seal(nil, make([]byte, BlockSize), 0)
	opened := make([]byte, 0, BlockSize)
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if opened, err = c.Open(opened[:0], sealed, 0); err != nil {
			b.Fatal(err)
		}
	}
}
