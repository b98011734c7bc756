package names

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/tink-crypto/tink-go/v2/daead/subtle"
)

// UserPrefix is the extended attribute namespace that is encrypted.
const UserPrefix = "user."

const (
	xattrNameInfo  = "coffer xattr name v1"
	xattrValueInfo = "coffer xattr value v1"
	xattrNameAD    = "coffer-xattr-name-v1"
	maxXattrName   = 255
	gcmNonce       = 12
)

// XattrKey encrypts the names and values of user.* extended attributes. It
// is derived from the root directory's name secret, so one key serves the
// whole volume.
type XattrKey struct {
	siv *subtle.AESSIV
	gcm cipher.AEAD
}

// NewXattrKey returns the attribute key for the root's name secret.
func NewXattrKey(secret []byte) (*XattrKey, error) {
	nk, err := hkdf.Key(sha256.New, secret, nil, xattrNameInfo, subtle.AESSIVKeySize)
	if err != nil {
		return nil, fmt.Errorf("failed to derive attribute key: %w", err)
	}
	defer clear(nk)
	vk, err := hkdf.Key(sha256.New, secret, nil, xattrValueInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("failed to derive attribute key: %w", err)
	}
	defer clear(vk)

	siv, err := subtle.NewAESSIV(nk)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(vk)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &XattrKey{siv: siv, gcm: gcm}, nil
}

// Encrypted reports whether attribute name is in the encrypted namespace.
func Encrypted(name string) bool {
	return strings.HasPrefix(name, UserPrefix)
}

// EncryptName returns the backing name of the user attribute name:
// "user." followed by base64url of its AES-SIV ciphertext. It fails with
// ErrName if the result would exceed 255 bytes.
func (k *XattrKey) EncryptName(name string) (string, error) {
	rest := strings.TrimPrefix(name, UserPrefix)
	ct, err := k.siv.EncryptDeterministically([]byte(rest), []byte(xattrNameAD))
	if err != nil {
		return "", err
	}
	s := UserPrefix + enc.EncodeToString(ct)
	if len(s) > maxXattrName {
		return "", fmt.Errorf("attribute name of %d bytes is too long: %w", len(name), ErrName)
	}
	return s, nil
}

// DecryptName returns the plaintext of a backing user attribute name.
func (k *XattrKey) DecryptName(backing string) (string, error) {
	rest, ok := strings.CutPrefix(backing, UserPrefix)
	ct, err := enc.DecodeString(rest)
	if !ok || err != nil || enc.EncodeToString(ct) != rest {
		return "", fmt.Errorf("not an encrypted attribute name: %w", ErrName)
	}
	pt, err := k.siv.DecryptDeterministically(ct, []byte(xattrNameAD))
	if err != nil {
		return "", fmt.Errorf("failed to authenticate attribute name: %w", ErrName)
	}
	return UserPrefix + string(pt), nil
}

// SealValue encrypts an attribute value stored under the backing attribute
// name: random nonce || AES-256-GCM ciphertext and tag, with the backing
// name as associated data.
func (k *XattrKey) SealValue(backingName string, value []byte) []byte {
	out := make([]byte, gcmNonce, gcmNonce+len(value)+k.gcm.Overhead())
	_, _ = rand.Read(out)
	return k.gcm.Seal(out, out[:gcmNonce], value, []byte(backingName))
}

// OpenValue decrypts a value sealed by SealValue.
func (k *XattrKey) OpenValue(backingName string, sealed []byte) ([]byte, error) {
	if len(sealed) < gcmNonce+k.gcm.Overhead() {
		return nil, fmt.Errorf("attribute value too short: %w", ErrName)
	}
	pt, err := k.gcm.Open(nil, sealed[:gcmNonce], sealed[gcmNonce:], []byte(backingName))
	if err != nil {
		return nil, fmt.Errorf("failed to authenticate attribute value: %w", ErrName)
	}
	return pt, nil
}

// ValueOverhead is what SealValue adds to a value's size.
const ValueOverhead = gcmNonce + 16
