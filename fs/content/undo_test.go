package content

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUndoRoundTrip(t *testing.T) {
	id := FileID{1, 2, 3}
	data := bytes.Repeat([]byte{7}, CipherBlockSize+100)
	b := AppendUndoHeader(nil, id, 5, BlockOffset(5)+int64(len(data)), len(data))
	require.Len(t, b, UndoHeaderSize)
	u, err := ParseUndo(append(b, data...))
	require.NoError(t, err)
	assert.Equal(t, id, u.FileID)
	assert.Equal(t, uint64(5), u.First)
	assert.Nil(t, u.PreImage(4))
	assert.Len(t, u.PreImage(5), CipherBlockSize)
	assert.Len(t, u.PreImage(6), 100)
	assert.Nil(t, u.PreImage(7))

	tests := []struct {
		name string
		b    []byte
	}{
		{"short", b[:UndoHeaderSize-1]},
		{"pre-images missing", append(b, data[:10]...)},
		{"bad magic", append([]byte("x"), b[1:]...)},
		{"range past the old size", AppendUndoHeader(nil, id, 5, BlockOffset(5), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseUndo(tt.b)
			assert.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

// TestTorn checks the signature of a cut overwrite against cuts at every
// page boundary of blocks at several offsets, and against other damage.
func TestTorn(t *testing.T) {
	for _, block := range []int64{0, 1, 2, 41, 99} {
		at := BlockOffset(uint64(block))
		pre := bytes.Repeat([]byte{0xaa}, CipherBlockSize)
		post := bytes.Repeat([]byte{0x55}, CipherBlockSize)
		for p := (at/TearUnit + 1) * TearUnit; p < at+CipherBlockSize; p += TearUnit {
			cut := int(p - at)
			cur := append(append([]byte(nil), post[:cut]...), pre[cut:]...)
			assert.Equal(t, CipherBlockSize-cut >= minTornSuffix, Torn(cur, pre, at),
				"block %d cut at %d", block, cut)
		}
		flipped := append([]byte(nil), post...)
		flipped[10] ^= 1
		assert.False(t, Torn(flipped, pre, at), "a damaged new block")
		assert.False(t, Torn(pre[:100], pre, at), "a cut block")
		assert.False(t, Torn(post[:10], pre[:10], at), "no page boundary inside")
	}
}

// FuzzParseUndo checks that ParseUndo never panics, that what it accepts
// has its pre-images inside the old file and inside b, and that PreImage
// never reaches outside them.
func FuzzParseUndo(f *testing.F) {
	f.Add(append(AppendUndoHeader(nil, FileID{9}, 3, BlockOffset(3)+5000, 5000), make([]byte, 5000)...))
	f.Add(AppendUndoHeader(nil, FileID{}, 0, HeaderSize, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUndo(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if BlockOffset(u.First)+int64(len(u.Data)) > u.OldSize || len(u.Data) > len(b)-UndoHeaderSize {
			t.Fatalf("accepted a record reaching past its old size or its bytes: %+v", u)
		}
		for blk := u.First; blk < u.First+3; blk++ {
			if p := u.PreImage(blk); len(p) > CipherBlockSize {
				t.Fatalf("pre-image of %d bytes", len(p))
			}
		}
		_ = Torn(u.Data, u.Data, BlockOffset(u.First))
	})
}
