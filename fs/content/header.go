package content

import (
	"encoding"
	"encoding/binary"
	"fmt"
)

// Slot is one of the two key slots of a header: the file's DEK wrapped by the
// ring key KeyID. A slot with KeyID 0 is empty and has no generation and no
// wrapped bytes.
type Slot struct {
	KeyID      uint32
	Generation uint64
	Wrapped    []byte
}

// Empty reports whether the slot holds no key.
func (s Slot) Empty() bool {
	return s.KeyID == 0
}

// Header is the fixed-size header at the start of every backing file.
type Header struct {
	Version uint16
	FileID  FileID
	Slots   [2]Slot
}

// VersionError reports a file written in a format version this package does
// not know. A newer coffer is needed to read it.
type VersionError struct {
	Version uint16
}

// Error implements error.
func (e *VersionError) Error() string {
	return fmt.Sprintf("file format version %d is newer than the supported version %d: "+
		"a newer coffer is needed", e.Version, Version)
}

// ParseHeader parses the HeaderSize bytes of b. Malformed headers give an
// error wrapping ErrCorrupt; a newer format version gives a *VersionError.
// The returned header does not share memory with b.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) != HeaderSize {
		return nil, fmt.Errorf("failed to parse header: %d bytes, want %d: %w",
			len(b), HeaderSize, ErrCorrupt)
	}
	if string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("failed to parse header: bad magic: %w", ErrCorrupt)
	}
	h := &Header{Version: binary.BigEndian.Uint16(b[6:8])}
	if h.Version > Version {
		return nil, &VersionError{Version: h.Version}
	}
	copy(h.FileID[:], b[8:24])

	for i := range h.Slots {
		off := slotOffset + i*slotSize
		s, err := parseSlot(b[off : off+slotSize])
		if err != nil {
			return nil, fmt.Errorf("failed to parse header: slot %d: %w", i, err)
		}
		h.Slots[i] = s
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("failed to parse header: %w", err)
	}
	return h, nil
}

// parseSlot decodes one slot. Bytes after the wrapped DEK must be zero so that
// a header has exactly one encoding.
func parseSlot(b []byte) (Slot, error) {
	s := Slot{
		KeyID:      binary.BigEndian.Uint32(b[0:4]),
		Generation: binary.BigEndian.Uint64(b[4:12]),
	}
	n := int(binary.BigEndian.Uint16(b[12:14]))
	if n > MaxWrapped {
		return Slot{}, fmt.Errorf("wrapped key is %d bytes, limit %d: %w", n, MaxWrapped, ErrCorrupt)
	}
	for _, c := range b[slotData+n:] {
		if c != 0 {
			return Slot{}, fmt.Errorf("non-zero padding: %w", ErrCorrupt)
		}
	}
	if n > 0 {
		s.Wrapped = append([]byte(nil), b[slotData:slotData+n]...)
	}
	return s, nil
}

// MarshalBinary encodes the header in exactly HeaderSize bytes. It refuses a
// header that ParseHeader would reject.
func (h *Header) MarshalBinary() ([]byte, error) {
	if h.Version != Version {
		return nil, fmt.Errorf("failed to marshal header: version %d, want %d", h.Version, Version)
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("failed to marshal header: %w", err)
	}

	b := make([]byte, HeaderSize)
	copy(b, magic)
	binary.BigEndian.PutUint16(b[6:8], h.Version)
	copy(b[8:24], h.FileID[:])
	for i, s := range h.Slots {
		off := slotOffset + i*slotSize
		binary.BigEndian.PutUint32(b[off:], s.KeyID)
		binary.BigEndian.PutUint64(b[off+4:], s.Generation)
		binary.BigEndian.PutUint16(b[off+12:], uint16(len(s.Wrapped)))
		copy(b[off+slotData:], s.Wrapped)
	}
	return b, nil
}

// validate checks the rules shared by ParseHeader and MarshalBinary.
func (h *Header) validate() error {
	if h.Version == 0 {
		return fmt.Errorf("version 0: %w", ErrCorrupt)
	}
	for i, s := range h.Slots {
		if err := s.validate(); err != nil {
			return fmt.Errorf("slot %d: %w", i, err)
		}
	}

	a, b := h.Slots[0], h.Slots[1]
	switch {
	case a.Empty() && b.Empty():
		return fmt.Errorf("no key slot in use: %w", ErrCorrupt)
	case !a.Empty() && !b.Empty() && a.Generation == b.Generation:
		return fmt.Errorf("both slots have generation %d: %w", a.Generation, ErrCorrupt)
	}
	return nil
}

// validate checks one slot.
func (s Slot) validate() error {
	if s.Empty() {
		if s.Generation != 0 || len(s.Wrapped) != 0 {
			return fmt.Errorf("empty slot has data: %w", ErrCorrupt)
		}
		return nil
	}
	switch {
	case s.Generation == 0:
		return fmt.Errorf("key %d has generation 0: %w", s.KeyID, ErrCorrupt)
	case len(s.Wrapped) == 0:
		return fmt.Errorf("key %d has no wrapped key: %w", s.KeyID, ErrCorrupt)
	case len(s.Wrapped) > MaxWrapped:
		return fmt.Errorf("wrapped key is %d bytes, limit %d: %w",
			len(s.Wrapped), MaxWrapped, ErrCorrupt)
	}
	return nil
}

// Order returns the indexes of the non-empty slots in the order to try them:
// the current slot (higher generation) first. If the current slot fails to
// unwrap, for example because a re-wrap was torn by a crash, the caller
// falls back to the next one.
func (h *Header) Order() []int {
	a, b := h.Slots[0], h.Slots[1]
	switch {
	case a.Empty() && b.Empty():
		return nil
	case b.Empty():
		return []int{0}
	case a.Empty():
		return []int{1}
	case b.Generation > a.Generation:
		return []int{1, 0}
	default:
		return []int{0, 1}
	}
}

// NextSlot returns the slot a re-wrap writes and the generation it gives it,
// assuming the current slot (Order()[0]) unwrapped. It is NextSlotAfter of the
// current slot.
func (h *Header) NextSlot() (idx int, gen uint64) {
	order := h.Order()
	if len(order) == 0 {
		return 0, 1
	}
	return h.NextSlotAfter(order[0])
}

// NextSlotAfter returns the slot a re-wrap writes when slot used is the one
// that unwrapped, and the generation to give it: the other slot, with a
// generation above both. The slot holding the working key is never
// overwritten, so a torn re-wrap leaves a readable file.
func (h *Header) NextSlotAfter(used int) (idx int, gen uint64) {
	if used != 0 && used != 1 {
		panic(fmt.Sprintf("content: NextSlotAfter(%d)", used))
	}
	return 1 - used, max(h.Slots[0].Generation, h.Slots[1].Generation) + 1
}

// SlotAD returns the associated data used to wrap and unwrap the DEK in a
// slot: "coffer-dek-v1\x00" || volume ID || file ID || key ID (uint32
// big-endian) || generation (uint64 big-endian).
func SlotAD(volumeID [16]byte, fileID FileID, keyID uint32, gen uint64) []byte {
	ad := make([]byte, 0, len(slotADTag)+16+16+4+8)
	ad = append(ad, slotADTag...)
	ad = append(ad, volumeID[:]...)
	ad = append(ad, fileID[:]...)
	ad = binary.BigEndian.AppendUint32(ad, keyID)
	return binary.BigEndian.AppendUint64(ad, gen)
}

var (
	_ encoding.BinaryMarshaler = (*Header)(nil)
	_ error                    = (*VersionError)(nil)
)
