package pkcs11

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzParseURI fuzzes ParseURI, which reads URIs from volume configs. It
// must never panic; an accepted URI's canonical form must parse to the same
// URI and be its own canonical form; errors must be one line and never
// repeat a pin-value. Seeds: the RFC 7512 examples of TestParseURI and
// testdata/fuzz/FuzzParseURI.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=vault;object=ring",
		"pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;" +
			"model=1.0;object=my-certificate;type=secret-key;id=%69%95%3E%5C%F4%BD%EC%91" +
			"?pin-source=file:/etc/token_pin",
		"pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=x",
		"pkcs11:token=t;object=o?module-path=/mnt/libmypkcs11.so.1&pin-source=%2Frun%2Fpin",
		"pkcs11:token=t;object=o?pin-value=SECRETPIN",
		"pkcs11:token=t;serial=1;slot-id=3;object=o",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			assert.Nil(t, u)
			assert.NotContains(t, err.Error(), "\n")
			if strings.Count(s, "SECRETPIN") == 1 && strings.Contains(s, "pin-value=SECRETPIN") {
				assert.NotContains(t, err.Error(), "SECRETPIN")
			}
			return
		}
		canon := u.String()
		again, err := ParseURI(canon)
		require.NoError(t, err, "canonical form %q must parse", canon)
		assert.Equal(t, u, again)
		assert.Equal(t, canon, again.String())
		assert.False(t, strings.ContainsAny(canon, " #\"\\"), "canonical %q", canon)
	})
}
