package keys

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	xhkdf "golang.org/x/crypto/hkdf"
)

// TestEntryTagLayout recomputes a tag from the ring key bytes as
// docs/format.md ("Master entry tags") describes it, with an independent
// HKDF, and a hand-built message.
func TestEntryTagLayout(t *testing.T) {
	r := newTestRing(t)
	vol := VolumeID{0x01, 0x02, 0x03, 0xff}
	m := MasterEntry{ID: "1a2b3c4d", Kind: "recovery", URI: "recovery:",
		Params: json.RawMessage("{\n  \"suite\": \"S\",\n  \"public_key\": \"a<b\"\n}")}
	tag, err := r.TagEntry(vol, m)
	require.NoError(t, err)
	assert.Equal(t, r.Primary().ID, tag.Key)

	key := make([]byte, 32)
	kdf := xhkdf.New(sha256.New, rawRingKey(t, r, tag.Key), []byte("coffer-ring-derive-v1"),
		[]byte("coffer-master-entry-tag-v1"))
	_, err = io.ReadFull(kdf, key)
	require.NoError(t, err)
	msg := []byte("coffer-master-entry-tag-v1\x00")
	msg = append(msg, vol[:]...)
	msg = append(msg, 0, 0, 0, 8)
	msg = append(msg, "1a2b3c4d"...)
	msg = append(msg, 0, 0, 0, 8)
	msg = append(msg, "recovery"...)
	msg = append(msg, 0, 0, 0, 9)
	msg = append(msg, "recovery:"...)
	params := `{"suite":"S","public_key":"a\u003cb"}`
	msg = append(msg, 0, 0, 0, byte(len(params)))
	msg = append(msg, params...)
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	assert.Equal(t, h.Sum(nil), tag.MAC)

	// No params: an empty field, not "null".
	m.Params = nil
	tag, err = r.TagEntry(vol, m)
	require.NoError(t, err)
	msg = msg[:len(msg)-len(params)-4]
	msg = append(msg, 0, 0, 0, 0)
	h = hmac.New(sha256.New, key)
	h.Write(msg)
	assert.Equal(t, h.Sum(nil), tag.MAC)
}

// TestPayloadEntries checks that the entry listing survives sealing and
// that a malformed one is refused.
func TestPayloadEntries(t *testing.T) {
	r := newTestRing(t)
	vol := VolumeID{0x0a}
	m := MasterEntry{ID: "0123abcd", Kind: "file", URI: "file:///k"}
	d, err := entryDigest(vol, m)
	require.NoError(t, err)
	b, err := r.withEntries(map[string][sha256.Size]byte{m.ID: d}).marshalPayload(vol)
	require.NoError(t, err)
	_, got, err := unmarshalPayload(b)
	require.NoError(t, err)
	assert.True(t, got.Listed(m.ID))
	require.NoError(t, got.CheckEntry(vol, m))
	m.URI = "file:///other"
	assert.ErrorIs(t, got.CheckEntry(vol, m), ErrUntrustedMaster)

	for name, entries := range map[string]any{
		"short digest": map[string][]byte{"0123abcd": make([]byte, 31)},
		"bad ID":       map[string][]byte{"0123ABCD": make([]byte, 32)},
	} {
		var p map[string]any
		require.NoError(t, json.Unmarshal(b, &p))
		p["entries"] = entries
		bad, err := json.Marshal(p)
		require.NoError(t, err)
		_, _, err = unmarshalPayload(bad)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

// publicPlain is a plainMaster that says anyone can seal to it, as a
// recovery key does.
type publicPlain struct{ plainMaster }

func (publicPlain) SealsToPublicKey() bool { return true }

// TestOpenMastersPrefersPrivateCopy checks that the ring, with its entry
// listing, comes from a copy that only its master key's holder can write
// even when volume.json lists a public-key master first whose copy a
// holder of the ring rewrote with a listing of their choosing.
func TestOpenMastersPrefersPrivateCopy(t *testing.T) {
	ctx := context.Background()
	cfg, ring, err := newVolume(ctx, []Enrollment{
		{Kind: "test", URI: "test:a", Master: plainMaster{}},
		{Kind: "pub", URI: "pub:", Master: publicPlain{}},
	}, NamesEncrypted)
	require.NoError(t, err)
	pub := cfg.Masters[1]
	forged, err := SealRing(ctx, ring.withEntries(map[string][sha256.Size]byte{"0badc0de": {1}}),
		cfg.VolumeID, pub.ID, publicPlain{})
	require.NoError(t, err)
	cfg.Ring.Sealed[pub.ID] = forged
	cfg.Masters[0], cfg.Masters[1] = cfg.Masters[1], cfg.Masters[0]

	open := func(m MasterEntry) (Master, error) {
		if m.Kind == "pub" {
			return publicPlain{}, nil
		}
		return plainMaster{}, nil
	}
	got, opened, err := OpenMasters(ctx, cfg, open, nil, nil)
	require.NoError(t, err)
	require.Len(t, opened, 2)
	assert.False(t, got.Listed("0badc0de"), "the ring came from the private copy")

	// Only the public copy opens: it is used.
	got, _, err = OpenMasters(ctx, cfg, open, map[string]bool{cfg.Masters[1].ID: true}, nil)
	require.NoError(t, err)
	assert.True(t, got.Listed("0badc0de"))
}
