package dpapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/masterkey"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		name, uri string
		want      Scope
		canon     string
	}{
		{"machine", "dpapi:machine", Machine, "dpapi:machine"},
		{"user", "dpapi:user", User, "dpapi:user"},
		{"upper case", "DPAPI:Machine", Machine, "dpapi:machine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseURI(tt.uri)
			require.NoError(t, err)
			assert.Equal(t, tt.want, s)
			c, err := Canonical(tt.uri)
			require.NoError(t, err)
			assert.Equal(t, tt.canon, c)
		})
	}
}

func TestParseURIRefusals(t *testing.T) {
	tests := []struct{ name, uri, want string }{
		{"no scope", "dpapi:", "dpapi:machine or dpapi:user"},
		{"no colon", "dpapi", "want dpapi:machine"},
		{"other scope", "dpapi:domain", "machine or user"},
		{"authority form", "dpapi://machine", "machine or user"},
		{"parameters", "dpapi:machine?x=1", "machine or user"},
		{"other scheme", "tpm2:machine", "want dpapi:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseURI(tt.uri)
			assert.ErrorIs(t, err, masterkey.ErrMalformed)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestScopeString(t *testing.T) {
	assert.Equal(t, "machine", Machine.String())
	assert.Equal(t, "user", User.String())
	assert.Equal(t, "Scope(0)", Scope(0).String())
}
