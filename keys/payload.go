package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// PayloadVersion is the version of the ring payload that master keys seal.
const PayloadVersion = 1

// maxRingKeys bounds the ring so that a hostile payload cannot make Unlock
// build an enormous keyset.
const maxRingKeys = 1024

// ringADPrefix starts the associated data of every sealed ring copy.
const ringADPrefix = "coffer-ring-v1\x00"

// ringPayload is the plaintext that each master key seals: the whole ring,
// secret keys included. It never touches the disk unsealed.
type ringPayload struct {
	Version    int       `json:"version"`
	VolumeID   VolumeID  `json:"volume_id"`
	Generation uint64    `json:"generation"`
	Keyset     []byte    `json:"keyset"` // Tink cleartext keyset, binary
	Keys       []KeyInfo `json:"keys"`
	// Names is the volume's names mode. Payloads sealed before the field
	// existed lack it; Unlock then takes the config's mode (see there).
	Names string `json:"names,omitempty"`
	// Rotating is the target ring key of the rotation in progress, absent
	// when none is. Set by the commit that starts a rotation, cleared by the
	// one that finishes it; payloads sealed before the field existed lack
	// it, and a rotation interrupted under them cannot be resumed.
	Rotating uint32 `json:"rotating,omitempty"`
	// Entries lists, by master ID, the SHA-256 of each master entry's
	// canonical encoding (entryMessage) as the rotation commit that sealed
	// the payload wrote the config (see Ring.CheckEntry). A seal-only,
	// rolled-forward or skipped entry that it lists must still match it.
	// Payloads sealed before the field existed lack it.
	Entries map[string][]byte `json:"entries,omitempty"`
}

// RingAD returns the associated data that binds a sealed ring copy to its
// volume and master key: "coffer-ring-v1\x00" || volume ID (16 bytes) ||
// master ID (ASCII).
func RingAD(vol VolumeID, masterID string) []byte {
	ad := make([]byte, 0, len(ringADPrefix)+len(vol)+len(masterID))
	ad = append(ad, ringADPrefix...)
	ad = append(ad, vol[:]...)
	return append(ad, masterID...)
}

// marshalPayload encodes the ring for sealing. The result holds secret key
// material: the caller wipes it after sealing.
func (r *Ring) marshalPayload(vol VolumeID) ([]byte, error) {
	st := r.state.Load()
	var ks bytes.Buffer
	if err := insecurecleartextkeyset.Write(st.handle, keyset.NewBinaryWriter(&ks)); err != nil {
		return nil, fmt.Errorf("failed to encode ring keyset: %w", err)
	}
	defer clear(ks.Bytes())

	p := ringPayload{
		Version:    PayloadVersion,
		VolumeID:   vol,
		Generation: st.generation,
		Keyset:     ks.Bytes(),
		Keys:       st.keys,
		Names:      r.names,
		Rotating:   st.rotating,
	}
	if st.entries != nil {
		p.Entries = make(map[string][]byte, len(st.entries))
		for id, d := range st.entries {
			p.Entries[id] = d[:]
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("failed to encode ring payload: %w", err)
	}
	return b, nil
}

// unmarshalPayload decodes and checks a ring payload. Every structural rule
// is enforced: a payload that decodes is a ring that works.
func unmarshalPayload(b []byte) (VolumeID, *Ring, error) {
	var p ringPayload
	if err := decodeVersioned(b, &p, PayloadVersion, "ring payload"); err != nil {
		return VolumeID{}, nil, err
	}
	defer clear(p.Keyset)

	if p.Generation == 0 {
		return VolumeID{}, nil, fmt.Errorf("%w: ring payload generation is 0", ErrMalformed)
	}
	if err := validateKeyInfos(p.Keys); err != nil {
		return VolumeID{}, nil, err
	}
	if p.Names != "" && p.Names != NamesEncrypted && p.Names != NamesPlaintext {
		return VolumeID{}, nil, fmt.Errorf("%w: ring payload names mode %q is unknown",
			ErrMalformed, p.Names)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(p.Keyset)))
	if err != nil {
		return VolumeID{}, nil, fmt.Errorf("%w: failed to decode ring keyset: %v", ErrMalformed, err)
	}
	if err := checkKeyset(h, p.Keys); err != nil {
		return VolumeID{}, nil, err
	}

	if p.Rotating != 0 && !slices.ContainsFunc(p.Keys, func(k KeyInfo) bool {
		return k.ID == p.Rotating && k.State == StatePrimary
	}) {
		return VolumeID{}, nil, fmt.Errorf("%w: ring payload records a rotation to key %d, "+
			"which is not its primary key", ErrMalformed, p.Rotating)
	}
	st, err := newRingState(h, p.Keys, p.Generation)
	if err != nil {
		return VolumeID{}, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	st.rotating = p.Rotating
	if st.entries, err = payloadEntries(p.Entries); err != nil {
		return VolumeID{}, nil, err
	}
	for _, k := range p.Keys {
		if k.State == StatePrimary {
			st.base = k.ID
		}
	}
	r := &Ring{names: p.Names}
	r.state.Store(st)
	return p.VolumeID, r, nil
}

// validateKeyInfos checks ring key metadata: at least one key, at most
// maxRingKeys, IDs non-zero and unique, states known, exactly one primary.
func validateKeyInfos(info []KeyInfo) error {
	if len(info) == 0 || len(info) > maxRingKeys {
		return fmt.Errorf("%w: ring has %d keys, want 1 to %d", ErrMalformed, len(info), maxRingKeys)
	}
	seen := make(map[uint32]bool, len(info))
	primaries := 0
	for _, k := range info {
		switch {
		case k.ID == 0:
			return fmt.Errorf("%w: ring key ID 0 is reserved", ErrMalformed)
		case seen[k.ID]:
			return fmt.Errorf("%w: ring key %d is listed twice", ErrMalformed, k.ID)
		case !k.State.valid():
			return fmt.Errorf("%w: ring key %d has unknown state %q", ErrMalformed, k.ID, k.State)
		}
		seen[k.ID] = true
		if k.State == StatePrimary {
			primaries++
		}
	}
	if primaries != 1 {
		return fmt.Errorf("%w: ring has %d primary keys, want 1", ErrMalformed, primaries)
	}
	return nil
}

// checkKeyset checks that the keyset holds exactly the keys in info, each an
// enabled AES-256-GCM key with the TINK prefix, and the same primary.
func checkKeyset(h *keyset.Handle, info []KeyInfo) error {
	if h.Len() != len(info) {
		return fmt.Errorf("%w: ring keyset has %d keys, metadata lists %d",
			ErrMalformed, h.Len(), len(info))
	}
	for i := range h.Len() {
		e, err := h.Entry(i)
		if err != nil {
			return fmt.Errorf("%w: failed to read ring key %d: %v", ErrMalformed, i, err)
		}
		j := slices.IndexFunc(info, func(k KeyInfo) bool { return k.ID == e.KeyID() })
		if j < 0 {
			return fmt.Errorf("%w: ring key %d has no metadata", ErrMalformed, e.KeyID())
		}
		if err := checkEntry(e, info[j]); err != nil {
			return err
		}
	}
	return nil
}

func checkEntry(e *keyset.Entry, info KeyInfo) error {
	if e.KeyStatus() != keyset.Enabled {
		return fmt.Errorf("%w: ring key %d is not enabled", ErrMalformed, info.ID)
	}
	if e.IsPrimary() != (info.State == StatePrimary) {
		return fmt.Errorf("%w: ring key %d primary flag disagrees with metadata",
			ErrMalformed, info.ID)
	}
	k, ok := e.Key().(*aesgcm.Key)
	if !ok {
		return fmt.Errorf("%w: ring key %d is not an AES-GCM key", ErrMalformed, info.ID)
	}
	p, ok := k.Parameters().(*aesgcm.Parameters)
	if !ok || p.KeySizeInBytes() != 32 || p.IVSizeInBytes() != 12 ||
		p.TagSizeInBytes() != 16 || p.Variant() != aesgcm.VariantTink {
		return fmt.Errorf("%w: ring key %d is not AES-256-GCM with a TINK prefix",
			ErrMalformed, info.ID)
	}
	return nil
}

// payloadEntries checks and converts the entry listing of a payload: at
// most MaxMasters entries, each ID a master ID, each digest 32 bytes.
func payloadEntries(in map[string][]byte) (map[string][sha256.Size]byte, error) {
	if in == nil {
		return nil, nil
	}
	if len(in) > MaxMasters {
		return nil, fmt.Errorf("%w: ring payload lists %d master entries, at most %d",
			ErrMalformed, len(in), MaxMasters)
	}
	out := make(map[string][sha256.Size]byte, len(in))
	for id, d := range in {
		if !isLowerHex(id, 8) || len(d) != sha256.Size {
			return nil, fmt.Errorf("%w: ring payload lists master entry %q with a %d-byte "+
				"digest", ErrMalformed, id, len(d))
		}
		out[id] = [sha256.Size]byte(d)
	}
	return out, nil
}
