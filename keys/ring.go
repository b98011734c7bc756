package keys

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Sizes of a wrapped key. Wrap output is Tink's AES-GCM ciphertext with the
// TINK output prefix:
//
//	offset size  field
//	0      1     0x01 (TINK prefix tag)
//	1      4     ring key ID, uint32 big-endian
//	5      12    random nonce
//	17     n     AES-256-GCM ciphertext of the n-byte key
//	17+n   16    GCM tag
//
// A 32-byte DEK wraps to 65 bytes.
const (
	WrapPrefixSize = 5
	WrapOverhead   = WrapPrefixSize + 12 + 16
)

const tinkPrefixTag = 0x01

// KeyState is the life-cycle state of a ring key.
type KeyState string

// Ring key states. Exactly one key is primary and wraps new data keys;
// active and retired keys only unwrap. A retired key is waiting for a scan
// to prove that no file header still uses it before it is purged.
const (
	StatePrimary KeyState = "primary"
	StateActive  KeyState = "active"
	StateRetired KeyState = "retired"
)

func (s KeyState) valid() bool {
	return s == StatePrimary || s == StateActive || s == StateRetired
}

// KeyInfo describes one ring key without its secret.
type KeyInfo struct {
	ID      uint32    `json:"id"`
	Created time.Time `json:"created"`
	State   KeyState  `json:"state"`
}

// Ring is the volume's key ring: a Tink keyset of AES-256-GCM key-wrapping
// keys with their public metadata. The primary key wraps new data keys; every
// key in the ring unwraps. Wrap, Unwrap, Keys and Generation are safe for
// concurrent use with each other and with the rotation methods, which replace
// the ring's state atomically.
type Ring struct {
	mu    sync.Mutex // serialises rotation changes
	state atomic.Pointer[ringState]

	// names is the volume's names mode as the sealed ring payload states
	// it (NamesEncrypted or NamesPlaintext), or "" for a payload written
	// before the field existed. It never changes and is sealed with the
	// ring, so that the mode cannot be changed by editing volume.json.
	names string
}

// Names returns the names mode sealed with the ring: NamesEncrypted,
// NamesPlaintext, or "" when the ring came from a payload older than the
// field and the config's mode has not been bound to it (see Unlock).
func (r *Ring) Names() string {
	return r.names
}

// ringState is an immutable snapshot of the ring.
type ringState struct {
	handle     *keyset.Handle
	aead       tink.AEAD
	keys       []KeyInfo
	generation uint64
	// base is the primary key of the ring as it was read from its sealed
	// copy (or made by NewRing); the rotation methods keep it. Entry tags
	// under it are accepted besides the primary's (see VerifyEntry): they
	// were written by the commit that sealed that copy.
	base uint32
	// rotating is the target of the rotation in progress as the sealed
	// payload records it, 0 for none (see SetRotating).
	rotating uint32
	// entries is the listing the sealed payload holds: for each master
	// entry of the config the last rotation commit wrote, the SHA-256 of
	// its canonical encoding (entryDigest). nil for a ring read from a
	// payload older than the field, or made by NewRing. See CheckEntry.
	entries map[string][sha256.Size]byte
}

// NewRing returns a ring of generation 1 holding one fresh primary key.
func NewRing() (*Ring, error) {
	m := keyset.NewManager()
	id, err := addKey(m)
	if err != nil {
		return nil, err
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, fmt.Errorf("failed to set primary ring key: %w", err)
	}
	h, err := m.Handle()
	if err != nil {
		return nil, fmt.Errorf("failed to build ring keyset: %w", err)
	}

	info := []KeyInfo{{ID: id, Created: now(), State: StatePrimary}}
	st, err := newRingState(h, info, 1)
	if err != nil {
		return nil, err
	}
	st.base = id
	r := &Ring{}
	r.state.Store(st)
	return r, nil
}

func newRingState(h *keyset.Handle, info []KeyInfo, gen uint64) (*ringState, error) {
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("failed to create ring primitive: %w", err)
	}
	return &ringState{handle: h, aead: a, keys: info, generation: gen}, nil
}

// addKey adds a fresh AES-256-GCM key and returns its ID. ID 0 marks an empty
// slot in file headers, so a key that draws it is dropped and redrawn.
func addKey(m *keyset.Manager) (uint32, error) {
	for {
		id, err := m.Add(aead.AES256GCMKeyTemplate())
		if err != nil {
			return 0, fmt.Errorf("failed to generate ring key: %w", err)
		}
		if id != 0 {
			return id, nil
		}
		if err := m.Delete(id); err != nil {
			return 0, fmt.Errorf("failed to drop ring key 0: %w", err)
		}
	}
}

// Wrap encrypts dek with the primary key, binding it to the associated data
// that ad returns for that key's ID. ad is called exactly once, and the
// primary key and the encryption come from one snapshot of the ring, so a
// concurrent rotation cannot make the bound ID and the wrapping key differ.
// It returns the primary key's ID and the wrapped key (len(dek)+WrapOverhead
// bytes, layout above).
func (r *Ring) Wrap(dek []byte, ad func(keyID uint32) []byte) (keyID uint32, wrapped []byte, err error) {
	st := r.state.Load()
	keyID = st.handle.KeysetInfo().GetPrimaryKeyId()
	wrapped, err = st.aead.Encrypt(dek, ad(keyID))
	if err != nil {
		return 0, nil, fmt.Errorf("failed to wrap data key: %w", err)
	}
	if got := binary.BigEndian.Uint32(wrapped[1:WrapPrefixSize]); got != keyID {
		return 0, nil, fmt.Errorf("failed to wrap data key: primary %d wrapped as %d", keyID, got)
	}
	return keyID, wrapped, nil
}

// Unwrap decrypts a key wrapped by ring key keyID with associatedData. It
// returns ErrAuth when the prefix of wrapped does not name keyID or
// authentication fails, and ErrUnknownKey when the ring has no key keyID.
func (r *Ring) Unwrap(keyID uint32, wrapped, associatedData []byte) ([]byte, error) {
	if len(wrapped) < WrapOverhead || wrapped[0] != tinkPrefixTag ||
		binary.BigEndian.Uint32(wrapped[1:WrapPrefixSize]) != keyID {
		return nil, fmt.Errorf("failed to unwrap data key: %w: prefix does not name ring key %d",
			ErrAuth, keyID)
	}

	st := r.state.Load()
	if !slices.ContainsFunc(st.keys, func(k KeyInfo) bool { return k.ID == keyID }) {
		return nil, fmt.Errorf("failed to unwrap data key: %w %d", ErrUnknownKey, keyID)
	}
	dek, err := st.aead.Decrypt(wrapped, associatedData)
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap data key with ring key %d: %w", keyID, ErrAuth)
	}
	return dek, nil
}

// Keys returns the metadata of every ring key, in keyset order.
func (r *Ring) Keys() []KeyInfo {
	return slices.Clone(r.state.Load().keys)
}

// Primary returns the metadata of the primary key.
func (r *Ring) Primary() KeyInfo {
	for _, k := range r.state.Load().keys {
		if k.State == StatePrimary {
			return k
		}
	}
	panic("keys: ring without primary key") // every constructor checks for one
}

// Generation returns the ring's generation, which every change increments.
func (r *Ring) Generation() uint64 {
	return r.state.Load().generation
}

// AddKey adds a fresh active key, which unwraps but does not wrap until
// SetPrimary promotes it.
func (r *Ring) AddKey() (KeyInfo, error) {
	var added KeyInfo
	err := r.change(func(m *keyset.Manager, info []KeyInfo) ([]KeyInfo, error) {
		id, err := addKey(m)
		if err != nil {
			return nil, err
		}
		added = KeyInfo{ID: id, Created: now(), State: StateActive}
		return append(info, added), nil
	})
	return added, err
}

// SetPrimary makes the active key id the primary; the former primary becomes
// active.
func (r *Ring) SetPrimary(id uint32) error {
	return r.change(func(m *keyset.Manager, info []KeyInfo) ([]KeyInfo, error) {
		i := slices.IndexFunc(info, func(k KeyInfo) bool { return k.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("%w %d", ErrUnknownKey, id)
		}
		if info[i].State != StateActive {
			return nil, fmt.Errorf("ring key %d is %s, not active", id, info[i].State)
		}
		if err := m.SetPrimary(id); err != nil {
			return nil, err
		}
		for j := range info {
			if info[j].State == StatePrimary {
				info[j].State = StateActive
			}
		}
		info[i].State = StatePrimary
		return info, nil
	})
}

// Retire marks the non-primary key id retired. It still unwraps.
func (r *Ring) Retire(id uint32) error {
	return r.change(func(_ *keyset.Manager, info []KeyInfo) ([]KeyInfo, error) {
		i := slices.IndexFunc(info, func(k KeyInfo) bool { return k.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("%w %d", ErrUnknownKey, id)
		}
		if info[i].State == StatePrimary {
			return nil, fmt.Errorf("ring key %d is the primary and cannot be retired", id)
		}
		info[i].State = StateRetired
		return info, nil
	})
}

// change applies f to a copy of the ring and installs the result as the
// next generation.
func (r *Ring) change(f func(*keyset.Manager, []KeyInfo) ([]KeyInfo, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	old := r.state.Load()
	m := keyset.NewManagerFromHandle(old.handle)
	info, err := f(m, slices.Clone(old.keys))
	if err != nil {
		return fmt.Errorf("failed to change ring: %w", err)
	}
	h, err := m.Handle()
	if err != nil {
		return fmt.Errorf("failed to build ring keyset: %w", err)
	}

	st, err := newRingState(h, info, old.generation+1)
	if err != nil {
		return err
	}
	st.base, st.rotating, st.entries = old.base, old.rotating, old.entries
	if !slices.ContainsFunc(info, func(k KeyInfo) bool {
		return k.ID == st.rotating && k.State == StatePrimary
	}) {
		st.rotating = 0 // a rotation's target stays the primary until it ends
	}
	r.state.Store(st)
	return nil
}

// Rotating returns the target key of the rotation in progress as the
// sealed ring records it, or 0 when none is (or the ring came from a
// payload older than the field). Unlike .coffer/rotation.json, which
// anyone who can write the backing directory can plant, the value comes
// from a copy sealed to a master key.
func (r *Ring) Rotating() uint32 {
	return r.state.Load().rotating
}

// SetRotating records id, the primary key, as the target of a rotation in
// progress, or, with 0, that none is. It makes a new generation, which the
// next commit seals. Making another key primary clears it.
func (r *Ring) SetRotating(id uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.state.Load()
	if id != 0 && !slices.ContainsFunc(old.keys, func(k KeyInfo) bool {
		return k.ID == id && k.State == StatePrimary
	}) {
		return fmt.Errorf("failed to record rotation: ring key %d is not the primary key", id)
	}
	st := *old
	st.rotating = id
	st.generation++
	r.state.Store(&st)
	return nil
}

// now returns the current time as recorded in configs: UTC, whole seconds.
func now() time.Time {
	return time.Now().UTC().Truncate(time.Second)
}

// Purge removes the retired key id from the ring. Files whose only working
// slot that key wrapped become unreadable, so callers purge only after a
// scan proved that no header or directory record still needs it.
func (r *Ring) Purge(id uint32) error {
	return r.change(func(m *keyset.Manager, info []KeyInfo) ([]KeyInfo, error) {
		i := slices.IndexFunc(info, func(k KeyInfo) bool { return k.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("%w %d", ErrUnknownKey, id)
		}
		if info[i].State != StateRetired {
			return nil, fmt.Errorf("ring key %d is %s, not retired", id, info[i].State)
		}
		if err := m.Delete(id); err != nil {
			return nil, err
		}
		return slices.Delete(info, i, i+1), nil
	})
}

// Has reports whether the ring holds key id, in any state.
func (r *Ring) Has(id uint32) bool {
	return slices.ContainsFunc(r.state.Load().keys, func(k KeyInfo) bool { return k.ID == id })
}

// adopt replaces the ring's state with that of next when next is a later
// generation, so that everyone holding r (a mount's file system, its audit
// log) sees the new keys at once. It reports whether it changed r.
func (r *Ring) adopt(next *Ring) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := next.state.Load()
	if st.generation <= r.state.Load().generation {
		return false
	}
	r.state.Store(st)
	return true
}
