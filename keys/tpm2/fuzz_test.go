//go:build linux

package tpm2

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzURI fuzzes tpm2: URIs: never a panic, errors on one line, and an
// accepted URI's canonical form parses to the same policy.
func FuzzURI(f *testing.F) {
	for _, s := range []string{"tpm2:", "tpm2:?pcrs=7", "tpm2:?pcrs=0,7&bank=sha1",
		"tpm2:?bank=sha256", "tpm2:?pcrs=99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		p, err := parseURI(uri)
		if err != nil {
			assert.NotContains(t, err.Error(), "\n")
			return
		}
		again, err := parseURI(p.uri())
		require.NoError(t, err)
		assert.Equal(t, p, again)
	})
}

// FuzzParams fuzzes the params read from a config: never a panic, and
// accepted params have blobs within the limits.
func FuzzParams(f *testing.F) {
	f.Add([]byte(`{"version":1,"srk_name":"000b","public":"AA==","private":"AA==",` +
		`"pcr_values":["00"]}`))
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		pr, err := parseParams(json.RawMessage(raw), policy{PCRs: []uint{7}, Bank: "sha256"})
		if err != nil {
			assert.False(t, strings.Contains(err.Error(), "\n"))
			return
		}
		assert.LessOrEqual(t, len(pr.Public), maxBlob)
		assert.LessOrEqual(t, len(pr.Private), maxBlob)
		assert.Len(t, pr.PCRValues, 1)
	})
}
