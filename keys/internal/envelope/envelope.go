// Package envelope is the envelope encryption shared by the master-key
// kinds whose key stays in a key service (aws-kms, gcp-kms, hcvault,
// azure-kv). Each seal draws a fresh 32-byte key-encryption key (KEK), the
// service wraps it, and the ring is sealed locally with the KEK in a box
// (XChaCha20-Poly1305, package box) whose associated data is the ring AD
// followed by every byte of the header, so that no byte of a sealed copy can
// change unnoticed, even one the service would ignore.
//
// aws-kms, gcp-kms and hcvault lay a sealed copy out as Layout describes;
// azure-kv records a key version before the wrapped key and builds its
// header itself, with Seal, Open and CheckVersion. docs/format.md is the
// specification of every layout; the kinds' known-answer tests hold copies
// made before this package existed.
package envelope

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
)

// Version is the version of the sealed-copy layouts, the first byte of every
// copy.
const Version = 1

// KEKSize is the size of a key-encryption key.
const KEKSize = box.KeySize

// ringADPrefix starts the associated data that keys passes to Seal and
// Unseal: "coffer-ring-v1\x00" || volume ID (16 bytes) || master ID.
const ringADPrefix = "coffer-ring-v1\x00"

const volumeIDSize = len(keys.VolumeID{})

// CheckRingAD checks that ad is a ring AD: the prefix, a volume ID and a
// non-empty master ID. kind names the master-key kind in the error.
func CheckRingAD(kind string, ad []byte) error {
	if len(ad) <= len(ringADPrefix)+volumeIDSize ||
		string(ad[:len(ringADPrefix)]) != ringADPrefix {
		return fmt.Errorf("%s: associated data is not a ring AD", kind)
	}
	return nil
}

// SplitRingAD checks ad as CheckRingAD does and returns its volume ID and
// master ID.
func SplitRingAD(kind string, ad []byte) (keys.VolumeID, string, error) {
	if err := CheckRingAD(kind, ad); err != nil {
		return keys.VolumeID{}, "", err
	}
	rest := ad[len(ringADPrefix):]
	return keys.VolumeID(rest[:volumeIDSize]), string(rest[volumeIDSize:]), nil
}

// Seal draws a fresh KEK and passes it to wrap, which has the key service
// wrap it and returns the header: every byte of the copy before the box.
// wrap must not keep kek, which is wiped when Seal returns. Seal returns the
// header followed by the box of plaintext under the KEK, with associated
// data ringAD || header.
func Seal(ctx context.Context, plaintext, ringAD []byte,
	wrap func(kek []byte) (head []byte, err error)) ([]byte, error) {
	kek, err := keys.RandomSecret(KEKSize)
	if err != nil {
		return nil, err
	}
	b, err := box.New(kek) // b owns kek now
	if err != nil {
		kek.Wipe()
		return nil, err
	}
	defer b.Wipe()

	head, err := wrap(kek.InsecureBytes())
	if err != nil {
		return nil, err
	}
	boxed, err := b.Seal(ctx, plaintext, boxAD(ringAD, head))
	if err != nil {
		return nil, err
	}
	return append(head, boxed...), nil
}

// Open opens the box of a sealed copy with kek, which it takes ownership of
// and wipes. boxed is the tail of sealed that holds the box; the rest of
// sealed is the header, bound by the box's associated data ringAD ||
// header. A box that fails to open is keys.ErrWrongKey.
func Open(ctx context.Context, kek *keys.Secret, sealed, boxed, ringAD []byte) ([]byte, error) {
	b, err := box.New(kek)
	if err != nil {
		kek.Wipe()
		return nil, err
	}
	defer b.Wipe()
	return b.Unseal(ctx, boxed, boxAD(ringAD, sealed[:len(sealed)-len(boxed)]))
}

// boxAD is the associated data of the box: the ring AD followed by the
// header.
func boxAD(ringAD, head []byte) []byte {
	return append(append(make([]byte, 0, len(ringAD)+len(head)), ringAD...), head...)
}

// CheckVersion checks that sealed holds at least minLen bytes (1 or more)
// and starts with Version. kind names the master-key kind in the error.
func CheckVersion(kind string, sealed []byte, minLen int) error {
	if len(sealed) < minLen {
		return fmt.Errorf("%w: sealed ring is %d bytes, too short", keys.ErrWrongKey,
			len(sealed))
	}
	if v := sealed[0]; v != Version {
		return fmt.Errorf("%w: %s sealed ring version %d (this coffer reads %d)",
			keys.ErrUnsupportedVersion, kind, v, Version)
	}
	return nil
}

// HeaderSize is the size of a Layout header before the service's ciphertext.
const HeaderSize = 3

// Layout is the sealed-copy layout of aws-kms, gcp-kms and hcvault:
//
//	offset  size  field
//	0       1     version, Version
//	1       2     n, length of the service's ciphertext (big endian,
//	              1..MaxBlob)
//	3       n     the service's ciphertext of the 32-byte KEK
//	3+n     24    box nonce
//	27+n    m     ring payload sealed with XChaCha20-Poly1305 under the KEK,
//	              associated data = the ring AD || bytes 0..3+n above
//	27+n+m  16    Poly1305 tag
type Layout struct {
	// Kind is the master-key kind, "aws-kms", in errors.
	Kind string
	// Blob names the service's ciphertext in errors, "KMS ciphertext".
	Blob string
	// MaxBlob bounds the length of the service's ciphertext, at most 65535.
	MaxBlob int
}

// Header returns the header of a copy that holds blob, whose length the
// caller has checked to be 1 to MaxBlob.
func (l Layout) Header(blob []byte) []byte {
	if len(blob) == 0 || len(blob) > l.MaxBlob || len(blob) > 0xffff {
		panic(fmt.Sprintf("envelope: %s of %d bytes", l.Blob, len(blob)))
	}
	head := make([]byte, HeaderSize, HeaderSize+len(blob))
	head[0] = Version
	binary.BigEndian.PutUint16(head[1:], uint16(len(blob)))
	return append(head, blob...)
}

// Parse splits a sealed copy into the service's ciphertext and the box. A
// copy too short or malformed is keys.ErrWrongKey; one of another version
// is keys.ErrUnsupportedVersion.
func (l Layout) Parse(sealed []byte) (blob, boxed []byte, err error) {
	if err := CheckVersion(l.Kind, sealed, HeaderSize); err != nil {
		return nil, nil, err
	}
	n := int(binary.BigEndian.Uint16(sealed[1:]))
	if n == 0 || n > l.MaxBlob || len(sealed) < HeaderSize+n+box.Overhead {
		return nil, nil, fmt.Errorf("%w: sealed ring is malformed (%s of %d bytes in %d)",
			keys.ErrWrongKey, l.Blob, n, len(sealed))
	}
	return sealed[HeaderSize : HeaderSize+n], sealed[HeaderSize+n:], nil
}
