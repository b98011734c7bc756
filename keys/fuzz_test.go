package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzReadConfig fuzzes the volume config parser behind ReadConfig. It must
// never panic, and a config it accepts must survive an encode/parse round
// trip unchanged. Seeds: testdata/fuzz/FuzzReadConfig.
func FuzzReadConfig(f *testing.F) {
	f.Add(validConfigJSON(f))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := parseConfig(b)
		if err != nil {
			require.Nil(t, cfg)
			return
		}
		out, err := json.Marshal(cfg)
		require.NoError(t, err)
		again, err := parseConfig(out)
		require.NoError(t, err, "an accepted config must re-parse")
		out2, err := json.Marshal(again)
		require.NoError(t, err)
		assert.Equal(t, out, out2)
	})
}

// validPayload returns a marshalled ring payload with two keys.
func validPayload(t testing.TB) []byte {
	t.Helper()
	r, err := NewRing()
	require.NoError(t, err)
	_, err = r.AddKey()
	require.NoError(t, err)
	b, err := r.marshalPayload(VolumeID{0xc0, 0xff, 0xee})
	require.NoError(t, err)
	return b
}

// FuzzRingUnmarshal fuzzes the ring payload parser. It must never panic, and
// a ring it accepts must work: wrap, unwrap and re-marshal. Seeds:
// testdata/fuzz/FuzzRingUnmarshal.
func FuzzRingUnmarshal(f *testing.F) {
	f.Add(validPayload(f))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		vol, r, err := unmarshalPayload(b)
		if err != nil {
			require.Nil(t, r)
			return
		}
		id, w, err := r.Wrap([]byte("dek"), constAD([]byte("ad")))
		require.NoError(t, err)
		dek, err := r.Unwrap(id, w, []byte("ad"))
		require.NoError(t, err)
		require.Equal(t, []byte("dek"), dek)

		out, err := r.marshalPayload(vol)
		require.NoError(t, err)
		vol2, r2, err := unmarshalPayload(out)
		require.NoError(t, err, "an accepted payload must re-parse")
		assert.Equal(t, vol, vol2)
		assert.Equal(t, r.Keys(), r2.Keys())
	})
}

// FuzzUnsealRing fuzzes UnsealRing behind a master that authenticates only
// the associated data, so that fuzzed payloads reach the parser and the
// volume check. It must never panic, and must only accept a ring that names
// the volume. Seeds: testdata/fuzz/FuzzUnsealRing.
func FuzzUnsealRing(f *testing.F) {
	vol := VolumeID{0xc0, 0xff, 0xee}
	f.Add(validPayload(f), "0a0b0c0d")
	f.Add([]byte("{}"), "")
	f.Fuzz(func(t *testing.T, payload []byte, masterID string) {
		ctx := context.Background()
		m := plainMaster{}
		sealed, err := m.Seal(ctx, payload, RingAD(vol, masterID))
		require.NoError(t, err)

		r, err := UnsealRing(ctx, sealed, vol, masterID, m)
		if err != nil {
			require.Nil(t, r)
		} else {
			b, err := r.marshalPayload(vol)
			require.NoError(t, err)
			require.True(t, bytes.Contains(b, []byte(vol.String())))
		}
		_, err = UnsealRing(ctx, sealed, VolumeID{1}, masterID, m)
		require.ErrorIs(t, err, ErrWrongKey, "another volume's AD must not open")
	})
}

// FuzzParseBackup fuzzes the backup file parser behind ReadBackup. It must
// never panic, and the config of a backup it accepts must be valid.
func FuzzParseBackup(f *testing.F) {
	cfg := validConfigJSON(f)
	f.Add([]byte(`{"version":1,"kind":"coffer-volume-backup","created":"2026-12-04T00:00:00Z",` +
		`"config":` + string(cfg) + `}`))
	f.Add([]byte(`{"version":1,"kind":"other","config":{}}`))
	f.Add(cfg)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, _, err := parseBackup(b)
		if err != nil {
			require.Nil(t, got)
			return
		}
		require.NoError(t, got.Validate())
	})
}
