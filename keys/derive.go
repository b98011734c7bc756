package keys

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
)

// DerivedKeySize is the size of a key returned by Ring.DeriveKey.
const DerivedKeySize = 32

// deriveSalt separates keys derived from ring keys from any other use of
// HKDF over the same bytes.
const deriveSalt = "coffer-ring-derive-v1"

// DeriveKey returns a DerivedKeySize-byte key for purpose, derived from ring
// key id with HKDF-SHA256 (salt "coffer-ring-derive-v1", info purpose). The
// same ring key and purpose always give the same key, so a value made with
// the primary key can be checked later for as long as that key stays in the
// ring, whatever its state. Distinct purposes give independent keys; none
// of them can wrap or unwrap data keys. It returns ErrUnknownKey when the
// ring has no key id. The caller clears the result after use.
func (r *Ring) DeriveKey(id uint32, purpose string) ([]byte, error) {
	st := r.state.Load()
	for i := range st.handle.Len() {
		e, err := st.handle.Entry(i)
		if err != nil {
			return nil, fmt.Errorf("failed to read ring key: %w", err)
		}
		if e.KeyID() != id {
			continue
		}
		k, ok := e.Key().(*aesgcm.Key)
		if !ok {
			return nil, fmt.Errorf("failed to derive key: ring key %d is not an AES-GCM key", id)
		}
		secret := k.KeyBytes().Data(insecuresecretdataaccess.Token{})
		defer clear(secret)
		out, err := hkdf.Key(sha256.New, secret, []byte(deriveSalt), purpose, DerivedKeySize)
		if err != nil {
			return nil, fmt.Errorf("failed to derive key from ring key %d: %w", id, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("failed to derive key: %w %d", ErrUnknownKey, id)
}
