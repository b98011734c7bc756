package keys_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys"
)

func TestReencryptState(t *testing.T) {
	backing := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(backing, keys.DirName), 0o700))
	st, err := keys.ReadReencrypt(backing)
	require.NoError(t, err)
	assert.Nil(t, st, "no state before a run")

	want := keys.Reencrypt{Target: 7, Token: "0123456789abcdef", Generation: 3,
		Started: time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)}
	require.NoError(t, keys.WriteReencrypt(backing, want))
	got, err := keys.ReadReencrypt(backing)
	require.NoError(t, err)
	want.Version = 1
	assert.Equal(t, &want, got)

	require.NoError(t, keys.ClearReencrypt(backing))
	st, err = keys.ReadReencrypt(backing)
	require.NoError(t, err)
	assert.Nil(t, st)
	require.NoError(t, keys.ClearReencrypt(backing), "clearing twice is fine")
}

func TestReencryptStateMalformed(t *testing.T) {
	tests := []struct {
		name, json string
	}{
		{name: "no target", json: `{"version":1,"token":"0123456789abcdef"}`},
		{name: "short token", json: `{"version":1,"target":7,"token":"0123"}`},
		{name: "token not hex", json: `{"version":1,"target":7,"token":"0123456789abcdeZ"}`},
		{name: "newer version", json: `{"version":2,"target":7,"token":"0123456789abcdef"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backing := t.TempDir()
			dir := filepath.Join(backing, keys.DirName)
			require.NoError(t, os.Mkdir(dir, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, keys.ReencryptName), []byte(tt.json), 0o600))
			_, err := keys.ReadReencrypt(backing)
			assert.Error(t, err)
		})
	}
}
