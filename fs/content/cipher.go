package content

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// Cipher seals and opens the blocks of one file with its DEK. A Cipher is
// safe for concurrent use.
type Cipher struct {
	aead cipher.AEAD
	id   FileID
}

// NewCipher returns a Cipher for the file id with the data encryption key dek,
// which must be DEKSize bytes. The key is copied.
func NewCipher(dek []byte, id FileID) (*Cipher, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("failed to create block cipher: key is %d bytes, want %d",
			len(dek), DEKSize)
	}
	aead, err := chacha20poly1305.NewX(dek)
	if err != nil {
		return nil, fmt.Errorf("failed to create block cipher: %w", err)
	}
	return &Cipher{aead: aead, id: id}, nil
}

// Seal encrypts plain as block number block, appends nonce|ciphertext|tag to
// dst and returns the extended slice. plain must be 1 to BlockSize bytes and
// must not overlap dst's spare capacity. Each call draws a fresh random nonce.
func (c *Cipher) Seal(dst, plain []byte, block uint64) []byte {
	if len(plain) == 0 || len(plain) > BlockSize {
		panic(fmt.Sprintf("content: Seal of %d bytes, want 1 to %d", len(plain), BlockSize))
	}

	ret, out := grow(dst, len(plain)+Overhead)
	nonce := out[:NonceSize]
	// crypto/rand.Read never returns an error since Go 1.24.
	_, _ = rand.Read(nonce)

	ad := c.blockAD(block)
	c.aead.Seal(out[NonceSize:NonceSize], nonce, plain, ad[:])
	adPool.Put(ad)
	return ret
}

// Open authenticates and decrypts sealed, the on-disk bytes of block number
// block, appends the plaintext to dst and returns the extended slice. Any
// failure, including a length no block can have, is ErrAuth.
func (c *Cipher) Open(dst, sealed []byte, block uint64) ([]byte, error) {
	if len(sealed) <= Overhead || len(sealed) > CipherBlockSize {
		return nil, fmt.Errorf("failed to open block %d: %d bytes: %w", block, len(sealed), ErrAuth)
	}

	ad := c.blockAD(block)
	out, err := c.aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], ad[:])
	adPool.Put(ad)
	if err != nil {
		return nil, fmt.Errorf("failed to open block %d: %w", block, ErrAuth)
	}
	return out, nil
}

// adPool recycles associated data buffers. A stack array would do, but it
// escapes through the cipher.AEAD interface and would cost an allocation per
// block.
var adPool = sync.Pool{New: func() any { return new([blockADLen]byte) }}

// blockAD returns the associated data of a block, file ID || block number
// (uint64 big-endian), in a buffer from adPool.
func (c *Cipher) blockAD(block uint64) *[blockADLen]byte {
	ad := adPool.Get().(*[blockADLen]byte)
	copy(ad[:16], c.id[:])
	binary.BigEndian.PutUint64(ad[16:], block)
	return ad
}

// grow appends n bytes of room to b and returns the whole slice and the
// appended part.
func grow(b []byte, n int) (whole, tail []byte) {
	whole = slices.Grow(b, n)[:len(b)+n]
	return whole, whole[len(b):]
}

// FileID returns the ID of the file whose blocks c seals.
func (c *Cipher) FileID() FileID {
	return c.id
}
