//go:build cgo && unix

package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Sealed ring layout, version 1:
//
//	+---------+-------------+--------------------------------+
//	| version | IV          | AES-256-GCM ciphertext and tag |
//	| 1 byte  | 12 bytes    | len(plaintext) + 16 bytes      |
//	+---------+-------------+--------------------------------+
//
// The token computes the ciphertext with CKM_AES_GCM under the master key,
// the IV (drawn by coffer from crypto/rand) and the associated data coffer
// passes; the key never leaves the token.
const (
	sealVersion = 1
	ivSize      = 12
	tagSize     = 16
)

// Master is a PKCS#11 master key: an AES-256 secret key inside a token,
// used through one logged-in session. It is safe for concurrent use; Wipe
// closes the session.
type Master struct {
	mu  sync.Mutex
	s   *session // nil after Wipe
	key p11.ObjectHandle
}

var _ keys.Master = (*Master)(nil)

// Open logs in to the token the URI names and finds its master key.
func Open(ctx context.Context, uri string, opts masterkey.Options) (*Master, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	s, err := openSession(ctx, u, opts, false)
	if err != nil {
		return nil, err
	}
	key, err := s.findKey()
	if err != nil {
		s.close()
		return nil, err
	}
	return &Master{s: s, key: key}, nil
}

// Create generates a new master key in the token the URI names.
func Create(ctx context.Context, uri string, opts masterkey.Options) error {
	u, err := ParseURI(uri)
	if err != nil {
		return err
	}
	s, err := openSession(ctx, u, opts, true)
	if err != nil {
		return err
	}
	defer s.close()
	return s.createKey()
}

// Wipe logs out and closes the session. The Master is unusable afterwards.
func (m *Master) Wipe() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.s != nil {
		m.s.close()
		m.s = nil
	}
}

// errClosed reports use after Wipe.
var errClosed = errors.New("PKCS#11 master key is closed")

// Seal encrypts plaintext inside the token, bound to associatedData.
func (m *Master) Seal(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.s == nil {
		return nil, errClosed
	}

	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("failed to draw an IV: %w", err)
	}
	params := p11.NewGCMParams(iv, associatedData, tagSize*8)
	defer params.Free()
	ctx := m.s.mod.ctx
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}
	if err := ctx.EncryptInit(m.s.sh, mech, m.key); err != nil {
		return nil, fmt.Errorf("failed to seal with token %q: %w", m.s.u.Token, err)
	}
	ct, err := ctx.Encrypt(m.s.sh, plaintext)
	if err != nil {
		return nil, fmt.Errorf("failed to seal with token %q: %w", m.s.u.Token, err)
	}
	if len(ct) != len(plaintext)+tagSize {
		return nil, fmt.Errorf("failed to seal with token %q: it returned %d bytes for %d",
			m.s.u.Token, len(ct), len(plaintext))
	}
	// Some modules replace the caller's IV with their own: record the one
	// the token used.
	if used := params.IV(); len(used) == ivSize {
		iv = used
	}

	out := make([]byte, 0, 1+ivSize+len(ct))
	out = append(out, sealVersion)
	out = append(out, iv...)
	return append(out, ct...), nil
}

// Unseal decrypts sealed inside the token. A sealed copy that is altered,
// bound to other associated data or sealed by another key gives an error
// wrapping keys.ErrWrongKey.
func (m *Master) Unseal(_ context.Context, sealed, associatedData []byte) ([]byte, error) {
	switch {
	case len(sealed) == 0:
		return nil, fmt.Errorf("%w: sealed ring is empty", keys.ErrWrongKey)
	case sealed[0] > sealVersion:
		return nil, fmt.Errorf("%w: PKCS#11 sealed ring version %d", keys.ErrUnsupportedVersion,
			sealed[0])
	case sealed[0] != sealVersion || len(sealed) < 1+ivSize+tagSize:
		return nil, fmt.Errorf("%w: sealed ring is malformed", keys.ErrWrongKey)
	}
	iv, ct := sealed[1:1+ivSize], sealed[1+ivSize:]

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.s == nil {
		return nil, errClosed
	}
	params := p11.NewGCMParams(append([]byte(nil), iv...), associatedData, tagSize*8)
	defer params.Free()
	ctx := m.s.mod.ctx
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}
	if err := ctx.DecryptInit(m.s.sh, mech, m.key); err != nil {
		return nil, fmt.Errorf("failed to unseal with token %q: %w", m.s.u.Token, err)
	}
	pt, err := ctx.Decrypt(m.s.sh, ct)
	if authFailed(err) {
		return nil, fmt.Errorf("%w: key %q on token %q did not authenticate the sealed ring (%w)",
			keys.ErrWrongKey, m.s.u.Object, m.s.u.Token, err)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to unseal with token %q: %w", m.s.u.Token, err)
	}
	return pt, nil
}

// authFailed reports whether err, from C_Decrypt after a successful
// C_DecryptInit, is a failed GCM tag check. The standard says
// CKR_ENCRYPTED_DATA_INVALID; SoftHSM 2.6 answers CKR_GENERAL_ERROR, and
// other modules CKR_FUNCTION_FAILED. With the session and key checked by
// the init, the input is the only thing left to fail.
func authFailed(err error) bool {
	for _, rv := range []uint{p11.CKR_ENCRYPTED_DATA_INVALID, p11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		p11.CKR_GENERAL_ERROR, p11.CKR_FUNCTION_FAILED} {
		if isRV(err, rv) {
			return true
		}
	}
	return false
}
