package names

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cofferfs/coffer/fs/content"
)

// RecordSize is the size of a directory record.
const RecordSize = content.HeaderSize

const (
	recordMagic = "cofdir"
	fileMagic   = "coffer"
	recordADTag = "coffer-dir-v1\x00"
)

// Record is a directory's record: its ID and its name secret wrapped by
// ring keys in two slots, laid out like a file header (package content)
// with the magic "cofdir", so that a ring rotation re-wraps it the same way.
//
//	offset  size  field
//	0       6     magic "cofdir"
//	6       2     version, 1
//	8       16    directory ID
//	24      128   slot 0 (as in a file header)
//	152     128   slot 1
type Record struct {
	ID    DirID
	Slots [2]content.Slot
}

// MarshalBinary encodes the record in RecordSize bytes.
func (r *Record) MarshalBinary() ([]byte, error) {
	h := content.Header{Version: content.Version, FileID: content.FileID(r.ID), Slots: r.Slots}
	b, err := h.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("failed to marshal directory record: %w", err)
	}
	copy(b, recordMagic)
	return b, nil
}

// ParseRecord decodes a directory record. The slot rules are those of a file
// header; a newer version gives a *content.VersionError.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) != RecordSize || string(b[:len(recordMagic)]) != recordMagic {
		return nil, fmt.Errorf("failed to parse directory record: bad size or magic: %w",
			content.ErrCorrupt)
	}
	c := append([]byte(nil), b...)
	copy(c, fileMagic)
	h, err := content.ParseHeader(c)
	if err != nil {
		return nil, fmt.Errorf("failed to parse directory record: %w", err)
	}
	return &Record{ID: DirID(h.FileID), Slots: h.Slots}, nil
}

// Order returns the indexes of the used slots, current slot first.
func (r *Record) Order() []int {
	h := content.Header{Slots: r.Slots}
	return h.Order()
}

// NextSlot returns the slot a re-wrap writes and its generation: as for a
// file header, the slot that is not current, with a generation above both.
func (r *Record) NextSlot() (idx int, gen uint64) {
	h := content.Header{Slots: r.Slots}
	return h.NextSlot()
}

// RecordAD returns the associated data that binds a wrapped name secret to
// its volume, directory, ring key and generation: "coffer-dir-v1\x00" ||
// volume ID || directory ID || key ID (uint32) || generation (uint64).
func RecordAD(volumeID [16]byte, id DirID, keyID uint32, gen uint64) []byte {
	ad := make([]byte, 0, len(recordADTag)+16+16+4+8)
	ad = append(ad, recordADTag...)
	ad = append(ad, volumeID[:]...)
	ad = append(ad, id[:]...)
	ad = binary.BigEndian.AppendUint32(ad, keyID)
	return binary.BigEndian.AppendUint64(ad, gen)
}

// Wrapper wraps a secret with the key ring's primary key; the volume's ring
// implements it (it is fs.KeyWrapper's Wrap). ad gives the associated data
// for the ID of the key that wraps.
type Wrapper interface {
	Wrap(secret []byte, ad func(keyID uint32) []byte) (keyID uint32, wrapped []byte, err error)
}

// NewRecord draws a directory ID and name secret and returns the record,
// with the secret wrapped in slot 0 (generation 1), and the name key.
func NewRecord(w Wrapper, volumeID [16]byte) ([]byte, *Key, error) {
	var id DirID
	_, _ = rand.Read(id[:])
	secret := make([]byte, SecretSize)
	_, _ = rand.Read(secret)
	defer clear(secret)

	keyID, wrapped, err := w.Wrap(secret, func(keyID uint32) []byte {
		return RecordAD(volumeID, id, keyID, 1)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to wrap name key: %w", err)
	}
	rec := &Record{ID: id}
	rec.Slots[0] = content.Slot{KeyID: keyID, Generation: 1, Wrapped: wrapped}
	b, err := rec.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	k, err := NewKey(secret, id)
	if err != nil {
		return nil, nil, err
	}
	return b, k, nil
}

// CreateRootRecord writes the record of a new volume's root directory into
// backing, fsyncing it and the directory. It never replaces a record.
func CreateRootRecord(backing string, w Wrapper, volumeID [16]byte) error {
	b, _, err := NewRecord(w, volumeID)
	if err != nil {
		return err
	}
	p := filepath.Join(backing, RecordName)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("failed to create directory record: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(p)
		return fmt.Errorf("failed to write directory record: %w", err)
	}
	d, err := os.Open(backing)
	if err != nil {
		return fmt.Errorf("failed to sync backing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync backing directory: %w", err)
	}
	return nil
}
