package keys

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"

	"github.com/rs/zerolog"
)

const redacted = "[REDACTED]"

// Secret holds key material: a master key, a passphrase, a key derived from
// either. Its bytes sit on whole memory pages of their own, locked against
// swapping (mlock) and excluded from core dumps where the OS allows it;
// Locked reports whether the lock succeeded. The bytes are reached only
// through InsecureBytes, and String, fmt verbs, JSON and zerolog output all
// print a redaction marker instead.
//
// Wipe zeroes the bytes and unlocks the pages. Call it as soon as the
// secret is no longer needed: a Secret dropped without Wipe is not zeroed
// (its pages stay locked and out of core dumps until the process exits).
// The memory is ordinary Go memory, so a slice from InsecureBytes stays
// valid for as long as it is referenced, even after the Secret itself is
// unreachable. A Secret is not safe for use by several goroutines while one
// of them calls Wipe. The zero value and nil are empty secrets.
type Secret struct {
	_      noCopy
	b      []byte // the secret, a prefix of pages
	pages  []byte // whole pages holding b, nil when not page-backed
	locked bool
}

// NewSecret returns a zeroed Secret of n bytes for the caller to fill through
// InsecureBytes. It panics if n is negative.
func NewSecret(n int) *Secret {
	if n < 0 {
		panic("keys: negative secret length")
	}
	s := &Secret{}
	s.pages, s.locked = allocPages(n)
	if s.pages == nil {
		s.b = make([]byte, n)
		return s
	}
	s.b = s.pages[:n:n]
	return s
}

// SecretFromBytes copies b into a new Secret and zeroes b, so that the only
// remaining copy is the protected one.
func SecretFromBytes(b []byte) *Secret {
	s := NewSecret(len(b))
	copy(s.b, b)
	clear(b)
	return s
}

// RandomSecret returns a Secret of n bytes from crypto/rand.
func RandomSecret(n int) (*Secret, error) {
	s := NewSecret(n)
	if _, err := rand.Read(s.b); err != nil {
		s.Wipe()
		return nil, fmt.Errorf("failed to read random bytes: %w", err)
	}
	return s, nil
}

// InsecureBytes returns the secret bytes themselves, not a copy. The caller
// must not keep them after Wipe and must not log or print them.
func (s *Secret) InsecureBytes() []byte {
	if s == nil {
		return nil
	}
	return s.b
}

// Len returns the length of the secret in bytes.
func (s *Secret) Len() int {
	if s == nil {
		return 0
	}
	return len(s.b)
}

// Locked reports whether the secret's memory is locked against swapping. It
// is false when mlock failed (for example RLIMIT_MEMLOCK is too low) or the
// platform does not support it; the Secret works either way.
func (s *Secret) Locked() bool {
	return s != nil && s.locked
}

// Equal reports in constant time whether s and o hold the same bytes.
func (s *Secret) Equal(o *Secret) bool {
	return subtle.ConstantTimeCompare(s.InsecureBytes(), o.InsecureBytes()) == 1 &&
		s.Len() == o.Len()
}

// Wipe zeroes the secret and unlocks its pages. It is idempotent; after
// Wipe the Secret is empty.
func (s *Secret) Wipe() {
	if s == nil {
		return
	}
	clear(s.b)
	if s.pages != nil {
		releasePages(s.pages, s.locked)
	}
	s.b, s.pages, s.locked = nil, nil, false
}

// String returns a redaction marker, never the secret.
func (s *Secret) String() string { return redacted }

// GoString returns a redaction marker, never the secret.
func (s *Secret) GoString() string { return redacted }

// Format prints a redaction marker for every verb, so that %x or %d cannot
// reveal the secret either.
func (s *Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON encodes the redaction marker as a JSON string.
func (s *Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns the redaction marker.
func (s *Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalZerologObject logs only that a secret was present.
func (s *Secret) MarshalZerologObject(e *zerolog.Event) { e.Bool("redacted", true) }

// noCopy makes go vet's copylocks check report copies of a Secret, which
// would escape Wipe.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

var (
	_ fmt.Stringer               = (*Secret)(nil)
	_ fmt.Formatter              = (*Secret)(nil)
	_ zerolog.LogObjectMarshaler = (*Secret)(nil)
)
