package masterkey

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzParseURI fuzzes Parse. It must never panic; an accepted URI must be
// canonical (parsing its canonical form gives the same Ref) and errors must
// be one line. Seeds: testdata/fuzz/FuzzParseURI.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"file:///etc/coffer/master.key", "passphrase:", "pkcs11:token=t",
		"file://host/x", "gopher://x", ":", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		ref, err := Parse(uri)
		if err != nil {
			assert.Zero(t, ref)
			assert.False(t, strings.Contains(err.Error(), "\n"), "errors are one line")
			return
		}
		again, err := Parse(ref.URI)
		require.NoError(t, err, "a canonical URI must parse")
		assert.Equal(t, ref, again)
	})
}
