package names

import (
	"encoding/binary"
	"fmt"

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
