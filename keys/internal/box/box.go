// Package box is the sealing step shared by master keys that derive a
// 32-byte key locally (key file, passphrase): XChaCha20-Poly1305 with a
// random nonce. A sealed box is laid out as
//
//	offset size  field
//	0      24    random nonce
//	24     n     ciphertext of the n-byte plaintext
//	24+n   16    Poly1305 tag
package box

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cofferfs/coffer/keys"
)

// Sizes of the key and of a sealed box's overhead.
const (
	KeySize   = chacha20poly1305.KeySize
	NonceSize = chacha20poly1305.NonceSizeX
	Overhead  = NonceSize + chacha20poly1305.Overhead
)

var errWiped = errors.New("master key was wiped")

// Master is a keys.Master that seals with a 32-byte key in memory. It is
// safe for concurrent use, except with Wipe.
type Master struct {
	key *keys.Secret
}

var _ keys.Master = (*Master)(nil)

// New returns a Master that takes ownership of key, which must be KeySize
// bytes; Wipe wipes it.
func New(key *keys.Secret) (*Master, error) {
	if key.Len() != KeySize {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", KeySize, key.Len())
	}
	return &Master{key: key}, nil
}

// Seal returns nonce || ciphertext || tag of plaintext bound to
// associatedData.
func (m *Master) Seal(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if m.key.Len() != KeySize {
		return nil, errWiped
	}
	a, err := chacha20poly1305.NewX(m.key.InsecureBytes())
	if err != nil {
		return nil, fmt.Errorf("failed to create cipher: %w", err)
	}
	out := make([]byte, NonceSize, Overhead+len(plaintext))
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("failed to read random nonce: %w", err)
	}
	return a.Seal(out, out, plaintext, associatedData), nil
}

// Unseal opens a box from Seal. It returns an error wrapping
// keys.ErrWrongKey when authentication fails or the box is too short.
func (m *Master) Unseal(_ context.Context, sealed, associatedData []byte) ([]byte, error) {
	if m.key.Len() != KeySize {
		return nil, errWiped
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: sealed ring is %d bytes, shorter than %d",
			keys.ErrWrongKey, len(sealed), Overhead)
	}
	a, err := chacha20poly1305.NewX(m.key.InsecureBytes())
	if err != nil {
		return nil, fmt.Errorf("failed to create cipher: %w", err)
	}
	pt, err := a.Open(nil, sealed[:NonceSize], sealed[NonceSize:], associatedData)
	if err != nil {
		return nil, keys.ErrWrongKey
	}
	return pt, nil
}

// Wipe wipes the key. The Master fails to seal and unseal afterwards.
func (m *Master) Wipe() { m.key.Wipe() }
