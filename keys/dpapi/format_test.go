package dpapi

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

func TestParseSealed(t *testing.T) {
	blob := []byte("dpapi blob")
	sealed := append(header(User), blob...)
	got, err := parseSealed(sealed, User)
	require.NoError(t, err)
	assert.Equal(t, blob, got)

	tests := []struct {
		name   string
		sealed []byte
		scope  Scope
		want   error
	}{
		{"other scope", sealed, Machine, keys.ErrWrongKey},
		{"header only", header(User), User, keys.ErrWrongKey},
		{"empty", nil, User, keys.ErrWrongKey},
		{"newer version", append([]byte{2, byte(User)}, blob...), User,
			keys.ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSealed(tt.sealed, tt.scope)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestEntropy(t *testing.T) {
	var vol keys.VolumeID
	vol[0] = 7
	ad := keys.RingAD(vol, "m1")
	e := entropy(ad, header(Machine))
	assert.Equal(t, append(bytes.Clone(ad), SealVersion, byte(Machine)), e)
	assert.NotEqual(t, e, entropy(keys.RingAD(vol, "m2"), header(Machine)))
}

func FuzzParseSealed(f *testing.F) {
	f.Add(append(header(Machine), 1, 2, 3), uint8(Machine))
	f.Add([]byte{SealVersion}, uint8(User))
	f.Fuzz(func(t *testing.T, sealed []byte, s uint8) {
		blob, err := parseSealed(sealed, Scope(s))
		if err != nil {
			return
		}
		if len(blob) == 0 || !bytes.Equal(sealed[headerSize:], blob) || sealed[1] != s {
			t.Fatalf("accepted %x for scope %d", sealed, s)
		}
	})
}
