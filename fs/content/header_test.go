package content

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unhex decodes hex written by hand from the format table; spaces are allowed
// between fields.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// zeros returns n zero bytes as hex.
func zeros(n int) string {
	return strings.Repeat("00", n)
}

// headerVectors are header encodings written byte by byte from the layout in
// docs/format.md, with the Header each one must parse to.
func headerVectors(t testing.TB) []struct {
	name   string
	header Header
	bytes  []byte
} {
	fileID := FileID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	return []struct {
		name   string
		header Header
		bytes  []byte
	}{
		{
			name: "new file: slot 0 in use, slot 1 empty",
			header: Header{Version: 1, FileID: fileID, Slots: [2]Slot{
				{KeyID: 0x01020304, Generation: 1, Wrapped: []byte{0xaa, 0xbb, 0xcc}},
			}},
			bytes: unhex(t, "636f66666572 0001 000102030405060708090a0b0c0d0e0f"+
				" 01020304 0000000000000001 0003 aabbcc"+zeros(111)+
				zeros(128)),
		},
		{
			name: "both slots, slot 1 current, full-length wrap in slot 0",
			header: Header{Version: 1, FileID: FileID{0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8,
				0xf7, 0xf6, 0xf5, 0xf4, 0xf3, 0xf2, 0xf1, 0xf0}, Slots: [2]Slot{
				{KeyID: 0xffffffff, Generation: 0x0102030405060708, Wrapped: []byte(strings.Repeat("Z", 114))},
				{KeyID: 7, Generation: 0x0102030405060709, Wrapped: []byte{0x01}},
			}},
			bytes: unhex(t, "636f66666572 0001 fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0"+
				" ffffffff 0102030405060708 0072 "+strings.Repeat("5a", 114)+
				" 00000007 0102030405060709 0001 01"+zeros(113)),
		},
		{
			name: "only slot 1 in use",
			header: Header{Version: 1, FileID: fileID, Slots: [2]Slot{
				{},
				{KeyID: 1, Generation: 2, Wrapped: []byte{0x10, 0x20}},
			}},
			bytes: unhex(t, "636f66666572 0001 000102030405060708090a0b0c0d0e0f"+
				zeros(128)+
				" 00000001 0000000000000002 0002 1020"+zeros(112)),
		},
	}
}

func TestHeaderVectors(t *testing.T) {
	for _, tt := range headerVectors(t) {
		t.Run(tt.name, func(t *testing.T) {
			require.Len(t, tt.bytes, HeaderSize)

			got, err := tt.header.MarshalBinary()
			require.NoError(t, err)
			assert.Equal(t, hex.EncodeToString(tt.bytes), hex.EncodeToString(got))

			h, err := ParseHeader(tt.bytes)
			require.NoError(t, err)
			assert.Equal(t, tt.header, *h)
		})
	}
}

func TestParseHeaderErrors(t *testing.T) {
	valid := headerVectors(t)[1].bytes
	edit := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), valid...))
	}
	tests := []struct {
		name    string
		input   []byte
		wantErr error
		wantMsg string
	}{
		{name: "empty", input: nil, wantErr: ErrCorrupt},
		{name: "short", input: valid[:HeaderSize-1], wantErr: ErrCorrupt},
		{name: "long", input: append(append([]byte(nil), valid...), 0), wantErr: ErrCorrupt},
		{name: "bad magic", input: edit(func(b []byte) []byte { b[0] = 'C'; return b }),
			wantErr: ErrCorrupt, wantMsg: "magic"},
		{name: "version 0", input: edit(func(b []byte) []byte { b[7] = 0; return b }),
			wantErr: ErrCorrupt},
		{name: "newer version", input: edit(func(b []byte) []byte { b[7] = 2; return b }),
			wantMsg: "file format version 2 is newer than the supported version 1: " +
				"a newer coffer is needed"},
		{name: "wrapped length 115", input: edit(func(b []byte) []byte { b[24+13] = 115; return b }),
			wantErr: ErrCorrupt, wantMsg: "limit 114"},
		{name: "wrapped length 0xffff", input: edit(func(b []byte) []byte {
			b[24+12], b[24+13] = 0xff, 0xff
			return b
		}), wantErr: ErrCorrupt},
		{name: "non-zero padding", input: edit(func(b []byte) []byte { b[HeaderSize-1] = 1; return b }),
			wantErr: ErrCorrupt, wantMsg: "padding"},
		{name: "used slot with generation 0", input: edit(func(b []byte) []byte {
			copy(b[152+4:], make([]byte, 8))
			return b
		}), wantErr: ErrCorrupt},
		{name: "used slot with no wrapped key", input: edit(func(b []byte) []byte {
			copy(b[152+12:], []byte{0, 0, 0})
			return b
		}), wantErr: ErrCorrupt},
		{name: "empty slot with generation", input: edit(func(b []byte) []byte {
			copy(b[152:], make([]byte, 128))
			b[152+11] = 1
			return b
		}), wantErr: ErrCorrupt},
		{name: "empty slot with wrapped length", input: edit(func(b []byte) []byte {
			copy(b[152:], make([]byte, 128))
			b[152+13] = 1
			return b
		}), wantErr: ErrCorrupt},
		{name: "empty slot with padding", input: edit(func(b []byte) []byte {
			copy(b[152:], make([]byte, 128))
			b[152+100] = 1
			return b
		}), wantErr: ErrCorrupt},
		{name: "both slots empty", input: edit(func(b []byte) []byte {
			copy(b[24:], make([]byte, 256))
			return b
		}), wantErr: ErrCorrupt, wantMsg: "no key slot"},
		{name: "equal generations", input: edit(func(b []byte) []byte {
			b[152+11] = 0x08
			return b
		}), wantErr: ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.input)
			require.Error(t, err)
			assert.Nil(t, h)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			if tt.wantMsg != "" {
				assert.Contains(t, err.Error(), tt.wantMsg)
			}
		})
	}
}

func TestParseHeaderNewerVersion(t *testing.T) {
	b := headerVectors(t)[0].bytes
	b[6], b[7] = 0x01, 0x00

	_, err := ParseHeader(b)
	var ve *VersionError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, uint16(256), ve.Version)
	assert.False(t, errors.Is(err, ErrCorrupt))
}

func TestParseHeaderDoesNotAlias(t *testing.T) {
	b := headerVectors(t)[0].bytes
	h, err := ParseHeader(b)
	require.NoError(t, err)

	b[24+14] ^= 0xff
	assert.Equal(t, []byte{0xaa, 0xbb, 0xcc}, h.Slots[0].Wrapped)
}

func TestMarshalBinaryRefuses(t *testing.T) {
	ok := Slot{KeyID: 1, Generation: 1, Wrapped: []byte{1}}
	tests := []struct {
		name   string
		header Header
	}{
		{name: "version 0", header: Header{Slots: [2]Slot{ok}}},
		{name: "version 2", header: Header{Version: 2, Slots: [2]Slot{ok}}},
		{name: "no slot", header: Header{Version: 1}},
		{name: "wrapped too long", header: Header{Version: 1, Slots: [2]Slot{
			{KeyID: 1, Generation: 1, Wrapped: make([]byte, MaxWrapped+1)}}}},
		{name: "wrapped empty", header: Header{Version: 1, Slots: [2]Slot{
			{KeyID: 1, Generation: 1}}}},
		{name: "key ID 0 with data", header: Header{Version: 1, Slots: [2]Slot{
			ok, {Wrapped: []byte{1}}}}},
		{name: "key ID 0 with generation", header: Header{Version: 1, Slots: [2]Slot{
			ok, {Generation: 2}}}},
		{name: "generation 0", header: Header{Version: 1, Slots: [2]Slot{
			{KeyID: 1, Wrapped: []byte{1}}}}},
		{name: "equal generations", header: Header{Version: 1, Slots: [2]Slot{ok, ok}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.header.MarshalBinary()
			assert.Error(t, err)
			assert.Nil(t, b)
		})
	}
}

func TestOrderAndNextSlot(t *testing.T) {
	slot := func(gen uint64) Slot { return Slot{KeyID: 9, Generation: gen, Wrapped: []byte{1}} }
	tests := []struct {
		name    string
		slots   [2]Slot
		order   []int
		nextIdx int
		nextGen uint64
	}{
		{name: "new file", slots: [2]Slot{slot(1), {}}, order: []int{0}, nextIdx: 1, nextGen: 2},
		{name: "only slot 1", slots: [2]Slot{{}, slot(2)}, order: []int{1}, nextIdx: 0, nextGen: 3},
		{name: "slot 1 newer", slots: [2]Slot{slot(1), slot(2)}, order: []int{1, 0},
			nextIdx: 0, nextGen: 3},
		{name: "slot 0 newer", slots: [2]Slot{slot(3), slot(2)}, order: []int{0, 1},
			nextIdx: 1, nextGen: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Header{Version: Version, Slots: tt.slots}
			assert.Equal(t, tt.order, h.Order())
			idx, gen := h.NextSlot()
			assert.Equal(t, tt.nextIdx, idx)
			assert.Equal(t, tt.nextGen, gen)
		})
	}
}

// TestNextSlotAfterFallback covers a torn re-wrap: the newer slot fails to
// unwrap, the older one works, and the next re-wrap must overwrite the broken
// slot rather than the working one.
func TestNextSlotAfterFallback(t *testing.T) {
	h := &Header{Version: Version, Slots: [2]Slot{
		{KeyID: 1, Generation: 1, Wrapped: []byte{1}},
		{KeyID: 2, Generation: 2, Wrapped: []byte{2}},
	}}
	require.Equal(t, []int{1, 0}, h.Order())

	idx, gen := h.NextSlotAfter(0)
	assert.Equal(t, 1, idx)
	assert.Equal(t, uint64(3), gen)
}

func TestSlotAD(t *testing.T) {
	vol := [16]byte{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
		0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f}
	file := FileID{0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
		0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f}

	// "coffer-dek-v1" in ASCII, a NUL, then the fields.
	want := "636f666665722d64656b2d763100" +
		"101112131415161718191a1b1c1d1e1f" +
		"202122232425262728292a2b2c2d2e2f" +
		"deadbeef" + "0000000000000102"
	got := SlotAD(vol, file, 0xdeadbeef, 0x102)
	assert.Equal(t, want, hex.EncodeToString(got))
}
