package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Carried copies let a process that holds an older ring roll forward to the
// config's ring without a master key: a running mount (which could not ask
// for a passphrase again) and a master key skipped by a rotation. Each
// carried copy is the current ring payload sealed with a key derived from
// one ring key of the current ring:
//
//	nonce (12 bytes) || AES-256-GCM(DeriveKey(id, "coffer-ring-carry-v1"),
//	    payload, ad = "coffer-ring-carry-v1\x00" || volume ID || id (uint32)
//	    || generation (uint64))
//
// Whoever holds ring key id can read every later ring for as long as id
// stays in the ring; purging id ends it. See docs/rotation.md.
const carryPurpose = "coffer-ring-carry-v1"

// carryAD returns the associated data of the carried copy under key id.
func carryAD(vol VolumeID, id uint32, gen uint64) []byte {
	ad := make([]byte, 0, len(carryPurpose)+1+16+4+8)
	ad = append(ad, carryPurpose...)
	ad = append(ad, 0)
	ad = append(ad, vol[:]...)
	ad = binary.BigEndian.AppendUint32(ad, id)
	return binary.BigEndian.AppendUint64(ad, gen)
}

func carryAEAD(r *Ring, id uint32) (cipher.AEAD, error) {
	k, err := r.DeriveKey(id, carryPurpose)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("failed to create carry cipher: %w", err)
	}
	return cipher.NewGCM(b)
}

// sealCarry returns a carried copy of r under each of its keys, keyed by
// the decimal key ID.
func (r *Ring) sealCarry(vol VolumeID) (map[string][]byte, error) {
	payload, err := r.marshalPayload(vol)
	if err != nil {
		return nil, err
	}
	defer clear(payload)
	gen := r.Generation()
	out := make(map[string][]byte)
	for _, k := range r.Keys() {
		a, err := carryAEAD(r, k.ID)
		if err != nil {
			return nil, err
		}
		nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(payload)+a.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("failed to read random bytes: %w", err)
		}
		out[strconv.FormatUint(uint64(k.ID), 10)] = a.Seal(nonce, nonce, payload,
			carryAD(vol, k.ID, gen))
	}
	return out, nil
}

// rollForward returns the ring of cfg, opened from a carried copy under one
// of r's keys. It returns an error wrapping ErrStaleRing when no carried
// copy is under a key r holds (its keys were purged).
func (r *Ring) rollForward(cfg *Config) (*Ring, error) {
	gen := cfg.Ring.Generation
	for _, k := range r.Keys() {
		sealed, ok := cfg.Ring.Carry[strconv.FormatUint(uint64(k.ID), 10)]
		if !ok {
			continue
		}
		a, err := carryAEAD(r, k.ID)
		if err != nil {
			return nil, err
		}
		if len(sealed) < a.NonceSize() {
			return nil, fmt.Errorf("%w: carried ring copy under key %d is too short",
				ErrMalformed, k.ID)
		}
		payload, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():],
			carryAD(cfg.VolumeID, k.ID, gen))
		if err != nil {
			return nil, fmt.Errorf("failed to open carried ring copy under key %d: %w",
				k.ID, ErrAuth)
		}
		vol, next, err := unmarshalPayload(payload)
		clear(payload)
		if err != nil {
			return nil, fmt.Errorf("failed to decode carried ring copy: %w", err)
		}
		if vol != cfg.VolumeID || next.Generation() != gen {
			return nil, fmt.Errorf("%w: carried ring copy is of another volume or generation",
				ErrMalformed)
		}
		if next.names == "" {
			next.names = r.names
		} else if r.names != "" && next.names != r.names {
			return nil, fmt.Errorf("%w: carried ring copy says names are %s, the ring held "+
				"says %s", ErrMalformed, next.names, r.names)
		}
		return next, nil
	}
	return nil, fmt.Errorf("%w: the ring held (generation %d) has no key the volume's ring "+
		"(generation %d) carries", ErrStaleRing, r.Generation(), gen)
}
