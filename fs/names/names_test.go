package names

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/fs/content"
)

func newKey(t *testing.T) *Key {
	t.Helper()
	secret := make([]byte, SecretSize)
	_, _ = rand.Read(secret)
	var id DirID
	_, _ = rand.Read(id[:])
	k, err := NewKey(secret, id)
	require.NoError(t, err)
	return k
}

// allowedName returns a name of n bytes cycling through every byte value
// Linux allows in a name, starting at offset start.
func allowedName(n, start int) string {
	var b []byte
	for v := start; len(b) < n; v++ {
		c := byte(v%255 + 1)
		if c != '/' {
			b = append(b, c)
		}
	}
	s := string(b)
	if s == "." || s == ".." {
		return "x" + s[1:]
	}
	return s
}

func TestRoundTripEveryLengthAndByte(t *testing.T) {
	k := newKey(t)
	for n := 1; n <= MaxName; n++ {
		for _, start := range []int{0, 46, 200} {
			name := allowedName(n, start)
			nm, err := k.Encrypt(name)
			require.NoError(t, err)
			assert.LessOrEqual(t, len(nm.Backing), 255)
			assert.Equal(t, n > MaxShort, nm.Long(), "length %d", n)
			var got string
			if nm.Long() {
				assert.True(t, IsLong(nm.Backing))
				got, err = k.DecryptLong(nm.Backing, nm.Sidecar)
			} else {
				assert.False(t, Hidden(nm.Backing))
				assert.False(t, strings.HasPrefix(nm.Backing, "."))
				got, err = k.Decrypt(nm.Backing)
			}
			require.NoError(t, err)
			require.Equal(t, name, got)
		}
	}
}

func TestEncryptIsDeterministicPerDirectory(t *testing.T) {
	a, b := newKey(t), newKey(t)
	x1, err := a.Encrypt("config.json")
	require.NoError(t, err)
	x2, err := a.Encrypt("config.json")
	require.NoError(t, err)
	assert.Equal(t, x1, x2)
	y, err := b.Encrypt("config.json")
	require.NoError(t, err)
	assert.NotEqual(t, x1.Backing, y.Backing)
	up, err := a.Encrypt("Config.json")
	require.NoError(t, err)
	assert.NotEqual(t, x1.Backing, up.Backing)

	// A name moved to another directory does not decrypt there.
	_, err = b.Decrypt(x1.Backing)
	assert.ErrorIs(t, err, ErrName)
}

func TestBadNames(t *testing.T) {
	k := newKey(t)
	for _, name := range []string{"", ".", "..", "a/b", "a\x00b", strings.Repeat("x", 256)} {
		_, err := k.Encrypt(name)
		assert.Error(t, err, "%q", name)
	}

	good, err := k.Encrypt("secret-name")
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(good.Backing)
	require.NoError(t, err)
	raw[3] ^= 1
	for _, tc := range []struct{ name, backing string }{
		{"flipped bit", base64.RawURLEncoding.EncodeToString(raw)},
		{"not base64", "abc*def"},
		{"padded", good.Backing + "="},
		{"too short", "AAAA"},
		{"non-canonical", nonCanonical(t, k, "secret-nam")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Decrypt(tc.backing)
			assert.ErrorIs(t, err, ErrName)
		})
	}

	long, err := k.Encrypt(strings.Repeat("L", 200))
	require.NoError(t, err)
	bad := append([]byte(nil), long.Sidecar...)
	bad[0] ^= 1
	_, err = k.DecryptLong(long.Backing, bad)
	assert.ErrorIs(t, err, ErrName, "sidecar that does not hash to its name")
	_, err = k.DecryptLong(LongName(bad), bad)
	assert.ErrorIs(t, err, ErrName, "sidecar that does not authenticate")
}

// nonCanonical returns a backing name of plain that decodes to the same
// ciphertext as its canonical encoding but sets one of the unused low bits
// of its last character, which the decoder accepts and ignores. plain must
// give a ciphertext whose length is not a multiple of 3, or there are no
// unused bits; the SIV tag (16 bytes) adds 16 to the name's length.
func nonCanonical(t *testing.T, k *Key, plain string) string {
	t.Helper()
	nm, err := k.Encrypt(plain)
	require.NoError(t, err)
	ct, err := base64.RawURLEncoding.DecodeString(nm.Backing)
	require.NoError(t, err)
	require.NotZero(t, len(ct)%3, "ciphertext of %q has no unused bits", plain)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, nm.Backing[len(nm.Backing)-1])
	require.GreaterOrEqual(t, last, 0)
	out := nm.Backing[:len(nm.Backing)-1] + string(alphabet[last^1])
	same, err := base64.RawURLEncoding.DecodeString(out)
	require.NoError(t, err, "the lenient decoder accepts unused bits")
	require.Equal(t, ct, same, "only unused bits differ")
	require.NotEqual(t, nm.Backing, out)
	return out
}

func TestHidden(t *testing.T) {
	for _, tc := range []struct {
		name           string
		hidden, isLong bool
	}{
		{RecordName, true, false},
		{".coffer", true, false},
		{TmpPrefix + "0123", true, false},
		{LongPrefix + strings.Repeat("A", 43), false, true},
		{LongPrefix + strings.Repeat("A", 43) + SidecarSuffix, true, false},
		{"QUJD", false, false},
	} {
		assert.Equal(t, tc.hidden, Hidden(tc.name), tc.name)
		assert.Equal(t, tc.isLong, IsLong(tc.name), tc.name)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	var id DirID
	_, _ = rand.Read(id[:])
	r := &Record{ID: id}
	r.Slots[1] = content.Slot{KeyID: 7, Generation: 3, Wrapped: []byte("wrapped")}
	b, err := r.MarshalBinary()
	require.NoError(t, err)
	require.Len(t, b, RecordSize)
	assert.Equal(t, "cofdir", string(b[:6]))

	got, err := ParseRecord(b)
	require.NoError(t, err)
	assert.Equal(t, r, got)
	assert.Equal(t, []int{1}, got.Order())

	// A file header is not a record, and damage is refused.
	fileHdr := append([]byte("coffer"), b[6:]...)
	_, err = ParseRecord(fileHdr)
	assert.ErrorIs(t, err, content.ErrCorrupt)
	_, err = ParseRecord(b[:100])
	assert.ErrorIs(t, err, content.ErrCorrupt)
	b[24+12+1] = 200 // wrapped length past the slot
	_, err = ParseRecord(b)
	assert.ErrorIs(t, err, content.ErrCorrupt)
}

func TestRecordADBindsEverything(t *testing.T) {
	var vol [16]byte
	var id DirID
	base := RecordAD(vol, id, 1, 1)
	assert.Len(t, base, 14+16+16+4+8)
	assert.Equal(t, "coffer-dir-v1\x00", string(base[:14]))
	id[0] = 1
	assert.NotEqual(t, base, RecordAD(vol, id, 1, 1))
	vol[0] = 1
	assert.NotEqual(t, RecordAD([16]byte{}, id, 1, 1), RecordAD(vol, id, 1, 1))
	assert.NotEqual(t, base, RecordAD([16]byte{}, DirID{}, 2, 1))
	assert.NotEqual(t, base, RecordAD([16]byte{}, DirID{}, 1, 2))
}

func TestXattr(t *testing.T) {
	secret := make([]byte, SecretSize)
	_, _ = rand.Read(secret)
	k, err := NewXattrKey(secret)
	require.NoError(t, err)

	bn, err := k.EncryptName("user.mime_type")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(bn, "user."))
	assert.NotContains(t, bn, "mime")
	name, err := k.DecryptName(bn)
	require.NoError(t, err)
	assert.Equal(t, "user.mime_type", name)

	sealed := k.SealValue(bn, []byte("text/plain"))
	assert.Len(t, sealed, len("text/plain")+ValueOverhead)
	v, err := k.OpenValue(bn, sealed)
	require.NoError(t, err)
	assert.Equal(t, "text/plain", string(v))

	other, err := k.EncryptName("user.other")
	require.NoError(t, err)
	_, err = k.OpenValue(other, sealed)
	assert.ErrorIs(t, err, ErrName, "value moved to another attribute")
	sealed[len(sealed)-1] ^= 1
	_, err = k.OpenValue(bn, sealed)
	assert.ErrorIs(t, err, ErrName)

	_, err = k.EncryptName("user." + strings.Repeat("n", 200))
	assert.ErrorIs(t, err, ErrName)
	_, err = k.DecryptName("user.plain")
	assert.ErrorIs(t, err, ErrName)
}
