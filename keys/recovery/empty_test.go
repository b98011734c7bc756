package recovery

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDecodeEmpty is breaker3's F9: an empty recovery key was reported as
// "0 groups" with the hint to check "that group". It says it is empty now,
// and is not a typo of a group.
func TestDecodeEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "\n", "  - \n"} {
		_, err := decodeText(in)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "recovery key is empty")
		assert.False(t, errors.Is(err, ErrTypo))
	}
}
