package box

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		len  int
		ok   bool
	}{
		{name: "32 bytes", len: 32, ok: true},
		{name: "16 bytes", len: 16},
		{name: "empty", len: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(keys.NewSecret(tt.len))
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Nil(t, m)
		})
	}
}

func TestWipe(t *testing.T) {
	ctx := context.Background()
	key, err := keys.RandomSecret(KeySize)
	require.NoError(t, err)
	m, err := New(key)
	require.NoError(t, err)
	sealed, err := m.Seal(ctx, []byte("x"), nil)
	require.NoError(t, err)
	assert.Len(t, sealed, 1+Overhead)

	m.Wipe()
	assert.Zero(t, key.Len())
	_, err = m.Seal(ctx, []byte("x"), nil)
	require.Error(t, err)
	_, err = m.Unseal(ctx, sealed, nil)
	require.Error(t, err)
	assert.NotErrorIs(t, err, keys.ErrWrongKey, "a wiped master is not a wrong key")
}
