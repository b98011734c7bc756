//go:build linux

package systemdcreds

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/internal/box"
)

// FuzzSplit fuzzes the parsing of a sealed copy read from the config: it
// must never panic, and what it accepts must hold a credential and a ring
// of at least the AEAD overhead.
func FuzzSplit(f *testing.F) {
	f.Add([]byte{1, 0, 1, 'x'})
	f.Add(append([]byte{1, 0, 2, 'a', 'b'}, make([]byte, box.Overhead)...))
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		cred, ring, err := split(sealed)
		if err != nil {
			require.ErrorIs(t, err, keys.ErrWrongKey)
			return
		}
		assert.NotEmpty(t, cred)
		assert.GreaterOrEqual(t, len(ring), box.Overhead)
		assert.Equal(t, len(sealed), headerSize+len(cred)+len(ring))
	})
}

// FuzzCredentialName fuzzes the credential name built from associated
// data: an accepted name must be safe to hand to systemd-creds.
func FuzzCredentialName(f *testing.F) {
	f.Add([]byte(adPrefix + "0123456789abcdef19fb2a71"))
	f.Add([]byte(adPrefix + "0123456789abcdef../x"))
	f.Fuzz(func(t *testing.T, ad []byte) {
		name, err := credentialName(ad)
		if err != nil {
			return
		}
		assert.True(t, strings.HasPrefix(name, "coffer-"))
		assert.False(t, strings.ContainsAny(name, "/\x00 \n="), "name %q", name)
	})
}
