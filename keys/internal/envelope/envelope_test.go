package envelope

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

var vol = keys.VolumeID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

var testLayout = Layout{Kind: "test-kms", Blob: "KMS ciphertext", MaxBlob: 8}

func TestCheckRingAD(t *testing.T) {
	tests := []struct {
		name string
		ad   []byte
		ok   bool
	}{
		{"ring AD", keys.RingAD(vol, "m1"), true},
		{"no master ID", keys.RingAD(vol, ""), false},
		{"short volume", []byte("coffer-ring-v1\x00\x01\x02"), false},
		{"other prefix", append([]byte("coffer-ring-v2\x00"), keys.RingAD(vol, "m1")[15:]...),
			false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRingAD("test-kms", tt.ad)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, "test-kms: associated data is not a ring AD")
			_, _, err = SplitRingAD("test-kms", tt.ad)
			assert.Error(t, err)
		})
	}
}

func TestSplitRingAD(t *testing.T) {
	v, m, err := SplitRingAD("test-kms", keys.RingAD(vol, "5e1f00aa"))
	require.NoError(t, err)
	assert.Equal(t, vol, v)
	assert.Equal(t, "5e1f00aa", m)
}

func TestLayoutHeader(t *testing.T) {
	assert.Equal(t, []byte{1, 0, 3, 'a', 'b', 'c'}, testLayout.Header([]byte("abc")))
	assert.Panics(t, func() { testLayout.Header(nil) })
	assert.Panics(t, func() { testLayout.Header(make([]byte, 9)) })
}

func TestLayoutParse(t *testing.T) {
	box := make([]byte, 40) // nonce and tag
	valid := append([]byte{1, 0, 3, 'a', 'b', 'c'}, box...)
	tests := []struct {
		name string
		in   []byte
		err  string // "" when valid
		is   error
	}{
		{"valid", valid, "", nil},
		{"empty", nil, "wrong master key: sealed ring is 0 bytes, too short", keys.ErrWrongKey},
		{"short", []byte{1, 0}, "wrong master key: sealed ring is 2 bytes, too short",
			keys.ErrWrongKey},
		{"version 2", append([]byte{2}, valid[1:]...),
			"test-kms sealed ring version 2 (this coffer reads 1)", keys.ErrUnsupportedVersion},
		{"zero length", append([]byte{1, 0, 0}, box...),
			"sealed ring is malformed (KMS ciphertext of 0 bytes in 43)", keys.ErrWrongKey},
		{"beyond MaxBlob", append([]byte{1, 0, 9}, make([]byte, 49)...),
			"sealed ring is malformed (KMS ciphertext of 9 bytes in 52)", keys.ErrWrongKey},
		{"box too short", valid[:len(valid)-1],
			"sealed ring is malformed (KMS ciphertext of 3 bytes in 45)", keys.ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, boxed, err := testLayout.Parse(tt.in)
			if tt.err == "" {
				require.NoError(t, err)
				assert.Equal(t, []byte("abc"), blob)
				assert.Equal(t, box, boxed)
				return
			}
			assert.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

// TestSealOpen seals with a wrap that records the KEK as the "service
// ciphertext", and checks that Open takes the copy back only with the same
// KEK, ring AD and bytes.
func TestSealOpen(t *testing.T) {
	ad := keys.RingAD(vol, "m1")
	var kek []byte
	sealed, err := Seal(context.Background(), []byte("ring"), ad, func(k []byte) ([]byte, error) {
		kek = bytes.Clone(k)
		return []byte("head"), nil
	})
	require.NoError(t, err)
	require.Len(t, kek, KEKSize)
	require.True(t, bytes.HasPrefix(sealed, []byte("head")))
	boxed := sealed[len("head"):]

	open := func(kek, sealed, boxed, ad []byte) ([]byte, error) {
		return Open(context.Background(), keys.SecretFromBytes(bytes.Clone(kek)), sealed, boxed,
			ad)
	}
	got, err := open(kek, sealed, boxed, ad)
	require.NoError(t, err)
	assert.Equal(t, "ring", string(got))

	other := bytes.Clone(kek)
	other[0] ^= 1
	head := bytes.Clone(sealed)
	head[0] ^= 1
	for name, err := range map[string]error{
		"other KEK":     second(open(other, sealed, boxed, ad)),
		"other ring AD": second(open(kek, sealed, boxed, keys.RingAD(vol, "m2"))),
		"header":        second(open(kek, head, head[len("head"):], ad)),
	} {
		assert.ErrorIs(t, err, keys.ErrWrongKey, name)
	}
	_, err = open(kek[:16], sealed, boxed, ad)
	assert.Error(t, err, "a short KEK")
}

func TestSealWrapError(t *testing.T) {
	want := errors.New("service down")
	_, err := Seal(context.Background(), []byte("ring"), keys.RingAD(vol, "m1"),
		func([]byte) ([]byte, error) { return nil, want })
	assert.ErrorIs(t, err, want)
}

func second(_ []byte, err error) error { return err }
