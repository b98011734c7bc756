package recovery

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzParse fuzzes the reader of typed recovery keys. It must never panic;
// a key it accepts must print as text that parses to the same key.
func FuzzParse(f *testing.F) {
	k, err := Generate()
	require.NoError(f, err)
	f.Add(k.Text())
	f.Add(strings.ToLower(strings.ReplaceAll(k.Text(), "-", "")))
	f.Add("# comment\n" + k.Text()[:30])
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			assert.Nil(t, got)
			return
		}
		defer got.Wipe()
		again, err := Parse(got.Text())
		require.NoError(t, err)
		defer again.Wipe()
		assert.Equal(t, got.Fingerprint(), again.Fingerprint())
	})
}
