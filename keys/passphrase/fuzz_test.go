package passphrase

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseParams fuzzes the params parser, which reads untrusted config
// bytes. It must never panic, and params it accepts must be valid and
// survive a round trip.
func FuzzParseParams(f *testing.F) {
	p, err := NewParams(DefaultCost())
	require.NoError(f, err)
	b, err := json.Marshal(p)
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(`{"algorithm":"argon2id","version":19,"time":0}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := ParseParams(raw)
		if err != nil {
			return
		}
		require.NoError(t, p.Validate())
		out, err := json.Marshal(p)
		require.NoError(t, err)
		q, err := ParseParams(out)
		require.NoError(t, err)
		require.Equal(t, p, q)
	})
}
